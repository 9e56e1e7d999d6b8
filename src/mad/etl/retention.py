"""Retention: delete the partitions of each dataset older than `lake.retention` allows.

`plan(listing, policy, today)` is pure: from every dataset's files it picks the partitions
whose day (`mad.lake.partition_day`: the event day, or the raw lake's ingest day) ended more
than the dataset's days ago. `EtlRunner.retention` (under the ETL's lock, so no pass is
writing meanwhile) then applies it in an order that never leaves a ledger claiming what is
gone: first the ledgers forget the partitions (the raw files ledger its files, the ETL its
partitions, the acknowledgement counts their hours, the quality gate its verdicts), then the
files are deleted. A crash between the two leaves files no ledger claims, which the next
`--apply` deletes. Raw files the ETL has not read yet are kept, whatever their age (deleting
them would lose events), and said so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from mad import lake
from mad.config import RetentionSettings


@dataclass
class Expired:
    """One partition past its retention: its files (key -> bytes)."""

    dataset: str
    partition: str  # the path under the dataset, e.g. `date=2026-11-01/hour=07`
    day: str
    files: dict[str, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(self.files.values())


@dataclass
class RetentionReport:
    expired: list[Expired] = field(default_factory=list)
    kept_unread: list[str] = field(default_factory=list)  # raw files the ETL has not read
    applied: bool = False
    rules: dict[str, int] = field(default_factory=dict)  # lifecycle rules written (S3)

    def line(self) -> str:
        files = sum(len(e.files) for e in self.expired)
        size = sum(e.bytes for e in self.expired)
        if self.rules:
            return (f"retention: lifecycle rules written for {len(self.rules)} datasets (the "
                    f"store expires their objects itself: {len(self.expired)} partitions, "
                    f"{files} files, {size / 2**20:.1f} MiB are past them now)")
        verb = "deleted" if self.applied else "would delete (--apply deletes them)"
        text = (f"retention: {verb} {len(self.expired)} partitions, {files} files, "
                f"{size / 2**20:.1f} MiB")
        if self.kept_unread:
            text += (f"; kept {len(self.kept_unread)} raw files past retention that the ETL "
                     "has not read yet (run `mad etl run`)")
        return text


def cutoffs(policy: RetentionSettings, today: date) -> dict[str, str]:
    """Per retention group, the first day still kept (`YYYY-MM-DD`); groups kept forever
    are left out."""
    out = {}
    for group, days in policy.model_dump().items():
        if days > 0:
            out[group] = (today - timedelta(days=float(days))).isoformat()
    return out


def lifecycle_rules(policy: RetentionSettings, datasets: list[str]) -> dict[str, int]:
    """Per dataset prefix, the days after which a store's own expiry deletes an object: the
    retention rounded up, plus the day a partition's objects are written in (an object's
    age counts from when it was written, a partition's from the end of its day)."""
    days = policy.model_dump()
    out = {}
    for dataset in datasets:
        group = lake.retention_group(dataset)
        if group is not None and days[group] > 0:
            out[dataset + "/"] = math.ceil(days[group]) + 1
    return out


def within(dataset: str, key: str, keep_from: Mapping[str, str]) -> bool:
    """Whether `key` of `dataset` is inside its retention (reconciliation judges only those:
    older ones may be gone by policy)."""
    group = lake.retention_group(dataset)
    day = lake.partition_day(key)
    if group is None or group not in keep_from or day is None:
        return True
    return day >= keep_from[group]


def plan(listing: Mapping[str, Mapping[str, int]], policy: RetentionSettings,
         today: date) -> list[Expired]:
    """The partitions of `listing` (dataset -> {key: bytes}) past `policy` on `today`."""
    keep_from = cutoffs(policy, today)
    found: dict[tuple[str, str], Expired] = {}
    for dataset, files in sorted(listing.items()):
        group = lake.retention_group(dataset)
        if group not in keep_from:
            continue
        for key, size in sorted(files.items()):
            day = lake.partition_day(key)
            if day is None or day >= keep_from[group]:
                continue
            partition = key.removeprefix(dataset + "/").rsplit("/", 1)[0]
            entry = found.setdefault((dataset, partition), Expired(dataset, partition, day))
            entry.files[key] = size
    return list(found.values())
