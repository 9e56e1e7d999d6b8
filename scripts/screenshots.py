"""Screenshots of every dashboard tab, for docs/img/dashboard-<tab>.png.

Run: `.venv/bin/python scripts/screenshots.py [--data DIR] [--out docs/img]`

Without `--data` it builds a demo lake first (a labelled backfill of the last hours with
incidents, the raw lake as the ingest path files it, one ETL pass and one detection pass) in
a temporary folder. It then serves the dashboard in a child process on a free port, opens
each tab in headless Chromium (/usr/bin/chromium) at 1280 px wide and saves a PNG of each,
palette-reduced to keep them small.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mad.bench.demo import build_demo_lake
from mad.config import Settings, load_settings

TABS = ("overview", "services", "data", "quality", "jobs", "anomalies")
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
WIDTH = 1280


def demo_settings(root: Path, hours: float = 3, rate: float = 10.0,
                  end: datetime | None = None) -> Settings:
    """Settings of a demo lake under `root`: `hours` of traffic ending at `end` (now)."""
    end = (end or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours)
    return load_settings(env={}, overrides={
        "data_dir": str(root), "generate.start": start.isoformat(),
        "generate.duration": f"{hours:g}h", "generate.rate": rate,
        "etl.engine.duckdb.threads": 2, "detect.detector.ensemble.warmup": 30})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(settings: Settings) -> tuple[Any, str]:
    """The dashboard in a child process on a free port: (child, URL) once it answers."""
    from mad.dashboard.server import dashboard_body
    from mad.runtime.children import ChildProcess

    port = free_port()
    settings = settings.model_copy(update={"dashboard": settings.dashboard.model_copy(
        update={"port": port})})
    child = ChildProcess("dashboard", dashboard_body, settings)
    child.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not child.alive():
            raise SystemExit(f"the dashboard exited with {child.exitcode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return child, url
        except OSError:
            time.sleep(0.2)
    child.stop(10)
    raise SystemExit(f"the dashboard did not answer at {url}")


DRAWN = """() => !document.querySelector('[data-testid="stStatusWidget"]')
  && !document.querySelector('[data-testid="stSkeleton"]')
  && [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
       .every(e => e.querySelector('canvas, svg'))
  && [...document.querySelectorAll('[data-testid="stDataFrame"]')]
       .every(e => e.querySelector('[data-testid="data-grid-canvas"]'))"""


def settle(page: Any) -> None:
    """Until the script has finished and every chart and table is drawn, at full height
    (Streamlit scrolls inside its main block, which a full-page screenshot misses)."""
    page.wait_for_function(DRAWN)
    height = page.evaluate("() => document.querySelector("
                           "'[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": min(4000, max(800, int(height) + 40))})
    page.wait_for_function(DRAWN)
    page.wait_for_timeout(500)  # the charts' enter transitions


def shoot(url: str, out: Path, range_label: str) -> list[Path]:
    """A PNG of each tab, written to `out`; the paths."""
    from playwright.sync_api import sync_playwright

    from mad.dashboard.app import TABS as TITLES

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            for tab in TABS:
                page = browser.new_page(viewport={"width": WIDTH, "height": 800},
                                        timezone_id="UTC")
                page.set_default_timeout(60_000)
                page.goto(f"{url}/?tab={tab}&range={quote(range_label)}")
                page.get_by_role("heading", name=TITLES[tab][0]).first.wait_for()
                settle(page)
                path = out / f"dashboard-{tab}.png"
                page.screenshot(path=str(path))
                shrink(path)
                written.append(path)
                page.close()
        finally:
            browser.close()
    return written


def shrink(path: Path) -> None:
    """Re-save a PNG with a 64-colour palette: a fraction of the size, text still crisp."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data folder of an existing lake and state "
                        "database (default: build a demo lake in a temporary folder)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--range", default="last 6 h", help="time range shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mad-screens-") as scratch:
        if args.data is None:
            settings = demo_settings(Path(scratch) / "data")
            print("building a demo lake ...", file=sys.stderr)
            build_demo_lake(settings, progress=True)
        else:
            if not args.data.is_dir():
                raise SystemExit(f"screenshots: no data folder {args.data}")
            settings = load_settings(overrides={"data_dir": str(args.data)})
        child, url = serve(settings)
        try:
            for path in shoot(url, args.out, args.range):
                print(f"{path} ({path.stat().st_size // 1024} KiB)")
        finally:
            child.stop(30)


if __name__ == "__main__":
    main()
