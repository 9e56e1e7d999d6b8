"""`mad bench nab|incidents`: score detectors on labelled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mad.cli.common import sub_app
from mad.errors import MadError

if TYPE_CHECKING:
    from rich.console import Console

    from mad.bench.folds import FoldReport
    from mad.bench.nab_run import BenchResult

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
    grid: Path | None = typer.Option(
        None, "--grid", help="JSON list of parameter sets: each fold chooses among them on "
        "the other categories (instead of --params)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write scores and folds here."),
) -> None:
    """Run a detector over NAB series, write NAB results files, print its NAB scores and
    its leave-one-category-out folds."""
    from rich.console import Console
    from rich.progress import Progress

    from mad.bench.folds import leave_one_category_out
    from mad.bench.nab_run import run_grid

    candidates = _read_grid(grid) if grid is not None else [_json_object(params, "--params")]
    if not windows.is_file():
        raise MadError(f"windows file not found: {windows}")
    console = Console()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("scoring", total=None)

        def step(name: str) -> None:
            bar.update(task, advance=1, description=name)

        if grid is None:
            from mad.bench.nab_run import run_nab

            outcomes = [run_nab(data, windows, results, detector, candidates[0],
                                progress=step)]
        else:
            outcomes = run_grid(data, windows, results, detector, candidates, progress=step)
    for k, outcome in enumerate(outcomes):
        where = results / outcome.detector if grid is None else results / str(k)
        label = outcome.detector if grid is None else f"{outcome.detector} [{k}]"
        console.print(f"{label}: {outcome.series} series, {outcome.points} points, "
                      f"results in {where}")
        for r in outcome.results:
            console.print(f"  {r.profile:<20} {r.score:7.2f}  (threshold {r.threshold:.4f})")
    reports = []
    if len({name.split("/", 1)[0] for name in outcomes[0].corpus}) > 1:
        reports = leave_one_category_out([o.corpus for o in outcomes], outcomes[0].windows)
        _print_folds(console, reports, chooses=grid is not None)
    if json_out is not None:
        _write_json(json_out, detector, candidates, outcomes, reports)


def _json_object(text: str, what: str) -> dict[str, object]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise MadError(f"{what} is not JSON: {err.msg}") from err
    if not isinstance(parsed, dict):
        raise MadError(f"{what} must be a JSON object")
    return parsed


def _read_grid(path: Path) -> list[dict[str, object]]:
    try:
        parsed = json.loads(path.read_text())
    except OSError as err:
        raise MadError(f"cannot read --grid {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise MadError(f"--grid {path} is not JSON: {err.msg}") from err
    if not isinstance(parsed, list) or not parsed or len(parsed) > 100 \
            or not all(isinstance(p, dict) for p in parsed):
        raise MadError(f"--grid {path}: expected a list of 1 to 100 parameter objects")
    return parsed


def _print_folds(console: Console, reports: list[FoldReport], chooses: bool) -> None:
    console.print("leave one category out (threshold"
                  + (" and parameter set" if chooses else "")
                  + " chosen on the other categories):")
    for report in reports:
        console.print(f"  {report.profile:<20} pooled {report.pooled:7.2f}   "
                      f"mean of folds {report.mean:7.2f}")
    standard = reports[0]
    console.print(f"  {standard.profile} by held-out category:")
    console.print(f"    {'category':<24} {'windows':>7} {'set':>4} {'threshold':>9} "
                  f"{'train':>7} {'held out':>8} {'FP':>4}")
    for f in standard.folds:
        held = "-" if f.score is None else f"{f.score:.2f}"
        console.print(f"    {f.category:<24} {f.windows:>7} {f.candidate:>4} "
                      f"{f.threshold:>9.4f} {f.train:>7.2f} {held:>8} {f.false_positives:>4}")


def _write_json(path: Path, detector: str, candidates: list[dict[str, object]],
                outcomes: list[BenchResult], reports: list[FoldReport]) -> None:
    body = {
        "detector": detector,
        "candidates": [{"params": params, "series": o.series, "points": o.points,
                        "scores": {r.profile: {"score": r.score, "threshold": r.threshold}
                                   for r in o.results}}
                       for params, o in zip(candidates, outcomes, strict=True)],
        "folds": {r.profile: {"pooled": r.pooled, "mean": r.mean,
                              "folds": [{"category": f.category, "windows": f.windows,
                                         "candidate": f.candidate, "threshold": f.threshold,
                                         "train": f.train, "held_out": f.score,
                                         "false_positives": f.false_positives}
                                        for f in r.folds]}
                  for r in reports},
    }
    try:
        path.write_text(json.dumps(body, indent=2) + "\n")
    except OSError as err:
        raise MadError(f"cannot write --json {path}: {err.strerror}") from err


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


