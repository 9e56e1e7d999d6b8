"""`mad api serve`: the read API alone (docs/api.md), for when `mad up` is not running
(`mad up` serves the read API on its status endpoint, on the same port by default)."""

from __future__ import annotations

from pathlib import Path

import typer

from mad.cli.common import ConfigOption, LakeOption, settings_from, sub_app

api_app = sub_app("The read API: series, metrics, anomalies, incidents and runs over HTTP.")


def register(app: typer.Typer) -> None:
    """Add the `api` group to the main app."""
    app.add_typer(api_app, name="api")


@api_app.command("serve")
def api_serve(
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8030, which `mad up` takes for "
                                    "its status endpoint: use another while it runs)."),
    lake: str | None = LakeOption,
    config: Path | None = ConfigOption,
) -> None:
    """Serve the read API until Ctrl-C or SIGTERM: GET /v1/series, /v1/latest,
    /v1/metrics/services, /v1/anomalies, /v1/incidents, /v1/runs, /health, /openapi.json."""
    import threading

    from mad.errors import ServiceFailed
    from mad.query.api import create_app
    from mad.runtime.servers import ServerThread
    from mad.runtime.signals import stop_on_signals

    settings = settings_from(config, **{"api.host": host, "api.port": port, "lake.url": lake})
    cfg = settings.api
    server = ServerThread(create_app(settings), cfg.host, cfg.port, "mad-api")
    stop = threading.Event()
    with stop_on_signals(stop):
        server.start()
        typer.echo(f"read API on {server.url}/v1 (routes: {server.url}/openapi.json); "
                   "Ctrl-C stops it")
        try:
            while server.alive() and not stop.wait(0.2):
                continue  # until Ctrl-C, SIGTERM, or the server dies
        finally:
            server.stop()
    if not stop.is_set():
        raise ServiceFailed(f"the read API on {server.url} stopped by itself (see the log)")
