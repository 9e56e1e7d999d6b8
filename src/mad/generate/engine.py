"""Builds the events of a stretch of simulated time: the services' side of the simulator.

`Simulator.events(t0, t1)` returns `(true_time, host, event)` for every event the six
services emit in `[t0, t1)`. Request-driven logs and spans arrive as a Poisson process
shaped by seasonality and incidents; metrics are scraped per host at a fixed interval.
Random draws are vectorised per service and chunk, then turned into dicts in one loop, which
keeps generation fast and fully determined by the seed.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from mad.catalog import EVENT_TYPES, HOSTS, SERVICES, TRAFFIC_SHARE, EventType
from mad.generate.scenarios import Incident
from mad.generate.state import service_state
from mad.generate.timefmt import EPOCH_FORMATS, ISO_OFFSETS_MIN, TimestampFormatter

Event = dict[str, object]

FIELD_VALUES: dict[str, tuple[object, ...]] = {
    "route": ("/v1/accounts", "/v1/payments", "/v1/transfers", "/v1/cards", "/v1/login",
              "/v1/statements", "/v1/profile"),
    "method": ("password", "biometric", "sso"),
    "channel": ("sms", "email", "push", "totp"),
    "tls_version": ("TLSv1.2", "TLSv1.3"),
    "reason": ("document_expired", "name_mismatch", "sanctions_hit"),
    "currency": ("EUR", "EUR", "EUR", "USD", "GBP", "CHF"),
    "card_brand": ("visa", "mastercard", "amex"),
    "decline_reason": ("insufficient_funds", "card_expired", "suspected_fraud", "limit"),
    "rule_id": ("R-velocity-01", "R-geo-02", "R-amount-07", "R-device-03"),
    "model_version": ("fraud-gbm-41", "fraud-gbm-42"),
    "template": ("otp_sms", "statement_ready", "payment_receipt"),
}
COUNTRIES = ("DE", "DE", "FR", "NL", "ES", "IT", "GB", "PL", "US", "CH")
CITIES = {"DE": "Berlin", "FR": "Paris", "NL": "Amsterdam", "ES": "Madrid", "IT": "Milan",
          "GB": "London", "PL": "Warsaw", "US": "New York", "CH": "Zurich"}
ERROR_TYPES = {"TIMEOUT": "TimeoutError", "5XX": "UpstreamError", "CERT": "CertificateError",
               "TOKEN": "AuthError", "SIGNATURE": "AuthError", "CONN": "ConnectionError",
               "FUNDS": "BusinessRuleError", "UNAVAILABLE": "UpstreamError",
               "CREDENTIALS": "AuthError", "TEMPLATE": "RenderError", "TLS": "CertificateError"}
USERS = 250_000
DEPLOY_EVERY_S = 8 * 3600.0  # benign deploys per service, on average
GEO = {c: {"country": c, "city": city} for c, city in CITIES.items()}
IP_POOL = tuple(
    f"{(k * 7919) % 200 + 20}.{(k * 104729) % 256}.{(k * 1299709) % 256}.{(k * 15485863) % 254 + 1}"
    for k in range(4096)
)


@dataclass(eq=False)
class Host:
    service: str
    name: str
    time_format: str  # "iso" | "epoch_s" | "epoch_ms"
    offset_min: int
    skew_s: float
    omits_service: bool
    format: TimestampFormatter

    @property
    def shift_s(self) -> float:
        """Seconds to add to true UTC time to get this host's local wall clock."""
        return self.skew_s + (self.format.offset_s if self.time_format == "iso" else 0)


@dataclass
class TypeTable:
    """Per-service draw tables: which request-driven types, with what probabilities."""

    ok: list[EventType]
    ok_p: np.ndarray
    error: list[EventType]
    error_p: np.ndarray
    alert: list[EventType]
    alert_p: np.ndarray
    base_error: float
    base_alert: float


