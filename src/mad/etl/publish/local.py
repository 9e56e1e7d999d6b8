"""A Parquet lake in a local folder: stages inside the lake, published by rename.

The stage of a run is `{lake}/.staging/{run_id}`, on the same filesystem as the live
partitions, so `mad.etl.parquet_lake.publish` can swap a partition with two renames and
`recover` can finish or discard a swap a killed process left half-done.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from mad.errors import ConfigError
from mad.etl import parquet_lake as pq
from mad.stores import ObjectStore
from mad.stores.local import LocalStore


class LocalPartitions:
    def __init__(self, url: str) -> None:
        if "://" in url and not url.startswith("file://"):
            raise ConfigError(f"the ETL works on a local folder or an s3:// lake; {url} is "
                              "neither")
        self.root = Path(url.removeprefix("file://"))
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
        return pq.publish(self.root, run_id, replace, append=append, key=key)

    def recover(self) -> list[str]:
        return pq.recover(self.root)

    def remove(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix.strip("/"), ignore_errors=True)

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect()
