"""A Parquet lake in a local folder: stages inside the lake, published by rename.

The stage of a run is `{lake}/.staging/{run_id}`, on the same filesystem as the live
partitions, so `mad.etl.parquet_lake` can swap a partition with two renames and `recover`
can finish or discard a swap a killed process left half-done. Its steps: `prepare` reads
the stage (nothing is written, a killed process leaves a stage without a marker, which
`recover` deletes), `commit` writes the marker, `finish` renames.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from mad.etl import parquet_lake as pq
from mad.etl.publish import PARTITION_STORES, Publication
from mad.stores import ObjectStore
from mad.stores.local import LocalStore

if TYPE_CHECKING:
    from mad.config import AwsSettings


@PARTITION_STORES.register("file")
class LocalPartitions:
    credentials = None  # engines read local paths as they are

    def __init__(self, *, url: str, location: str, aws: AwsSettings | None = None,
                 scratch: Path | None = None) -> None:
        self.root = Path(location or ".")
        self.url = url
        self.store: ObjectStore = LocalStore(self.root)

    def location(self, key: str) -> str:
        return str(self.root / key)

    def stage(self, run_id: str) -> Path:
        return pq.staging_dir(self.root, run_id)

    def discard(self, run_id: str) -> None:
        shutil.rmtree(self.stage(run_id), ignore_errors=True)

    def files(self, prefix: str) -> dict[str, int]:
        return {k: n for k, n in self.store.sizes(prefix).items() if k.endswith(".parquet")}

    def publish(self, run_id: str, replace: dict[str, str],
                append: dict[str, str] | None = None, key: str = "") -> list[str]:
        return self.finish(self.commit(self.prepare(run_id, replace, append, key)))

    def prepare(self, run_id: str, replace: dict[str, str],
                append: dict[str, str] | None = None, key: str = "") -> Publication:
        return Publication(run_id, pq.staged_partitions(self.root, run_id, replace),
                           pq.prepare(self.root, run_id, replace, append, key))

    def commit(self, publication: Publication) -> Publication:
        pq.write_marker(self.root, publication.run_id, publication.record)
        return publication

    def finish(self, publication: Publication) -> list[str]:
        return pq.finish(self.root, publication.run_id, publication.record)

    def recover(self) -> list[str]:
        return pq.recover(self.root)

    def remove(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix.strip("/"), ignore_errors=True)
