"""`mad bench nab`: score a detector on NAB-format data; the lead wires `register` into `mad`."""

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
