"""Lake paths: partition layout, Hive naming, round trips, store selection by URL."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from mad import lake

T = datetime(2026, 11, 1, 7, 59, 59, 900000, tzinfo=UTC).timestamp()


def test_raw_key_layout() -> None:
    key = lake.raw_key("log", "payments", T)
    assert re.fullmatch(
        r"md-raw-logs/service=payments/year=2026/month=11/day=01/hour=07/"
        r"part-[0-9a-f]{32}\.jsonl\.gz",
        key,
    )
    assert lake.raw_key("metric", "auth", T, gzip=False).endswith(".jsonl")
    assert lake.raw_partition("apm", "fraud", T + 0.1) == (
        "md-raw-apm/service=fraud/year=2026/month=11/day=01/hour=08"
    )


def test_errors_key_layout() -> None:
    key = lake.errors_key(T)
    assert key.startswith("md-raw-errors/year=2026/month=11/day=01/hour=07/part-")
    assert lake.parse_key(key) == lake.Partition("md-raw-errors", None, 2026, 11, 1, 7)


@pytest.mark.parametrize("kind", ["log", "metric", "apm"])
@pytest.mark.parametrize("epoch", [0.0, T, 1_798_761_599.0, 4_102_444_799.0])
def test_round_trip(kind: str, epoch: float) -> None:
    part = lake.parse_key(lake.raw_key(kind, "gateway", epoch))
    assert part.kind == kind and part.service == "gateway"
    assert part.start == epoch // 3600 * 3600
    assert part.path == lake.raw_partition(kind, "gateway", epoch)
    assert lake.parse_key(part.path) == part


def test_hive_naming_rules() -> None:
    for key in (lake.raw_key("log", "notifications", T), lake.errors_key(T)):
        for folder in key.split("/")[1:-1]:
            name, _, value = folder.partition("=")
            assert name == name.lower() and value and ":" not in folder
            assert re.fullmatch(r"[a-z0-9_.-]+", value)
    for bad in ("Payments", "pay/ments", "a:b", "", "x=y", "-lead"):
        with pytest.raises(lake.LakePathError):
            lake.raw_partition("log", bad, T)


def test_parse_rejects_other_layouts() -> None:
    good = lake.raw_partition("log", "auth", T)
    for bad in (
        "md-transformed-logs/date=2026-11-01/hour=07",
        "md-raw-logs/year=2026/month=11/day=01/hour=07",
        good.replace("month=11", "month=13"),
        good.replace("hour=07", "hour=x"),
        good.replace("day=", "Day="),
        good + "/notes.txt",
    ):
        with pytest.raises(lake.LakePathError):
            lake.parse_key(bad)


def test_prefixes() -> None:
    assert lake.raw_prefix("log") == "md-raw-logs/"
    assert lake.raw_prefix("apm", "fraud") == "md-raw-apm/service=fraud/"
    assert lake.raw_prefix(None) == "md-raw-errors/"
    key = lake.raw_key("metric", "auth", T)
    assert key.startswith(lake.hour_prefix("metric", "auth", T))
    assert lake.errors_key(T).startswith(lake.hour_prefix(None, None, T))
    with pytest.raises(lake.LakePathError):
        lake.raw_dataset("trace")
