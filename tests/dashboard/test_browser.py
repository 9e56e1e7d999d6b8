"""The dashboard served by `dashboard_body` in a real child process, opened tab by tab in
headless Chromium (Debian's package, driven by Playwright): visible text asserted, a
screenshot of each tab saved to test-artifacts/, and operator actions clicked, stored and
shown."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from mad.config import Settings
from mad.dashboard.server import dashboard_body
from mad.dashboard.ui import time_range
from mad.runtime.children import ChildProcess
from tests.dashboard.conftest import RANGE
from tests.query.conftest import BuiltLake

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
WAIT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: install Debian's "
                       "chromium (make system-deps) to run the browser tests"),
]

# tab in the URL, its title, and text each shows once its data has been read
EXPECTED = {
    "overview": ("Overview", ["Raw records", "In and out per stage", "Components"]),
    "services": ("Services", ["Latest 1m window per service", "anomalous window(s)"]),
    "data": ("Data Browser", ["Dataset", "Partition", "Rows 1–"]),
    "quality": ("Quality", ["Score per dataset", "Quality gate", "History of a metric",
                            "Gate decisions"]),
    "jobs": ("Jobs", ["Runs", "Succeeded", "Failed"]),
    "anomalies": ("Anomalies", ["Incident", "Operator actions", "Maintenance windows"]),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, child: ChildProcess, timeout_s: float = 60) -> None:
    """Until Streamlit's health route answers ok (or the child died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert child.alive(), f"the dashboard exited with {child.exitcode}"
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the dashboard did not answer at {url} in {timeout_s:.0f} s")


@contextmanager
def serve(settings: Settings, refresh_s: int = 3600) -> Iterator[str]:
    """The dashboard over `settings` in a child process on a free port; its URL."""
    port = free_port()
    settings = settings.model_copy(update={"dashboard": settings.dashboard.model_copy(
        update={"port": port, "refresh_s": refresh_s})})
    child = ChildProcess("dashboard", dashboard_body, settings)
    child.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, child)
        yield url
    finally:
        code = child.stop(30)
        assert code == 0, f"the dashboard exited with {code}"


@pytest.fixture(scope="module")
def served(dashboard_lake: BuiltLake) -> Iterator[str]:
    with serve(dashboard_lake.settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def tab_url(base: str, tab: str) -> str:
    return f"{base}/?tab={tab}&range={quote(RANGE)}"


def open_tab(browser: Any, base: str, tab: str) -> Any:
    """A new page on `tab`, once the script has finished and the tab's texts are shown."""
    page = browser.new_page(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
    page.set_default_timeout(WAIT_MS)
    page.goto(tab_url(base, tab))
    title, texts = EXPECTED[tab]
    page.get_by_role("heading", name=title).first.wait_for()
    for text in texts:
        page.get_by_text(text).first.wait_for()
    settle(page)
    return page


DRAWN = """() => !document.querySelector('[data-testid="stStatusWidget"]')
  && !document.querySelector('[data-testid="stSkeleton"]')
  && [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
       .every(e => e.querySelector('canvas, svg'))
  && [...document.querySelectorAll('[data-testid="stDataFrame"]')]
       .every(e => e.querySelector('[data-testid="data-grid-canvas"]'))"""


def settle(page: Any) -> None:
    """Until the script has finished and every chart and table is drawn."""
    page.wait_for_function(DRAWN)


def full_height(page: Any) -> None:
    """Make the viewport as tall as the page, so a screenshot shows all of it (Streamlit
    scrolls inside its main block, which a full-page screenshot does not follow)."""
    height = page.evaluate("() => document.querySelector("
                           "'[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": 1280, "height": min(6000, max(900, int(height) + 40))})
    page.wait_for_function(DRAWN)


def test_every_tab_opens_and_shows_its_data(browser: Any, served: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for tab, (title, texts) in EXPECTED.items():
        page = open_tab(browser, served, tab)
        body = page.inner_text("body")
        assert title in body
        for text in texts:
            assert text in body, (tab, text)
        for bad in ("Traceback", "cannot be read", "StreamlitAPIException"):
            assert bad not in body, (tab, bad)
        full_height(page)
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{tab}.png"))
        page.close()


def test_thumbs_down_and_snooze_are_stored_and_shown(browser: Any, own_lake: BuiltLake
                                                     ) -> None:
    from mad.detect.operator import feedback, silences

    settings = own_lake.settings
    with serve(settings) as url:
        page = open_tab(browser, url, "anomalies")
        page.get_by_role("button", name="False alarm").click()
        page.get_by_text("Label: false alarm (down)").first.wait_for()
        stored = feedback(settings)
        assert [label["verdict"] for label in stored.values()] == ["down"]
        ident = next(iter(stored))
        form = page.get_by_test_id("stForm").first
        form.get_by_role("textbox").first.fill("known deploy")
        form.get_by_role("button", name="Snooze").click()
        page.get_by_text("Silenced until").first.wait_for()
        settle(page)
        snoozed = [s for s in silences(settings) if s["kind"] == "incident"]
        assert [s["target"] for s in snoozed] == [ident]
        assert snoozed[0]["reason"] == "known deploy"
        assert f"incident {ident}" in page.inner_text("body")
        full_height(page)
        page.screenshot(path=str(ARTIFACTS / "dashboard-actions.png"))
        page.close()


def test_a_held_partition_is_accepted_from_its_form(browser: Any, own_lake: BuiltLake
                                                    ) -> None:
    from mad.query.quality import decisions, held
    from tests.dashboard.test_quality_tab import hold_one

    settings = own_lake.settings
    partition = hold_one(own_lake)
    with serve(settings) as url:
        page = open_tab(browser, url, "quality")
        page.get_by_text("1 partition held by the quality gate").first.wait_for()
        full_height(page)
        page.screenshot(path=str(ARTIFACTS / "dashboard-quality-held.png"))
        form = page.get_by_test_id("stForm").first
        form.get_by_role("textbox").first.fill("late service field, checked by hand")
        form.get_by_role("textbox").nth(1).fill("alice")
        form.get_by_role("button", name="Accept").click()
        page.get_by_text(f"Accepted md-transformed-logs/{partition} by alice").first.wait_for()
        settle(page)
        assert held(settings) == []
        last = decisions(settings)[0]
        assert (last["decision"], last["by"], last["reason"]) == (
            "accepted", "alice", "late service field, checked by hand")
        body = page.inner_text("body")
        assert "Nothing is held" in body and "Traceback" not in body
        full_height(page)
        page.screenshot(path=str(ARTIFACTS / "dashboard-quality-accepted.png"))
        page.close()


def test_live_refresh_shows_what_changed_without_a_click(browser: Any, own_lake: BuiltLake
                                                         ) -> None:
    from mad.detect.operator import give_feedback
    from mad.query.incidents import incidents

    settings = own_lake.settings
    with serve(settings, refresh_s=2) as url:
        page = open_tab(browser, url, "anomalies")
        page.get_by_text("No label yet.").first.wait_for()
        period = time_range(RANGE)
        first = incidents(settings, period.start, period.end)[0]["id"]  # the one shown
        give_feedback(settings, first, "up", user="someone-else")
        # no click, no reload: the tab's fragment runs again and reads the new label
        page.get_by_text("Label: real incident (up), by someone-else").first.wait_for()
        assert page.get_by_role("heading", name="Anomalies").count() == 1
        page.close()
