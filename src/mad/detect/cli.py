"""`mad bench nab` and `mad bench incidents`; the lead wires `register` into `mad`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mad.errors import MadError


def register(bench_app: typer.Typer) -> None:
    """Add the `nab` command to the `mad bench` app."""

    @bench_app.command("nab")
    def nab_command(
        data: Path = typer.Option(..., "--data", help="NAB data folder (<category>/<file>.csv)."),
        windows: Path = typer.Option(..., "--windows", help="NAB combined_windows.json."),
        results: Path = typer.Option(..., "--results", help="Folder for NAB results files."),
        detector: str = typer.Option("ensemble", "--detector", help="Detector name."),
        params: str = typer.Option("{}", "--params", help="Detector parameters as JSON."),
    ) -> None:
        """Run a detector over NAB series, write NAB results files, print its NAB scores."""
        from rich.console import Console
        from rich.progress import Progress

        from mad.detect.bench import run_nab

        try:
            parsed = json.loads(params)
        except json.JSONDecodeError as err:
            raise MadError(f"--params is not JSON: {err.msg}") from err
        if not isinstance(parsed, dict):
            raise MadError("--params must be a JSON object")
        if not windows.is_file():
            raise MadError(f"windows file not found: {windows}")
        console = Console()
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("scoring", total=None)

            def step(name: str) -> None:
                bar.update(task, advance=1, description=name)

            outcome = run_nab(data, windows, results, detector, parsed, progress=step)
        console.print(f"{outcome.detector}: {outcome.series} series, {outcome.points} points, "
                      f"results in {results / outcome.detector}")
        for r in outcome.results:
            console.print(f"  {r.profile:<20} {r.score:7.2f}  (threshold {r.threshold:.4f})")

    @bench_app.command("incidents")
    def incidents_command(
        work: Path = typer.Option(Path("data/bench-incidents"), "--work",
                                  help="Folder for the generated day, its lake and state."),
        seed: int = typer.Option(20261127, "--seed", help="Generator seed (default is not 7)."),
        hours: float = typer.Option(48.0, "--hours", help="Simulated hours, warm-up included."),
        warmup: float = typer.Option(24.0, "--warmup-hours",
                                     help="First hours only teach the detectors; not scored."),
        rate: float = typer.Option(20.0, "--rate", help="Events/s at the daily mean."),
        slack: float = typer.Option(600.0, "--slack-s",
                                    help="Seconds after a label's end that still match."),
        json_out: Path | None = typer.Option(None, "--json", help="Write the report here."),
        config: Path | None = typer.Option(None, "--config", help="YAML settings file."),
    ) -> None:
        """Generate a labelled day, run ETL and detection, score incidents per scenario."""
        from mad.detect.bench_incidents import BenchOptions, render, run_bench, write_report

        if hours <= warmup or warmup < 0:
            raise MadError("--hours must be larger than --warmup-hours (and that >= 0)")
        if rate <= 0 or slack < 0:
            raise MadError("--rate must be > 0 and --slack-s >= 0")
        opts = BenchOptions(work=work, seed=seed, hours=hours, warmup_hours=warmup, rate=rate,
                            slack_s=slack, config=config)
        report = run_bench(opts, say=lambda line: typer.echo(line, err=True))
        for line in render(report):
            typer.echo(line)
        if json_out is not None:
            write_report(report, json_out)
            typer.echo(f"report written to {json_out}")


def register_detect(app: typer.Typer) -> None:
    """Add the `mad detect` group (`run`, `status`) to the main app."""
    detect_app = typer.Typer(help="Aggregates -> anomalies -> incidents -> alerts.",
                             no_args_is_help=True)
    app.add_typer(detect_app, name="detect")
    config_option = typer.Option(
        None, "--config", help="YAML settings file (default: ./mad.yaml when present).")
    lake_option = typer.Option(None, "--lake", help="Lake folder (default <data_dir>/lake).")

    @detect_app.command("run")
    def run_command(
        watch: bool = typer.Option(False, "--watch", help="Keep running: a pass every "
                                   "detect.watch_interval_s (SIGTERM/Ctrl-C ends it)."),
        once: bool = typer.Option(False, "--once", help="One pass, then exit (the default)."),
        window: str | None = typer.Option(None, help="Aggregate window: 1m | 5m | 1h."),
        lake: str | None = lake_option,
        config: Path | None = config_option,
    ) -> None:
        """Score new aggregate windows; write md-anomalies, incidents; send alerts."""
        import threading

        from mad.config import load_settings
        from mad.detect.pipeline import BatchReport, DetectRunner
        from mad.ingest.run import stop_on_signals

        if watch and once:
            raise MadError("--watch and --once exclude each other")
        settings = load_settings(config_file=config,
                                 overrides={"detect.window": window, "lake.url": lake})
        runner = DetectRunner(settings)
        stop = threading.Event()

        def show(batch: BatchReport) -> None:
            typer.echo(f"  {batch.first:%Y-%m-%d %H:%M} .. {batch.last:%H:%M} UTC: "
                       f"{batch.points} series windows, {batch.anomalies} anomalies, "
                       f"{batch.changes} incident changes")

        try:
            with stop_on_signals(stop):
                while not stop.is_set():
                    typer.echo(runner.run_once(stop, progress=show).line())
                    if not watch or stop.wait(settings.detect.watch_interval_s):
                        break
        finally:
            runner.close()

    @detect_app.command("status")
    def status_command(
        limit: int = typer.Option(10, help="How many series, incidents and anomalies."),
        fmt: str = typer.Option("table", "--format", help="table | json"),
        lake: str | None = lake_option,
        config: Path | None = config_option,
    ) -> None:
        """Per-series watermarks and lag, recent incidents and anomalies, pending alerts."""
        import sys

        import orjson

        from mad.config import load_settings
        from mad.detect.status import collect, render

        if fmt not in ("table", "json"):
            raise MadError(f"unknown format '{fmt}' (allowed: table | json)")
        data = collect(load_settings(config_file=config, overrides={"lake.url": lake}), limit)
        if fmt == "json":
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            sys.stdout.write(render(data, limit))
