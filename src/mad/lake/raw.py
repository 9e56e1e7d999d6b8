"""The raw lake's keys: where the raw writer puts files, and which partition a key names.

Keys are relative to the lake URL (a local folder, `file://...` or `s3://bucket/prefix`):

    md-raw-{logs|metrics|apm}/service={svc}/year=YYYY/month=MM/day=DD/hour=HH/part-{uuid}.jsonl.gz
    md-raw-errors/year=YYYY/month=MM/day=DD/hour=HH/part-{uuid}.jsonl.gz

Raw partitions are by ingest hour (UTC), as Firehose does; `.jsonl` when gzip is off.
Partition names are Hive style: lowercase `key=value`, values of `[a-z0-9_.-]` only.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from mad.errors import TerminalError
from mad.lake.names import ERRORS_DATASET, KIND_OF_DATASET, RAW_DATASETS

_VALUE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
_PART = re.compile(r"part-[0-9a-f]{32}\.jsonl(\.gz)?")
_HOUR_KEYS = ("year", "month", "day", "hour")


class LakePathError(TerminalError):
    """A key that does not follow the lake layout."""


@dataclass(frozen=True)
class Partition:
    """One raw-lake partition: `dataset` is e.g. `md-raw-logs`; `service` is None for errors."""

    dataset: str
    service: str | None
    year: int
    month: int
    day: int
    hour: int

    @property
    def kind(self) -> str | None:
        """`log` / `metric` / `apm`, or None for the errors dataset."""
        return KIND_OF_DATASET.get(self.dataset)

    @property
    def start(self) -> float:
        """Epoch seconds (UTC) of the partition's first instant."""
        return datetime(self.year, self.month, self.day, self.hour, tzinfo=UTC).timestamp()

    @property
    def path(self) -> str:
        """The partition folder key, without a trailing slash."""
        hour = (f"year={self.year:04d}/month={self.month:02d}/day={self.day:02d}"
                f"/hour={self.hour:02d}")
        if self.service is None:
            return f"{self.dataset}/{hour}"
        return f"{self.dataset}/service={self.service}/{hour}"


def raw_dataset(kind: str) -> str:
    """`log` -> `md-raw-logs`, and so on."""
    try:
        return RAW_DATASETS[kind]
    except KeyError:
        raise LakePathError(f"unknown kind {kind!r}; known: {', '.join(RAW_DATASETS)}") from None


def hour_path(epoch: float) -> str:
    """`year=YYYY/month=MM/day=DD/hour=HH` of the UTC hour holding `epoch`."""
    t = datetime.fromtimestamp(epoch, UTC)
    return f"year={t.year:04d}/month={t.month:02d}/day={t.day:02d}/hour={t.hour:02d}"


def check_value(value: str) -> str:
    """A partition value as is, or LakePathError when it is not lowercase `[a-z0-9_.-]`."""
    if not _VALUE.fullmatch(value):
        raise LakePathError(f"bad partition value {value!r}: use lowercase a-z 0-9 _ . -")
    return value


def raw_partition(kind: str, service: str, epoch: float) -> str:
    """The folder of raw events of `kind` from `service` ingested at `epoch`."""
    return f"{raw_dataset(kind)}/service={check_value(service)}/{hour_path(epoch)}"


def errors_partition(epoch: float) -> str:
    """The folder of rejected records received at `epoch`."""
    return f"{ERRORS_DATASET}/{hour_path(epoch)}"


def part_name(gzip: bool = True) -> str:
    """A fresh file name: `part-{uuid4 hex}.jsonl[.gz]`."""
    return f"part-{uuid.uuid4().hex}.jsonl{'.gz' if gzip else ''}"


def raw_key(kind: str, service: str, epoch: float, gzip: bool = True) -> str:
    return f"{raw_partition(kind, service, epoch)}/{part_name(gzip)}"


def errors_key(epoch: float, gzip: bool = True) -> str:
    return f"{errors_partition(epoch)}/{part_name(gzip)}"


def raw_prefix(kind: str | None = None, service: str | None = None) -> str:
    """A list prefix: all raw data of `kind` (None: the errors dataset), or of one service."""
    if kind is None:
        return f"{ERRORS_DATASET}/"
    if service is None:
        return f"{raw_dataset(kind)}/"
    return f"{raw_dataset(kind)}/service={check_value(service)}/"


def hour_prefix(kind: str | None, service: str | None, epoch: float) -> str:
    """The list prefix of one ingest hour of `kind`/`service` (kind None: errors)."""
    if kind is None:
        return f"{errors_partition(epoch)}/"
    if service is None:
        raise LakePathError("raw data partitions need a service")
    return f"{raw_partition(kind, service, epoch)}/"


def parse_key(key: str) -> Partition:
    """The partition a raw-lake key (a folder or a `part-*` file in it) belongs to."""
    parts = key.strip("/").split("/")
    dataset, rest = parts[0], parts[1:]
    service = None
    if dataset in KIND_OF_DATASET:
        if not rest or not rest[0].startswith("service="):
            raise LakePathError(f"{key!r}: expected service=... after {dataset}")
        service = check_value(rest.pop(0)[len("service="):])
    elif dataset != ERRORS_DATASET:
        raise LakePathError(f"{key!r}: not a raw-lake dataset")
    if len(rest) == len(_HOUR_KEYS) + 1:
        if not _PART.fullmatch(rest[-1]):
            raise LakePathError(f"{key!r}: file name is not part-<uuid>.jsonl[.gz]")
        rest.pop()
    if len(rest) != len(_HOUR_KEYS):
        raise LakePathError(f"{key!r}: expected year=/month=/day=/hour= folders")
    values = []
    for name, part in zip(_HOUR_KEYS, rest, strict=True):
        label, _, value = part.partition("=")
        if label != name or not value.isdigit():
            raise LakePathError(f"{key!r}: expected {name}=<digits>, got {part!r}")
        values.append(int(value))
    try:
        datetime(values[0], values[1], values[2], values[3], tzinfo=UTC)
    except ValueError as err:
        raise LakePathError(f"{key!r}: {err}") from None
    return Partition(dataset, service, *values)
