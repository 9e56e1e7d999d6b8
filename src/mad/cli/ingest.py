"""`mad ingest serve|writer|status` (Stage 01) and `mad up` (every stage, supervised)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from mad.cli.common import ConfigOption, LakeOption, settings_from, sub_app
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


def up(
    rate: float = typer.Option(20.0, help="Events/s the live simulator posts (0: none)."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Run every stage built so far, embedded and wired:
    simulator -> ingest API -> stream -> raw writer -> raw lake -> ETL -> Parquet lake."""
    from mad.generate.live import MAX_LIVE_RATE
    from mad.runtime.supervisor import Parts, supervise

    if not 0 <= rate <= MAX_LIVE_RATE:
        raise MadError(f"--rate must be >= 0 and <= {MAX_LIVE_RATE:g} events/s")
    supervise(settings_from(config, **_ingest_overrides(None, None, None, lake)),
              Parts(simulate_rate=rate, etl=True, detect=True))


