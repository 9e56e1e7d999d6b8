"""`mad bench incidents`: detect incidents in a fresh simulated day and score them on its labels.

The run: generate `hours` of labelled traffic (a seed other than the default 7, so the
defaults are not judged on the data they were looked at with), split it into a raw lake as the
ingest path would, run the ETL and the detection pipeline with the default settings, then
match the detected incidents to the injected ones.

The detectors need about 300 points of history per series (the likelihood's warm-up), five
hours of 1-minute windows, and the seasonal member and the range detector need to have seen
a whole day (until then the morning ramp is "a value never seen" everywhere), so the first
`warmup_hours` (default 24) only teach them: labels that start before then are not scored, nor
detections that ended before then. The default 48 hours score one whole day.

Matching (pure, `score_incidents`): a detected incident spans its first anomalous window to the
end of its last; a label spans its start to its end plus `slack_s` (default 10 minutes, for
after-effects such as a backlog draining). They match when the spans overlap and they share at
least one service. Per scenario type:
- recall: labels matched by at least one detection / labels;
- precision: detections matched to this type / detections attributed to it, where an
  unmatched detection (a false positive) is attributed to the label nearest in time, so the
  after-effects and near-misses of a scenario count against that scenario;
- delay: first anomaly of the earliest matching detection - label start (median, minutes);
- origin: share of found labels whose finding detection names the injected origin service
  (the report's `origins` lists each found label with the origin injected and the one named).
A label is found when any detection matches it; a detection is correct when it matches any
label. A detection is attributed to the matching label whose start is nearest its own; a
second detection attributed to the same label is correct but reported as `split` (one problem,
two pages). A label found only by a detection that started more than 5 minutes before it (an
incident still open from an earlier problem) is reported as `carried`, without a delay.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from mad.detect.incidents import window_seconds
from mad.detect.model import Incident
from mad.errors import MadError

SLACK_S = 600.0
CARRIED_S = 300.0  # a detection that started this long before a label was already open
UNATTRIBUTED = "(none)"


@dataclass(frozen=True)
class Label:
    """One injected incident from labels.json."""

    id: str
    scenario: str
    start: datetime
    end: datetime
    services: tuple[str, ...]
    origin: str = ""


@dataclass(frozen=True)
class Detected:
    """One detected incident, as the scorer needs it."""

    id: str
    start: datetime  # first anomalous window start
    end: datetime  # end of the last anomalous window
    services: tuple[str, ...]
    origin: str = ""

    @classmethod
    def from_incident(cls, inc: Incident, window: str = "1m") -> Detected:
        end = inc.last_seen + timedelta(seconds=window_seconds(window))
        return cls(inc.id, _utc(inc.started), _utc(end), tuple(inc.services), inc.origin)


@dataclass
class TypeScore:
    scenario: str
    labels: int = 0
    found: int = 0  # labels matched
    detections: int = 0  # detections attributed to this type
    correct: int = 0  # of which matched a label
    split: int = 0  # matched detections beyond the first per label
    carried: int = 0  # labels found by a detection open since before them (no delay)
    origin_right: int = 0  # found labels whose first detection names the injected origin
    delays_s: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.found / self.labels if self.labels else None

    @property
    def precision(self) -> float | None:
        return self.correct / self.detections if self.detections else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def origin_share(self) -> float | None:
        return self.origin_right / self.found if self.found else None

    @property
    def median_delay_s(self) -> float | None:
        return statistics.median(self.delays_s) if self.delays_s else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(recall=self.recall, precision=self.precision, f1=self.f1,
                   median_delay_s=self.median_delay_s, origin_share=self.origin_share)
        return out


@dataclass
class Report:
    types: list[TypeScore]
    total: TypeScore
    matches: list[tuple[str, str]]  # (detected id, label id)
    missed: list[str]  # label ids
    false_positives: list[str]  # detected ids
    meta: dict[str, Any] = field(default_factory=dict)
    origins: list[dict[str, Any]] = field(default_factory=list)  # per found label: the
    # injected origin and the one its finding detection names

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "total": self.total.to_dict(),
            "types": [t.to_dict() for t in self.types],
            "matches": [{"detected": d, "label": lab} for d, lab in self.matches],
            "missed": self.missed,
            "false_positives": self.false_positives,
            "origins": self.origins,
        }


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"not an ISO-8601 time: {text!r}")
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def read_labels(path: Path) -> list[Label]:
    """The incidents of a `mad generate` labels.json; a bad file is a clear error."""
    try:
        data = orjson.loads(path.read_bytes())
        return [
            Label(str(x["id"]), str(x["scenario"]), _time(x["start"]), _time(x["end"]),
                  tuple(str(s) for s in x["services"]), str(x.get("origin", "")))
            for x in data["incidents"]
        ]
    except OSError as err:
        raise MadError(f"cannot read labels {path}: {err.strerror or err}") from None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise MadError(f"labels {path} are not a mad generate labels file: {err}") from None


def matches(det: Detected, label: Label, slack_s: float = SLACK_S) -> bool:
    """Overlap in time (label end extended by the slack) and at least one shared service."""
    label_end = label.end + timedelta(seconds=slack_s)
    return (det.start < label_end and label.start < det.end
            and bool(set(det.services) & set(label.services)))


def _distance(det: Detected, label: Label) -> float:
    """Seconds between the two spans (0 when they overlap)."""
    if det.end < label.start:
        return (label.start - det.end).total_seconds()
    if label.end < det.start:
        return (det.start - label.end).total_seconds()
    return 0.0


def score_incidents(
    labels: Sequence[Label], detected: Sequence[Detected], slack_s: float = SLACK_S,
    scored_from: datetime | None = None,
) -> Report:
    """Match detections to labels and score them per scenario type (see module doc)."""
    if scored_from is not None:
        scored_from = _utc(scored_from)
        labels = [x for x in labels if x.start >= scored_from]
        detected = [d for d in detected if d.end > scored_from]
    types: dict[str, TypeScore] = {}
    for lab in labels:
        types.setdefault(lab.scenario, TypeScore(lab.scenario)).labels += 1
    found: set[str] = set()
    attributed: set[str] = set()
    pairs: list[tuple[str, str]] = []
    origins: list[dict[str, Any]] = []
    false_positives = []
    for det in sorted(detected, key=lambda d: (d.start, d.id)):
        hits = [lab for lab in labels if matches(det, lab, slack_s)]
        if not hits:
            false_positives.append(det.id)
            near = min(labels, key=lambda x: (_distance(det, x), x.id), default=None)
            name = near.scenario if near is not None else UNATTRIBUTED
            types.setdefault(name, TypeScore(name)).detections += 1
            continue
        best = min(hits, key=lambda x: (abs((x.start - det.start).total_seconds()), x.id))
        row = types[best.scenario]
        row.detections += 1
        row.correct += 1
        row.split += 1 if best.id in attributed else 0
        attributed.add(best.id)
        for lab in hits:
            pairs.append((det.id, lab.id))
            if lab.id in found:
                continue
            found.add(lab.id)
            hit = types[lab.scenario]
            hit.found += 1
            right = bool(det.origin) and det.origin == lab.origin
            hit.origin_right += 1 if right else 0
            origins.append({"label": lab.id, "scenario": lab.scenario, "injected": lab.origin,
                            "detected": det.id, "named": det.origin, "right": right})
            if det.start < lab.start - timedelta(seconds=CARRIED_S):
                hit.carried += 1  # already open: no delay to measure
            else:
                hit.delays_s.append((det.start - lab.start).total_seconds())
    total = TypeScore("total")
    for row in types.values():
        total.labels += row.labels
        total.found += row.found
        total.detections += row.detections
        total.correct += row.correct
        total.split += row.split
        total.carried += row.carried
        total.origin_right += row.origin_right
        total.delays_s += row.delays_s
    missed = [lab.id for lab in labels if lab.id not in found]
    return Report(sorted(types.values(), key=lambda t: t.scenario), total, pairs, missed,
                  false_positives, origins=origins)


def _pct(value: float | None) -> str:
    return "   -" if value is None else f"{value:4.2f}"


def _minutes(seconds: float | None) -> str:
    return "    -" if seconds is None else f"{seconds / 60:5.1f}"


def render(report: Report) -> list[str]:
    """The table `mad bench incidents` prints."""
    head = (f"{'scenario':<20} {'labels':>6} {'found':>5} {'detect':>6} {'split':>5} "
            f"{'carry':>5} "
            f"{'prec':>4} {'recall':>6} {'F1':>4} {'delay(min)':>10} {'origin':>6}")
    lines = [head]
    for row in [*report.types, report.total]:
        lines.append(
            f"{row.scenario:<20} {row.labels:>6} {row.found:>5} {row.detections:>6} "
            f"{row.split:>5} {row.carried:>5} {_pct(row.precision):>4} {_pct(row.recall):>6} "
            f"{_pct(row.f1):>4} {_minutes(row.median_delay_s):>10} {_pct(row.origin_share):>6}"
        )
    return lines


# -- the whole run ---------------------------------------------------------------------------


@dataclass
class BenchOptions:
    work: Path
    seed: int = 20261127
    hours: float = 48.0
    warmup_hours: float = 24.0
    rate: float = 20.0
    slack_s: float = SLACK_S
    config: Path | None = None


def prepare(opts: BenchOptions, progress: bool = False) -> Path:
    """Generate the labelled traffic and split it into a raw lake; return labels.json."""
    from mad.config import GenerateSettings
    from mad.generate.backfill import run_backfill, write_json_atomic
    from mad.generate.raw_lake import split_backfill

    gen = opts.work / "generate"
    lake = opts.work / "lake"
    marker = opts.work / "bench-data.json"
    wanted = {"seed": opts.seed, "hours": opts.hours, "rate": opts.rate}
    if marker.exists():
        had = orjson.loads(marker.read_bytes())
        if had != wanted:
            raise MadError(f"{opts.work} holds a bench day of other options ({had}); "
                           "remove it or pass another --work")
        return gen / "labels.json"  # same day: reuse it, and the ETL that already ran on it
    if lake.exists() or (opts.work / "state.db").exists():
        raise MadError(f"{opts.work} holds a half-prepared bench day; remove it first")
    gs = GenerateSettings(duration=f"{round(opts.hours * 3600)}s", rate=opts.rate,
                          seed=opts.seed)
    run_backfill(gs, gen, progress=progress)
    tmp = opts.work / "lake.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    split_backfill(gen / "events.jsonl", tmp)
    tmp.rename(lake)
    write_json_atomic(marker, wanted)
    return gen / "labels.json"


def bench_settings(opts: BenchOptions) -> Any:
    """Default settings (or --config) with the lake, state and alerts inside the work folder."""
    from mad.config import load_settings

    work = str(opts.work)
    return load_settings(opts.config, env={}, overrides={
        "data_dir": work, "lake.url": str(opts.work / "lake"),
        "state.url": f"sqlite:///{opts.work / 'state.db'}",
        "detect.alerts.webhook_url": None,
    })


def run_bench(opts: BenchOptions, say: Callable[[str], None] = print) -> Report:
    """Prepare, run ETL and detection, and score; `say` gets one line per step."""
    from mad.etl.runner import EtlRunner

    try:
        opts.work.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MadError(f"cannot create {opts.work}: {err.strerror or err}") from None
    say(f"generating {opts.hours:g} h (seed {opts.seed}, rate {opts.rate:g}/s) in {opts.work}")
    labels_path = prepare(opts)
    labels = read_labels(labels_path)
    settings = bench_settings(opts)
    runner = EtlRunner(settings)
    for _ in range(100):  # every pass reads what the previous left; bounded all the same
        summary = runner.run_once()
        say(f"etl: {summary.line()}")
        if summary.runs == 0:
            break
    say("detecting")
    detected = detect_incidents(settings, say)
    start = _time(orjson.loads(labels_path.read_bytes())["start"])
    scored_from = start + timedelta(hours=opts.warmup_hours)
    report = score_incidents(labels, detected, opts.slack_s, scored_from)
    report.meta = {
        "seed": opts.seed, "hours": opts.hours, "warmup_hours": opts.warmup_hours,
        "rate": opts.rate, "slack_s": opts.slack_s, "scored_from": scored_from.isoformat(),
        "detected_total": len(detected),
        "detect": settings.detect.model_dump(mode="json", exclude={"alerts"}),
    }
    return report


def detect_incidents(settings: Any, say: Callable[[str], None] = print) -> list[Detected]:
    """Run the detection pipeline over the whole lake, from a fresh detection state (its own
    database beside the ETL's, so a rerun with other detect settings starts over), and return
    every incident it recorded."""
    from mad.detect.pipeline import DetectRunner

    work = Path(settings.data_dir)
    db = work / "detect.db"
    db.unlink(missing_ok=True)
    settings.alerts_path.unlink(missing_ok=True)
    detect = settings.model_copy(update={"state": settings.state.model_copy(
        update={"url": f"sqlite:///{db}"})})
    runner = DetectRunner(detect)
    try:
        summary = runner.run_once(progress=lambda b: say(
            f"detect: scored up to {b.last:%Y-%m-%d %H:%M}, {b.anomalies} anomalies, "
            f"{b.changes} incident changes"))
        say(summary.line())
        rows = runner.db.incidents(limit=1_000_000)
    finally:
        runner.close()
    window = settings.detect.window
    step = timedelta(seconds=window_seconds(window))
    return [Detected(str(r["id"]), _utc(r["started"]), _utc(r["last_seen"]) + step,
                     tuple(r["services"]), str(r["origin"])) for r in rows]


def write_report(report: Report, path: Path) -> None:
    from mad.generate.backfill import write_json_atomic

    write_json_atomic(path, report.to_dict())
