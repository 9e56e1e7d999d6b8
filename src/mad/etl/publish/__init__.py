"""Where the ETL reads and publishes lake partitions: one Protocol, a local and an S3 backend.

Engines always write a run's output into a LOCAL staging folder (`stage(run_id) / "out"`),
reading their inputs (raw files, the rows already in the touched partitions) straight from the
lake by `location`. Publishing that output is the only step that differs between backends:

- a local lake renames staged folders into place (`mad.etl.parquet_lake`, same filesystem);
- an S3 lake uploads the staged files under new unique names beside the old ones, records a
  commit, then deletes the old files (`mad.etl.publish.s3`); S3 has no rename.

Both publish in the same three steps, which the Protocol names so that a killed process can
be simulated (`tests/etl/test_partition_store_contract.py`): `prepare` (nothing is decided:
a crash is undone), `commit` (the commit point: a crash is finished), `finish`. Both
guarantee the same thing: after `recover`, every partition holds either all of the old files
or all of the new ones, so no reader sees an `event_id` twice and no killed run loses rows.
The runner picks a backend by the lake URL's scheme with `open_partition_store` and never
asks which one it got.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mad.errors import ConfigError
from mad.registry import Registry
from mad.stores import ObjectStore, split_url

if TYPE_CHECKING:
    from mad.config import AwsSettings, Settings


@dataclass
class Publication:
    """A publish between its steps: the partitions it replaces whole, and `record`, what the
    store writes at its commit point (plain JSON values, the store's own shape)."""

    run_id: str
    replaced: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


class PartitionStore(Protocol):
    """A Parquet lake as the ETL sees it; keys are lake-relative (`md-quarantine/date=.../x`)."""

    url: str
    store: ObjectStore  # the same lake as plain objects: raw-file discovery lists it
    credentials: AwsSettings | None  # what an engine needs to read `location`s (None: local)

    def location(self, key: str) -> str:
        """The path or URL an engine reads for `key` (a local path or `s3://...`)."""
        ...

    def stage(self, run_id: str) -> Path:
        """A local folder for one run's engine output (the engine writes `stage / "out"`)."""
        ...

    def discard(self, run_id: str) -> None:
        """Delete a stage that will not be published (e.g. a probe's output)."""
        ...

    def files(self, prefix: str) -> dict[str, int]:
        """The Parquet files under `prefix` (e.g. `md-transformed-logs/date=2026-11-01/`)
        with their sizes, staging excluded."""
        ...

    def publish(self, run_id: str, replace: dict[str, str],
                append: dict[str, str] | None = None, key: str = "") -> list[str]:
        """Publish the staged outputs of `run_id`: every partition of an output in `replace`
        (output name -> dataset) replaces the live partition whole; files of an output in
        `append` are added beside the live ones (locally as `part-{key}-{n}.parquet`,
        replacing files of the same `key`; on S3 under the run's own names). Returns the
        replaced partitions as `dataset/key=value/...`; removes the stage. The same as
        `finish(commit(prepare(...)))`."""
        ...

    def prepare(self, run_id: str, replace: dict[str, str],
                append: dict[str, str] | None = None, key: str = "") -> Publication:
        """Step 1 of `publish`: everything before the commit point. A process killed after
        it leaves a publish that `recover` undoes."""
        ...

    def commit(self, publication: Publication) -> Publication:
        """Step 2, the commit point: from here a process killed before `finish` leaves a
        publish that `recover` finishes."""
        ...

    def finish(self, publication: Publication) -> list[str]:
        """Step 3: the new files become the only ones, the stage goes; returns the replaced
        partitions."""
        ...

    def recover(self) -> list[str]:
        """Finish the publishes a killed process committed, undo the ones it had not, and
        delete every stage; run before any new run. Returns the partitions it replaced."""
        ...

    def remove(self, prefix: str) -> None:
        """Delete every object under `prefix` (a partition folder, for `mad etl reprocess`)."""
        ...


PARTITION_STORES: Registry[PartitionStore] = Registry("partition store", __name__)
"""Partition stores by lake URL scheme (`file`, `s3`); each factory takes `url`,
`location` (the URL after `scheme://`), `aws` and `scratch` (a local folder for stages)."""


def open_partition_store(settings: Settings) -> PartitionStore:
    """The backend for the scheme of `settings.lake_url` (a plain path is `file`). Stages
    that cannot live inside the lake go under `{data_dir}/etl-staging`."""
    url = settings.lake_url
    scheme, location = split_url(url)
    if scheme not in PARTITION_STORES.names():
        known = " or ".join(f"{s}://" for s in PARTITION_STORES.names())
        raise ConfigError(f"the ETL cannot work on {url!r}: it works on a local path or a "
                          f"{known} lake")
    store: PartitionStore = PARTITION_STORES.create(
        scheme, url=url, location=location, aws=settings.aws,
        scratch=Path(settings.data_dir) / "etl-staging")
    return store


__all__ = ["PARTITION_STORES", "PartitionStore", "Publication", "open_partition_store"]
