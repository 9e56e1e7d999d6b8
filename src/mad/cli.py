"""`mad ...`: the command-line entry point.

Commands import their stage lazily, so `mad --help` stays fast. Every user error (bad flag,
bad setting, missing file) ends as one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.exceptions import Abort, TyperException

from mad.detect.cli import register as register_detect
from mad.detect.cli import register_detect as add_detect_app
from mad.errors import MadError

app = typer.Typer(
    name="mad",
    help="Metrics Anomaly Detection: simulate, ingest, transform and watch banking services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
simulate_app = typer.Typer(help="The live simulator and its control API.", no_args_is_help=True)
bench_app = typer.Typer(help="Score detectors against labelled data.", no_args_is_help=True)
ingest_app = typer.Typer(help="Ingest API, durable stream and raw lake writer.",
                         no_args_is_help=True)
app.add_typer(simulate_app, name="simulate")
app.add_typer(ingest_app, name="ingest")
etl_app = typer.Typer(help="Raw lake -> Parquet lake and aggregates (DuckDB or Spark).",
                      no_args_is_help=True)
app.add_typer(etl_app, name="etl")
app.add_typer(bench_app, name="bench")
register_detect(bench_app)
add_detect_app(app)

ConfigOption = typer.Option(
    None, "--config", help="YAML settings file (default: ./mad.yaml when present)."
)


def settings_from(config: Path | None, **overrides: Any) -> Any:
    from mad.config import load_settings

    return load_settings(config_file=config, overrides=overrides)


@app.command()
def catalog(
    fmt: str = typer.Option("table", "--format", help="table | markdown | json"),
    service: str | None = typer.Option(None, help="Only the event types of this service."),
    config: Path | None = ConfigOption,
) -> None:
    """Print the 59 event types: service(s), kind, category, levels, fields and series."""
    from mad import catalog as cat
    from mad.catalog_render import render

    settings_from(config)

    if service is not None and service not in cat.SERVICES:
        raise MadError(f"unknown service '{service}' (known: {', '.join(cat.SERVICES)})")
    if fmt not in ("table", "markdown", "json"):
        raise MadError(f"unknown format '{fmt}' (allowed: table | markdown | json)")
    sys.stdout.write(render(fmt, service))


@app.command()
def generate(
    out: Path = typer.Option(
        ..., "--out", help="Output folder for events.jsonl[.gz] and labels.json."
    ),
    start: str | None = typer.Option(None, help="Simulated start, ISO-8601 with offset."),
    duration: str | None = typer.Option(None, help="Simulated span: 90s, 30m, 6h, 2d."),
    rate: float | None = typer.Option(None, help="Events/s over all services at the daily mean."),
    seed: int | None = typer.Option(None, help="Random seed; the same seed gives the same bytes."),
    scenarios: str | None = typer.Option(
        None, help="Comma-separated incident scenarios, 'all' or 'none'."
    ),
    gzip: bool | None = typer.Option(None, "--gzip/--no-gzip", help="Write events.jsonl.gz."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    config: Path | None = ConfigOption,
) -> None:
    """Backfill: write a labelled stretch of simulated traffic to a folder."""
    from mad.generate.backfill import run_backfill

    settings = settings_from(
        config,
        **{
            "generate.start": start,
            "generate.duration": duration,
            "generate.rate": rate,
            "generate.seed": seed,
            "generate.scenarios": scenarios.split(",") if scenarios is not None else None,
            "generate.gzip": gzip,
        },
    )
    summary = run_backfill(settings.generate, out, progress=progress)
    typer.echo(summary)


@simulate_app.command("serve")
def simulate_serve(
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    sink: str | None = typer.Option(None, help="JSONL file path or http:// ingest URL."),
    seed: int | None = typer.Option(None, help="Random seed for the live stream."),
    config: Path | None = ConfigOption,
) -> None:
    """Serve the control API (POST /api/continuous/start|stop, GET /api/status, GET /health)."""
    from mad.generate.live import serve

    settings = settings_from(
        config,
        **{
            "simulate.host": host,
            "simulate.port": port,
            "simulate.sink": sink,
            "generate.seed": seed,
        },
    )
    serve(settings)


def _ingest_overrides(host: str | None, port: int | None, stream: str | None,
                      lake: str | None) -> dict[str, Any]:
    return {"ingest.host": host, "ingest.port": port, "ingest.stream.backend": stream,
            "lake.url": lake}


HostOption = typer.Option(None, help="Bind address of the ingest API (default 127.0.0.1).")
PortOption = typer.Option(None, help="Port of the ingest API (default 8010).")
StreamOption = typer.Option(None, help="Stream backend: embedded | kinesis.")
LakeOption = typer.Option(None, help="Raw lake: a folder or s3://bucket[/prefix].")


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
    from mad.ingest.run import run_stage

    run_stage(settings_from(config, **_ingest_overrides(host, port, stream, lake)),
              with_writer=writer)


@ingest_app.command("writer")
def ingest_writer(
    stream: str | None = StreamOption,
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Consume the stream into the raw lake until SIGTERM / Ctrl-C (flushes, checkpoints)."""
    from mad.ingest.run import run_writer

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


