"""Every dataset of the lake, by name, and the layout of the partitions written by event time.

The one place that spells the lake's dataset names (and the default name of the stream the
events travel on); everything else asks here.

    md-raw-{logs|metrics|apm}   raw JSONL by ingest hour (`mad.lake.raw`), written by ingest
    md-raw-errors               records the ingest API or raw writer rejected, with reasons
    md-transformed-{logs|metrics|apm}
                                typed Parquet by event time: date=YYYY-MM-DD/hour=HH
    md-quarantine               raw lines the ETL could not use, with their reason: date=/hour=
    md-aggregates               window={1m|5m|1h}/date=YYYY-MM-DD
    md-anomalies                date=YYYY-MM-DD/part-{window}.parquet, or one file per
                                detection shard: part-{window}-s{k}of{n}.parquet

`.staging/` under the lake holds runs being published (never read as data: the leading dot
keeps it out of every `key=value` glob and listing).
"""

from __future__ import annotations

KINDS: tuple[str, ...] = ("log", "metric", "apm")
RAW_DATASETS: dict[str, str] = {"log": "md-raw-logs", "metric": "md-raw-metrics",
                                "apm": "md-raw-apm"}
ERRORS_DATASET = "md-raw-errors"
KIND_OF_DATASET = {v: k for k, v in RAW_DATASETS.items()}
TRANSFORMED_DATASETS: dict[str, str] = {"log": "md-transformed-logs",
                                        "metric": "md-transformed-metrics",
                                        "apm": "md-transformed-apm"}
QUARANTINE_DATASET = "md-quarantine"
AGGREGATES_DATASET = "md-aggregates"
ANOMALIES_DATASET = "md-anomalies"
ETL_OUTPUTS: tuple[str, ...] = (*TRANSFORMED_DATASETS.values(), QUARANTINE_DATASET,
                                AGGREGATES_DATASET)
"""Every dataset the ETL writes (what `mad etl compact` may rewrite)."""
EVENTS_STREAM = "md-events"
"""The default name of the stream between the ingest API and the raw writer (Kinesis)."""
STAGING = ".staging"


def transformed_dataset(kind: str) -> str:
    """`log` -> `md-transformed-logs`, and so on."""
    try:
        return TRANSFORMED_DATASETS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}") from None


def event_hour(date: str, hour: str) -> str:
    """The partition of one event hour: `date=2026-11-01/hour=07`."""
    return f"date={date}/hour={hour}"


def day_prefix(dataset: str, day: str) -> str:
    """The list prefix of one event day of a dataset written by event time."""
    return f"{dataset}/date={day}/"


def aggregates_prefix(window: str) -> str:
    """The list prefix of every aggregate of one window size: `md-aggregates/window=1m/`."""
    return f"{AGGREGATES_DATASET}/window={window}/"


def anomalies_key(day: str, window: str, shard: str | None = None) -> str:
    """The file of anomalies of a day and window size, or of one detection shard of them
    (`shard` as `s{k}of{n}`, from `shard_name`)."""
    part = f"part-{window}" if shard is None else f"part-{window}-{shard}"
    return f"{ANOMALIES_DATASET}/date={day}/{part}.parquet"


def shard_name(shard: int, shards: int) -> str:
    """A detection shard's name in keys and leases: `s1of4` is shard 1 of 0..3."""
    return f"s{shard}of{shards}"


def anomalies_window(key: str) -> str | None:
    """The window size of an `md-anomalies` file (`.../part-1m.parquet` or
    `.../part-1m-s0of4.parquet`), or None for a name this layout does not write."""
    name = key.rsplit("/", 1)[-1]
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    window, _, shard = name[5:-8].partition("-")
    if shard:
        k, of, n = shard[1:].partition("of")
        if not (shard.startswith("s") and of and k.isdigit() and n.isdigit()):
            return None
    return window or None


def anomalies_prefix() -> str:
    return f"{ANOMALIES_DATASET}/"


def partition_day(key: str) -> str | None:
    """The day (`YYYY-MM-DD`) a key of any dataset belongs to: its `date=` partition, or the
    `year=/month=/day=` of the raw lake's ingest hour; None for a key outside both layouts."""
    parts = key.strip("/").split("/")
    for part in parts:
        if part.startswith("date=") and len(part) == 15:
            return part[5:]
    found = {k: v for k, _, v in (p.partition("=") for p in parts) if k in ("year", "month",
                                                                            "day")}
    if len(found) == 3 and all(v.isdigit() for v in found.values()):
        return f"{int(found['year']):04d}-{int(found['month']):02d}-{int(found['day']):02d}"
    return None


def retention_group(dataset: str) -> str | None:
    """Which `lake.retention` setting keeps `dataset`: raw, errors, transformed, quarantine,
    aggregates or anomalies (None for a name that is not a dataset)."""
    if dataset in RAW_DATASETS.values():
        return "raw"
    if dataset in TRANSFORMED_DATASETS.values():
        return "transformed"
    return {ERRORS_DATASET: "errors", QUARANTINE_DATASET: "quarantine",
            AGGREGATES_DATASET: "aggregates", ANOMALIES_DATASET: "anomalies"}.get(dataset)
