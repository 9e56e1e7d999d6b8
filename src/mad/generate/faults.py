"""Delivery: serialises events and injects the data faults real producers cause.

Exact duplicates (the same bytes re-sent), late events (sent 15 min to hours after their
event time), out-of-order delivery (up to 30 s), malformed records of five kinds and unknown
extra fields. Lines leave in send order; `release(until)` hands over every line whose send
time is before `until`. The faults use their own random stream, so changing a fault rate
never changes the events themselves. Every injected fault is counted for the labels file.

Margins keep "late" unambiguous for a consumer that tracks the highest event time seen: late
delays start at 15 min, while clock skew (<= 120 s), reordering (<= 30 s) and re-sends
(<= 60 s) stay far below the 10 min used to call an event late.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

import numpy as np
import orjson

from mad.config import FaultRates
from mad.generate.engine import Event, Host, paused_gc

LATE_MIN_S = 15 * 60.0
LATE_THRESHOLD_S = 10 * 60.0  # what a consumer should call late, given the margins above
OUT_OF_ORDER_MAX_S = 30.0
RESEND_MAX_S = 60.0
MALFORMED_KINDS = ("truncated_json", "missing_field", "wrong_type", "bad_timestamp",
                   "unknown_event_type")
EXTRA_FIELDS: tuple[tuple[str, Any], ...] = (
    ("deployment_ring", "canary"),
    ("x_agent", {"name": "fluent-bit", "version": "3.1.4"}),
    ("k8s", {"namespace": "banking", "pod": "pod-7f9c", "node": "ip-10-0-3-17"}),
    ("sampled", True),
)


def _send_time(item: tuple[float, bytes]) -> float:
    return item[0]


class Delivery:
    def __init__(self, rates: FaultRates, seed: int, end: float | None) -> None:
        self.rates = rates
        self.end = end
        self.rng = np.random.default_rng([seed, 2])
        self.pending: list[tuple[float, bytes]] = []
        self.faults: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
        self.lines = 0

    def add(self, events: list[tuple[float, Host, Event]]) -> None:
        if events:
            with paused_gc():
                self._add(events)

    def _add(self, events: list[tuple[float, Host, Event]]) -> None:
        r = self.rates
        u = self.rng.random((len(events), 6))
        faulty = (
            (u[:, 0] < r.unknown_fields) | (u[:, 1] < r.malformed) | (u[:, 2] < r.late)
            | (u[:, 3] < r.out_of_order) | (u[:, 4] < r.duplicates)
        )
        for host, count in Counter(e[1] for e in events).items():
            if host.skew_s:
                self.faults["clock_skew"] += count
        self.faults["service_omitted"] += sum(1 for e in events if "service" not in e[2])
        dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        clean = np.flatnonzero(~faulty).tolist()
        self.pending += [(events[i][0], dumps(events[i][2], option=opt)) for i in clean]
        for i in np.flatnonzero(faulty).tolist():
            self._add_faulty(events[i][0], events[i][2], u[i].tolist())

    def _add_faulty(self, t: float, ev: Event, u: list[float]) -> None:
        r, pending = self.rates, self.pending
        u_extra, u_bad, u_late, u_ooo, u_dup, u_pick = u
        if u_extra < r.unknown_fields:
            key, value = EXTRA_FIELDS[int(u_pick * len(EXTRA_FIELDS))]
            ev[key] = value
            self.faults["unknown_fields"] += 1
        if u_bad < r.malformed:
            pending.append((t, self._malform(ev, u_pick)))
            return
        line = orjson.dumps(ev, option=orjson.OPT_APPEND_NEWLINE)
        delay = 0.0
        if u_late < r.late and (self.end is None or t + LATE_MIN_S <= self.end):
            hi = r.late_max_hours * 3600.0
            if self.end is not None:
                hi = min(hi, self.end - t)
            delay = LATE_MIN_S + u_pick * (hi - LATE_MIN_S)
            self.faults["late"] += 1
        elif u_ooo < r.out_of_order:
            delay = 1.0 + u_pick * (OUT_OF_ORDER_MAX_S - 1.0)
            self.faults["out_of_order"] += 1
        pending.append((t + delay, line))
        if delay < LATE_MIN_S and u_dup < r.duplicates:
            pending.append((t + delay + 0.5 + u_pick * (RESEND_MAX_S - 0.5), line))
            self.faults["duplicates"] += 1

    def release(self, until: float = float("inf")) -> list[bytes]:
        """Lines whose send time is before `until`, in send order (ties keep arrival order)."""
        self.pending.sort(key=_send_time)
        cut = bisect.bisect_left(self.pending, until, key=_send_time)
        due, self.pending = self.pending[:cut], self.pending[cut:]
        self.lines += len(due)
        return [line for _, line in due]

    def _malform(self, ev: Event, u: float) -> bytes:
        kind = MALFORMED_KINDS[int(u * len(MALFORMED_KINDS))]
        self.malformed[kind] += 1
        if kind == "truncated_json":
            line = orjson.dumps(ev)
            return line[: max(1, int(len(line) * (0.2 + 0.6 * u)))] + b"\n"
        bad = dict(ev)
        if kind == "missing_field":
            del bad[("event_id", "timestamp", "event_type", "kind")[int(u * 997) % 4]]
        elif kind == "wrong_type":
            key, value = (("timestamp", True), ("kind", 3), ("metrics", "n/a"),
                          ("event_id", 12345))[int(u * 991) % 4]
            bad[key] = value
        elif kind == "bad_timestamp":
            bad["timestamp"] = "31/02/2026 25:61:00"
        else:
            bad["event_type"] = str(bad["event_type"]) + ".unknown"
        return orjson.dumps(bad) + b"\n"

    def summary(self) -> dict[str, Any]:
        return {
            "duplicates": self.faults["duplicates"],
            "late": self.faults["late"],
            "late_threshold_s": LATE_THRESHOLD_S,
            "out_of_order": self.faults["out_of_order"],
            "malformed": {k: self.malformed[k] for k in MALFORMED_KINDS},
            "malformed_total": sum(self.malformed.values()),
            "unknown_fields": self.faults["unknown_fields"],
            "clock_skew_events": self.faults["clock_skew"],
            "service_omitted": self.faults["service_omitted"],
        }
