"""`mad doctor`: check that every configured backend is reachable and set up (`mad.doctor`)."""

from __future__ import annotations

from pathlib import Path

import typer

from mad.cli.common import ConfigOption, ProfileOption, settings_from, use_profile
from mad.errors import MadError


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    fmt: str = typer.Option("table", "--format", help="table | json"),
    profile: str | None = ProfileOption,
    config: Path | None = ConfigOption,
) -> None:
    """Check the state database, stream, lake, ETL engine and hot store of these settings:
    one line each: ok, note (set up by the first run) or FAIL, with what to do. Exits 1
    when a check fails."""
    import orjson

    from mad.config import DEFAULT_PROFILE
    from mad.doctor import run_checks

    if fmt not in ("table", "json"):
        raise MadError(f"--format must be table or json, not {fmt!r}")
    use_profile(profile)
    settings = settings_from(config)
    checks = run_checks(settings)
    if fmt == "json":
        typer.echo(orjson.dumps({"profile": settings.profile or DEFAULT_PROFILE,
                                 "ok": all(c.ok for c in checks),
                                 "checks": [c.as_dict() for c in checks]},
                                option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(f"profile {settings.profile or DEFAULT_PROFILE}")
        for c in checks:
            typer.echo(f"{c.status:<5} {c.part:<7} {c.backend:<10} {c.detail}")
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
