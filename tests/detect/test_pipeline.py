"""The detection pipeline end to end: aggregates in the lake -> md-anomalies, incidents, alerts.

Unit-level tests write aggregates Parquet directly (a known series with spikes, a rule breach
and an SLO breach); the restart test runs the real ETL over a generated backfill, kills
`mad detect run --watch` with SIGKILL after its first committed batch, restarts it with
`--once`, and compares with one uninterrupted run (state on SQLite and on PostgreSQL).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pytest
from tests.pg_server import postgres_fixture

from mad.config import AwsSettings, Settings, load_settings
from mad.detect.lake_io import UnreadableAnomalies, read_anomalies
from mad.detect.model import Anomaly
from mad.detect.pipeline import DetectBusy, DetectRunner
from mad.lake import ANOMALIES_DATASET as ANOMALIES
from mad.state import DetectStore, open_state
from mad.stores import open_store

pg = postgres_fixture()
T0 = datetime(2026, 11, 1, tzinfo=UTC)
COLUMNS = (("window_start", "datetime64[us]"), ("service", object), ("series", object),
           ("count", "int64"), *((name, float) for name in (
               "avg", "min", "max", "stddev", "p50", "p95", "p99", "outlier_score")),
           ("outlier", bool))
Row = tuple[Any, ...]


def synthetic_rows(n: int = 240, seed: int = 3) -> list[Row]:
    """Two services x (latency_ms, error_rate) per minute: noise with spikes at 150 and 200
    on payments latency, payments error rate over 5% for minutes 100-104, gateway p99 latency
    over its SLO (1500 ms) for minutes 170-173."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for i in range(n):
        start = (T0 + timedelta(minutes=i)).replace(tzinfo=None)
        for service in ("gateway", "payments"):
            latency = 100.0 + 10.0 * math.sin(i / 20.0) + float(rng.normal(0.0, 2.0))
            if service == "payments" and i in (150, 200):
                latency += 400.0
            p99 = 1800.0 if service == "gateway" and 170 <= i <= 173 else latency * 3
            rate = 0.08 if service == "payments" and 100 <= i <= 104 else 0.01
            rows.append((start, service, "latency_ms", 50, latency, latency / 2, p99, 5.0,
                         latency, latency * 2, p99, 0.0, False))
            rows.append((start, service, "error_rate", 50, rate, rate, rate, 0.0, rate, rate,
                         rate, 0.0, False))
    return rows


def write_aggregates(lake_dir: Path, rows: list[Row], name: str = "part-0.parquet",
                     window: str = "1m") -> None:
    """Write rows as the ETL would, one file per day (replacing `name` in each day); a row
    without a window start goes to the first day."""
    by_day: dict[str, list[Row]] = {}
    for row in rows:
        day = row[0].strftime("%Y-%m-%d") if row[0] is not None else "2026-11-01"
        by_day.setdefault(day, []).append(row)
    for day, day_rows in by_day.items():
        folder = lake_dir / "md-aggregates" / f"window={window}" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        cols = list(zip(*day_rows, strict=True))
        table = {name: np.array(col, dtype=kind) for (name, kind), col in zip(COLUMNS, cols,
                                                                               strict=True)}
        con = duckdb.connect()
        con.register("t", table)
        con.execute(f"COPY (SELECT * FROM t) TO '{folder / name}' (FORMAT parquet)")
        con.close()


def make_settings(data: Path, state_url: str, **extra: Any) -> Settings:
    return load_settings(env={}, overrides={
        "data_dir": str(data), "state.url": state_url, "detect.detector.ensemble.warmup": 30,
        "detect.batch_windows": 25, **extra,
    })


def run(settings: Settings, **kwargs: Any) -> Any:
    runner = DetectRunner(settings, **kwargs)
    try:
        return runner.run_once()
    finally:
        runner.close()


def stored(settings: Settings) -> list[Anomaly]:
    store = open_store(settings.lake_url, settings.aws)
    return read_anomalies(store, store.list(f"{ANOMALIES}/"))


def anomalies(settings: Settings) -> list[tuple[Any, ...]]:
    """Every stored anomaly as a comparable tuple (NaN made equal to itself)."""
    return sorted(tuple("nan" if isinstance(v, float) and math.isnan(v) else
                        tuple(v) if isinstance(v, list) else v
                        for v in a.to_dict().values()) for a in stored(settings))


def incidents(settings: Settings) -> list[dict[str, Any]]:
    engine = open_state(settings.state_url)
    try:
        rows = DetectStore(engine).incidents(1000)
    finally:
        engine.dispose()
    return sorted(({k: v for k, v in r.items() if k != "updated_at"} for r in rows),
                  key=lambda r: r["id"])


def alerts(settings: Settings) -> list[dict[str, Any]]:
    path = settings.alerts_path
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] \
        if path.exists() else []


