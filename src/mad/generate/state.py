"""Per-second state of every service: seasonality, incidents, and how they spread.

`service_state(seconds, incidents)` returns, for each service and each second, the factors
that scale what it emits (`traffic`, `latency`, `errors`, `memory`, ...). 1.0 means normal.
Knock-on effects follow the dependency graph in the catalog: a slow or failing dependency
slows its callers and raises their error rate; a slow database slows every database user.
"""

from __future__ import annotations

import numpy as np

from mad.catalog import DEPENDS_ON, SERVICES, USES_DATABASE
from mad.generate.scenarios import Incident, incident_effects

FACTORS = ("traffic", "latency", "db", "errors", "memory", "queue", "amount", "fraud", "alerts")
ASYNC_DEPENDENCIES = {("payments", "notifications")}
# Callers first need their dependencies computed.
ORDER = ("auth", "accounts", "fraud", "notifications", "payments", "gateway")


def _daily_profile() -> np.ndarray:
    h = np.arange(24 * 60) / 60.0
    shape = (
        0.3
        + 1.25 * np.exp(-(((h - 11.0) / 3.2) ** 2))
        + 0.85 * np.exp(-(((h - 19.5) / 2.4) ** 2))
        + 0.15 * np.exp(-(((h - 15.0) / 5.0) ** 2))
    )
    return shape / shape.mean()


DAILY = _daily_profile()  # one value per minute of the UTC day, mean 1
_WEEK = np.array([1.07, 1.08, 1.08, 1.07, 1.1, 0.86, 0.74])  # Monday first
WEEKLY = _WEEK / _WEEK.mean()


def seasonality(seconds: np.ndarray) -> np.ndarray:
    """Traffic multiplier for each epoch second: daily and weekly cycles, mean 1."""
    minute_of_day = ((seconds % 86400) // 60).astype(np.int64)
    weekday = ((seconds // 86400 + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
    return DAILY[minute_of_day] * WEEKLY[weekday]


def service_state(
    seconds: np.ndarray, incidents: list[Incident]
) -> dict[str, dict[str, np.ndarray]]:
    """`state[service][factor]` is an array aligned with `seconds`."""
    n = len(seconds)
    ones = np.ones(n)
    season = seasonality(seconds)
    effects = incident_effects(incidents, seconds)
    state: dict[str, dict[str, np.ndarray]] = {}
    for svc in ORDER:
        f = {name: effects.get((svc, name), ones).copy() for name in FACTORS}
        f["traffic"] *= season
        if svc in USES_DATABASE:
            f["latency"] *= 1.0 + 0.5 * (f["db"] - 1.0)
            f["errors"] *= 1.0 + 0.6 * (f["db"] - 1.0)
        for dep in DEPENDS_ON[svc]:
            weight = 0.05 if (svc, dep) in ASYNC_DEPENDENCIES else 0.4
            f["latency"] *= 1.0 + weight * (state[dep]["latency"] - 1.0)
            f["errors"] *= 1.0 + weight * 0.9 * (state[dep]["errors"] - 1.0)
        # Busy hosts run hotter; memory pressure costs CPU in garbage collection.
        f["cpu"] = (0.55 + 0.45 * f["traffic"]) * (1.0 + 0.3 * (f["memory"] - 1.0))
        state[svc] = f
    return {svc: state[svc] for svc in SERVICES}
