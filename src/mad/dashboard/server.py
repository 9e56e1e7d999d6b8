"""Serve the dashboard in this process: the `mad.runtime.children` body behind `mad up` and
`mad dashboard`.

Streamlit's own server (uvicorn under Starlette) runs on an event loop in the calling thread,
headless and without usage statistics, until `stop` is set; then it is stopped and the body
returns 0. A port already taken is one line and exit code 1.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

from mad.config import Settings
from mad.dashboard.context import use_settings

log = logging.getLogger(__name__)
APP_SCRIPT = Path(__file__).with_name("app.py")
STOP_POLL_S = 0.2


def streamlit_options(settings: Settings) -> dict[str, object]:
    """The Streamlit config options the dashboard runs with."""
    return {
        "server.headless": True,
        "server.address": settings.dashboard.host,
        "server.port": settings.dashboard.port,
        "server.fileWatcherType": "none",
        "server.runOnSave": False,
        "browser.gatherUsageStats": False,
        "browser.serverAddress": settings.dashboard.host,
        "browser.serverPort": settings.dashboard.port,
        "global.developmentMode": False,
        "client.toolbarMode": "viewer",
        "client.showErrorDetails": "none",
        "theme.base": "light",
    }


def exposure_warning(host: str) -> str | None:
    """What to say when the dashboard listens beyond loopback: it has no login of its own,
    and its operator actions label and silence incidents."""
    from mad.web import is_loopback

    if is_loopback(host):
        return None
    return (f"dashboard bound to {host}: it has no login, and anyone who reaches it can "
            "label incidents and silence alerts; put it behind an authenticating proxy")


def dashboard_body(settings: Settings, stop: threading.Event) -> int:
    """Serve the dashboard on `settings.dashboard.host:port` until `stop` is set; 0 when
    stopped, 1 when the server could not start."""
    from streamlit import config
    from streamlit.web.bootstrap import load_config_options, prepare_streamlit_environment
    from streamlit.web.server import Server

    use_settings(settings)
    warning = exposure_warning(settings.dashboard.host)
    if warning is not None:
        log.warning("%s", warning)
    load_config_options({})
    for key, value in streamlit_options(settings).items():
        config.set_option(key, value, "mad dashboard settings")

    async def serve() -> None:
        server = Server(str(APP_SCRIPT), is_hello=False)
        await server.start()
        prepare_streamlit_environment(str(APP_SCRIPT))
        log.info("dashboard on http://%s:%d", settings.dashboard.host,
                 settings.dashboard.port)
        while not stop.is_set():
            await asyncio.sleep(STOP_POLL_S)
        server.stop()
        await server.stopped

    try:
        asyncio.run(serve())
    except SystemExit as exit_:  # Streamlit exits when its port is taken
        log.error("dashboard: cannot serve on %s:%d (is the port in use?)",
                  settings.dashboard.host, settings.dashboard.port)
        return int(exit_.code) if isinstance(exit_.code, int) and exit_.code else 1
    except OSError as err:
        log.error("dashboard: cannot serve on %s:%d: %s", settings.dashboard.host,
                  settings.dashboard.port, err)
        return 1
    return 0
