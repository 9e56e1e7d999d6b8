"""The dashboard page: a sidebar (tab, time range, live refresh) and the chosen tab.

Streamlit runs this file as the page script (`dashboard_body`, or `streamlit run` on it);
importing it runs nothing. The tab and the time range are also in the URL
(`?tab=services&range=last 24 h`), so a link opens them. With live refresh on, only the
tab's body re-runs every `dashboard.refresh_s` seconds (`st.fragment(run_every=...)`), not
the whole page.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import streamlit as st

from mad.config import Settings
from mad.dashboard.context import current_settings
from mad.dashboard.tabs import anomalies, browser, jobs, overview, quality, services
from mad.dashboard.ui import RANGES_H, TimeRange, default_range_label, one_line, time_range

Render = Callable[[Settings, TimeRange], None]
TABS: dict[str, tuple[str, Render]] = {
    "overview": ("Overview", overview.render),
    "services": ("Services", services.render),
    "data": ("Data Browser", browser.render),
    "quality": ("Quality", quality.render),
    "jobs": ("Jobs", jobs.render),
    "anomalies": ("Anomalies", anomalies.render),
}

# less empty space above the title, metric values a size that fits six in a row
STYLE = """<style>
.block-container {padding-top: 2.5rem; padding-bottom: 2rem;}
[data-testid="stMetricValue"] {font-size: 1.8rem;}
</style>"""


def chosen_tab() -> str:
    """The tab named in the URL, or the first; an unknown name is the first."""
    name = st.query_params.get("tab", "overview")
    return name if name in TABS else "overview"


def sidebar(settings: Settings) -> tuple[str, TimeRange, bool]:
    """Draw the sidebar; (tab, time range, live refresh on)."""
    with st.sidebar:
        st.title("mad")
        st.caption("Metrics anomaly detection: the operator's view")
        names = list(TABS)
        tab = st.radio("Tab", names, index=names.index(chosen_tab()),
                       format_func=lambda n: TABS[n][0], key="tab")
        st.query_params["tab"] = tab
        labels = list(RANGES_H)
        asked = st.query_params.get("range", "")
        first = asked if asked in RANGES_H else default_range_label(
            settings.dashboard.default_range_h)
        label = st.selectbox("Time range", labels, key="range", index=labels.index(first))
        st.query_params["range"] = label
        live = st.toggle(f"Live refresh (every {settings.dashboard.refresh_s} s)",
                         value=True, key="live")
    return tab, time_range(label), live


def main() -> None:
    """Draw the page."""
    st.set_page_config(page_title="mad dashboard", layout="wide")
    st.html(STYLE)
    try:
        settings = current_settings()
    except Exception as err:  # bad settings are one line on the page, not a traceback
        st.error(f"settings cannot be loaded: {one_line(err)}")
        return
    tab, period, live = sidebar(settings)
    title, render = TABS[tab]
    st.header(title)
    every = timedelta(seconds=settings.dashboard.refresh_s) if live else None

    @st.fragment(run_every=every)
    def body() -> None:
        render(settings, time_range(period.label))

    body()


if __name__ == "__main__":
    main()
