"""`mad doctor`: is every configured backend reachable and set up? One line per check.

Checks, each bounded in time (a few seconds of connect timeout) and never creating anything:

- `state`:  the state database answers, and which of the tables are missing (any stage that
            opens the database creates them, so missing tables are a note, not a failure);
- `stream`: embedded, its folder can be written; Kinesis, the stream exists, is ACTIVE, and
            how many open shards it has against `ingest.stream.kinesis.shards`;
- `lake`:   a folder that exists or can be made; an S3 bucket that exists and can be listed;
- `engine`: DuckDB, importable, with httpfs loaded offline for an S3 lake; Spark, pyspark and
            Java present, a `spark://` master accepting connections, and for an S3 lake the
            hadoop-aws and AWS SDK bundle jars in `etl.engine.spark.jars`;
- `hot`:    the hot store answers a ping (`store.enabled: false` skips it).

Each check ends `ok`, `note` (not set up yet, but the first stage to run sets it up: a missing
SQLite file, tables, a Kinesis stream with `create: true`, a bucket the raw writer creates) or
`FAIL`, naming what is wrong and what to do in its one line; no secret is printed.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mad.config import Settings

TIMEOUT_S = 3.0


NOTE = "not created yet; "  # a detail holding this is a `note`: set up by the first run


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
    checks: list[tuple[str, str, Callable[[Settings], tuple[bool, str]]]] = [
        ("state", _state_backend(settings), _state),
        ("stream", settings.ingest.stream.backend, _stream),
        ("lake", "s3" if _s3_lake(settings) else "local", _lake),
        ("engine", settings.etl.engine.backend, _engine),
        ("hot", settings.store.hot.backend if settings.store.enabled else "off", _hot),
    ]
    out = []
    for part, backend, check in checks:
        try:
            ok, detail = check(settings)
        except Exception as err:  # a check must report, never crash the others
            ok, detail = False, f"{type(err).__name__}: {_one_line(str(err))}"
        out.append(Check(part, backend, ok, detail))
    return out


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _s3_lake(settings: Settings) -> bool:
    return settings.lake_url.lower().startswith("s3://")


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
            writable = _writable_folder(folder)
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
        return False, f"{shown}: cannot connect: {_one_line(str(getattr(err, 'orig', err)))}"
    finally:
        engine.dispose()
    missing = sorted(set(metadata.tables) - names)
    if missing:
        listed = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        return True, (f"{shown}: reachable; {len(missing)} of {len(metadata.tables)} tables "
                      f"{NOTE}the first stage to run creates them ({listed})")
    return True, f"{shown}: reachable, all {len(metadata.tables)} tables present"


def _writable_folder(folder: Path) -> bool:
    """`folder` exists and can be written, or its nearest existing parent can."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


# -- stream ----------------------------------------------------------------------------------

def _stream(settings: Settings) -> tuple[bool, str]:
    options: Any = settings.ingest.stream.options()
    if settings.ingest.stream.backend == "embedded":
        folder = Path(options.path or settings.data_dir / "stream")
        ok = _writable_folder(folder)
        return ok, (f"{folder}: {options.shards} shard(s), "
                    f"{'writable' if ok else 'NOT writable'}")
    if settings.ingest.stream.backend != "kinesis":
        return True, "no check for this backend"
    from mad.ingest.streams.kinesis.client import make_client

    aws = settings.aws
    client = make_client(aws.endpoint_url, aws.region, aws.access_key_id,
                         aws.secret_access_key, None, client_attempts=1)
    name = options.stream_name
    where = f"stream {name} at {aws.endpoint_url or 'AWS ' + aws.region}"
    try:
        summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except Exception as err:
        code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            if options.create:
                return True, (f"{where}: {NOTE}the first `mad ingest serve` creates it with "
                              f"{options.shards} shards")
            return False, (f"{where}: does not exist; create it, or set "
                           "ingest.stream.kinesis.create: true")
        return False, f"{where}: cannot reach Kinesis: {_one_line(str(err))}"
    status, shards = summary["StreamStatus"], summary.get("OpenShardCount")
    note = "" if shards == options.shards else \
        f" (ingest.stream.kinesis.shards says {options.shards}; the stream keeps its own)"
    return status == "ACTIVE", f"{where}: {status}, {shards} open shard(s){note}"


# -- lake ------------------------------------------------------------------------------------

def _lake(settings: Settings) -> tuple[bool, str]:
    if not _s3_lake(settings):
        folder = Path(settings.lake_url.removeprefix("file://"))
        if folder.is_dir():
            ok = os.access(folder, os.W_OK | os.X_OK)
            return ok, f"{folder}: {'exists, writable' if ok else 'exists, NOT writable'}"
        ok = _writable_folder(folder)
        return ok, (f"{folder}: {NOTE}the raw writer creates it" if ok
                    else f"{folder}: cannot be created (no writable parent)")
    from mad.stores import lake_store

    store = lake_store(settings)
    where = f"{settings.lake_url} at {settings.aws.endpoint_url or 'AWS ' + settings.aws.region}"
    if not store.root_exists():
        return True, (f"{where}: bucket {NOTE}the raw writer creates it (needs "
                      "s3:CreateBucket; else create it, and check aws.* if it exists)")
    store.list("md-raw-")  # listing is what every stage does first
    return True, f"{where}: bucket exists and lists"


# -- engine ----------------------------------------------------------------------------------

def _engine(settings: Settings) -> tuple[bool, str]:
    backend = settings.etl.engine.backend
    if backend == "duckdb":
        import duckdb

        if not _s3_lake(settings):
            return True, f"duckdb {duckdb.__version__}"
        from mad.stores.duckdb_s3 import load_s3

        con = duckdb.connect()
        try:
            load_s3(con, settings.aws)
        finally:
            con.close()
        return True, f"duckdb {duckdb.__version__}, httpfs loaded for the S3 lake"
    if backend != "spark":
        return True, "no check for this backend"
    return _spark(settings)


def _spark(settings: Settings) -> tuple[bool, str]:
    options: Any = settings.etl.engine.options()
    try:
        import pyspark
    except ImportError:
        return False, "pyspark is not installed: `make spark` (or pip install '.[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return False, "no Java on PATH (and JAVA_HOME unset): Spark needs Java 17"
    master = str(options.master)
    problems = []
    if master.startswith("spark://"):
        for host_port in master.removeprefix("spark://").split(","):
            host, _, port = host_port.rpartition(":")
            if not _accepts(host, int(port) if port.isdigit() else 7077):
                problems.append(f"master {host_port} does not accept connections")
    if _s3_lake(settings):
        jars = [Path(j) for j in options.jars]
        for needed in ("hadoop-aws", "aws-java-sdk-bundle"):
            found = [j for j in jars if j.name.startswith(needed) and j.name.endswith(".jar")]
            if not found:
                problems.append(f"no {needed} jar in etl.engine.spark.jars (`make spark-jars`)")
            elif not all(j.is_file() for j in found):
                problems.append(f"{needed} jar missing on disk: {found[0]}")
    head = f"pyspark {pyspark.__version__}, master {master}"
    return (False, f"{head}: {'; '.join(problems)}") if problems else (True, f"{head}: ready")


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=TIMEOUT_S):
            return True
    except OSError:
        return False


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
        return False, f"{hot_url(hot)}: {_one_line(str(err))}"
    finally:
        hot.close()

