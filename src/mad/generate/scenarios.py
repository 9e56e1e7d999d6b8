"""Incident scenarios: what breaks, where, for how long, and which series show it.

A scenario turns into an `Incident` with a start, an end, the services involved, the origin
and the affected series (what an operator would look at). Its `effect` adds multipliers to the
per-second service state; `state.py` then propagates them along the dependency graph, so a
slow database makes payments slow and raises the gateway's 5xx rate without the scenario
having to say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mad.catalog import DEPENDS_ON, SERVICES
from mad.errors import ConfigError

Effects = dict[tuple[str, str], np.ndarray]  # (service, factor) -> multiplier per second


@dataclass(frozen=True)
class Affected:
    """One series an incident moves: `stat` of `series` for `service`, going `direction`."""

    service: str
    series: str  # a metrics key, or "events" (count) / "error_rate"
    stat: str  # "avg" | "count" | "rate"
    direction: str  # "up" | "down"
    kind: str = ""  # restricts to one kind ("log" | "metric" | "apm"); "" = any


@dataclass(frozen=True)
class Incident:
    id: str
    scenario: str
    start: float  # epoch seconds, UTC
    end: float
    origin: str
    services: tuple[str, ...]
    affected: tuple[Affected, ...]
    magnitude: float
    description: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_label(self) -> dict[str, Any]:
        from mad.generate.timefmt import iso_utc

        out = asdict(self)
        out["start"], out["end"] = iso_utc(self.start), iso_utc(self.end)
        out["services"] = list(self.services)
        out["affected"] = [asdict(a) for a in self.affected]
        return out

    def ramp(self, seconds: np.ndarray) -> np.ndarray:
        """0 outside the incident, 0->1 linearly across it (for leaks and backlogs)."""
        span = max(self.end - self.start, 1.0)
        return np.clip((seconds - self.start) / span, 0.0, 1.0) * self.active(seconds)

    def active(self, seconds: np.ndarray) -> np.ndarray:
        return ((seconds >= self.start) & (seconds < self.end)).astype(np.float64)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    targets: tuple[str, ...]
    build: Callable[[str, float], tuple[tuple[str, ...], tuple[Affected, ...]]]
    effect: Callable[[Incident, np.ndarray], Effects]
    magnitude: tuple[float, float]


def _callers(service: str) -> tuple[str, ...]:
    return tuple(s for s in SERVICES if service in DEPENDS_ON[s])


def _step(factor: str) -> Callable[[Incident, np.ndarray], Effects]:
    def effect(inc: Incident, sec: np.ndarray) -> Effects:
        return {(inc.origin, factor): 1.0 + (inc.magnitude - 1.0) * inc.active(sec)}

    return effect


def _latency_regression(svc: str, mag: float) -> tuple[tuple[str, ...], tuple[Affected, ...]]:
    return (svc, *_callers(svc)), (
        Affected(svc, "latency_ms", "avg", "up", "log"),
        Affected(svc, "duration_ms", "avg", "up", "apm"),
    )


def _error_burst(svc: str, mag: float) -> tuple[tuple[str, ...], tuple[Affected, ...]]:
    return (svc, *_callers(svc)), (Affected(svc, "error_rate", "rate", "up"),)


def _traffic_drop(svc: str, mag: float) -> tuple[tuple[str, ...], tuple[Affected, ...]]:
    return SERVICES, (
        Affected("gateway", "events", "count", "down", "log"),
        Affected("payments", "events", "count", "down", "log"),
    )


def _traffic_effect(inc: Incident, sec: np.ndarray) -> Effects:
    m = 1.0 + (inc.magnitude - 1.0) * inc.active(sec)
    return {(s, "traffic"): m for s in SERVICES}


def _memory_leak(svc: str, mag: float) -> tuple[tuple[str, ...], tuple[Affected, ...]]:
    return (svc,), (
        Affected(svc, "memory_mb", "avg", "up", "metric"),
        Affected(svc, "gc_pause_ms", "avg", "up", "metric"),
    )


def _leak_effect(inc: Incident, sec: np.ndarray) -> Effects:
    grow = 1.0 + (inc.magnitude - 1.0) * inc.ramp(sec)
    return {(inc.origin, "memory"): grow, (inc.origin, "latency"): 1.0 + 0.25 * (grow - 1.0)}


def _queue_backlog(svc: str, mag: float) -> tuple[tuple[str, ...], tuple[Affected, ...]]:
    return (svc,), (
        Affected(svc, "queue_depth", "avg", "up", "metric"),
        Affected(svc, "consumer_lag_s", "avg", "up", "metric"),
    )


def _backlog_effect(inc: Incident, sec: np.ndarray) -> Effects:
    grow = 1.0 + (inc.magnitude - 1.0) * inc.ramp(sec)
    return {(inc.origin, "queue"): grow}


def _dependency_outage(svc: str, mag: float) -> tuple[tuple[str, ...], tuple[Affected, ...]]:
    callers = _callers(svc)
    affected = [Affected(svc, "error_rate", "rate", "up")]
    affected += [Affected(c, "error_rate", "rate", "up") for c in callers]
    return (svc, *callers, *(c2 for c in callers for c2 in _callers(c))), tuple(affected)


def _outage_effect(inc: Incident, sec: np.ndarray) -> Effects:
    on = inc.active(sec)
    return {
        (inc.origin, "errors"): 1.0 + (inc.magnitude - 1.0) * on,
        (inc.origin, "latency"): 1.0 + 5.0 * on,
    }


def _database_slowdown(svc: str, mag: float) -> tuple[tuple[str, ...], tuple[Affected, ...]]:
    return ("accounts", "payments", "auth", "gateway"), (
        Affected("accounts", "db_time_ms", "avg", "up", "apm"),
        Affected("payments", "latency_ms", "avg", "up", "log"),
        Affected("gateway", "error_rate", "rate", "up"),
    )


def _db_effect(inc: Incident, sec: np.ndarray) -> Effects:
    m = 1.0 + (inc.magnitude - 1.0) * inc.active(sec)
    return {(s, "db"): m for s in ("auth", "accounts", "payments")}


def _fraud_spike(svc: str, mag: float) -> tuple[tuple[str, ...], tuple[Affected, ...]]:
    return ("fraud", "payments"), (
        Affected("fraud", "fraud_score", "avg", "up", "log"),
        Affected("fraud", "alerts", "count", "up", "log"),
    )


def _fraud_effect(inc: Incident, sec: np.ndarray) -> Effects:
    on = inc.active(sec)
    return {
        ("fraud", "fraud"): 1.0 + (inc.magnitude - 1.0) * on,
        ("fraud", "alerts"): 1.0 + (inc.magnitude * 3.0 - 1.0) * on,
        ("fraud", "amount"): 1.0 + 2.0 * on,
        ("payments", "amount"): 1.0 + 1.0 * on,
    }


def _auth_storm(svc: str, mag: float) -> tuple[tuple[str, ...], tuple[Affected, ...]]:
    return ("auth", "gateway"), (
        Affected("auth", "error_rate", "rate", "up"),
        Affected("gateway", "error_rate", "rate", "up"),
    )


def _auth_effect(inc: Incident, sec: np.ndarray) -> Effects:
    on = inc.active(sec)
    return {
        ("auth", "errors"): 1.0 + (inc.magnitude - 1.0) * on,
        ("gateway", "errors"): 1.0 + (inc.magnitude / 3.0 - 1.0) * on,
    }


_LEAVES = ("auth", "accounts", "fraud", "notifications", "payments")
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("latency_regression", "a deploy makes one service several times slower",
                 _LEAVES, _latency_regression, _step("latency"), (3.0, 5.0)),
        Scenario("error_burst", "one service fails a large share of its requests",
                 _LEAVES, _error_burst, _step("errors"), (15.0, 30.0)),
        Scenario("traffic_drop", "an upstream routing fault cuts traffic everywhere",
                 ("gateway",), _traffic_drop, _traffic_effect, (0.2, 0.35)),
        Scenario("memory_leak", "memory grows steadily, GC pauses with it",
                 SERVICES, _memory_leak, _leak_effect, (2.2, 3.0)),
        Scenario("queue_backlog", "the notification consumers fall behind",
                 ("notifications",), _queue_backlog, _backlog_effect, (25.0, 60.0)),
        Scenario("dependency_outage", "a dependency goes down; callers fail with it",
                 ("accounts", "fraud"), _dependency_outage, _outage_effect, (30.0, 50.0)),
        Scenario("database_slowdown", "the core database slows; db users and the gateway suffer",
                 ("accounts",), _database_slowdown, _db_effect, (6.0, 10.0)),
        Scenario("fraud_spike", "a fraud ring: scores, alerts and amounts jump",
                 ("fraud",), _fraud_spike, _fraud_effect, (4.0, 6.0)),
        Scenario("auth_failure_storm", "an expired certificate fails logins and tokens",
                 ("auth",), _auth_storm, _auth_effect, (20.0, 35.0)),
    )
}


def resolve_scenarios(names: list[str]) -> list[str]:
    """Expand `all` / `none`, and reject unknown names with the list of known ones."""
    cleaned = [n.strip() for n in names if n.strip()]
    if cleaned in (["all"], []):
        return list(SCENARIOS)
    if cleaned == ["none"]:
        return []
    unknown = [n for n in cleaned if n not in SCENARIOS]
    if unknown:
        raise ConfigError(
            f"unknown scenario '{unknown[0]}' (known: {', '.join(SCENARIOS)}, all, none)"
        )
    return list(dict.fromkeys(cleaned))


def schedule(
    names: list[str], start: float, end: float, per_day: float, rng: np.random.Generator
) -> list[Incident]:
    """Place incidents without overlap after a warm-up; every scenario before any repeats."""
    span = end - start
    count = round(per_day * span / 86400.0) if names else 0
    if count == 0 or span < 1800:
        return []
    warmup = min(3600.0, 0.1 * span)
    slot = (span - warmup) / count
    order: list[str] = []
    while len(order) < count:
        order += [str(n) for n in rng.permutation(names)]
    incidents = []
    for i, name in enumerate(order[:count]):
        sc = SCENARIOS[name]
        length = float(np.clip(rng.uniform(0.3, 0.55) * slot, 120.0, 3 * 3600.0))
        lo = start + warmup + i * slot + 0.15 * slot
        t0 = float(round(rng.uniform(lo, max(lo, lo + 0.85 * slot - length - 0.15 * slot))))
        origin = str(rng.choice(sc.targets))
        mag = float(round(rng.uniform(*sc.magnitude), 2))
        services, affected = sc.build(origin, mag)
        incidents.append(
            Incident(
                id=f"inc-{i + 1:03d}",
                scenario=name,
                start=t0,
                end=t0 + round(length),
                origin=origin,
                services=tuple(dict.fromkeys(services)),
                affected=affected,
                magnitude=mag,
                description=sc.description,
            )
        )
    return incidents


def incident_effects(incidents: list[Incident], sec: np.ndarray) -> Effects:
    """Multiply together the effects of every incident overlapping these seconds."""
    out: Effects = {}
    if len(sec) == 0:
        return out
    lo, hi = float(sec[0]), float(sec[-1]) + 1
    for inc in incidents:
        if inc.end <= lo or inc.start >= hi:
            continue
        for key, mult in SCENARIOS[inc.scenario].effect(inc, sec).items():
            out[key] = out[key] * mult if key in out else mult
    return out
