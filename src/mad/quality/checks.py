"""Judge one ETL run's measurements: thresholds, seasonal baselines and the history detector.

Input: the rows of the measuring plans (`mad.quality.plans`), the run's counts and sizes
(`RunFacts`), the settings, and the history of earlier results (`History`: the latest value
of a metric per partition, from `QualityStore.latest`). Output: `Result` rows, one per
metric, each with its threshold and verdict. Pure: no I/O besides the history reads.

Per partition (`date=YYYY-MM-DD/hour=HH` of the transformed dataset):
- completeness: the null rate of each required column, at most `max_null_rate`;
- uniqueness: `event_id`s that appear twice in the partition, which must be 0;
- validity: rows with an unknown level, a negative measurement, a status code outside
  100-599 or an event time past the end of its ingest hour by more than the skew tolerance,
  each at most `max_invalid_rate`;
- volume: rows against the seasonal baseline, the median of the same hour on the `days`
  earlier days and the same hour of the week on `weeks` earlier weeks; with fewer than
  `min_history` of those, the median of the `recent_hours` before it, which only warns (a
  daily cycle moves traffic several-fold within hours). The result says the expected range
  and the deviation. An hour that ends within `FILLING_S` of the newest event time seen is
  still filling and is not judged;
- distribution: each numeric series' mean and p95 against the same baseline, a relative
  shift of at most `max_shift`; a series with fewer than `min_rows` values is not judged;
- schema: fields outside the catalog (top-level keys of `extra`), with an example;
- history: volume and every judged mean and p95 replayed through the configured streaming
  detector (`quality.history`, Page's CUSUM by default) as ratios to the median of the same
  hour on earlier days; a score at or above `threshold` flags a drift or a drop that crosses
  no fixed threshold.

Per run (partition `*`):
- reconciliation: raw lines in = new events + duplicates + quarantined;
- uniqueness: the share of raw lines that were re-sends (warn above `max_duplicate_rate`),
  and ids reused across partitions (quarantined, counted);
- completeness / validity: lines quarantined for a missing envelope field, and for any other
  reason, as shares of the lines in;
- schema: known fields given a value of the wrong JSON type, with an example;
- freshness: event time to lake time, p50 and p95, for runs over files ingested in the last
  `LIVE_S` (a backfill's lag is its age, not a delay);
- counts shown but not judged (status `info`): quarantined lines per reason, late arrivals,
  lines of hosts with skewed clocks, compression (raw bytes / Parquet bytes).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mad.config import QualitySettings
from mad.detect.detectors import create
from mad.quality.model import RUN, Result, Severity, Status

FILLING_S = 600  # an hour is complete once events 10 min past its end have been seen
LIVE_S = 3 * 3600  # freshness is judged for runs over files ingested this recently
MISSING_REASONS = ("missing_field",)
NOT_REJECTED = ("missing_field", "reused_event_id")

History = Callable[[str, str, str, str, Iterable[str]], dict[str, float]]
"""(dataset, check, column, metric, partitions) -> {partition: latest value}."""


@dataclass
class RunFacts:
    """What one events run measured and counted."""

    run_id: str
    dataset: str  # the transformed dataset it writes
    counts: dict[str, int]  # the engine's counts: count_in, count_new, count_duplicates, ...
    measures: list[dict[str, Any]]  # rows of partition_plan's `measures`
    quarantine: list[dict[str, Any]] = field(default_factory=list)  # quarantine_plan's
    raw_bytes: int = 0  # of the run's raw files
    parquet_bytes: int = 0  # the Parquet the run adds (staged minus what it replaces)
    newest_ingest: datetime | None = None  # the latest ingest hour among its files
    newest_event: float | None = None  # epoch s of the newest event seen in the lake
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def partition_hour(partition: str) -> datetime | None:
    """The start of `date=YYYY-MM-DD/hour=HH`, UTC; None for anything else."""
    try:
        date, hour = partition.split("/")
        return datetime.strptime(f"{date[5:]} {hour[5:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError:
        return None


def partition_key(at: datetime) -> str:
    return f"date={at:%Y-%m-%d}/hour={at:%H}"


class Judge:
    """Turns one run's facts into results (see the module docstring)."""

    def __init__(self, settings: QualitySettings, history: History) -> None:
        self.s = settings
        self.history = history
        self._seen: dict[tuple[str, str, str], dict[str, float]] = {}  # this run's values
        self._hours: dict[datetime, list[str]] = {}

    def judge(self, run: RunFacts) -> list[Result]:
        by_part: dict[str, list[dict[str, Any]]] = {}
        for m in run.measures:
            part = RUN if m["date"] == "*" else f"date={m['date']}/hour={m['hour']}"
            by_part.setdefault(part, []).append(m)
        newest = run.newest_event
        for m in run.measures:
            if m["metric"] == "newest_s" and m["value"] is not None:
                newest = max(newest or 0.0, float(m["value"]))
        out: list[Result] = []
        for part in sorted(p for p in by_part if p != RUN):
            out += self._partition(run, part, by_part[part], newest)
        out += self._run(run, by_part.get(RUN, []) + run.quarantine)
        return out

    # -- per partition ---------------------------------------------------------------------

    def _partition(self, run: RunFacts, part: str, rows: list[dict[str, Any]],
                   newest: float | None) -> list[Result]:
        s = self.s
        ds = run.dataset
        start = partition_hour(part)
        filling = start is not None and newest is not None and (
            start.timestamp() + 3600 + FILLING_S > newest)
        out: list[Result] = []
        values = {(m["chk"], m["col"], m["metric"]): m for m in rows}
        for (chk, col, metric), m in sorted(values.items()):
            v = _num(m)
            base = Result(ds, part, chk, col, metric, v)
            if chk == "completeness" and s.completeness.enabled:
                out.append(self._limit(base, s.completeness.max_null_rate, s.completeness))
            elif chk == "uniqueness" and s.uniqueness.enabled:
                out.append(self._limit(base, 0.0, s.uniqueness))
            elif chk == "validity" and s.validity.enabled:
                out.append(self._limit(base, s.validity.max_invalid_rate, s.validity))
            elif chk == "schema" and s.schema_drift.enabled:
                out.append(self._verdict(base, "warn" if v > 0 else "pass", 0.0,
                                         s.schema_drift, f"new field {col!r} in {v:.0f} rows, "
                                         f"e.g. {m.get('detail') or ''}"))
            elif chk == "volume" and s.volume.enabled:
                out += self._volume(base, filling)
            elif chk == "distribution" and metric in ("mean", "p95") and s.distribution.enabled:
                count = _num(values.get(("distribution", col, "values")))
                out += self._distribution(base, filling, count)
        return out

    def _volume(self, r: Result, filling: bool) -> list[Result]:
        cfg = self.s.volume
        self._remember(r)
        found = self._history_of(r, filling)
        if isinstance(found, Result):
            return [found]
        base, n, how = found
        lo, hi = base * cfg.min_ratio, base * cfg.max_ratio
        ok = lo <= r.value <= hi
        dev = (r.value / base - 1.0) if base else math.inf
        detail = (f"expected {lo:.0f} to {hi:.0f} (baseline {base:.0f}, median of {n} "
                  f"{how}); deviation {dev:+.0%}")
        severity: Severity = cfg.severity if how != "recent hours" else "warn"
        status: Status = "pass" if ok else ("fail" if severity == "error" else "warn")
        out = [Result(r.dataset, r.partition, r.check, r.column, r.metric, r.value,
                      threshold=lo if r.value < lo else hi, status=status, severity=severity,
                      gate=cfg.gates and severity == "error", detail=detail)]
        return out + self._drift(r)

    def _distribution(self, r: Result, filling: bool, count: float) -> list[Result]:
        cfg = self.s.distribution
        if count < cfg.min_rows:
            return [r.judged("skip", detail=f"{count:.0f} values (fewer than {cfg.min_rows})")]
        self._remember(r)
        found = self._history_of(r, filling)
        if isinstance(found, Result):
            return [found]
        base, n, how = found
        shift = abs(r.value - base) / max(abs(base), 1e-9)
        status: Status = "pass" if shift <= cfg.max_shift else _bad(cfg.severity)
        out = [Result(r.dataset, r.partition, r.check, r.column, f"{r.metric}_shift", shift,
                      threshold=cfg.max_shift, status=status, severity=cfg.severity,
                      gate=cfg.gates, detail=f"{r.metric} {r.value:.4g} against baseline "
                      f"{base:.4g} (median of {n} {how})")]
        # the value itself, kept for the history (shown, not judged)
        out.append(r.judged("info", detail="the value the shift is measured on"))
        return out + self._drift(r)

    def _history_of(self, r: Result, filling: bool) -> tuple[float, int, str] | Result:
        """`r`'s baseline, how many points it is the median of and of which hours; or `r`
        marked skipped, when its hour is still filling or its history too short."""
        if filling:
            return r.judged("skip", detail="the hour is still filling")
        base, n, how = self._baseline(r)
        if base is None:
            return r.judged("skip", detail=f"{n} of {self.s.volume.min_history} earlier "
                            "points: not judged yet")
        return base, n, how

    def _baseline(self, r: Result) -> tuple[float | None, int, str]:
        """The seasonal baseline of `r`'s metric, or the recent one, with how many points."""
        cfg = self.s.volume
        start = partition_hour(r.partition)
        if start is None:
            return None, 0, ""
        seasonal = [start - timedelta(days=d) for d in range(1, cfg.days + 1)]
        seasonal += [start - timedelta(weeks=w) for w in range(1, cfg.weeks + 1)]
        found = self._values(r, [partition_key(t) for t in dict.fromkeys(seasonal)])
        if len(found) >= cfg.min_history:
            return statistics.median(found), len(found), "same hours on earlier days"
        recent = [partition_key(start - timedelta(hours=h))
                  for h in range(1, cfg.recent_hours + 1)]
        near = self._values(r, recent)
        if len(near) >= cfg.min_history:
            return statistics.median(near), len(near), "recent hours"
        return None, max(len(found), len(near)), ""

    def _values(self, r: Result, partitions: list[str]) -> list[float]:
        key = (r.check, r.column, r.metric)
        mine = self._seen.get(key, {})
        stored = self.history(r.dataset, *key, partitions)
        return [mine.get(p, stored.get(p)) for p in partitions  # type: ignore[misc]
                if p in mine or p in stored]

    def _remember(self, r: Result) -> None:
        self._seen.setdefault((r.check, r.column, r.metric), {})[r.partition] = r.value

    def _drift(self, r: Result) -> list[Result]:
        """Replay the metric's history (ratios to the same hour on earlier days) through the
        history detector; flag when the current point scores at or above the threshold."""
        cfg = self.s.history
        start = partition_hour(r.partition)
        if not cfg.enabled or start is None:
            return []
        keys = self._before(start)
        key = (r.check, r.column, r.metric)
        series = {**self.history(r.dataset, *key, keys), **{
            p: v for p, v in self._seen.get(key, {}).items() if p < r.partition}}
        series[r.partition] = r.value
        ratios = _same_hour_ratios(series)
        if not ratios or ratios[-1][0] != r.partition:
            return []
        detector = create(cfg.detector, **cfg.options)
        score = 0.0
        for part, ratio in ratios[-cfg.points:]:
            t = (partition_hour(part) or start).timestamp()
            score = detector.score_one(ratio, t)
            detector.learn_one(ratio, t)
        status: Status = "pass" if score < cfg.threshold else _bad(cfg.severity)
        return [Result(r.dataset, r.partition, "history", r.column, f"{r.metric}_drift_score",
                       score, threshold=cfg.threshold, status=status, severity=cfg.severity,
                       gate=cfg.gates, detail=f"{cfg.detector} over {len(ratios)} hours of "
                       f"{r.check} {r.metric} as ratios to the same hour on earlier days; "
                       f"now {ratios[-1][1]:.3f}")]

    def _before(self, start: datetime) -> list[str]:
        """The hours the drift detector replays before `start` (its points, and a week more
        for the first points' same-hour medians), oldest first; made once per hour."""
        if start not in self._hours:
            span = self.s.history.points + 24 * 7
            self._hours[start] = [partition_key(start - timedelta(hours=h))
                                  for h in range(span, 0, -1)]
        return self._hours[start]

    # -- per run ---------------------------------------------------------------------------

    def _run(self, run: RunFacts, rows: list[dict[str, Any]]) -> list[Result]:
        s = self.s
        ds = run.dataset
        c = run.counts
        lines_in = c.get("count_in", 0)
        new, dup, quar = (c.get("count_new", 0), c.get("count_duplicates", 0),
                          c.get("count_quarantined", 0))
        reasons = {str(m["col"]): _num(m) for m in rows if m["chk"] == "quarantine"}
        out: list[Result] = []
        if s.reconciliation.enabled:
            gap = lines_in - (new + dup + quar)
            out.append(self._verdict(
                Result(ds, RUN, "reconciliation", "*", "unaccounted_lines", float(gap)),
                "pass" if gap == 0 else _bad(s.reconciliation.severity), 0.0,
                s.reconciliation, f"{lines_in} lines in = {new} new + {dup} duplicates + "
                f"{quar} quarantined" + ("" if gap == 0 else f"; {gap} unaccounted")))
        share = (lambda n: n / lines_in) if lines_in else (lambda n: 0.0)
        if s.uniqueness.enabled:
            rate = share(dup)
            out.append(self._verdict(
                Result(ds, RUN, "uniqueness", "event_id", "duplicate_rate", rate),
                "pass" if rate <= s.uniqueness.max_duplicate_rate else "warn",
                s.uniqueness.max_duplicate_rate, s.uniqueness,
                f"{dup} of {lines_in} raw lines were re-sends", severity="warn"))
            out.append(Result(ds, RUN, "uniqueness", "event_id", "reused_ids",
                              float(c.get("count_reused", 0)), status="info",
                              detail="ids already used in another partition (quarantined)"))
        if s.completeness.enabled:
            missing = sum(reasons.get(r, 0.0) for r in MISSING_REASONS)
            out.append(self._limit(Result(ds, RUN, "completeness", "envelope",
                                          "missing_rate", share(missing)),
                                   s.completeness.max_missing_rate, s.completeness,
                                   f"{missing:.0f} lines without a required envelope field"))
        if s.validity.enabled:
            rejected = sum(v for r, v in reasons.items() if r not in NOT_REJECTED)
            out.append(self._limit(Result(ds, RUN, "validity", "line", "rejected_rate",
                                          share(rejected)),
                                   s.validity.max_rejected_rate, s.validity,
                                   f"{rejected:.0f} lines quarantined as invalid"))
        for reason, n in sorted(reasons.items()):
            out.append(Result(ds, RUN, "validity", reason, "quarantined_lines", n,
                              status="info", detail="quarantined with this reason"))
        if s.schema_drift.enabled:
            for m in rows:
                if m["chk"] == "schema" and m["metric"] == "retyped":
                    out.append(self._verdict(
                        Result(ds, RUN, "schema", str(m["col"]), "retyped", _num(m)),
                        "pass" if _num(m) <= s.schema_drift.max_retyped
                        else _bad(s.schema_drift.severity), float(s.schema_drift.max_retyped),
                        s.schema_drift, f"e.g. {m.get('detail') or ''}"))
        if s.freshness.enabled:
            out += self._freshness(run, rows)
        out += [Result(ds, RUN, "validity", "event_time", "late_arrivals",
                       float(c.get("count_late_arrival", 0)), status="info",
                       detail="arrived more than 10 min behind newer events of their file"),
                Result(ds, RUN, "validity", "host", "skewed_clock_lines",
                       float(c.get("count_skewed", 0)), status="info",
                       detail="lines of hosts whose clocks run more than 15 s off")]
        if run.parquet_bytes > 0 and run.raw_bytes > 0:
            out.append(Result(ds, RUN, "compression", "*", "raw_to_parquet",
                              run.raw_bytes / run.parquet_bytes, status="info",
                              detail=f"{run.raw_bytes} raw bytes, {run.parquet_bytes} Parquet "
                              "bytes added"))
        return out

    def _freshness(self, run: RunFacts, rows: list[dict[str, Any]]) -> list[Result]:
        cfg = self.s.freshness
        live = run.newest_ingest is not None and (
            run.now - run.newest_ingest).total_seconds() <= LIVE_S
        out = []
        for m in rows:
            if m["chk"] != "freshness" or m["value"] is None:
                continue
            r = Result(run.dataset, RUN, "freshness", str(m["col"]), str(m["metric"]), _num(m))
            if not live:
                out.append(r.judged("skip", detail="a backfill: its files were ingested "
                                    "over 3 h ago"))
            elif m["metric"] == "lake_lag_p95_s":
                out.append(self._limit(r, cfg.max_p95_s, cfg))
            else:
                out.append(r.judged("info"))
        return out

    # -- verdicts --------------------------------------------------------------------------

    def _limit(self, r: Result, limit: float, cfg: Any, detail: str = "") -> Result:
        status: Status = "pass" if r.value <= limit else _bad(cfg.severity)
        if not detail:
            detail = (f"{r.value:.2%} (at most {limit:.2%})" if r.metric.endswith("_rate")
                      else f"{r.value:g} (at most {limit:g})")
        return self._verdict(r, status, limit, cfg, detail)

    def _verdict(self, r: Result, status: Status, threshold: float, cfg: Any,
                 detail: str = "", severity: Severity | None = None) -> Result:
        sev: Severity = severity or cfg.severity
        return Result(r.dataset, r.partition, r.check, r.column, r.metric, r.value,
                      threshold=threshold, status=status, severity=sev,
                      gate=bool(cfg.gates) and sev == "error", detail=detail or r.detail)


