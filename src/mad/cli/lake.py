"""`mad lake retention [--apply]`: the lake's housekeeping by dataset (`lake.retention`)."""

from __future__ import annotations

from pathlib import Path

import typer

from mad.cli.common import ConfigOption, LakeOption, settings_from, sub_app

lake_app = sub_app("The lake's housekeeping: retention; its tables for Glue, Athena, Trino.")
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


@lake_app.command("catalog")
def lake_catalog(
    database: str = typer.Option("mad", help="The Glue / Athena database."),
    ddl_only: bool = typer.Option(False, "--ddl", help="Only print the CREATE EXTERNAL TABLE "
                                  "statements (no Glue)."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Create or update the AWS Glue database, tables (Hive-partitioned Parquet) and
    partitions of the lake's datasets, and print the equivalent Athena/Trino DDL."""
    from mad.errors import MadError
    from mad.query.access import open_lake
    from mad.query.catalog import ddl, lake_tables, publish_glue
    from mad.stores import split_url

    settings = settings_from(config, **{"lake.url": lake})
    store = open_lake(settings)
    tables = lake_tables(store)
    if not tables:
        raise MadError("the lake holds no Parquet yet: run `mad etl run` first")
    root = store.url.rstrip("/")
    typer.echo(ddl(tables, database, root))
    if ddl_only:
        return
    if split_url(root)[0] != "s3":
        raise MadError(f"Glue catalogs S3 lakes; {root} is not one (--ddl prints the DDL)")
    import boto3

    aws = settings.aws
    glue = boto3.client("glue", endpoint_url=aws.endpoint_url, region_name=aws.region,
                        aws_access_key_id=aws.access_key_id,
                        aws_secret_access_key=aws.secret_access_key)
    added = publish_glue(tables, database, root, glue)
    for name, n in added.items():
        typer.echo(f"glue: {database}.{name}: {n} partitions added", err=True)
