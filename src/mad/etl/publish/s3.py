"""A Parquet lake on S3 (`s3://bucket/prefix`, any endpoint): upload, commit, delete.

S3 cannot rename, and a reader lists a partition's objects at any moment. A run's output is
staged in a local folder (`{data_dir}/etl-staging/{run_id}`), then published in three steps,
each of which a killed process can stop after:

1. `prepare`: write `.staging/{run_id}/PENDING` naming every object about to be added, then
   upload each staged file under a new unique name in its live partition
   (`part-{run_id}-{n}.parquet`, appended outputs too: undoing an upload must never delete a
   file another run wrote, so `key` names nothing here; the quarantine is kept free of
   repeats by `mad.etl.quarantine` instead);
2. `commit`: write `.staging/{run_id}/COMMIT` naming the objects added and the previous
   objects of the replaced partitions, which are now to be removed;
3. `finish`: delete those previous objects, then PENDING, then COMMIT.

`recover` (run at start-up) rolls a run with a COMMIT forward (step 3 again: deletes are
idempotent) and a run with only PENDING back (its added objects are deleted; its raw files are
still pending, so the next pass reads them again). Between steps 1 and 3 a reader may see a
partition's old and new files together; after `recover` it never does. Records are JSON
objects written with one PUT each, which S3 shows whole or not at all.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from mad.config import AwsSettings
from mad.etl.parquet_lake import partition_dirs
from mad.etl.publish import PARTITION_STORES
from mad.lake import STAGING
from mad.stores import ObjectNotFound, open_store

PENDING = "PENDING"
COMMIT = "COMMIT"


@dataclass
class Commit:
    """What one publish adds and removes; `uploads` maps a staged file to its object key."""

    run_id: str
    uploads: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)

    @property
    def add(self) -> list[str]:
        return sorted(self.uploads.values())


@PARTITION_STORES.register("s3")
class S3Partitions:
    def __init__(self, *, url: str, location: str, aws: AwsSettings | None,
                 scratch: Path) -> None:
        self.store = open_store(url, aws)
        self.url = self.store.url
        self.aws = aws
        self.credentials = aws if aws is not None else AwsSettings()
        self.scratch = Path(scratch)

    def location(self, key: str) -> str:
        return self.url.rstrip("/") + "/" + key

    def stage(self, run_id: str) -> Path:
        return self.scratch / run_id

    def discard(self, run_id: str) -> None:
        shutil.rmtree(self.stage(run_id), ignore_errors=True)

    def files(self, prefix: str) -> dict[str, int]:
        return {k: n for k, n in self.store.sizes(prefix).items() if k.endswith(".parquet")}

    def publish(self, run_id: str, replace: dict[str, str],
                append: dict[str, str] | None = None, key: str = "") -> list[str]:
        commit = self.prepare(run_id, replace, append, key)
        self.commit(commit)
        self.finish(commit)
        self.discard(run_id)
        return commit.replaced

    # -- the three steps -------------------------------------------------------------------

    def prepare(self, run_id: str, replace: dict[str, str],
                append: dict[str, str] | None = None, key: str = "") -> Commit:
        """Step 1: record the objects to add, then upload them (see module doc)."""
        out = self.stage(run_id) / "out"
        commit = Commit(run_id)
        for output, dataset in sorted(replace.items()):
            for rel in partition_dirs(out / output):
                partition = f"{dataset}/{rel.as_posix()}"
                commit.replaced.append(partition)
                commit.remove += sorted(self.files(partition + "/"))
                self._name(commit, out / output / rel, partition, run_id)
        for output, dataset in sorted((append or {}).items()):
            for rel in partition_dirs(out / output):
                self._name(commit, out / output / rel, f"{dataset}/{rel.as_posix()}",
                           run_id)
        added = set(commit.add)
        commit.remove = [k for k in commit.remove if k not in added]
        self._record(run_id, PENDING, {"add": commit.add})
        for path, obj in sorted(commit.uploads.items()):
            self.store.put(obj, Path(path).read_bytes())
        return commit

    def commit(self, commit: Commit) -> None:
        """Step 2: the new files are all there; from now on recovery rolls forward."""
        self._record(commit.run_id, COMMIT, {"add": commit.add, "remove": commit.remove,
                                             "replaced": commit.replaced})

    def finish(self, commit: Commit) -> None:
        """Step 3: delete the replaced files, then the records."""
        for obj in commit.remove:
            self.store.delete(obj)
        self.store.delete(self._record_key(commit.run_id, PENDING))
        self.store.delete(self._record_key(commit.run_id, COMMIT))

    def recover(self) -> list[str]:
        done: list[str] = []
        runs = sorted({k.split("/")[1] for k in self.store.list(STAGING + "/")
                       if k.count("/") >= 2})
        for run_id in runs:
            record = self._read(run_id, COMMIT)
            if record is not None:
                done += record.get("replaced", [])
                self.finish(Commit(run_id, remove=list(record.get("remove", []))))
                continue
            pending = self._read(run_id, PENDING) or {}
            for obj in pending.get("add", []):
                self.store.delete(obj)
            self.store.delete(self._record_key(run_id, PENDING))
        shutil.rmtree(self.scratch, ignore_errors=True)
        return done

    # -- pieces ----------------------------------------------------------------------------

    def remove(self, prefix: str) -> None:
        for obj in self.store.list(prefix.strip("/") + "/"):
            self.store.delete(obj)

    def connect(self) -> duckdb.DuckDBPyConnection:
        from mad.etl.engines.duckdb_engine import DuckDBEngine

        engine = DuckDBEngine(temp_directory=str(self.scratch / "duckdb-spill"),
                              s3=self.credentials)
        return engine.connect()

    def _name(self, commit: Commit, folder: Path, partition: str, stem: str) -> None:
        for n, f in enumerate(sorted(folder.glob("*.parquet"))):
            commit.uploads[str(f)] = f"{partition}/part-{stem}-{n}.parquet"

    def _record_key(self, run_id: str, name: str) -> str:
        return f"{STAGING}/{run_id}/{name}"

    def _record(self, run_id: str, name: str, body: dict[str, list[str]]) -> None:
        self.store.put(self._record_key(run_id, name),
                       json.dumps(body, sort_keys=True).encode())

    def _read(self, run_id: str, name: str) -> dict[str, list[str]] | None:
        try:
            return dict(json.loads(self.store.get(self._record_key(run_id, name))))
        except ObjectNotFound:
            return None
