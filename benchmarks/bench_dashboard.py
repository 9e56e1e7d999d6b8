"""Time to show each dashboard tab: the `mad.query` reads alone, the whole tab in AppTest,
and first paint in headless Chromium, p50 and p95 over repeated runs.

Run: `.venv/bin/python benchmarks/bench_dashboard.py [--days 7] [--rate 1] [--runs 10]`

The lake is built once by the pipeline (backfill of `--days` ending at the current hour at
`--rate` events/s, raw lake, one ETL pass with 1m/5m/1h aggregates, one detection pass) and
cached under the temporary folder. The range shown is the whole lake (`last 7 d`; `--range`
for another), each tab reading what it reads at that range (Services: the window size it
picks for it). The aim (issue 11): every tab under 1 s at p95 from the query functions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from screenshots import CHROMIUM, LAUNCH_ARGS, demo_settings, serve

from mad.bench.demo import build_demo_lake
from mad.config import Settings
from mad.dashboard.tabs.services import SHOWN_DAYS, default_window
from mad.dashboard.ui import bucket_for, time_range

TABS = ("overview", "services", "data", "jobs", "anomalies")


def lake(days: int, rate: float) -> Settings:
    """The cached bench lake (built on first use)."""
    root = Path(tempfile.gettempdir()) / f"mad-bench-dashboard-{days}d-{rate:g}"
    done = root / "built"
    if done.exists():
        end = datetime.fromisoformat(done.read_text().strip())
        return demo_settings(root, hours=days * 24, rate=rate, end=end)
    settings = demo_settings(root, hours=days * 24, rate=rate)
    started = time.perf_counter()
    print(f"building {days} d at {rate:g} events/s in {root} ...", file=sys.stderr)
    build_demo_lake(settings, progress=True)
    end_s = settings.generate.start.timestamp() + settings.generate.duration_s
    done.write_text(datetime.fromtimestamp(end_s, UTC).isoformat())
    print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return settings


def reads(settings: Settings, range_label: str) -> dict[str, Callable[[], Any]]:
    """What each tab reads, as the tab reads it."""
    from mad.query import datasets, incidents, jobs, overview, services

    period = time_range(range_label)
    s, e = period.start, period.end
    job_bucket = "1h" if bucket_for(period) in ("1m", "5m") else "1d"
    traffic_window = "5m" if e - s <= timedelta(days=2) else "1h"

    def data() -> None:
        listed = [d["name"] for d in datasets.datasets(settings) if d["files"]]
        name = next(n for n in listed if "transformed" in n)
        part = datasets.partitions(settings, name)[0]["partition"]
        key = datasets.files(settings, name, part)[0]["key"]
        datasets.preview(settings, key, offset=0, limit=50)

    def anomalies() -> None:
        found = incidents.incidents(settings, s, e)
        if found:
            incidents.incident_detail(settings, found[0]["id"])

    def service_tab() -> None:
        window = default_window(period)
        names = services.services(settings)
        services.service_metrics(settings, window, *clamped(s, e, SHOWN_DAYS[window]))
        services.anomalies(settings, s, e, service=names[0], window=window)

    return {
        "overview": lambda: (overview.overview(settings),
                             overview.rates(settings, s, e, bucket_for(period)),
                             services.service_metrics(settings, traffic_window,
                                                      *clamped(s, e, 40))),
        "services": service_tab,
        "data": data,
        "jobs": lambda: (jobs.jobs(settings, s, e),
                         jobs.job_rates(settings, s, e, job_bucket)),
        "anomalies": anomalies,
    }


def peer_services(settings: Settings, range_label: str) -> Callable[[], Any]:
    """The Services tab's numbers read the way a dashboard without a query layer reads them:
    pandas over every file of the window's aggregates (all days, all series), then a filter
    and a pivot in pandas. Same rows as `service_metrics` (checked once before timing)."""
    import pandas as pd

    from mad import lake as contract
    from mad.query import services

    period = time_range(range_label)
    window = default_window(period)
    start, end = clamped(period.start, period.end, SHOWN_DAYS[window])
    folder = Path(settings.lake_url) / contract.aggregates_prefix(window)
    seconds = {"1m": 60, "5m": 300, "1h": 3600}[window]
    latency = services.LATENCY_SERIES

    def run() -> pd.DataFrame:
        frame = pd.read_parquet(folder)
        frame["window_start"] = pd.to_datetime(frame["window_start"]).dt.tz_localize("UTC")
        frame = frame[(frame.window_start >= start) & (frame.window_start < end)
                      & frame.series.isin(["events", "error_rate", latency])]
        wide = frame.pivot_table(index=["window_start", "service"], columns="series",
                                 values=["avg", "p50", "p95", "p99"], aggfunc="max")
        out = pd.DataFrame({
            "request_rate": wide[("avg", "events")] / seconds,
            "error_rate": wide[("avg", "error_rate")],
            "p50_ms": wide[("p50", latency)], "p95_ms": wide[("p95", latency)],
            "p99_ms": wide[("p99", latency)]}).reset_index()
        return out.sort_values(["window_start", "service"])

    ours = services.service_metrics(settings, window, start, end)
    theirs = run()
    if len(ours) != len(theirs):
        raise SystemExit(f"peer read {len(theirs)} rows, the query layer {len(ours)}")
    return run


def ours_services(settings: Settings, range_label: str) -> Callable[[], Any]:
    """The same rows as `peer_services`, through `mad.query.services.service_metrics`."""
    from mad.query import services

    period = time_range(range_label)
    window = default_window(period)
    start, end = clamped(period.start, period.end, SHOWN_DAYS[window])
    return lambda: services.service_metrics(settings, window, start, end)


def clamped(start: datetime, end: datetime, days: float) -> tuple[datetime, datetime]:
    return max(start, end - timedelta(days=days)), end


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def apptest(settings: Settings, tab: str, range_label: str) -> Callable[[], Any]:
    from streamlit.testing.v1 import AppTest

    from mad.dashboard.context import use_settings
    from mad.dashboard.server import APP_SCRIPT

    def run() -> None:
        use_settings(settings)
        at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
        at.query_params["tab"] = tab
        at.query_params["range"] = range_label
        at.run()
        if at.exception:
            raise SystemExit(f"{tab}: {at.exception[0].value}")

    return run


def first_paint(settings: Settings, range_label: str, runs: int) -> dict[str, list[float]]:
    """Seconds from navigation to the tab drawn and the script finished, per tab."""
    from playwright.sync_api import sync_playwright

    from mad.dashboard.app import TABS as TITLES

    child, url = serve(settings)
    out: dict[str, list[float]] = {tab: [] for tab in TABS}
    try:
        with sync_playwright() as play:
            browser = play.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            try:
                for _ in range(runs):
                    for tab in TABS:
                        page = browser.new_page(viewport={"width": 1280, "height": 900})
                        page.set_default_timeout(120_000)
                        t = time.perf_counter()
                        page.goto(f"{url}/?tab={tab}&range={quote(range_label)}")
                        page.get_by_role("heading", name=TITLES[tab][0]).first.wait_for()
                        page.wait_for_function("() => !document.querySelector("
                                               "'[data-testid=\"stStatusWidget\"]')")
                        out[tab].append(time.perf_counter() - t)
                        page.close()
            finally:
                browser.close()
    finally:
        child.stop(30)
    return out


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rate", type=float, default=1.0, help="events/s of the backfill")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--browser-runs", type=int, default=5)
    parser.add_argument("--range", default="last 7 d")
    args = parser.parse_args()
    settings = lake(args.days, args.rate)
    query = {tab: timed(fn, args.runs) for tab, fn in reads(settings, args.range).items()}
    peer = timed(peer_services(settings, args.range), args.runs)
    same_rows = timed(ours_services(settings, args.range), args.runs)
    app = {tab: timed(apptest(settings, tab, args.range), args.runs) for tab in TABS}
    paint = first_paint(settings, args.range, args.browser_runs) if Path(CHROMIUM).exists() \
        else {}
    print(f"lake: {args.days} d at {args.rate:g} events/s, range {args.range!r}; "
          f"{args.runs} runs ({args.browser_runs} in the browser); seconds")
    print(f"{'tab':<10} {'query p50':>10} {'query p95':>10} {'AppTest p50':>12} "
          f"{'AppTest p95':>12} {'paint p50':>10} {'paint p95':>10}")
    for tab in TABS:
        shown = paint.get(tab) or [float("nan")]
        print(f"{tab:<10} {p(query[tab], .5):>10.3f} {p(query[tab], .95):>10.3f} "
              f"{p(app[tab], .5):>12.3f} {p(app[tab], .95):>12.3f} "
              f"{p(shown, .5):>10.3f} {p(shown, .95):>10.3f}")
    ours, theirs = p(same_rows, .5), p(peer, .5)
    print(f"Services' metrics, p50: service_metrics {ours:.3f} s, pandas over the whole "
          f"aggregates dataset {theirs:.3f} s; peer / ours = {theirs / ours:.2f}")
    worst = max(p(v, .95) for v in query.values())
    print(f"slowest tab at p95 from the query functions: {worst:.3f} s "
          f"({'under' if worst < 1 else 'over'} the 1 s aim); "
          f"median of medians {statistics.median(p(v, .5) for v in query.values()):.3f} s")


if __name__ == "__main__":
    main()
