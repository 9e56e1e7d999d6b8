"""Windows are scored only once complete: the event-time watermark (`mad.detect.watermark`).

Unit tests of the watermark itself (pure), then the real thing: traffic from the generator
with one host's clock 2 minutes ahead, late events and one event dated hours ahead, written
into a raw lake as it arrives (each line under the ingest hour of its send time, the hour the
ingest API would have received it in), the real ETL and DetectRunner run in passes as data
arrives, and every window scored compared with its final, complete aggregate.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from tests.detect.test_pipeline import T0, synthetic_rows, write_aggregates

from mad.catalog import SERVICES
from mad.config import FaultRates, GenerateSettings, Settings, load_settings
from mad.detect.lake_io import aggregate_days, read_windows
from mad.detect.pipeline import DetectRunner
from mad.detect.watermark import Source, Watermark, compute, host_mark, ingest_floor
from mad.etl.runner import EtlRunner
from mad.events import parse_timestamp
from mad.generate.backfill import build
from mad.generate.timefmt import iso_utc
from mad.lake import raw_partition
from mad.state import EventClocks, ScoredStore, open_state
from mad.stores import open_store

T = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def hosts(*offsets: float, kind: str = "log") -> list[Source]:
    return [Source(kind, f"svc/h{i}", at(o)) for i, o in enumerate(offsets)]


# -- the watermark, pure ---------------------------------------------------------------------

def test_a_host_ahead_or_an_event_hours_ahead_does_not_move_it() -> None:
    on_time = [0.0, -3.0, -1.0, -7.0, -2.0]
    assert compute(hosts(*on_time), 180, 300).at == at(-7)
    ahead = compute(hosts(*on_time, 120.0), 180, 300)  # one clock 2 minutes ahead
    assert ahead.at == at(-7) and ahead.basis == "hosts" and ahead.sources == 6
    future = compute(hosts(*on_time, 5 * 3600.0, 4 * 3600.0), 180, 300)  # hours ahead
    assert future.at == at(-7) and future.idle == 0
    nonsense = [Source("log", "x/1", datetime(1, 1, 1, tzinfo=UTC)),
                Source("log", "x/2", datetime(9999, 1, 1, tzinfo=UTC))]
    assert compute(hosts(*on_time) + nonsense, 180, 300).at == at(-7)  # out of range: ignored


def test_a_host_behind_holds_it_until_it_is_idle() -> None:
    assert compute(hosts(0, -1, -2, -100), 180, 300).at == at(-100)  # waits for it
    quiet = compute(hosts(0, -1, -2, -400), 180, 300)  # stopped 400 s ago: idle
    assert quiet.at == at(-2) and quiet.idle == 1
    assert host_mark([], 180) == (None, 0)


def test_a_quiet_series_is_passed_by_the_ingest_floor() -> None:
    """Every host clock stopped (a backfill of old events, or all sources quiet): the ingest
    floor, the oldest kind's newest ingest hour minus one writer flush, takes over."""
    hour = datetime(2026, 11, 1, 12, tzinfo=UTC)
    sources = [Source("log", "a/1", at(0), hour), Source("metric", "a/1", at(5), hour),
               Source("apm", "b/1", at(-4), hour - timedelta(hours=1))]
    assert ingest_floor(sources, 300) == hour - timedelta(hours=1, seconds=300)
    mark = compute(sources, 180, 300)
    assert mark.basis == "ingest" and mark.at == hour - timedelta(hours=1, seconds=300)
    assert ingest_floor(hosts(0, 1), 300) is None  # no ingest hours: no floor


def test_it_never_goes_back_after_a_restart() -> None:
    first = compute(hosts(0, 10, 20), 180, 300)
    again = compute(hosts(0, 10, 20), 180, 300, previous=first.at)  # recomputed the same
    assert again.at == first.at
    fewer = compute(hosts(-50, 10), 180, 300, previous=first.at)  # clocks went back
    assert fewer.at == first.at and fewer.basis == "previous"
    assert compute([], 180, 300) == Watermark(None, "none")


def test_a_window_is_complete_once_its_end_plus_the_lateness_has_passed() -> None:
    mark = compute(hosts(180), 180, 300)  # events are in up to 10:03
    assert mark.complete(at(60), 60, 60)  # [10:01, 10:02) + 60 s <= 10:03
    assert not mark.complete(at(61), 60, 60)
    assert not mark.complete(at(120), 60, 60)
    assert not Watermark(None, "none").complete(at(0), 60, 60)


# -- the pipeline over aggregates written directly (no ETL clocks: services are the sources) --

