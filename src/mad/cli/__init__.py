"""`mad ...`: the command-line entry point.

One module per stage adds its commands (`generate`, `ingest`, `etl`, `quality`, `detect`,
`bench`, `dashboard`, `query`, `lake`, `store`, `api`, `doctor`); commands import their stage
lazily, so `mad --help` stays fast. Every user error (bad flag, bad setting, missing file)
ends as one line on stderr and a non-zero exit code. `mad --profile NAME <command>` selects a
settings profile for the command and every process it starts.
"""

from __future__ import annotations

import typer
from typer.exceptions import Abort, TyperException

from mad.cli import (
    api,
    bench,
    dashboard,
    detect,
    doctor,
    etl,
    generate,
    ingest,
    lake,
    quality,
    query,
    store,
)
from mad.cli.common import ProfileOption, use_profile
from mad.errors import MadError

app = typer.Typer(
    name="mad",
    help="Metrics Anomaly Detection: simulate, ingest, transform and watch banking services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
for stage in (generate, ingest, etl, quality, detect, bench, dashboard, query, lake, store, api,
              doctor):
    stage.register(app)


def _version(show: bool) -> None:
    if show:
        from mad import __version__

        typer.echo(f"mad {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          profile: str | None = ProfileOption) -> None:
    """Metrics Anomaly Detection: simulate, ingest, transform and watch banking services."""
    use_profile(profile)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn user errors into one line on stderr and an exit code."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="mad", standalone_mode=False)
    except TyperException as err:
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            raise SystemExit(2) from None
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        typer.echo(f"mad: error: {err.format_message()}{hint}", err=True)
        raise SystemExit(err.exit_code or 2) from None
    except Abort:
        typer.echo("mad: aborted", err=True)
        raise SystemExit(130) from None
    except MadError as err:
        typer.echo(f"mad: error: {err}", err=True)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)

