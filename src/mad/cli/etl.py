"""`mad etl run|backfill|reprocess|status|compact`: Stage 02."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from mad import lake as lake_contract
from mad.cli.common import ConfigOption, LakeOption, settings_from, sub_app
from mad.errors import MadError

etl_app = sub_app("Raw lake -> Parquet lake and aggregates (DuckDB or Spark).")


def register(app: typer.Typer) -> None:
    """Add the `etl` group to the main app."""
    app.add_typer(etl_app, name="etl")


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
    from mad.hotstore.feed import open_feed, then_sync
    from mad.runtime.signals import stop_on_signals
    from mad.runtime.watch import watch as watch_loop

    settings = settings_from(config, **{"etl.engine": engine, "lake.url": lake})
    runner = EtlRunner(settings)
    feed = open_feed(settings)
    stop = threading.Event()

    def one_pass() -> None:
        typer.echo(then_sync(feed, "aggregates", runner.run_once,
                             lambda s: s.days_aggregated).line())
        if feed is not None and feed.last is not None:
            typer.echo(feed.last.line())

    try:
        with stop_on_signals(stop):
            watch_loop(one_pass, settings.etl.watch_interval_s, stop, once=not watch,
                       keep_going=watch, name="etl pass")
    finally:
        runner.close()
        if feed is not None:
            feed.close()


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
    dataset: str = typer.Option(lake_contract.transformed_dataset("log"),
                                 help=" | ".join(lake_contract.TRANSFORMED_DATASETS.values())),
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
    from mad.words import plural

    runner = EtlRunner(settings_from(config, **{"lake.url": lake}))
    try:
        done = runner.compact(dataset or None)
    finally:
        runner.close()
    for partition in done:
        typer.echo(f"compacted {partition}")
    typer.echo(f"{plural(len(done), 'partition')} compacted")