def _bad(severity: Severity) -> Status:
    return "fail" if severity == "error" else "warn"


def _num(m: dict[str, Any] | None) -> float:
    if m is None or m.get("value") is None:
        return 0.0
    v = float(m["value"])
    return v if math.isfinite(v) else 0.0


def _same_hour_ratios(series: dict[str, float]) -> list[tuple[str, float]]:
    """Each point divided by the median of the same hour on up to 7 earlier days of
    `series` (partition -> value), oldest first; points without an earlier day are left
    out, and so are those whose median is 0."""
    by_hour: dict[str, list[float]] = {}
    out: list[tuple[str, float]] = []
    for part in sorted(series):
        hour = part.rsplit("/", 1)[-1]
        earlier = by_hour.setdefault(hour, [])
        value = series[part]
        if earlier:
            base = statistics.median(earlier[-7:])
            if base:
                out.append((part, value / base))
        earlier.append(value)
    return out


def worst(results: Sequence[Result]) -> list[Result]:
    """Failed first, then warnings, then the rest; by dataset, partition and check."""
    rank = {"fail": 0, "warn": 1, "pass": 2, "info": 3, "skip": 4}
    return sorted(results, key=lambda r: (rank[r.status], r.dataset, r.partition, r.check,
                                          r.column, r.metric))
