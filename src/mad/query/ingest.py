"""Stage 01 as the operator sees it: the stream's shards and lag, the raw writer's health,
and what it has written (the raw files ledger). `mad ingest status` prints it.

The stream is opened as an observer (nothing is created: a stream that never ran is a
ConfigError); the state database is optional here, its error is reported in `state_error`.
"""

from __future__ import annotations

import time
from typing import Any

from mad.config import Settings
from mad.errors import ConfigError, TransientError
from mad.ingest.shard_leases import shard_holders
from mad.ingest.wiring import ledger, open_configured_stream, stream_monitor, writer_health
from mad.ingest.writer import status_rows
from mad.query.access import DB_ERRORS
from mad.state import open_state
from mad.state.leases import Held, LeaseStore


def ingest_status(settings: Settings) -> dict[str, Any]:
    """Per-shard positions and lag of the writer's consumer, and on a shared stream the
    writer holding each shard's lease and until when (`shards`), the stream
    (`stream`: backend, disk bytes, records dropped by retention), the writer's health
    report (`writer`, None when it never reported; `age_s` since its report), the lake URL,
    and the raw files ledger (`datasets`: files, records, bytes, last write per dataset;
    `errors`: rejected records by reason; `state_error`: why the ledger could not be read,
    or None)."""
    stream = open_configured_stream(settings, role="observer")  # the API may own it
    try:
        monitor = stream_monitor(settings, stream)
        shards = status_rows(monitor, settings.writer.consumer,
                             holders=shard_holders_now(settings) if stream.shared else None)
        stream_status = monitor.status()
    finally:
        stream.close()
    return {
        "stream": {"backend": stream_status.backend, "disk_bytes": stream_status.disk_bytes,
                   "dropped_records": stream_status.dropped_records},
        "shards": shards,
        "writer": writer_report(settings),
        "lake": settings.lake_url,
        **ledger_summary(settings),
    }


def shard_holders_now(settings: Settings) -> dict[str, Held]:
    """The live shard leases of the writers of `writer.consumer`, by shard (none when the
    state database cannot be read now: the rest of the status still shows)."""
    try:
        engine = open_state(settings.state_url, create=False)
    except (TransientError, ConfigError, *DB_ERRORS):
        return {}
    try:
        return shard_holders(LeaseStore(engine), settings.writer.consumer)
    except (TransientError, ConfigError, *DB_ERRORS):
        return {}
    finally:
        engine.dispose()


def writer_report(settings: Settings) -> dict[str, Any] | None:
    """The raw writer's last health report with its age in seconds, or None."""
    health = writer_health(settings).load()
    if health is None:
        return None
    return {**health.to_dict(), "age_s": round(time.time() - health.updated_at, 1)}


def ledger_summary(settings: Settings) -> dict[str, Any]:
    """The raw files ledger's tables, or why the state database cannot be read now."""
    try:
        raw = ledger(settings, create=False)
    except (TransientError, ConfigError, *DB_ERRORS) as err:
        return {"datasets": {}, "errors": {}, "state_error": str(err).splitlines()[0]}
    try:
        return {**raw.summary(), "state_error": None}
    except (TransientError, ConfigError, *DB_ERRORS) as err:
        return {"datasets": {}, "errors": {}, "state_error": str(err).splitlines()[0]}
    finally:
        raw.engine.dispose()
