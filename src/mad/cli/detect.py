"""`mad detect run|status`: Stage 04."""

from __future__ import annotations

from pathlib import Path

import typer

from mad.cli.common import ConfigOption, LakeOption, settings_from, sub_app
from mad.errors import MadError

detect_app = sub_app("Aggregates -> anomalies -> incidents -> alerts.")


def register(app: typer.Typer) -> None:
    """Add the `detect` group to the main app."""
    app.add_typer(detect_app, name="detect")


@detect_app.command("run")
def detect_run(
    watch: bool = typer.Option(False, "--watch", help="Keep running: a pass every "
                               "detect.watch_interval_s (SIGTERM/Ctrl-C ends it)."),
    once: bool = typer.Option(False, "--once", help="One pass, then exit (the default)."),
    window: str | None = typer.Option(None, help="Aggregate window: 1m | 5m | 1h."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Score new aggregate windows; write md-anomalies, incidents; send alerts."""
    import threading

    from mad.detect.pipeline import BatchReport, DetectRunner
    from mad.runtime.signals import stop_on_signals
    from mad.runtime.watch import watch as watch_loop

    if watch and once:
        raise MadError("--watch and --once exclude each other")
    settings = settings_from(config, **{"detect.window": window, "lake.url": lake})
    runner = DetectRunner(settings)
    stop = threading.Event()

    def show(batch: BatchReport) -> None:
        typer.echo(f"  {batch.first:%Y-%m-%d %H:%M} .. {batch.last:%H:%M} UTC: "
                   f"{batch.points} series windows, {batch.anomalies} anomalies, "
                   f"{batch.changes} incident changes")

    try:
        with stop_on_signals(stop):
            watch_loop(lambda: typer.echo(runner.run_once(stop, progress=show).line()),
                       settings.detect.watch_interval_s, stop, once=not watch,
                       keep_going=watch, name="detection pass")
    finally:
        runner.close()

@detect_app.command("status")
def detect_status(
    limit: int = typer.Option(10, help="How many series, incidents and anomalies."),
    fmt: str = typer.Option("table", "--format", help="table | json"),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Per-series watermarks and lag, recent incidents and anomalies, pending alerts."""
    import sys

    import orjson

    from mad.detect.status import collect, render

    if fmt not in ("table", "json"):
        raise MadError(f"unknown format '{fmt}' (allowed: table | json)")
    data = collect(settings_from(config, **{"lake.url": lake}), limit)
    if fmt == "json":
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(data, limit))
