"""`mad dashboard`: serve the operator dashboard alone (what `mad up` runs as a child)."""

from __future__ import annotations

from pathlib import Path

import typer

from mad.cli.common import ConfigOption, settings_from


def register(app: typer.Typer) -> None:
    """Add the `dashboard` command to the main app."""
    app.command("dashboard")(dashboard)


def dashboard(
    port: int | None = typer.Option(None, help="Port to serve on (default 8020)."),
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1)."),
    config: Path | None = ConfigOption,
) -> None:
    """Serve the operator dashboard (Streamlit) until Ctrl-C or SIGTERM."""
    import threading

    from mad.dashboard.server import dashboard_body
    from mad.runtime.signals import stop_on_signals

    settings = settings_from(config, **{"dashboard.port": port, "dashboard.host": host})
    typer.echo(f"dashboard: http://{settings.dashboard.host}:{settings.dashboard.port}",
               err=True)
    stop = threading.Event()
    with stop_on_signals(stop):
        code = dashboard_body(settings, stop)
    raise typer.Exit(code)
