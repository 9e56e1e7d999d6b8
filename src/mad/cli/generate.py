"""`mad catalog`, `mad generate` and `mad simulate serve`: Stage 00."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from mad.cli.common import ConfigOption, settings_from, sub_app
from mad.errors import MadError

simulate_app = sub_app("The live simulator and its control API.")


def register(app: typer.Typer) -> None:
    """Add `catalog`, `generate` and the `simulate` group to the main app."""
    app.command()(catalog)
    app.command()(generate)
    app.add_typer(simulate_app, name="simulate")


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


