"""Detection state in the state database: per-series state and watermarks, incidents, alerts.

- `detect_series`: one row per window size x service x series: the scorer state (detectors,
  deciders, baselines, rule counters; JSON) and the watermark, the last window start scored.
- `detect_meta`: named JSON documents, e.g. the incident tracker's state per window size.
- `detect_incidents`: the incidents as the tracker last saw them (upserted by id), with their
  evidence (JSON: per series, the change and its onset; `mad.detect.origin`). The column came
  later: a database without it gets it added (nullable), and its older rows read as `[]`.
- `detect_outbox`: incident changes committed but not yet delivered to every sink.
- `detect_handoff`: with `detect.shards` > 1, what each shard scored per window start (its
  anomalies, JSON; `[]` when none), for the one incident step that feeds the tracker in
  window order across shards (`mad.detect.incidents_step`). Keyed by window size, shard
  count, shard and window start, so a replayed batch overwrites its own rows.
- `detect_alerts_sent`: `<sink>:<dedup_key>` of every delivered alert (`SentAlerts`, the
  dispatcher's SentLog), so nothing is sent twice across restarts.

`DetectStore.commit` saves any of these in ONE transaction. The pipeline calls it after each
batch's anomalies are in the lake (incidents and the outbox), and at each checkpoint (series
states with their watermarks and the tracker, always together), so a restart resumes from a
consistent point and replays what came after it (see `mad.detect.pipeline`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    String,
    Table,
    Text,
    and_,
    desc,
    func,
    select,
)

from mad.state.db import UtcDateTime, metadata


class EvidenceRow(Protocol):
    """One series' change in an incident (detection's `Evidence`)."""

    def to_dict(self) -> dict[str, Any]: ...


class IncidentRow(Protocol):
    """What `DetectStore.commit` saves of an incident (detection's `Incident` has these)."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def started(self) -> datetime: ...
    @property
    def last_seen(self) -> datetime: ...
    @property
    def resolved(self) -> datetime | None: ...
    @property
    def origin(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def anomalies(self) -> int: ...
    @property
    def peak_score(self) -> float: ...
    @property
    def services(self) -> list[str]: ...
    @property
    def series(self) -> list[str]: ...
    @property
    def evidence(self) -> Sequence[EvidenceRow]: ...

detect_series = Table(
    "detect_series",
    metadata,
    Column("window", String(8), primary_key=True),
    Column("service", String(128), primary_key=True),
    Column("series", String(128), primary_key=True),
    Column("watermark", UtcDateTime, nullable=False),
    Column("points", BigInteger, nullable=False, default=0),
    Column("state", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

detect_meta = Table(
    "detect_meta",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

detect_incidents = Table(
    "detect_incidents",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("window", String(8), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("started", UtcDateTime, nullable=False, index=True),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("resolved", UtcDateTime),
    Column("origin", String(128), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("anomalies", Integer, nullable=False),
    Column("peak_score", Float, nullable=False),
    Column("services", Text, nullable=False),  # JSON list
    Column("series", Text, nullable=False),  # JSON list
    Column("updated_at", UtcDateTime, nullable=False),
    Column("evidence", Text),  # JSON list of objects; NULL in rows saved before it existed
)

detect_outbox = Table(
    "detect_outbox",
    metadata,
    Column("key", String(256), primary_key=True),  # the change's dedup key
    Column("created_at", UtcDateTime, nullable=False),
    Column("payload", Text, nullable=False),
)

detect_alerts_sent = Table(
    "detect_alerts_sent",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("sent_at", UtcDateTime, nullable=False),
)

detect_alerts_failed = Table(  # refused for good by a sink (a 4xx, a redirect): not re-sent
    "detect_alerts_failed",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("failed_at", UtcDateTime, nullable=False),
    Column("error", Text, nullable=False),
)



detect_handoff = Table(
    "detect_handoff",
    metadata,
    Column("window", String(8), primary_key=True),
    Column("shards", Integer, primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("window_start", UtcDateTime, primary_key=True),
    Column("anomalies", Text, nullable=False),  # JSON list of Anomaly.to_dict()
)


def decode_lists(row: dict[str, Any]) -> dict[str, Any]:
    """A `detect_incidents` row with its JSON columns decoded (`evidence` [] when NULL)."""
    row["services"] = orjson.loads(row["services"])
    row["series"] = orjson.loads(row["series"])
    row["evidence"] = orjson.loads(row["evidence"]) if row.get("evidence") else []
    return row


@dataclass(frozen=True)
class Handoff:
    """What one detection shard scored at one window start: its anomalies (as dicts)."""

    shards: int
    shard: int
    window_start: datetime
    anomalies: list[dict[str, Any]]


@dataclass(frozen=True)
class SeriesState:
    service: str
    series: str
    watermark: datetime
    points: int
    state: dict[str, Any]


class DetectStore:
    """Reads and writes the detection tables; every method is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load_series(self, window: str) -> dict[tuple[str, str], SeriesState]:
        q = select(detect_series).where(detect_series.c.window == window)
        with self.engine.connect() as conn:
            return {(r.service, r.series): SeriesState(r.service, r.series, r.watermark,
                                                       int(r.points), orjson.loads(r.state))
                    for r in conn.execute(q)}

    def load_meta(self, name: str) -> dict[str, Any] | None:
        q = select(detect_meta.c.value).where(detect_meta.c.name == name)
        with self.engine.connect() as conn:
            value = conn.execute(q).scalar_one_or_none()
        return None if value is None else dict(orjson.loads(value))

    def load_meta_under(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every named document whose name starts with `prefix`, by name."""
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = (select(detect_meta.c.name, detect_meta.c.value)
             .where(detect_meta.c.name.like(like, escape="\\")).order_by(detect_meta.c.name))
        with self.engine.connect() as conn:
            return {str(r.name): dict(orjson.loads(r.value)) for r in conn.execute(q)}

    def commit(self, window: str, series: Iterable[SeriesState],
               meta: Mapping[str, Mapping[str, Any]], incidents: Iterable[IncidentRow],
               outbox: Sequence[tuple[str, dict[str, Any]]],
               handoff: Sequence[Handoff] = ()) -> None:
        """Save one batch atomically (see the module doc)."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for h in handoff:
                where = and_(detect_handoff.c.window == window,
                             detect_handoff.c.shards == h.shards,
                             detect_handoff.c.shard == h.shard,
                             detect_handoff.c.window_start == h.window_start)
                conn.execute(detect_handoff.delete().where(where))
                conn.execute(detect_handoff.insert().values(
                    window=window, shards=h.shards, shard=h.shard,
                    window_start=h.window_start, anomalies=orjson.dumps(h.anomalies).decode()))
            for s in series:
                conn.execute(detect_series.delete().where(and_(
                    detect_series.c.window == window, detect_series.c.service == s.service,
                    detect_series.c.series == s.series)))
                conn.execute(detect_series.insert().values(
                    window=window, service=s.service, series=s.series, watermark=s.watermark,
                    points=s.points, state=orjson.dumps(s.state).decode(), updated_at=now))
            for name, value in meta.items():
                conn.execute(detect_meta.delete().where(detect_meta.c.name == name))
                conn.execute(detect_meta.insert().values(
                    name=name, value=orjson.dumps(value).decode(), updated_at=now))
            for inc in incidents:
                conn.execute(detect_incidents.delete().where(detect_incidents.c.id == inc.id))
                conn.execute(detect_incidents.insert().values(
                    id=inc.id, window=window, status=inc.status, started=inc.started,
                    last_seen=inc.last_seen, resolved=inc.resolved, origin=inc.origin,
                    severity=inc.severity, anomalies=inc.anomalies,
                    peak_score=float(inc.peak_score), services=orjson.dumps(inc.services)
                    .decode(), series=orjson.dumps(inc.series).decode(), updated_at=now,
                    evidence=orjson.dumps([e.to_dict() for e in inc.evidence]).decode()))
            for key, payload in outbox:
                conn.execute(detect_outbox.delete().where(detect_outbox.c.key == key))
                conn.execute(detect_outbox.insert().values(
                    key=key, created_at=now, payload=orjson.dumps(payload).decode()))

    def handoff(self, window: str, shards: int, after: datetime | None,
                to: datetime) -> list[Handoff]:
        """The shards' rows with `after` < window start <= `to`, by window start then shard."""
        t = detect_handoff
        q = select(t).where(t.c.window == window, t.c.shards == shards,
                            t.c.window_start <= to)
        if after is not None:
            q = q.where(t.c.window_start > after)
        q = q.order_by(t.c.window_start, t.c.shard)
        with self.engine.connect() as conn:
            return [Handoff(int(r.shards), int(r.shard), r.window_start,
                            list(orjson.loads(r.anomalies))) for r in conn.execute(q)]

    def prune_handoff(self, window: str, shards: int, upto: datetime) -> None:
        """Forget the rows the incident step has fed (window start <= `upto`)."""
        t = detect_handoff
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(t.c.window == window, t.c.shards == shards,
                                          t.c.window_start <= upto))

    def pending_alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """Committed changes not yet delivered to every sink, oldest first."""
        q = select(detect_outbox).order_by(detect_outbox.c.created_at, detect_outbox.c.key)
        with self.engine.connect() as conn:
            return [(r.key, orjson.loads(r.payload)) for r in conn.execute(q)]

    def delivered(self, keys: Iterable[str]) -> None:
        with self.engine.begin() as conn:
            for key in keys:
                conn.execute(detect_outbox.delete().where(detect_outbox.c.key == key))

    def watermarks(self) -> list[dict[str, Any]]:
        q = select(detect_series.c.window, detect_series.c.service, detect_series.c.series,
                   detect_series.c.watermark, detect_series.c.points,
                   detect_series.c.updated_at).order_by(
            detect_series.c.window, detect_series.c.service, detect_series.c.series)
        with self.engine.connect() as conn:
            return [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(q)]

    def incidents(self, limit: int = 20, status: str | None = None) -> list[dict[str, Any]]:
        q = select(detect_incidents).order_by(desc(detect_incidents.c.started),
                                              detect_incidents.c.id).limit(limit)
        if status is not None:
            q = q.where(detect_incidents.c.status == status)
        with self.engine.connect() as conn:
            rows = [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(q)]
        for row in rows:
            decode_lists(row)
        return rows




class SentAlerts:
    """The dispatcher's SentLog on `detect_alerts_sent` (delivered) and
    `detect_alerts_failed` (refused for good: done too, never sent again, and shown)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def seen(self, key: str) -> bool:
        """Whether `key` needs no more attempts: delivered, or refused for good."""
        with self.engine.connect() as conn:
            for table in (detect_alerts_sent, detect_alerts_failed):
                if conn.execute(select(table.c.key).where(table.c.key == key)).first():
                    return True
        return False

    def fail(self, key: str, error: str) -> None:
        """Record that a sink refused `key` for good, with the reason."""
        with self.engine.begin() as conn:
            conn.execute(detect_alerts_failed.delete().where(detect_alerts_failed.c.key == key))
            conn.execute(detect_alerts_failed.insert().values(
                key=key, failed_at=datetime.now(UTC), error=error[:2000]))

    def failures(self, limit: int = 10) -> tuple[int, list[dict[str, Any]]]:
        """How many alerts were refused for good, and the newest `limit` of them."""
        q = (select(detect_alerts_failed).order_by(desc(detect_alerts_failed.c.failed_at))
             .limit(limit))
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(detect_alerts_failed)
                                 ).scalar_one()
            rows = [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(q)]
        return int(total), rows

    def mark(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(detect_alerts_sent.delete().where(detect_alerts_sent.c.key == key))
            conn.execute(detect_alerts_sent.insert().values(key=key, sent_at=datetime.now(UTC)))