def direct_settings(tmp_path: Path, **extra: Any) -> Settings:
    return load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "state.url": f"sqlite:///{tmp_path / 'state.db'}",
        "detect.detector.ensemble.warmup": 30, **extra})


def run(settings: Settings) -> Any:
    runner = DetectRunner(settings)
    try:
        return runner.run_once()
    finally:
        runner.close()


def test_the_watermark_is_kept_and_a_restart_resumes_from_it(tmp_path: Path) -> None:
    settings = direct_settings(tmp_path)
    rows = synthetic_rows(90)
    write_aggregates(Path(settings.lake_url), rows)
    first = run(settings)
    assert first.event_watermark == T0 + timedelta(minutes=89)  # the newest window start
    assert first.watermark == T0 + timedelta(minutes=87) and first.watermark_basis == "services"
    engine = open_state(settings.state_url)
    try:
        saved = ScoredStore(engine).watermark("1m")
    finally:
        engine.dispose()
    assert saved is not None and saved.at == first.event_watermark and saved.sources == 2
    again = run(settings)  # a new process computes the same watermark, scores nothing again
    assert again.event_watermark == first.event_watermark and again.points == 0
    write_aggregates(Path(settings.lake_url), rows[: 4 * 60])  # the lake went back
    back = run(settings)
    assert back.event_watermark == first.event_watermark and back.watermark_basis == "previous"


def test_a_service_ahead_does_not_unblock_the_others(tmp_path: Path) -> None:
    settings = direct_settings(tmp_path)
    rows = synthetic_rows(60)
    ahead = [(r[0] + timedelta(hours=5), *r[1:]) for r in rows[-8:] if r[1] == "gateway"]
    write_aggregates(Path(settings.lake_url), rows + ahead)
    summary = run(settings)
    assert summary.event_watermark == T0 + timedelta(minutes=59)  # payments' newest window
    assert summary.windows == 58


def test_hold_windows_keeps_its_meaning(tmp_path: Path) -> None:
    """An explicit `hold_windows` still holds the newest N window starts of the lake."""
    settings = direct_settings(tmp_path, **{"detect.hold_windows": 5})
    write_aggregates(Path(settings.lake_url), synthetic_rows(60))
    assert run(settings).windows == 55  # the watermark alone would score 58


def with_counts(rows: list[Any], bump: dict[int, int]) -> list[Any]:
    """Rows with `count` raised by `bump[minute of the day]` (what late events do)."""
    return [(*r[:3], r[3] + bump.get(r[0].hour * 60 + r[0].minute, 0), *r[4:]) for r in rows]


def test_late_changes_are_counted_once_and_shown(tmp_path: Path) -> None:
    settings = direct_settings(tmp_path)
    lake_dir = Path(settings.lake_url)
    day1 = synthetic_rows(120)
    day2 = [(r[0] + timedelta(days=1), *r[1:]) for r in synthetic_rows(120)]
    gap = (day2[0][0] + timedelta(minutes=70), "gateway", "latency_ms")
    write_aggregates(lake_dir, day1 + [r for r in day2 if r[:3] != gap])
    first = run(settings)
    assert first.windows == 120 + 118 and first.late_windows == 0

    # late events: three minutes of the newest day and one of the day before changed, and
    # the window that had no row when the watermark passed it appeared
    write_aggregates(lake_dir, with_counts(day1, {30: 4}) + with_counts(day2, {5: 2, 6: 1, 50: 1}))
    found = run(settings)
    assert found.points == 0  # nothing is scored twice
    assert found.late_windows == 2 * 2 * 4 + 1  # 2 services x 2 series x 4 minutes, + 1
    assert "late after scoring: 17 series windows" in found.line()
    assert run(settings).late_windows == 0  # seen already: not counted again

    data = orjson.loads(mad_cli(settings, "detect", "status", "--format", "json").stdout)
    assert data["late"]["windows"] == 17 and data["late"]["events"] == 0  # no `events` series
    assert data["watermark"]["basis"] in ("services", "previous")
    engine = open_state(settings.state_url)
    try:
        recent = {(r["series"], r["window_start"]): r
                  for r in ScoredStore(engine).late("1m", 100)["recent"]}
    finally:
        engine.dispose()
    assert recent[("latency_ms", gap[0].replace(tzinfo=UTC))]["scored_count"] == 0
    assert {r["count"] - r["scored_count"] for k, r in recent.items() if k[0] == "error_rate"} \
        == {1, 2, 4}


# -- the real pipeline -----------------------------------------------------------------------

AHEAD_S = 120.0
PASS_S = 180  # simulated seconds of arrivals between two ETL + detection passes
STEP_S = 20  # generation step (simulated seconds)
QUIET = "notifications"  # a service that goes quiet for a while


