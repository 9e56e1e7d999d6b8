"""`mad lake retention [--apply]`: the lake's housekeeping by dataset (`lake.retention`)."""

from __future__ import annotations

from pathlib import Path

import typer

from mad.cli.common import ConfigOption, LakeOption, settings_from, sub_app

lake_app = sub_app("The lake's housekeeping: retention.")
LISTED = 50  # expired partitions listed one by one


def register(app: typer.Typer) -> None:
    """Add the `lake` group to the main app."""
    app.add_typer(lake_app, name="lake")


@lake_app.command("retention")
def lake_retention(
    apply: bool = typer.Option(False, "--apply", help="Delete them (default: only list)."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """List (or, with --apply, delete) the partitions older than lake.retention keeps: raw 7
    days, errors 30, transformed, quarantine and aggregates 90, anomalies 365 by default.
    The ledgers forget them first; raw files the ETL has not read yet are kept."""
    from mad.etl.runner import EtlRunner

    runner = EtlRunner(settings_from(config, **{"lake.url": lake}))
    try:
        report = runner.retention(apply=apply)
    finally:
        runner.close()
    for entry in report.expired[:LISTED]:
        typer.echo(f"{'deleted' if apply else 'expired'}  {entry.dataset}/{entry.partition}  "
                   f"{len(entry.files)} files, {entry.bytes:,} bytes")
    if len(report.expired) > LISTED:
        typer.echo(f"... and {len(report.expired) - LISTED} more partitions")
    typer.echo(report.line())
