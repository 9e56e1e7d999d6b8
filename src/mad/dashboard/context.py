"""The settings the dashboard's pages read, handed over without files.

`dashboard_body` runs the Streamlit script in its own process, so it sets the holder before
the server starts; `streamlit run app.py` and tests that set nothing get the settings of the
environment (`mad.yaml`, `MAD_*`).
"""

from __future__ import annotations

from mad.config import Settings, load_settings

_settings: Settings | None = None


def use_settings(settings: Settings | None) -> None:
    """Make `settings` what every page reads from now on (`None`: back to the environment)."""
    global _settings
    _settings = settings


def current_settings() -> Settings:
    """The settings set by `use_settings`, else those loaded from the environment."""
    return _settings if _settings is not None else load_settings()
