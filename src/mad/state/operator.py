"""What operators tell detection, in the state database: feedback, silences, silenced alerts.

- `detect_feedback`: one row per thumbs up or down on an incident (`verdict` up | down, a
  note, who, when). Every label is kept; the latest one of an incident is its label.
- `detect_silences`: snoozes of an incident or of a `service/series`, and maintenance
  windows of a service, each from `starts_at` to `ends_at`. Removing one deletes its row.
- `detect_alerts_silenced`: one row per incident change that was not sent because a
  silence covered it, with the reason; it leaves the outbox and is never sent later.

`OperatorStore` stores and reads these rows; checking what operators type is the job of
`mad.detect.operator`. Every method is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Column, Engine, Integer, String, Table, Text, and_, func, select

from mad.state.db import UtcDateTime, metadata
from mad.state.detect_state import detect_incidents

detect_feedback = Table(
    "detect_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(128), nullable=False, index=True),
    Column("verdict", String(8), nullable=False),  # up | down
    Column("note", Text, nullable=False),
    Column("user_name", String(128), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

detect_silences = Table(
    "detect_silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # incident | series | maintenance
    Column("target", String(300), nullable=False),  # incident id, service/series, service
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("user_name", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

detect_alerts_silenced = Table(
    "detect_alerts_silenced",
    metadata,
    Column("key", String(300), primary_key=True),  # the change's dedup key
    Column("incident_id", String(128), nullable=False, index=True),
    Column("change", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("silenced_at", UtcDateTime, nullable=False),
)


def _silence(row: Any) -> dict[str, Any]:
    return {"id": int(row.id), "kind": row.kind, "target": row.target, "start": row.starts_at,
            "end": row.ends_at, "reason": row.reason, "user": row.user_name,
            "created_at": row.created_at}


class OperatorStore:
    """Reads and writes the operator tables (see the module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- incidents they refer to ---------------------------------------------------------

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        """The incident row as `DetectStore.incidents` returns it, or None."""
        q = select(detect_incidents).where(detect_incidents.c.id == incident_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        out = {str(k): v for k, v in row._mapping.items()}
        out["services"] = orjson.loads(out["services"])
        out["series"] = orjson.loads(out["series"])
        return out

    # -- feedback ------------------------------------------------------------------------

    def add_feedback(self, incident_id: str, verdict: str, note: str, user: str,
                     at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(detect_feedback.insert().values(
                incident_id=incident_id, verdict=verdict, note=note, user_name=user, at=at))

    def latest_feedback(self, incident_ids: Sequence[str] | None = None
                        ) -> dict[str, dict[str, Any]]:
        """incident id -> its latest label `{"verdict", "note", "user", "at"}`."""
        q = select(detect_feedback).order_by(detect_feedback.c.at, detect_feedback.c.id)
        if incident_ids is not None:
            q = q.where(detect_feedback.c.incident_id.in_(list(incident_ids)))
        with self.engine.connect() as conn:
            rows = list(conn.execute(q))
        return {r.incident_id: {"verdict": r.verdict, "note": r.note, "user": r.user_name,
                                "at": r.at} for r in rows}  # later rows overwrite earlier

    # -- silences ------------------------------------------------------------------------

    def add_silence(self, kind: str, target: str, start: datetime, end: datetime,
                    reason: str, user: str) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(detect_silences.insert().values(
                kind=kind, target=target, starts_at=start, ends_at=end, reason=reason,
                user_name=user, created_at=datetime.now(UTC)))
            key = result.inserted_primary_key
        return int(key[0]) if key is not None else 0

    def silences(self, active_at: datetime | None = None, ends_after: datetime | None = None
                 ) -> list[dict[str, Any]]:
        """Silences active at `active_at` (start <= t < end), else those ending after
        `ends_after`, else all; by start, then id."""
        q = select(detect_silences).order_by(detect_silences.c.starts_at, detect_silences.c.id)
        if active_at is not None:
            q = q.where(and_(detect_silences.c.starts_at <= active_at,
                             detect_silences.c.ends_at > active_at))
        elif ends_after is not None:
            q = q.where(detect_silences.c.ends_at > ends_after)
        with self.engine.connect() as conn:
            return [_silence(r) for r in conn.execute(q)]

    def remove_silence(self, silence_id: int) -> bool:
        """Delete a silence; False when there was none with that id."""
        with self.engine.begin() as conn:
            gone = conn.execute(detect_silences.delete().where(
                detect_silences.c.id == silence_id)).rowcount
        return bool(gone)

    # -- silenced alerts -----------------------------------------------------------------

    def record_silenced(self, alerts: Iterable[tuple[str, str, str, str]]) -> None:
        """Record `(dedup_key, incident_id, change, reason)` of changes not sent."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for key, incident_id, change, reason in alerts:
                conn.execute(detect_alerts_silenced.delete().where(
                    detect_alerts_silenced.c.key == key))
                conn.execute(detect_alerts_silenced.insert().values(
                    key=key, incident_id=incident_id, change=change, reason=reason[:2000],
                    silenced_at=now))

    def silenced_count(self) -> int:
        """How many alerts were silenced, ever."""
        q = select(func.count()).select_from(detect_alerts_silenced)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def silenced_alerts(self, incident_ids: Sequence[str] | None = None
                        ) -> list[Mapping[str, Any]]:
        """The silenced alerts (of some incidents), oldest first."""
        q = select(detect_alerts_silenced).order_by(detect_alerts_silenced.c.silenced_at,
                                                   detect_alerts_silenced.c.key)
        if incident_ids is not None:
            q = q.where(detect_alerts_silenced.c.incident_id.in_(list(incident_ids)))
        with self.engine.connect() as conn:
            return [{"key": r.key, "incident_id": r.incident_id, "change": r.change,
                     "reason": r.reason, "silenced_at": r.silenced_at}
                    for r in conn.execute(q)]