@dataclass
class Line:
    raw: bytes
    arrived: float  # send time: when the ingest API received it
    service: str
    kind: str
    event_id: str | None
    stamped: float | None  # its timestamp, epoch seconds


@dataclass
class Lake:
    settings: Settings
    lines: list[Line] = field(default_factory=list)
    written: int = 0

    def add(self, raw: bytes, arrived: float) -> None:
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            self.lines.append(Line(raw, arrived, "gateway", "log", None, None))
            return
        service = rec.get("service")
        if not isinstance(service, str) or service not in SERVICES:
            prefix = str(rec.get("event_type", "")).split(".")[0]
            service = prefix if prefix in SERVICES else "gateway"
        kind = rec["kind"] if rec.get("kind") in ("log", "metric", "apm") else "log"
        event_id = rec.get("event_id") if isinstance(rec.get("event_id"), str) else None
        self.lines.append(Line(raw, arrived, service, kind, event_id,
                               parse_timestamp(rec.get("timestamp"))))

    def flush(self) -> None:
        """Write the lines that arrived since the last flush, one raw file per kind, service
        and ingest hour (the hour of arrival), as the raw writer does."""
        files: dict[str, list[bytes]] = defaultdict(list)
        for line in self.lines[self.written:]:
            files[raw_partition(line.kind, line.service, line.arrived)].append(line.raw)
        root = Path(self.settings.lake_url)
        for folder, raws in sorted(files.items()):
            path = root / folder / f"part-{uuid.uuid4().hex}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"".join(r if r.endswith(b"\n") else r + b"\n" for r in raws))
        self.written = len(self.lines)


def lake_rows(settings: Settings) -> dict[tuple[str, str, datetime], tuple[float, float]]:
    """Every 1m aggregate row in the lake now: (service, series, start) -> (count, avg)."""
    store = open_store(settings.lake_url, settings.aws)
    out = {}
    for keys in aggregate_days(store, "1m").values():
        for r in read_windows(store, keys).rows:
            out[(r.service, r.series, r.window_start)] = (r.values["count"], r.values["avg"])
    return out


