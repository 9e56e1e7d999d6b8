"""The Event contract: what services emit and what the ingest API accepts.

One JSON object, nested. Required: `event_id`, `timestamp` (ISO-8601 with any offset, or
epoch seconds / milliseconds), `service`, `event_type` (one of the catalog's), `kind`.
Optional nested objects: `trace`, `context`, `metrics`, `error`. Unknown fields are kept.
`service` may be omitted when the catalog names the event type's one service.

`check(record)` returns None for a valid event or a short reason code (`missing_field`,
`wrong_type`, `bad_timestamp`, `unknown_event_type`, ...) with a human message; it never raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mad.catalog import BY_NAME, KINDS

REQUIRED = ("event_id", "timestamp", "event_type", "kind")
NESTED = ("trace", "context", "metrics", "error")
# Epoch values above this are milliseconds (year 2286 in seconds).
_MS_CUTOFF = 10_000_000_000
_MIN_EPOCH, _MAX_EPOCH = 946_684_800.0, 4_102_444_800.0  # 2000-01-01 .. 2100-01-01


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds (UTC) from an ISO-8601 string with offset or an epoch s/ms number."""
    kind = type(value)
    if kind is str:
        if not 10 <= len(value) <= 40:
            return None
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
        epoch = (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()
    elif kind is int or kind is float:
        if value != value or value in (math.inf, -math.inf):
            return None
        epoch = value / 1000.0 if abs(value) >= _MS_CUTOFF else float(value)
    else:
        return None
    return epoch if _MIN_EPOCH <= epoch < _MAX_EPOCH else None


def check(record: Any) -> Problem | None:
    """Validate one decoded record against the contract; None when it is a valid event.

    On the ingest hot path: exact `type(...) is` tests and one pass over the fields.
    """
    if type(record) is not dict:
        return Problem("not_an_object", f"expected a JSON object, got {type(record).__name__}")
    for name in REQUIRED:
        if record.get(name) is None:
            return Problem("missing_field", f"required field '{name}' is missing")
    event_id, event_type, kind = record["event_id"], record["event_type"], record["kind"]
    for name, value in (("event_id", event_id), ("event_type", event_type), ("kind", kind)):
        if type(value) is not str or not value:
            return Problem("wrong_type", f"'{name}' must be a non-empty string")
    if len(event_id) > 128:
        return Problem("wrong_type", "'event_id' is longer than 128 characters")
    etype = BY_NAME.get(event_type)
    if etype is None:
        return Problem("unknown_event_type", f"unknown event_type '{event_type[:80]}'")
    if kind != etype.kind:
        if kind not in KINDS:
            return Problem("wrong_type", f"'kind' must be one of {', '.join(KINDS)}")
        return Problem("kind_mismatch", f"{etype.name} is a {etype.kind}, not {kind}")
    service = record.get("service")
    if service is None:
        if len(etype.services) != 1:
            return Problem("missing_field", f"'service' is required for {etype.name}")
    elif type(service) is not str:
        return Problem("wrong_type", "'service' must be a string")
    elif service not in etype.services:
        return Problem("unknown_service", f"{etype.name} is not emitted by '{service[:40]}'")
    stamp = record["timestamp"]
    if type(stamp) is not str and type(stamp) is not int and type(stamp) is not float:
        return Problem("wrong_type", "'timestamp' must be a string or a number")
    if parse_timestamp(stamp) is None:
        return Problem("bad_timestamp", "timestamp is not ISO-8601 or epoch s/ms in 2000-2100")
    for name in NESTED:
        value = record.get(name)
        if value is not None and type(value) is not dict:
            return Problem("wrong_type", f"'{name}' must be an object")
    metrics = record.get("metrics")
    if metrics:
        for key, val in metrics.items():
            if type(val) is not float and type(val) is not int:
                return Problem("wrong_type", f"metrics.{key} must be a number")
    return None
