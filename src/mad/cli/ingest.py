"""`mad ingest serve|writer|status|post` (Stage 01) and `mad up` (every stage, supervised)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from mad.cli.common import (
    ConfigOption,
    LakeOption,
    ProfileOption,
    settings_from,
    sub_app,
    use_profile,
)
from mad.errors import MadError

ingest_app = sub_app("Ingest API, durable stream and raw lake writer.")


def register(app: typer.Typer) -> None:
    """Add the `ingest` group and `up` to the main app."""
    app.add_typer(ingest_app, name="ingest")
    app.command()(up)


def _ingest_overrides(host: str | None, port: int | None, stream: str | None,
                      lake: str | None) -> dict[str, Any]:
    return {"ingest.host": host, "ingest.port": port, "ingest.stream.backend": stream,
            "lake.url": lake}


HostOption = typer.Option(None, help="Bind address of the ingest API (default 127.0.0.1).")
PortOption = typer.Option(None, help="Port of the ingest API (default 8010).")
StreamOption = typer.Option(None, help="Stream backend: embedded | kinesis.")


@ingest_app.command("serve")
def ingest_serve(
    host: str | None = HostOption,
    port: int | None = PortOption,
    stream: str | None = StreamOption,
    lake: str | None = LakeOption,
    writer: bool = typer.Option(True, "--writer/--no-writer",
                                help="Run the raw writer beside the API (default)."),
    config: Path | None = ConfigOption,
) -> None:
    """Serve POST /v1/events, /health, /metrics, /openapi.json; write the raw lake."""
    from mad.runtime.supervisor import Parts, supervise

    supervise(settings_from(config, **_ingest_overrides(host, port, stream, lake)),
              Parts(writer=writer))


@ingest_app.command("writer")
def ingest_writer(
    stream: str | None = StreamOption,
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Consume the stream into the raw lake until SIGTERM / Ctrl-C (flushes, checkpoints)."""
    from mad.runtime.writer import run_writer

    raise SystemExit(run_writer(settings_from(config, **_ingest_overrides(None, None, stream,
                                                                           lake))))


@ingest_app.command("status")
def ingest_status(
    stream: str | None = StreamOption,
    fmt: str = typer.Option("table", "--format", help="table | json"),
    config: Path | None = ConfigOption,
) -> None:
    """Per shard: lag and last checkpoint; per dataset: files, records, bytes; errors."""
    import orjson

    from mad.ingest.status import collect, render

    if fmt not in ("table", "json"):
        raise MadError(f"unknown format '{fmt}' (allowed: table | json)")
    data = collect(settings_from(config, **_ingest_overrides(None, None, stream, None)))
    if fmt == "json":
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(data))


@ingest_app.command("post")
def ingest_post(
    file: Path = typer.Argument(..., help="A JSONL or JSONL.gz file of events."),
    url: str | None = typer.Option(None, help="The ingest API's POST URL (default: "
                                   "http://<ingest.host>:<ingest.port>/v1/events)."),
    batch: int | None = typer.Option(None, min=1, help="Records per request (default and "
                                     "at most: ingest.max_records)."),
    config: Path | None = ConfigOption,
) -> None:
    """Post a file to the ingest API in requests under its limits; print what it answered."""
    from mad.runtime.poster import Poster, post_file
    from mad.web import read_token

    settings = settings_from(config)
    ing = settings.ingest
    if not file.is_file():
        raise MadError(f"no file at {file}")
    target = url or f"http://{_client_host(ing.host)}:{ing.port}/v1/events"
    max_records = min(batch or ing.max_records, ing.max_records)
    poster = Poster(target, read_token(ing.auth_token, ing.auth_token_file, "ingest.auth_token"))
    try:
        with _progress(file.name) as advance:
            totals = post_file(file, poster, max_records, ing.max_body_bytes, advance)
    finally:
        poster.close()
    typer.echo(f"posted {file}: {totals.line()}")


def _client_host(host: str) -> str:
    """Where a client reaches an API bound to `host` (a wildcard bind: this machine)."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


@contextmanager
def _progress(name: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr when it is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total: None
        return
    bar = Progress(TextColumn(f"posting {name}"), BarColumn(), DownloadColumn(),
                   console=console, transient=True)
    with bar:
        task = bar.add_task("post", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def up(
    rate: float = typer.Option(20.0, help="Events/s the live simulator posts (0: none)."),
    dashboard: bool = typer.Option(True, "--dashboard/--no-dashboard",
                                   help="Serve the dashboard on dashboard.host:port "
                                   "(default, unless dashboard.enabled is false)."),
    backfill_hours: float | None = typer.Option(
        None, min=0, max=168, help="Hours of labelled traffic posted once, on the first "
        "start, before going live (default supervisor.backfill_hours, 3; 0: none)."),
    lake: str | None = LakeOption,
    profile: str | None = ProfileOption,
    config: Path | None = ConfigOption,
) -> None:
    """Run every stage, embedded and wired, supervised: simulator -> ingest API -> stream ->
    raw writer -> raw lake -> ETL -> Parquet lake -> detection, the dashboard, and a
    status endpoint (GET /health). The first start posts a labelled backfill first."""
    from mad.generate.live import MAX_LIVE_RATE
    from mad.runtime.supervisor import Parts, supervise

    if not 0 <= rate <= MAX_LIVE_RATE:
        raise MadError(f"--rate must be >= 0 and <= {MAX_LIVE_RATE:g} events/s")
    use_profile(profile)
    overrides = _ingest_overrides(None, None, None, lake)
    overrides["supervisor.backfill_hours"] = backfill_hours
    settings = settings_from(config, **overrides)
    supervise(settings, Parts(simulate_rate=rate, etl=True, detect=True,
                              dashboard=dashboard and settings.dashboard.enabled,
                              backfill_hours=settings.supervisor.backfill_hours, status=True))
