"""`mad bench nab|incidents`: score detectors on labelled data."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mad.cli.common import sub_app
from mad.errors import MadError

bench_app = sub_app("Score detectors against labelled data.")


def register(app: typer.Typer) -> None:
    """Add the `bench` group to the main app."""
    app.add_typer(bench_app, name="bench")


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

    from mad.bench.nab_run import run_nab

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
    from mad.bench.incidents import BenchOptions, render, run_bench, write_report

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


