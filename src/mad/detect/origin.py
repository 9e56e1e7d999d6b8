"""Where an incident started: when each series began to change, and the call graph.

A problem in one service shows in its callers too: a slow database raises the gateway's
latency and error rate, an auth certificate that expired fails the gateway's logins. The
caller's symptom often crosses its detector or rule first (a busier series, a lower
threshold), so the service whose anomaly came first is a poor guess. Two things do better:

- **Onsets.** `change_onset` estimates when a series began to leave its normal band, not
  when its detector crossed the threshold: it looks back over the scorer's recent values
  (the rolling baseline, `mad.detect.series`) from the first anomalous window, and walks
  back while the values lie on the same side of the median as the anomaly, beyond
  `ONSET_SIGMAS` robust sigmas, at most `ONSET_BACK` windows. The reference median and
  sigma come from the older values only, so the change does not hide itself.
- **The call graph** (`DEPENDS_ON` of the catalog; the APM spans carry a trace and span id
  but no parent, so they cannot confirm it): callers inherit their callees' failures, so
  among the services whose change began within `ONSET_TOLERANCE` windows of the earliest
  onset, one that calls (directly or not) another of them is not the origin.

`origin_of(evidence)`, one rule for every incident:

1. The series that count: those whose change held (anomalous in `HELD_WINDOWS` consecutive
   windows, or a threshold rule fired, which already waits for consecutive windows), with the
   other series of the same services that began at most the tolerance before the service's
   first held one (other signals of the same change, e.g. a pool wait that was flagged once
   before the latency rule fired). While none held: the critical ones (far out of their
   band); else all.
2. A service's onset is the earliest onset of its series that count.
3. Candidates: services whose onset lies within `ONSET_TOLERANCE` windows of the earliest.
   A candidate that calls another candidate is dropped; among those left, the deepest in the
   call graph wins (accounts over payments over gateway), then the earlier onset, then the
   name.

So a one-window blip elsewhere just before a real problem does not name the incident, and a
callee whose change began with its callers' (or before) is named even when their symptoms
crossed first. The series whose onset named the origin is marked in the evidence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np

from mad.catalog import DEPENDS_ON
from mad.detect.model import Evidence

ONSET_BACK = 10  # windows looked back at most from the first anomalous one
ONSET_SIGMAS = 2.0  # a value this far from the reference median is out of its band
ONSET_MIN_REFERENCE = 5  # values needed to tell the normal band
ONSET_TOLERANCE = 2  # windows: onsets this close count as simultaneous
HELD_WINDOWS = 2  # consecutive anomalous windows before a series' change counts as held
MAD_TO_SIGMA = 1.4826

Graph = Mapping[str, Sequence[str]]


def change_onset(values: Sequence[float], times: Sequence[float], t: float, x: float,
                 step: float, back: int = ONSET_BACK) -> float:
    """When the change seen at `t` (value `x`) began, in epoch seconds (at most `t`).

    `values` are the series' recent values before `t`, oldest first, and `times` their window
    starts (epoch seconds, same length). See the module doc.
    """
    n = min(len(values), len(times))
    values, times = list(values[len(values) - n:]), list(times[len(times) - n:])
    split = sum(1 for when in times if t - when > back * step + 1e-6)
    if split < ONSET_MIN_REFERENCE:
        split = n // 2  # a short history: its older half is the reference
    older = values[:split]
    if len(older) < ONSET_MIN_REFERENCE or not math.isfinite(x):
        return t
    ref = np.asarray(older, dtype=float)
    med = float(np.median(ref))
    sigma = float(np.median(np.abs(ref - med))) * MAD_TO_SIGMA
    dev = x - med
    if dev == 0:
        return t
    limit = ONSET_SIGMAS * sigma
    onset = t
    for j in range(n - 1, split - 1, -1):
        if t - times[j] > back * step + 1e-6:
            break
        v = values[j] - med
        if not (math.isfinite(v) and v * dev > 0 and abs(v) >= limit):
            break
        onset = times[j]
    return onset


def calls(service: str, graph: Graph = DEPENDS_ON) -> set[str]:
    """Every service `service` depends on, directly or through others."""
    seen: set[str] = set()
    todo = list(graph.get(service, ()))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(graph.get(dep, ()))
    return seen


def depth(service: str, graph: Graph = DEPENDS_ON, _seen: frozenset[str] = frozenset()) -> int:
    """Length of the longest call chain that reaches `service` (gateway 0, accounts 2)."""
    callers = [s for s, deps in graph.items() if service in deps and s not in _seen]
    return max((depth(c, graph, _seen | {service}) + 1 for c in callers), default=0)


def held(e: Evidence) -> bool:
    """Whether a series' change lasted: anomalous in `HELD_WINDOWS` consecutive windows, or
    a threshold rule fired (rules already wait for consecutive windows)."""
    return e.rule or e.longest >= HELD_WINDOWS


def _pool(items: list[Evidence], window_s: float,
          tolerance: int = ONSET_TOLERANCE) -> list[Evidence]:
    """The series that count for onsets. When some held: those, and the other series of
    their services that began at most `tolerance` windows before the service's first held
    one (its other signals of the same change); while none held, the critical ones (far out
    of their band); else all."""
    strong = [e for e in items if held(e)]
    if not strong:
        return [e for e in items if e.severity == "critical"] or items
    first: dict[str, datetime] = {}
    for e in strong:
        first[e.service] = min(first.get(e.service, e.onset), e.onset)
    slack = timedelta(seconds=window_s * tolerance)
    return [e for e in items if held(e)
            or (e.service in first and e.onset >= first[e.service] - slack)]


def service_onsets(evidence: Iterable[Evidence], window_s: float,
                   tolerance: int = ONSET_TOLERANCE) -> dict[str, datetime]:
    """Each service's change onset: the earliest onset of its series that count (`_pool`)."""
    out: dict[str, datetime] = {}
    for e in _pool(list(evidence), window_s, tolerance):
        if e.service not in out or e.onset < out[e.service]:
            out[e.service] = e.onset
    return out


def _named_by(evidence: list[Evidence], service: str, window_s: float,
              tolerance: int) -> Evidence | None:
    """The series that gave `service` its onset (the earliest of those that count)."""
    mine = [e for e in _pool(evidence, window_s, tolerance) if e.service == service]
    return min(mine, key=lambda e: (e.onset, e.first, e.key)) if mine else None


def choose_origin(onsets: Mapping[str, datetime], window_s: float,
                  tolerance: int = ONSET_TOLERANCE, graph: Graph = DEPENDS_ON) -> str:
    """The origin among services and their change onsets (see the module doc)."""
    earliest = min(onsets.values())
    slack = timedelta(seconds=window_s * tolerance)
    candidates = {s for s, t in onsets.items() if t - earliest <= slack}
    upstream = {s for s in candidates
                if not (calls(s, graph) & (candidates - {s}))} or candidates
    return min(upstream, key=lambda s: (-depth(s, graph), onsets[s], s))


def origin_of(evidence: Iterable[Evidence], window_s: float,
              tolerance: int = ONSET_TOLERANCE, graph: Graph = DEPENDS_ON
              ) -> tuple[str, str]:
    """The likely origin of an incident from its evidence (see the module doc), and the
    `service/series/stat` whose onset named it."""
    items = list(evidence)
    origin = choose_origin(service_onsets(items, window_s, tolerance), window_s, tolerance,
                           graph)
    named = _named_by(items, origin, window_s, tolerance)
    return origin, named.key if named is not None else ""
