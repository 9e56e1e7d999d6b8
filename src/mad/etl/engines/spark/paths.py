"""Lake paths as Spark reads them: `s3://` through S3A, and what a raw file's path says.

Kept apart from the engine so that both the engine and its tests can use them without a
session.
"""

from __future__ import annotations

import re
from datetime import datetime

from mad import lake


def spark_path(url: str) -> str:
    """The path Spark reads or writes for a lake location: `s3://` becomes `s3a://`."""
    if url.startswith("s3://"):
        return "s3a://" + url[len("s3://"):]
    return url


_HOUR_FOLDERS = re.compile(r"/year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/")


def ingest_hour(path: str) -> datetime | None:
    """The ingest hour (UTC, naive) of a raw file from its raw-lake partition folders
    (`mad.lake.parse_key`); the `year=/month=/day=/hour=` folders of a path outside the raw
    lake; None without them (as the DuckDB engine)."""
    parts = path.replace("\\", "/").split("/")
    for i, part in enumerate(parts):
        if part in lake.KIND_OF_DATASET or part == lake.ERRORS_DATASET:
            p = lake.parse_key("/".join(parts[i:]))
            return datetime(p.year, p.month, p.day, p.hour)
    found = _HOUR_FOLDERS.search("/".join(parts))
    if found is None:
        return None
    year, month, day, hour = (int(g) for g in found.groups())
    try:
        return datetime(year, month, day, hour)
    except ValueError:
        return None


def partition_values(path: str) -> dict[str, str]:
    """The Hive `key=value` folders of a file path, in order."""
    values: dict[str, str] = {}
    for part in path.replace("\\", "/").split("/")[:-1]:
        key, sep, value = part.partition("=")
        if sep and key:
            values[key] = value
    return values
