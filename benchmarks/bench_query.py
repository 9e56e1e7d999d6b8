"""The dashboard's typical reads from each hot store and from the lake alone, in one run.

Data (made once in `--work`, not timed): 7 days of aggregates ending now in the lake's own
layout (1m, 5m and 1h windows; 6 services x 16 series, as the simulator's), the anomalies of
those days (about 1 window in 200 of 8 series), and 40 incidents over the week in the state
database. The hot stores are filled by `HotFeed.sync()` (its time is printed too).

Calls, each `--repeat` times after 3 warm-up calls, with the same settings but
`store.hot.backend` embedded, redis (a `redis-server` started here on a free port), or
`store.enabled: false` (the lake alone); with `--s3`, also the lake alone on S3 (the same
lake copied into a bucket of a moto server started here, through the S3 object store):

* series_6h: `series(1m, gateway, duration_ms, last 6 h)`;
* incidents_1d: `incidents(last day)` and `anomalies(last day)` (the Anomalies view);
* overview_1svc: `service_metrics(1m, last 6 h, [payments])` and `latest(1m, payments)`.

It prints p50 and p95 in milliseconds per call and source, and lake / hot at p50. Aim: the
hot path at least 20x faster than the lake alone and under 20 ms at p95.

    .venv/bin/python benchmarks/bench_query.py [--repeat 50] [--s3] [--work /tmp/mad-bench-query]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

SERVICES = ("gateway", "accounts", "payments", "auth", "fraud", "notifications")
SERIES = ("events", "error_rate", "duration_ms", "cpu_pct", "memory_mb", "latency_ms",
          "queue_depth", "gc_pause_ms", "gc_count", "heap_used_pct", "load_avg",
          "active_threads", "active_connections", "requests_per_s", "response_bytes",
          "upstream_ms")
WINDOWS = {"1m": 60, "5m": 300, "1h": 3600}
DAYS = 7


def make_lake(root: Path, now: datetime) -> None:
    """The aggregates, anomalies and incidents described in the module doc, under `root`."""
    from mad import lake
    from mad.config import load_settings
    from mad.detect.lake_io import write_anomalies
    from mad.detect.model import Anomaly
    from mad.state import open_state
    from mad.state.detect_state import detect_incidents
    from mad.stores import open_store

    rng = np.random.default_rng(7)
    end = now.replace(second=0, microsecond=0)
    start = (end - timedelta(days=DAYS)).replace(hour=0, minute=0)
    store = open_store(str(root / "lake"), create=True)
    for window, step in WINDOWS.items():
        day = start
        while day <= end:
            times = np.arange(np.datetime64(day.replace(tzinfo=None), "s"),
                              np.datetime64(min(day + timedelta(days=1), end).replace(
                                  tzinfo=None), "s"), step).astype("datetime64[us]")
            if len(times):
                _write_day(root / "lake", window, day, times, rng)
            day += timedelta(days=1)
    anomalies: list[Anomaly] = []
    first = start
    minutes = int((end - first).total_seconds() // 60)
    for n in rng.choice(minutes, size=minutes // 200, replace=False):
        when = first + timedelta(minutes=int(n))
        anomalies.append(Anomaly(
            service=SERVICES[int(n) % len(SERVICES)], series=SERIES[int(n) % 8], stat="avg",
            window="1m", window_start=when, score=float(rng.uniform(0.5, 1)),
            severity="warning", observed=1.0, expected=0.5, lower=0.2, upper=0.8,
            detectors=("ensemble",)))
    write_anomalies(store, "1m", anomalies, {})
    settings = load_settings(env={}, overrides={"data_dir": str(root)})
    engine = open_state(settings.state_url)
    with engine.begin() as conn:
        for n in range(40):
            began = end - timedelta(hours=4 * n + 1)
            conn.execute(detect_incidents.insert().values(
                id=f"inc-{n:03d}", window="1m", status="resolved" if n else "open",
                started=began, last_seen=began + timedelta(minutes=20),
                resolved=None if n == 0 else began + timedelta(minutes=30),
                origin=SERVICES[n % 6], severity="warning", anomalies=5, peak_score=0.9,
                services=orjson.dumps([SERVICES[n % 6]]).decode(),
                series=orjson.dumps([f"{SERVICES[n % 6]}/duration_ms/avg"]).decode(),
                updated_at=began + timedelta(minutes=30)))
    engine.dispose()
    assert lake.AGGREGATES_DATASET  # the layout written above is the lake contract's


def _write_day(lake_root: Path, window: str, day: datetime, times: np.ndarray,
               rng: np.random.Generator) -> None:
    from mad import lake

    n = len(times) * len(SERVICES) * len(SERIES)
    avg = rng.gamma(2.0, 50.0, n)
    table = pa.table({
        "window_start": pa.array(np.repeat(times, len(SERVICES) * len(SERIES)),
                                 pa.timestamp("us")),
        "service": np.tile(np.repeat(np.array(SERVICES), len(SERIES)), len(times)),
        "series": np.tile(np.array(SERIES), len(times) * len(SERVICES)),
        "count": rng.integers(1, 500, n), "avg": avg, "min": avg * 0.5, "max": avg * 2,
        "stddev": avg * 0.1, "p50": avg, "p95": avg * 1.6, "p99": avg * 1.9,
        "outlier_score": rng.normal(0, 1, n), "outlier": rng.random(n) < 0.001})
    folder = lake_root / f"{lake.aggregates_prefix(window)}date={day.date().isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-0.parquet", compression="snappy")


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    if shutil.which("redis-server") is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    import sys
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url, timeout=1):
                return proc, url
        except urllib.error.HTTPError:
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def copy_to_s3(root: Path, endpoint: str) -> dict[str, Any]:
    """The lake under `root` copied into a new bucket; the settings that read it there."""
    from mad.config import AwsSettings
    from mad.stores import open_store

    aws = AwsSettings(endpoint_url=endpoint, access_key_id="bench",
                      secret_access_key="bench")
    bucket = open_store("s3://mad-bench-query/lake", aws, create=True)
    local = open_store(str(root / "lake"))
    for key in local.list(""):
        bucket.put(key, local.get(key))
    return {"lake.url": "s3://mad-bench-query/lake", "aws.endpoint_url": endpoint,
            "aws.access_key_id": "bench", "aws.secret_access_key": "bench"}


def calls(settings: Any, now: datetime) -> dict[str, Callable[[], int]]:
    from mad.query.incidents import incidents
    from mad.query.series import latest, series
    from mad.query.services import anomalies, service_metrics

    six = now - timedelta(hours=6)
    day = now - timedelta(days=1)
    return {
        "series_6h": lambda: len(series(settings, "1m", "gateway", "duration_ms", six, now)),
        "incidents_1d": lambda: len(incidents(settings, day, now)) + len(
            anomalies(settings, day, now)),
        "overview_1svc": lambda: len(service_metrics(settings, "1m", six, now, ["payments"]))
        + len(latest(settings, "1m", "payments", now=now)),
    }


def timed(call: Callable[[], int], repeat: int) -> tuple[float, float, int]:
    for _ in range(3):
        rows = call()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        rows = call()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mad-bench-query"))
    parser.add_argument("--s3", action="store_true", help="also the lake alone on S3 (moto)")
    args = parser.parse_args()
    from mad.config import load_settings
    from mad.hotstore.feed import HotFeed
    from mad.query import hot as hot_reads

    now = datetime.now(UTC)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    began = time.perf_counter()
    make_lake(args.work, now)
    print(f"data: {DAYS} days of 1m/5m/1h aggregates, {len(SERVICES)} services x "
          f"{len(SERIES)} series, made in {time.perf_counter() - began:.1f} s (not timed)")
    redis = start_redis(args.work)
    sources: dict[str, dict[str, Any]] = {"lake": {"store.enabled": False},
                                          "embedded": {"store.hot.backend": "embedded"}}
    moto = start_moto() if args.s3 else None
    if moto is not None:
        sources["lake_s3"] = {"store.enabled": False, **copy_to_s3(args.work, moto[1])}
    if redis is not None:
        sources["redis"] = {"store.hot.backend": "redis", "store.hot.redis.url": redis[1]}
    else:
        print("redis-server is not installed: the redis column is left out")
    results: dict[str, dict[str, tuple[float, float, int]]] = {}
    try:
        for name, extra in sources.items():
            settings = load_settings(env={}, overrides={"data_dir": str(args.work), **extra})
            if name != "lake":
                t = time.perf_counter()
                report = HotFeed(settings).sync()
                print(f"{name}: filled from the lake in {time.perf_counter() - t:.1f} s "
                      f"({report.rows_written} rows, {report.hours_written} hours)"
                      + (f" ERROR {report.error}" if report.error else ""))
            hot_reads.forget()
            results[name] = {call: timed(fn, args.repeat)
                             for call, fn in calls(settings, now).items()}
    finally:
        hot_reads.forget()
        for proc in (redis, moto):
            if proc is not None:
                proc[0].terminate()
                proc[0].wait(10)
    names = list(results)
    lakes = [n for n in names if n.startswith("lake")]
    hots = [n for n in names if not n.startswith("lake")]
    pairs = [(lk, h) for lk in lakes for h in hots]
    print(f"\n{'call':<15}" + "".join(f"{n + ' p50/p95 ms':>24}" for n in names)
          + "".join(f"{lk + '/' + h:>18}" for lk, h in pairs))
    for call in results["lake"]:
        cells = "".join(f"{results[n][call][0]:>12.2f} /{results[n][call][1]:>9.2f}"
                        for n in names)
        ratios = "".join(f"{results[lk][call][0] / results[h][call][0]:>17.1f}x"
                         for lk, h in pairs)
        rows = {results[n][call][2] for n in names}
        same = "" if len(rows) == 1 else f"  ROWS DIFFER {sorted(rows)}"
        print(f"{call:<15}{cells}{ratios}{same}")


if __name__ == "__main__":
    main()