@etl_app.command("run")
def etl_run(
    engine: str | None = typer.Option(None, help="duckdb (default) | spark"),
    lake: str | None = LakeOption,
    watch: bool = typer.Option(False, "--watch", help="Keep running: a pass every interval."),
    config: Path | None = ConfigOption,
) -> None:
    """Transform every raw file not read yet, publish partitions, recompute aggregates."""
    import threading

    from mad.etl.runner import EtlRunner
    from mad.ingest.run import stop_on_signals

    settings = settings_from(config, **{"etl.engine": engine, "lake.url": lake})
    runner = EtlRunner(settings)
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            while True:
                typer.echo(runner.run_once().line())
                if not watch or stop.wait(settings.etl.watch_interval_s):
                    break
    finally:
        runner.close()


@etl_app.command("backfill")
def etl_backfill(
    start: str = typer.Option(..., "--from", help="First ingest hour, ISO-8601 with offset."),
    end: str = typer.Option(..., "--to", help="End (exclusive), ISO-8601 with offset."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Re-read the raw files of an ingest-time range, then run a pass."""
    from mad.events import parse_timestamp

    t0, t1 = parse_timestamp(start), parse_timestamp(end)
    if t0 is None or t1 is None or t1 <= t0:
        raise MadError("--from and --to must be ISO-8601 times with an offset, --from < --to")
    _mark_then_run(settings_from(config, **{"lake.url": lake}),
                   lambda runner: runner.backfill(t0, t1))


def _mark_then_run(settings: Any, mark: Any) -> None:
    """Make raw files pending with `mark(runner)`, then run one ETL pass."""
    from mad.etl.runner import EtlRunner

    runner = EtlRunner(settings)
    try:
        typer.echo(f"{mark(runner)} raw files to re-read")
        typer.echo(runner.run_once().line())
    finally:
        runner.close()


@etl_app.command("reprocess")
def etl_reprocess(
    partition: str = typer.Option(..., help="date=YYYY-MM-DD/hour=HH"),
    dataset: str = typer.Option("md-transformed-logs", help="md-transformed-{logs,metrics,apm}"),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Rebuild one event-time partition from the raw files that fed it, then run a pass."""
    _mark_then_run(settings_from(config, **{"lake.url": lake}),
                   lambda runner: runner.reprocess(dataset, partition))


@etl_app.command("status")
def etl_status(
    limit: int = typer.Option(10, help="How many recent runs to show."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Recent runs with their counts, runs by status, and the raw files still pending."""
    from mad.etl.status import render

    sys.stdout.write(render(settings_from(config, **{"lake.url": lake}), limit))


@etl_app.command("compact")
def etl_compact(
    dataset: list[str] = typer.Option(
        [], "--dataset", metavar="NAME",
        help="Only this dataset (repeatable); default every ETL output."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Rewrite partitions with many small (or far too large) files toward
    etl.target_file_bytes; waits for a running pass, rows stay exactly as they are."""
    from mad.etl.runner import EtlRunner

    runner = EtlRunner(settings_from(config, **{"lake.url": lake}))
    try:
        done = runner.compact(dataset or None)
    finally:
        runner.close()
    for partition in done:
        typer.echo(f"compacted {partition}")
    typer.echo(f"{len(done)} partitions compacted")


@app.command()
def up(
    rate: float = typer.Option(20.0, help="Events/s the live simulator posts (0: none)."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Run every stage built so far, embedded and wired:
    simulator -> ingest API -> stream -> raw writer -> raw lake -> ETL -> Parquet lake."""
    from mad.ingest.run import run_stage

    if rate < 0:
        raise MadError("--rate must be >= 0")
    run_stage(settings_from(config, **_ingest_overrides(None, None, None, lake)),
              simulate_rate=rate, with_etl=True)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn user errors into one line on stderr and an exit code."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="mad", standalone_mode=False)
    except TyperException as err:
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            raise SystemExit(2) from None
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        typer.echo(f"mad: error: {err.format_message()}{hint}", err=True)
        raise SystemExit(err.exit_code or 2) from None
    except Abort:
        typer.echo("mad: aborted", err=True)
        raise SystemExit(130) from None
    except MadError as err:
        typer.echo(f"mad: error: {err}", err=True)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
