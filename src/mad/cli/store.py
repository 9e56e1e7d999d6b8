"""`mad store status | sync | wipe`: Stage 03's hot store (docs/query.md#the-hot-store)."""

from __future__ import annotations

from pathlib import Path

import typer

from mad.cli.common import ConfigOption, settings_from
from mad.errors import MadError, TransientError

store_app = typer.Typer(help="The hot store: the newest hours of aggregates and anomalies.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")


@store_app.command("status")
def store_status(
    fmt: str = typer.Option("table", "--format", help="table | json"),
    config: Path | None = ConfigOption,
) -> None:
    """Backend, whether it answers, and the hours it holds per dataset and window size."""
    import orjson

    from mad.query.store import store_status as read

    if fmt not in ("table", "json"):
        raise MadError(f"--format must be table or json, not {fmt!r}")
    found = read(settings_from(config))
    if fmt == "json":
        typer.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
    else:
        state = ("off (store.enabled is false)" if not found["enabled"] else
                 "up" if found["up"] else f"DOWN: {found['error']}")
        typer.echo(f"hot store {found['backend']} {found['url'] or ''}: {state}; horizon "
                   f"{found['horizon_h']:g} h")
        for h in found["held"]:
            series = "" if h["series"] is None else f"  {h['series']} series"
            typer.echo(f"  {h['dataset']:<10} {h['window']:>3}  {h['hours']:>3} hours  "
                       f"{h['first']} .. {h['last']}{series}")
    if found["enabled"] and not found["up"]:
        raise typer.Exit(TransientError.exit_code)


@store_app.command("sync")
def store_sync(config: Path | None = ConfigOption) -> None:
    """Copy what differs between the lake and the hot store over the horizon (a wiped or
    restarted store is refilled); the ETL and detection do this after every pass."""
    from mad.hotstore.feed import open_feed

    feed = open_feed(settings_from(config))
    if feed is None:
        raise MadError("the hot store is off (store.enabled is false)")
    try:
        report = feed.sync()
    finally:
        feed.close()
    if report.error:
        raise TransientError(report.line())
    typer.echo(report.line())


@store_app.command("wipe")
def store_wipe(
    yes: bool = typer.Option(False, "--yes", help="Do it (reads use the lake until the "
                             "next sync)."),
    config: Path | None = ConfigOption,
) -> None:
    """Drop everything the hot store holds; the next ETL or detection pass refills it."""
    from mad.hotstore import hot_url, open_hot

    if not yes:
        raise MadError("wiping the hot store needs --yes")
    hot = open_hot(settings_from(config), create=True)
    try:
        hot.wipe()
    finally:
        hot.close()
    typer.echo(f"hot store {hot_url(hot)} wiped; the next pass (or `mad store sync`) "
               "refills it")
