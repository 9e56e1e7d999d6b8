"""`mad doctor`: is every configured backend reachable and set up? One line per check.

Checks, each bounded in time (a few seconds of connect timeout) and never creating anything:

- `state`:  the state database answers, and which of the tables are missing (any stage that
            opens the database creates them, so missing tables are a note, not a failure);
- `stream`: embedded, its folder can be written; Kinesis, the stream exists, is ACTIVE, and
            how many open shards it has against `ingest.stream.kinesis.shards`;
- `lake`:   a folder that exists or can be made; an S3 bucket that exists (or the raw writer makes);
- `engine`: DuckDB, importable, with httpfs loaded offline for an S3 lake; Spark, pyspark and
            Java present, a `spark://` master accepting connections, and for an S3 lake the
            hadoop-aws and AWS SDK bundle jars in `etl.engine.spark.jars`;
- `hot`:    the hot store answers a ping (`store.enabled: false` skips it).

The stream and engine checks live in each backend's folder (`setup_check.py`, registered in
`mad.setup_checks`), so this module names no backend. Each check ends `ok`, `note` (not set
up yet, but the first stage to run sets it up: a missing SQLite file, tables, a Kinesis
stream with `create: true`, a bucket the raw writer creates) or `FAIL`, naming what is wrong
and what to do in its one line; no secret is printed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mad.setup_checks import BACKEND_CHECKS, NOTE, TIMEOUT_S, CheckFn, one_line, writable_folder

if TYPE_CHECKING:
    from mad.config import Settings

@dataclass(frozen=True)
class Check:
    part: str  # state, stream, lake, engine, hot
    backend: str
    ok: bool
    detail: str

    @property
    def status(self) -> str:
        return "FAIL" if not self.ok else "note" if NOTE in self.detail else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in pipeline order; an unexpected error is that check's failure."""
    stream, engine = settings.ingest.stream.backend, settings.etl.engine.backend
    checks: list[tuple[str, str, CheckFn]] = [
        ("state", _state_backend(settings), _state),
        ("stream", stream, BACKEND_CHECKS.get(("stream", stream), _no_check)),
        ("lake", _lake_scheme(settings), _lake),
        ("engine", engine, BACKEND_CHECKS.get(("engine", engine), _no_check)),
        ("hot", settings.store.hot.backend if settings.store.enabled else "off", _hot),
    ]
    out = []
    for part, backend, check in checks:
        try:
            ok, detail = check(settings)
        except Exception as err:  # a check must report, never crash the others
            ok, detail = False, f"{type(err).__name__}: {one_line(str(err))}"
        out.append(Check(part, backend, ok, detail))
    return out


def _no_check(settings: Settings) -> tuple[bool, str]:
    return True, "no setup check for this backend"


def _lake_scheme(settings: Settings) -> str:
    from mad.stores import split_url

    return split_url(settings.lake_url)[0]


def _state_backend(settings: Settings) -> str:
    return settings.state_url.partition(":")[0].partition("+")[0]


# -- state -----------------------------------------------------------------------------------

def _state(settings: Settings) -> tuple[bool, str]:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    import mad.state  # noqa: F401  (every table is defined on `metadata` on import)
    from mad.state.db import metadata

    url = make_url(settings.state_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if not path.is_file():
            folder = path.parent if str(path.parent) else Path(".")
            writable = writable_folder(folder)
            return writable, (f"{shown}: {NOTE}the first stage to run creates it"
                              if writable else f"{shown}: cannot create {path} ({folder} is "
                              "not writable)")
        connect: dict[str, Any] = {"timeout": TIMEOUT_S}
    else:
        connect = {"connect_timeout": int(TIMEOUT_S)}
    engine = create_engine(url, connect_args=connect)
    try:
        with engine.connect():
            names = set(inspect(engine).get_table_names())
    except Exception as err:
        return False, f"{shown}: cannot connect: {one_line(str(getattr(err, 'orig', err)))}"
    finally:
        engine.dispose()
    missing = sorted(set(metadata.tables) - names)
    if missing:
        listed = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        return True, (f"{shown}: reachable; {len(missing)} of {len(metadata.tables)} tables "
                      f"{NOTE}the first stage to run creates them ({listed})")
    return True, f"{shown}: reachable, all {len(metadata.tables)} tables present"


# -- lake ------------------------------------------------------------------------------------

def _lake(settings: Settings) -> tuple[bool, str]:
    from mad.stores import lake_store, split_url

    scheme, location = split_url(settings.lake_url)
    if scheme == "file":
        folder = Path(location)
        if folder.is_dir():
            ok = os.access(folder, os.W_OK | os.X_OK)
            return ok, f"{folder}: {'exists, writable' if ok else 'exists, NOT writable'}"
        ok = writable_folder(folder)
        return ok, (f"{folder}: {NOTE}the raw writer creates it" if ok
                    else f"{folder}: cannot be created (no writable parent)")
    store = lake_store(settings)
    where = f"{settings.lake_url} at {settings.aws.endpoint_url or 'AWS ' + settings.aws.region}"
    if not store.root_exists():
        return True, (f"{where}: bucket {NOTE}the raw writer creates it (needs "
                      "s3:CreateBucket; else create it, and check aws.* if it exists)")
    return True, f"{where}: bucket exists"


# -- hot store -------------------------------------------------------------------------------

def _hot(settings: Settings) -> tuple[bool, str]:
    if not settings.store.enabled:
        return True, "store.enabled is false: every read goes to the lake"
    from mad.hotstore import hot_url, open_hot

    hot = open_hot(settings)
    try:
        hot.ping()
        return True, f"{hot_url(hot)}: answers"
    except Exception as err:
        return False, f"{hot_url(hot)}: {one_line(str(err))}"
    finally:
        hot.close()