def _table(service: str) -> TypeTable:
    groups: dict[str, list[EventType]] = {"ok": [], "error": [], "alert": []}
    for t in EVENT_TYPES:
        if service in t.services and t.kind != "metric" and t.weight > 0:
            groups[t.outcome].append(t)
    weights = {k: np.array([t.weight for t in v], dtype=float) for k, v in groups.items()}
    total = sum(w.sum() for w in weights.values())

    def norm(w: np.ndarray) -> np.ndarray:
        return w / w.sum() if w.sum() else w

    return TypeTable(
        groups["ok"], norm(weights["ok"]), groups["error"], norm(weights["error"]),
        groups["alert"], norm(weights["alert"]),
        float(weights["error"].sum() / total), float(weights["alert"].sum() / total),
    )


class Simulator:
    """The six services; deterministic for a seed, a start and a rate."""

    def __init__(
        self,
        rate: float,
        seed: int,
        scrape_interval_s: float = 10.0,
        incidents: list[Incident] | None = None,
        epoch_hosts: int = 3,
        skewed_hosts: int = 2,
        omitting_hosts: int = 1,
        id_salt: bytes = bytes(16),
    ) -> None:
        if len(id_salt) != 16:
            raise ValueError("id_salt must be 16 bytes")
        self.rng = np.random.default_rng(seed)
        # XORed into every event_id: runs that share a seed (every live start, backfills of
        # other hours) still give ids of their own, and the traffic itself stays the seed's.
        self.id_salt = np.frombuffer(id_salt, dtype=np.uint8)
        self.incidents = list(incidents or [])
        self.hosts = self._make_hosts(epoch_hosts, skewed_hosts, omitting_hosts)
        self.metric_types = {
            s: [t for t in EVENT_TYPES if t.kind == "metric" and s in t.services] for s in SERVICES
        }
        # Scraped series never take more than 30% of the rate: at low rates scrape less often.
        n_series = sum(HOSTS[s] * len(self.metric_types[s]) for s in SERVICES)
        self.scrape_interval_s = max(scrape_interval_s, n_series / (0.3 * rate))
        self.request_rate = rate - n_series / self.scrape_interval_s
        self.tables = {s: _table(s) for s in SERVICES}
        self.deploy_type = next(t for t in EVENT_TYPES if t.name == "service.deploy.completed")
        self.versions = {s: 100 for s in SERVICES}
        self.counts: Counter[str] = Counter()
        self.shapes = {t.name: _shape(t) for t in EVENT_TYPES}

    def _make_hosts(self, epoch_hosts: int, skewed: int, omitting: int) -> dict[str, list[Host]]:
        names = [(s, f"{s}-{i + 1}") for s in SERVICES for i in range(HOSTS[s])]
        order = self.rng.permutation(len(names))
        epoch_set = set(order[:epoch_hosts].tolist())
        skew_set = set(order[epoch_hosts : epoch_hosts + skewed].tolist())
        omit_set = set(order[epoch_hosts + skewed : epoch_hosts + skewed + omitting].tolist())
        hosts: dict[str, list[Host]] = {s: [] for s in SERVICES}
        for i, (svc, name) in enumerate(names):
            if i in epoch_set:
                fmt, off = EPOCH_FORMATS[i % 2], 0
            else:
                fmt, off = "iso", int(self.rng.choice(ISO_OFFSETS_MIN))
            skew = 0.0
            if i in skew_set:
                skew = float(self.rng.choice([-1, 1]) * self.rng.uniform(30, 120))
            hosts[svc].append(
                Host(svc, name, fmt, off, round(skew, 1), i in omit_set,
                     TimestampFormatter(fmt, off))
            )
        return hosts

    # -- the whole chunk -----------------------------------------------------------------------
    def events(self, t0: int, t1: int) -> list[tuple[float, Host, Event]]:
        """Everything emitted with a true event time in [t0, t1) (whole epoch seconds).

        The cyclic garbage collector is paused meanwhile: a chunk allocates hundreds of
        thousands of acyclic dicts, and collections triggered by them cost ~40% of the time.
        """
        secs = np.arange(t0, t1, dtype=np.float64)
        state = service_state(secs, self.incidents)
        out: list[tuple[float, Host, Event]] = []
        with paused_gc():
            for svc in SERVICES:
                out += self._requests(svc, secs, state[svc])
                out += self._scrapes(svc, secs, state[svc])
                out += self._deploys(svc, t0, t1)
        return out

    def _requests(
        self, svc: str, secs: np.ndarray, st: dict[str, np.ndarray]
    ) -> list[tuple[float, Host, Event]]:
        rng, table = self.rng, self.tables[svc]
        lam = self.request_rate * TRAFFIC_SHARE[svc] * st["traffic"]
        counts = rng.poisson(lam)
        n = int(counts.sum())
        if n == 0:
            return []
        at = np.repeat(np.arange(len(secs)), counts)
        times = secs[at] + rng.random(n)
        p_err = np.minimum(0.9, table.base_error * st["errors"][at])
        p_alert = np.minimum(0.5, table.base_alert * st["alerts"][at])
        u = rng.random(n)
        group = np.where(u < p_err, 1, np.where(u < p_err + p_alert, 2, 0))
        if not table.alert:
            group[group == 2] = 0
        pick = np.empty(n, dtype=np.int64)
        groups = (
            (table.ok, table.ok_p), (table.error, table.error_p), (table.alert, table.alert_p)
        )
        for g, (types, probs) in enumerate(groups):
            mask = group == g
            if mask.any():
                pick[mask] = rng.choice(len(types), int(mask.sum()), p=probs)
        type_of = [groups[g][0][p] for g, p in zip(group.tolist(), pick.tolist(), strict=True)]
        hosts = self.hosts[svc]
        host_of = [hosts[h] for h in rng.integers(0, len(hosts), n).tolist()]
        users = np.minimum(rng.zipf(1.3, n), USERS).tolist()
        values = self._series_values(type_of, at, st)
        return self._build_many(svc, type_of, host_of, times.tolist(), users, values)

    def _series_values(
        self, types: list[EventType], at: np.ndarray, st: dict[str, np.ndarray]
    ) -> list[dict[str, float | int]]:
        """Every event's metrics, drawn per (type, series) in vectorised batches."""
        out: list[dict[str, float | int]] = [{} for _ in types]
        by_type: dict[str, list[int]] = {}
        for i, t in enumerate(types):
            if t.series:
                by_type.setdefault(t.name, []).append(i)
        rng = self.rng
        for idxs in by_type.values():
            etype = types[idxs[0]]
            rows = np.array(idxs)
            for s in etype.series:
                scale = st[s.factor][at[rows]] if s.factor not in ("none", "cpu") else 1.0
                vals = s.median * scale * np.exp(rng.normal(0.0, s.spread, len(rows)))
                vals = np.round(vals).astype(np.int64) if s.integer else np.round(vals, 3)
                name = s.name
                for j, v in zip(idxs, vals.tolist(), strict=True):
                    out[j][name] = v
        return out

    def _build_many(
        self, svc: str, types: list[EventType], hosts: list[Host], times: list[float],
        users: list[int], values: list[dict[str, float | int]],
    ) -> list[tuple[float, Host, Event]]:
        """Turn columns of draws into event dicts; the one per-event Python loop."""
        n = len(types)
        ids = np.frombuffer(self.rng.bytes(n * 48), dtype=np.uint8).reshape(n, 48).copy()
        ids[:, :16] ^= self.id_salt
        hexes = ids.tobytes().hex()  # 96 hex chars of ids per event
        picks = self.rng.random((n, 4)).tolist()
        version = f"{svc}-1.{self.versions[svc]}.0"
        local = np.asarray(times) + np.fromiter((h.shift_s for h in hosts), float, n)
        clock = np.datetime_as_string((local * 1000).astype(np.int64).astype("datetime64[ms]"),
                                      unit="ms").tolist()
        out: list[tuple[float, Host, Event]] = []
        shapes = self.shapes
        for i in range(n):
            etype, host, t, h = types[i], hosts[i], times[i], hexes[i * 96 : i * 96 + 96]
            u = picks[i]
            name, kind, message, levels, traced, with_user, fields, codes, alone = shapes[
                etype.name
            ]
            ev: Event = {
                "event_id": h[:32],
                "timestamp": (clock[i] + host.format.suffix if host.time_format == "iso"
                              else host.format(t + host.skew_s)),
                "service": svc,
                "event_type": name,
                "kind": kind,
                "level": levels[int(u[0] * 100)],
                "host": host.name,
                "message": message,
            }
            if traced:
                ev["trace"] = {"trace_id": h[32:64], "span_id": h[64:80]}
            ctx: dict[str, object] = {}
            if with_user:
                user = users[i]
                ctx = {
                    "user_id": f"u-{user:07d}",
                    "request_id": "req-" + h[80:92],
                    "session_id": "s-" + h[56:64],
                    "client_ip": IP_POOL[user % 4096],
                    "geo": GEO[COUNTRIES[user % 10]],
                }
            for field_name, choices in fields:
                ctx[field_name] = version if choices is None else choices[int(u[1] * len(choices))]
            if ctx:
                ev["context"] = ctx
            metrics = values[i]
            if metrics:
                ev["metrics"] = metrics
            if codes:
                code = codes[int(u[3] * len(codes))]
                ev["error"] = {"code": code, "type": _error_type(code), "message": message}
            if alone and host.omits_service:
                del ev["service"]
            out.append((t, host, ev))
        self.counts.update(Counter(t.name for t in types))
        return out

    def _scrapes(
        self, svc: str, secs: np.ndarray, st: dict[str, np.ndarray]
    ) -> list[tuple[float, Host, Event]]:
        step = self.scrape_interval_s
        t0, t1 = float(secs[0]), float(secs[-1]) + 1
        ticks = np.arange(np.ceil(t0 / step) * step, t1, step)
        types: list[EventType] = []
        hosts: list[Host] = []
        at: list[int] = []
        for tick in ticks.tolist():
            for host in self.hosts[svc]:
                for etype in self.metric_types[svc]:
                    types.append(etype)
                    hosts.append(host)
                    at.append(min(int(tick - t0), len(secs) - 1))
        if not types:
            return []
        at_arr = np.array(at)
        times = (secs[at_arr] + self.rng.random(len(types)) * 0.5).tolist()
        values = self._series_values(types, at_arr, st)
        return self._build_many(svc, types, hosts, times, [0] * len(types), values)

    def _deploys(self, svc: str, t0: int, t1: int) -> list[tuple[float, Host, Event]]:
        """Benign deploys at random, and one at the start of every latency regression."""
        rng = self.rng
        starts = [inc.start for inc in self.incidents
                  if inc.scenario == "latency_regression" and inc.origin == svc
                  and t0 <= inc.start < t1]
        n = int(rng.poisson((t1 - t0) / DEPLOY_EVERY_S))
        starts += (t0 + rng.random(n) * (t1 - t0)).tolist()
        out: list[tuple[float, Host, Event]] = []
        for t in sorted(starts):
            self.versions[svc] += 1
            hosts = self.hosts[svc]
            out += self._build_many(svc, [self.deploy_type] * len(hosts), hosts,
                                    [t + 0.1 * k for k in range(len(hosts))], [0] * len(hosts),
                                    [{} for _ in hosts])
        return out


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector around bulk allocation of acyclic objects."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


Shape = tuple[
    str, str, str, tuple[str, ...], bool, bool,
    tuple[tuple[str, tuple[object, ...] | None], ...], tuple[str, ...], bool,
]


def _shape(t: EventType) -> Shape:
    """What every event of a type has in common, resolved once for the hot loop."""
    levels: list[str] = []
    for name, p in t.levels.items():
        levels += [name] * round(p * 100)
    levels = (levels + [levels[-1]] * 100)[:100]
    fields: list[tuple[str, tuple[object, ...] | None]] = []
    for spec in t.fields:
        if spec.name == "status_code":
            fields.append((spec.name, tuple(t.status_codes or (200,))))
        else:
            fields.append((spec.name, None if spec.name == "version" else FIELD_VALUES[spec.name]))
    traced = t.kind != "metric"
    return (t.name, t.kind, t.message, tuple(levels), traced, traced and t.has_user,
            tuple(fields), t.error_codes if t.outcome == "error" else (), len(t.services) == 1)


def _error_type(code: str) -> str:
    for key, name in ERROR_TYPES.items():
        if key in code:
            return name
    return "ServiceError"