def mad_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    env.update({"MAD_DATA_DIR": str(settings.data_dir), "MAD_STATE__URL": settings.state_url})
    return subprocess.run([sys.executable, "-m", "mad.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or math.isclose(a[1], b[1], rel_tol=1e-9)
                             or (math.isnan(a[1]) and math.isnan(b[1])))


def test_no_window_is_scored_before_it_is_complete(tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "state.url": f"sqlite:///{tmp_path / 'state.db'}",
        "etl.windows": ["1m"], "etl.engine.duckdb.memory_limit": "1GB",
        "quality.enabled": False, "detect.detector.ensemble.warmup": 30,
        "detect.checkpoint_s": 0})
    gs = GenerateSettings(start=T, duration="42m", rate=10.0, seed=5, faults=FaultRates(
        late=0.01, late_max_hours=0.5, skewed_hosts=0))
    sim, delivery, start, end = build(gs)
    ahead = sim.hosts["payments"][0]
    ahead.skew_s = AHEAD_S  # this host's clock is 2 minutes ahead
    quiet_from, quiet_to = start + 15 * 60, start + 24 * 60  # notifications sends nothing
    future_at = start + 12 * 60  # one event dated five hours ahead arrives
    lake = Lake(settings)
    etl = EtlRunner(settings)
    detect = DetectRunner(settings)
    Key = tuple[str, str, datetime]
    scored: dict[Key, tuple[int, tuple[float, float]]] = {}  # -> (pass, value when scored)
    old_rule: dict[Key, tuple[int, tuple[float, float]]] = {}  # what `hold_windows: 1`
    # would have scored, and when
    passes: list[tuple[float, Any]] = []  # (arrival clock, summary)
    before: dict[tuple[str, str], datetime] = {}  # the marks after the previous pass
    t = int(start)
    try:
        while t < end:
            delivery.add(sim.events(t, t + STEP_S))
            arrived = float(t + STEP_S)
            sent = delivery.release(arrived) if arrived < end else delivery.release()
            for raw in sent:
                lake.add(raw, arrived)
            lake.lines[lake.written:] = [
                ln for ln in lake.lines[lake.written:]
                if not (ln.service == QUIET and quiet_from <= ln.arrived < quiet_to)]
            if t == future_at:
                rec = orjson.loads(next(ln.raw for ln in reversed(lake.lines)
                                        if ln.service == "accounts" and ln.stamped))
                rec.update(event_id=uuid.uuid4().hex, timestamp=iso_utc(arrived + 5 * 3600))
                lake.add(orjson.dumps(rec), arrived)
            t += STEP_S
            if (t - start) % PASS_S and t < end:
                continue
            lake.flush()
            etl.run_once()
            summary = detect.run_once()
            assert detect.progress is not None
            marks = detect.progress.marks
            now = lake_rows(settings)
            newest = max(k[2] for k in now)
            for key, value in now.items():
                mark, prev = marks.get(key[:2]), before.get(key[:2])
                if mark is not None and key[2] <= mark and (prev is None or key[2] > prev):
                    assert key not in scored  # never scored twice
                    scored[key] = (len(passes), value)
                elif key[2] < newest and key not in scored:
                    old_rule.setdefault(key, (len(passes), value))
            passes.append((float(t), summary))
            before = dict(marks)
            if len(passes) == 7:  # a restart: the next runner resumes from the checkpoint
                detect.close()
                detect = DetectRunner(settings)
    finally:
        detect.close()
        etl.close()

    # the watermark stayed behind what had arrived: neither the host 2 minutes ahead nor the
    # event five hours ahead moved it, and the quiet service did not stop it
    for arrived, summary in passes:
        assert summary.event_watermark is not None
        assert summary.event_watermark <= datetime.fromtimestamp(arrived, UTC), summary.line()
    assert [s.windows for a, s in passes if quiet_from + 240 <= a < quiet_to] and all(
        s.windows > 0 for a, s in passes if quiet_from + 240 <= a < quiet_to)
    assert any(k[0] == QUIET and k[2] >= datetime.fromtimestamp(quiet_to, UTC) for k in scored)

    engine = open_state(settings.state_url)
    try:
        clocks = EventClocks(engine).sources("1m")
        late = ScoredStore(engine).late("1m", limit=100_000)
    finally:
        engine.dispose()
    final = lake_rows(settings)
    # every scored window equals its final value, except those late events changed or
    # created (a window the watermark had passed with no row: only late events are in it),
    # and exactly those are counted as late
    changed = {k for k, (_, v) in scored.items() if not same(v, final[k])}
    appeared = {k for k in final if k not in scored and k[:2] in before
                and k[2] <= before[k[:2]]}
    assert changed, "no late event reached a scored window: the test shows nothing"
    assert {(r["service"], r["series"], r["window_start"]) for r in late["recent"]} == \
        changed | appeared
    assert all(r["scored_count"] == 0 for r in late["recent"]
               if (r["service"], r["series"], r["window_start"]) in appeared)
    added = sum(final[k][0] - (scored[k][1][0] if k in scored else 0)
                for k in changed | appeared if k[1] == "events")
    assert late["windows"] == len(changed | appeared) and late["events"] == added > 0

    # what reached a window after it was scored was late (sent 10+ minutes after its
    # time); on-time events reached windows that the old rule would have scored already
    arrivals = [a for a, _ in passes]
    seen: set[str] = set()
    on_time_after_old_rule = 0
    for line in lake.lines:
        if line.event_id is None or line.stamped is None or line.event_id in seen:
            continue
        seen.add(line.event_id)
        key = (line.service, "events", datetime.fromtimestamp(line.stamped // 60 * 60, UTC))
        came_in = next(i for i, a in enumerate(arrivals) if line.arrived <= a)
        if (key in scored and came_in > scored[key][0]) or key in appeared:
            assert line.arrived - line.stamped >= 600, (line, scored.get(key))
        if key in old_rule and came_in > old_rule[key][0] and \
                line.arrived - line.stamped < 600:
            on_time_after_old_rule += 1
    assert on_time_after_old_rule > 0

    # the event five hours ahead moved its own source only to the end of its ingest hour
    future = [c for c in clocks if c.newest_event > datetime.fromtimestamp(end + 600, UTC)]
    assert future and all(c.service == "accounts" for c in future)
    assert all(c.newest_event <= datetime(2026, 11, 1, 11, tzinfo=UTC) for c in future)
    skewed = [c for c in clocks if c.host == ahead.name]
    assert skewed and max(c.newest_event for c in skewed) > datetime.fromtimestamp(end, UTC)

    status = mad_cli(settings, "detect", "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    data = orjson.loads(status.stdout)
    assert data["late"]["windows"] == len(changed | appeared)
    assert data["late"]["events"] == added
    assert data["watermark"]["basis"] in ("hosts", "previous")
    assert data["watermark"]["sources"] == len(clocks)
    text = mad_cli(settings, "detect", "status").stdout
    assert f"late after scoring: {len(changed | appeared)} series windows" in text
    assert sum(s.late_windows for _, s in passes) >= len(changed | appeared)
    assert any("late after scoring" in s.line() for _, s in passes)