def test_finds_spikes_rules_and_slo_breaches(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    write_aggregates(Path(settings.lake_url), synthetic_rows())
    summary = run(settings)
    # complete windows only: the newest window start (240 minutes in) says events reached
    # 03:59, so the windows ending by 03:58 (03:59 minus the allowed lateness) are scored
    assert summary.windows == 238 and summary.watermark_basis == "services"
    assert summary.points == 238 * 4 and summary.batches == 10
    found = {(a.detectors[0], a.service, a.series, f"{a.window_start:%H:%M}")
             for a in stored(settings)}
    assert ("spatial", "payments", "latency_ms", "02:30") in found  # the spike at minute 150
    severity = {(a.service, f"{a.window_start:%H:%M}"): a.severity for a in stored(settings)
                if a.series == "latency_ms" and a.stat == "avg"}
    assert severity[("payments", "02:30")] == "critical"  # ~200 sigmas out
    assert "warning" in severity.values()  # the range member's small finds
    rules = {f for f in found if f[0].startswith("rule:")}
    assert rules == {("rule:error-rate-5pct", "payments", "error_rate", f"01:{m}")
                     for m in (42, 43, 44)} | {
        ("rule:slo-p99-gateway", "gateway", "latency_ms", f"02:{m}") for m in (52, 53)}
    lines = alerts(settings)
    assert lines and len({a["dedup_key"] for a in lines}) == len(lines)
    assert {i["id"] for i in incidents(settings)} == {a["incident"]["id"] for a in lines}

    again = run(settings)  # nothing new: nothing scored, nothing sent
    assert (again.points, again.alerts) == (0, 0) and alerts(settings) == lines


def test_two_passes_over_a_growing_lake_equal_one_pass(tmp_path: Path, state_url: str) -> None:
    rows = synthetic_rows()
    whole = make_settings(tmp_path / "whole", f"sqlite:///{tmp_path / 'whole.db'}")
    write_aggregates(Path(whole.lake_url), rows)
    run(whole)

    parts = make_settings(tmp_path / "parts", state_url)
    write_aggregates(Path(parts.lake_url), rows[: 4 * 130])
    first = run(parts)
    assert first.windows == 128
    write_aggregates(Path(parts.lake_url), rows)  # the ETL rewrote the day with more windows
    second = run(parts)
    assert second.windows == 238 - 128
    assert anomalies(parts) == anomalies(whole) and anomalies(whole)
    assert incidents(parts) == incidents(whole)
    assert alerts(parts) == alerts(whole)


def test_a_pass_that_fails_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    calm = make_settings(tmp_path / "calm", f"sqlite:///{tmp_path / 'calm.db'}")
    write_aggregates(Path(calm.lake_url), synthetic_rows())
    run(calm)

    crashy = make_settings(tmp_path / "crashy", f"sqlite:///{tmp_path / 'crashy.db'}",
                           **{"detect.batch_windows": 10, "detect.checkpoint_s": 3600})
    write_aggregates(Path(crashy.lake_url), synthetic_rows())
    batches = []

    def crash_at_the_sixth(batch: Any) -> None:
        batches.append(batch)
        if len(batches) == 6:
            raise OSError("disk went away")

    runner = DetectRunner(crashy)
    try:
        with pytest.raises(OSError):
            runner.run_once(progress=crash_at_the_sixth)
        assert runner.progress is None and watermarks(crashy) == []  # nothing checkpointed
        assert alerts(crashy)  # but the first batches' alerts went out
        runner.run_once()  # replays from the start
    finally:
        runner.close()
    assert anomalies(crashy) == anomalies(calm)
    assert incidents(crashy) == incidents(calm)
    assert alerts(crashy) == alerts(calm)  # replayed changes are not sent again
    assert sorted(watermarks(crashy)) == sorted(watermarks(calm))


def test_bad_input_is_counted_not_fatal(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    lake_dir = Path(settings.lake_url)
    rows = synthetic_rows(120)
    rows[10] = (*rows[10][:4], math.nan, *rows[10][5:])  # NaN avg
    rows[11] = (*rows[11][:4], None, *rows[11][5:])  # missing avg
    rows = [r for i, r in enumerate(rows) if not 40 * 4 <= i < 45 * 4]  # 5 missing windows
    write_aggregates(lake_dir, rows)
    keyless = (None, "gateway", "x", *rows[0][3:])
    write_aggregates(lake_dir, [*rows[:8], keyless], "part-1.parquet")
    summary = run(settings)
    assert summary.duplicates == 8 and summary.bad_rows == 1 and summary.bad_values == 2
    assert summary.windows == 113 and not summary.held

    folder = lake_dir / "md-aggregates" / "window=1m" / "date=2026-11-02"
    folder.mkdir(parents=True)
    # both services go on into the next day (one alone would not move the watermark)
    write_aggregates(lake_dir, [(datetime(2026, 11, 2, 0, m), *row[1:])
                                for m in range(3) for row in synthetic_rows(1)])
    (folder / "zz-broken.parquet").write_bytes(b"not parquet")
    held = run(settings)
    assert held.points == 0 and "cannot read aggregates" in held.held
    (folder / "zz-broken.parquet").unlink()
    assert run(settings).points > 0  # once the file is fixed, detection goes on


def test_a_corrupt_anomalies_file_is_a_one_line_error_and_poisons_nothing(
        tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    write_aggregates(Path(settings.lake_url), synthetic_rows(240))
    assert run(settings).anomalies > 0
    key = next(k for k in open_store(settings.lake_url, settings.aws).list(f"{ANOMALIES}/"))
    (Path(settings.lake_url) / key).write_bytes(b"not parquet")
    write_aggregates(Path(settings.lake_url), synthetic_rows(300), "part-1.parquet")
    proc = mad_cli(settings, "detect", "run")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("mad: error:")]
    assert len(errors) == 1 and key in errors[0]
    # in one process: the failed read leaves later reads of good files working
    with pytest.raises(UnreadableAnomalies):
        stored(settings)
    (Path(settings.lake_url) / key).unlink()
    assert run(settings).windows > 0 and duckdb.sql("SELECT 1").fetchone() == (1,)


def test_one_process_scores_a_window_size_at_a_time(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    write_aggregates(Path(settings.lake_url), synthetic_rows(60))
    first = DetectRunner(settings)
    try:
        assert first.run_once().windows == 58
        second = DetectRunner(settings)
        with pytest.raises(DetectBusy, match="being scored by"):
            second.run_once()
        second.close()
        assert first.run_once().windows == 0  # the holder carries on
    finally:
        first.close()
    assert run(settings).windows == 0  # released on close: the next process may go


def test_windows_older_than_the_watermark_are_not_scored_again(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    rows = synthetic_rows(100)
    write_aggregates(Path(settings.lake_url), rows)
    run(settings)
    before = anomalies(settings)
    recomputed = [(*r[:4], r[4] * 50, *r[5:]) for r in rows]  # late events changed the day
    write_aggregates(Path(settings.lake_url), recomputed)
    summary = run(settings)
    assert summary.points == 0 and anomalies(settings) == before


class ClosedDay:
    def __init__(self, day: str) -> None:
        self.day = day

    def passed(self, window: str, day: str) -> bool:
        return day != self.day


def test_a_day_that_failed_the_quality_gate_holds_detection(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    rows = synthetic_rows(60)
    day2 = [(r[0] + timedelta(days=1), *r[1:]) for r in rows]
    write_aggregates(Path(settings.lake_url), rows + day2)
    held = run(settings, gate=ClosedDay("2026-11-01"))
    assert held.points == 0 and "date=2026-11-01" in held.held
    summary = run(settings, gate=ClosedDay("2026-11-02"))
    assert summary.windows == 60 and "date=2026-11-02" in summary.held
    assert run(settings).windows == 58


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A real HTTP server on 127.0.0.1 that records (Idempotency-Key, body) of each POST."""
    got: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.headers["Idempotency-Key"], orjson.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_alerts_wait_in_the_outbox_until_a_sink_takes_them(tmp_path: Path) -> None:
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", **{
        "detect.alerts.webhook_url": dead, "detect.alerts.webhook_retries": 0})
    write_aggregates(Path(settings.lake_url), synthetic_rows())
    summary = run(settings)
    assert summary.changes > 0 and summary.pending == summary.changes
    lines = alerts(settings)
    assert len(lines) == summary.changes  # the JSONL sink took every alert once

    with webhook_receiver() as (url, got):
        live = make_settings(tmp_path, settings.state_url, **{"detect.alerts.webhook_url": url})
        again = run(live)
        assert (again.points, again.pending, again.alerts) == (0, 0, summary.changes)
        assert run(live).alerts == 0  # delivered once; the next pass sends nothing
    assert sorted(key for key, _ in got) == sorted(a["dedup_key"] for a in lines)
    assert all(body["dedup_key"] == key for key, body in got)
    assert alerts(live) == lines  # not sent twice to the JSONL sink


def detect_process(settings: Settings, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MAD_DATA_DIR": str(settings.data_dir),
           "MAD_STATE__URL": settings.state_url, "MAD_DETECT__PARAMS": '{"warmup": 30}',
           "MAD_DETECT__BATCH_WINDOWS": "5", "MAD_DETECT__WATCH_INTERVAL_S": "600",
           "MAD_DETECT__CHECKPOINT_S": str(settings.detect.checkpoint_s)}
    return subprocess.Popen([sys.executable, "-m", "mad.cli", "detect", "run", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def kill_after_first_batch(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL as soon as the process reports its first committed batch."""
    assert proc.stdout is not None
    seen = []
    for line in iter(proc.stdout.readline, b""):
        seen.append(line.decode())
        if line.startswith(b"  20"):  # "  2026-11-01 00:00 .. 00:04 UTC: ..."
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
            return
    raise AssertionError(f"no batch was reported: {''.join(seen)[-3000:]}")


def watermarks(settings: Settings) -> list[datetime]:
    engine = open_state(settings.state_url)
    try:
        return [m["watermark"] for m in DetectStore(engine).watermarks()]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_killed_watch_then_restart_equals_one_uninterrupted_run(
    tmp_path: Path, etl_lake: Path, state_url: str,
) -> None:
    calm = make_settings(tmp_path / "calm", f"sqlite:///{tmp_path / 'calm.db'}",
                         **{"detect.batch_windows": 60})
    # state saved after every batch (SQLite), or only when the process ends (PostgreSQL):
    # the killed process then left no state, and the restart replays every window
    every_batch = state_url.startswith("sqlite")
    killed = make_settings(tmp_path / "killed", state_url,
                           **{"detect.checkpoint_s": 0 if every_batch else 3600})
    for settings in (calm, killed):
        shutil.copytree(etl_lake / "md-aggregates", Path(settings.lake_url) / "md-aggregates")
    full = run(calm)
    assert full.anomalies > 0 and full.changes > 0

    kill_after_first_batch(detect_process(killed, "--watch"))
    partial = watermarks(killed)
    if every_batch:
        assert partial and max(partial) < full.watermark  # killed mid-way
    else:
        assert partial == []

    proc = detect_process(killed, "--once")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out.decode()[-3000:]
    assert anomalies(killed) == anomalies(calm)
    assert incidents(killed) == incidents(calm)
    assert sorted(watermarks(killed)) == sorted(watermarks(calm))
    sent = alerts(killed)  # at least once per change; a resend would carry the same key
    assert {a["dedup_key"]: a for a in sent} == {a["dedup_key"]: a for a in alerts(calm)}


def mad_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    env.update({"MAD_DATA_DIR": str(settings.data_dir), "MAD_STATE__URL": settings.state_url})
    return subprocess.run([sys.executable, "-m", "mad.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_cli_help_errors_status_and_a_clean_stop_on_sigterm(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    for args in (["detect"], ["detect", "run"], ["detect", "status"]):
        assert "Usage:" in mad_cli(settings, *args, "--help").stdout
    for args, needle in ((["--watch", "--once"], "exclude"), (["--window", "2m"], "window")):
        proc = mad_cli(settings, "detect", "run", *args)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
    nothing = mad_cli(settings, "detect", "status")  # a status command creates nothing
    assert nothing.returncode != 0 and "Traceback" not in nothing.stderr
    assert len(nothing.stderr.strip().splitlines()) == 1 and "no lake at" in nothing.stderr
    assert not Path(settings.lake_url).exists()
    assert not (tmp_path / "state.db").exists()

    write_aggregates(Path(settings.lake_url), synthetic_rows(120))
    proc = detect_process(settings, "--watch")
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, b""):
        if line.startswith(b"detect 1m:"):  # the first pass is done; it now waits
            proc.send_signal(signal.SIGTERM)
            break
    assert proc.wait(60) == 0

    status = mad_cli(settings, "detect", "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    data = orjson.loads(status.stdout)
    # up to date: the newest window and the one within the allowed lateness wait
    assert len(data["series"]) == 4 and {s["lag_s"] for s in data["series"]} == {120.0}
    assert data["pending_alerts"] == 0
    assert "series scored: 4" in mad_cli(settings, "detect", "status").stdout


def test_a_lake_on_s3(tmp_path: Path, aws: AwsSettings, bucket_url: str) -> None:
    """Aggregates in a bucket (moto on loopback), anomalies written back to it."""
    local = make_settings(tmp_path / "local", f"sqlite:///{tmp_path / 'local.db'}")
    write_aggregates(Path(local.lake_url), synthetic_rows())
    store = open_store(bucket_url, aws, create=True)
    source = Path(local.lake_url)
    for path in sorted(source.rglob("*.parquet")):
        store.put(path.relative_to(source).as_posix(), path.read_bytes())
    on_s3 = make_settings(tmp_path / "s3", f"sqlite:///{tmp_path / 's3.db'}", **{
        "lake.url": bucket_url, **{f"aws.{k}": v for k, v in aws.model_dump().items()}})
    summary = run(on_s3)
    run(local)
    assert summary.anomalies > 0 and anomalies(on_s3) == anomalies(local)
    assert any(k.startswith(f"{ANOMALIES}/date=") for k in store.list(f"{ANOMALIES}/"))
