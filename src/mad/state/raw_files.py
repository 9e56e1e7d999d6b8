"""The raw files ledger: one row per file the raw writer put in the lake.

`mad ingest status` reads it (files, bytes, records and errors by reason, per dataset), and
the ETL can use it to see what arrived. The lake stays the truth: a crash between a file's
upload and its row leaves a file without a row, never a row without a file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Engine, Integer, String, Table, Text, func, select

from mad.lake import ERRORS_DATASET
from mad.state.db import UtcDateTime, metadata
from mad.state.ingest_acks import IngestAcks

raw_files = Table(
    "raw_files",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("dataset", String(64), nullable=False, index=True),  # md-raw-logs, md-raw-errors, ..
    Column("service", String(128)),
    Column("hour", UtcDateTime, nullable=False),  # ingest hour (partition)
    Column("records", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("counts", Text, nullable=False),  # JSON {kind or error code: n}
    Column("shards", Text),  # JSON {stream shard: stream records}, for reconciliation
    Column("consumer", String(256), nullable=False),
    Column("written_at", UtcDateTime, nullable=False),
)


class RawFileLedger:
    """Records written files; `summary()` aggregates them for status tables."""

    def __init__(self, engine: Engine, consumer: str) -> None:
        self.engine = engine
        self.consumer = consumer

    def record(self, key: str, dataset: str, service: str | None, hour: int, records: int,
               nbytes: int, counts: dict[str, int],
               shards: dict[str, int] | None = None) -> None:
        row = {
            "key": key, "dataset": dataset, "service": service,
            "hour": datetime.fromtimestamp(hour, UTC), "records": records, "bytes": nbytes,
            "counts": orjson.dumps(counts).decode(), "consumer": self.consumer,
            "written_at": datetime.now(UTC),
            "shards": None if shards is None else orjson.dumps(shards).decode(),
        }
        with self.engine.begin() as conn:
            conn.execute(raw_files.delete().where(raw_files.c.key == key))
            conn.execute(raw_files.insert().values(**row))

    def summary(self) -> dict[str, Any]:
        """Per dataset: files, records, bytes and last write; errors by reason overall."""
        datasets: dict[str, dict[str, Any]] = {}
        q = select(
            raw_files.c.dataset, func.count(), func.sum(raw_files.c.records),
            func.sum(raw_files.c.bytes), func.max(raw_files.c.written_at),
        ).group_by(raw_files.c.dataset)
        errors: Counter[str] = Counter()
        with self.engine.connect() as conn:
            for dataset, files, records, nbytes, last in conn.execute(q):
                datasets[dataset] = {"files": files, "records": int(records or 0),
                                     "bytes": int(nbytes or 0), "last_write": last}
            err_rows = conn.execute(
                select(raw_files.c.counts).where(raw_files.c.dataset == ERRORS_DATASET)
            )
            for (counts,) in err_rows:
                errors.update(orjson.loads(counts))
        return {"datasets": datasets, "errors": dict(errors)}

    def files(self, dataset: str) -> dict[str, int]:
        """Every file recorded for `dataset`: key -> records (what reconciliation expects to
        find in the lake)."""
        q = select(raw_files.c.key, raw_files.c.records).where(raw_files.c.dataset == dataset)
        with self.engine.connect() as conn:
            return {str(k): int(n) for k, n in conn.execute(q)}


    def progress(self, consumer: str, positions: dict[str, int]) -> None:
        IngestAcks(self.engine).progress(consumer, positions)

    def forget(self, keys: Iterable[str]) -> int:
        """Forget the rows of files deleted on purpose (retention)."""
        n = 0
        with self.engine.begin() as conn:
            for key in keys:
                n += int(conn.execute(raw_files.delete().where(raw_files.c.key == key))
                         .rowcount or 0)
        return n

    def landed(self) -> list[tuple[str, int, dict[str, int]]]:
        """Every recorded file with its append hour (epoch s) and its stream records per
        shard (files recorded before shards were counted are left out)."""
        q = select(raw_files.c.key, raw_files.c.hour, raw_files.c.shards).where(
            raw_files.c.shards.is_not(None))
        with self.engine.connect() as conn:
            return [(str(k), int(h.timestamp()), {str(s): int(n) for s, n in
                                                   orjson.loads(sh).items()})
                    for k, h, sh in conn.execute(q)]


class NullLedger:
    """Used when no state database is configured: records nothing."""

    def record(self, key: str, dataset: str, service: str | None, hour: int, records: int,
               nbytes: int, counts: dict[str, int],
               shards: dict[str, int] | None = None) -> None:
        return None

    def progress(self, consumer: str, positions: dict[str, int]) -> None:
        return None
