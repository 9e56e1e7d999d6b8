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
from pathlib import Path
from typing import Any

from mad.config import AwsSettings
from mad.etl.parquet_lake import partition_dirs
from mad.etl.publish import PARTITION_STORES, Publication
from mad.lake import STAGING
from mad.stores import ObjectNotFound, open_store

PENDING = "PENDING"
COMMIT = "COMMIT"


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
        return self.finish(self.commit(self.prepare(run_id, replace, append, key)))

    # -- the three steps -------------------------------------------------------------------

    def prepare(self, run_id: str, replace: dict[str, str],
                append: dict[str, str] | None = None, key: str = "") -> Publication:
        """Step 1: record the objects to add, then upload them (see module doc). The record
        of the result is the COMMIT body: `add`, `remove` and `replaced`."""
        out = self.stage(run_id) / "out"
        uploads: dict[str, str] = {}  # staged file -> object key
        remove: list[str] = []
        replaced: list[str] = []
        for output, dataset in sorted(replace.items()):
            for rel in partition_dirs(out / output):
                partition = f"{dataset}/{rel.as_posix()}"
                replaced.append(partition)
                remove += sorted(self.files(partition + "/"))
                uploads.update(self._names(out / output / rel, partition, run_id))
        for output, dataset in sorted((append or {}).items()):
            for rel in partition_dirs(out / output):
                uploads.update(self._names(out / output / rel, f"{dataset}/{rel.as_posix()}",
                                           run_id))
        add = sorted(uploads.values())
        added = set(add)
        record: dict[str, Any] = {"add": add, "remove": [k for k in remove if k not in added],
                                  "replaced": replaced}
        self._record(run_id, PENDING, {"add": add})
        for path, obj in sorted(uploads.items()):
            self.store.put(obj, Path(path).read_bytes())
        return Publication(run_id, replaced, record)

    def commit(self, publication: Publication) -> Publication:
        """Step 2: the new files are all there; from now on recovery rolls forward."""
        self._record(publication.run_id, COMMIT, publication.record)
        return publication

    def finish(self, publication: Publication) -> list[str]:
        """Step 3: delete the replaced files, then the records and the local stage."""
        for obj in publication.record.get("remove", []):
            self.store.delete(obj)
        self.store.delete(self._record_key(publication.run_id, PENDING))
        self.store.delete(self._record_key(publication.run_id, COMMIT))
        self.discard(publication.run_id)
        return list(publication.replaced)

    def recover(self) -> list[str]:
        done: list[str] = []
        runs = sorted({k.split("/")[1] for k in self.store.list(STAGING + "/")
                       if k.count("/") >= 2})
        for run_id in runs:
            record = self._read(run_id, COMMIT)
            if record is not None:
                done += self.finish(Publication(run_id, list(record.get("replaced", [])),
                                                record))
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

    def _names(self, folder: Path, partition: str, stem: str) -> dict[str, str]:
        return {str(f): f"{partition}/part-{stem}-{n}.parquet"
                for n, f in enumerate(sorted(folder.glob("*.parquet")))}

    def _record_key(self, run_id: str, name: str) -> str:
        return f"{STAGING}/{run_id}/{name}"

    def _record(self, run_id: str, name: str, body: dict[str, Any]) -> None:
        self.store.put(self._record_key(run_id, name),
                       json.dumps(body, sort_keys=True).encode())

    def _read(self, run_id: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.store.get(self._record_key(run_id, name))))
        except ObjectNotFound:
            return None
