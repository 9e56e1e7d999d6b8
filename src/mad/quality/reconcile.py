"""Reconciliation of the lake against the ledgers, once per ETL pass.

The state database says what should be in the lake: `etl_partitions` holds, for every
partition the ETL published, its rows, files and bytes as measured right after publishing;
`raw_files` holds every file the raw writer put in the raw lake with its record count. A
partition whose listing differs from its ledger row (a file deleted or replaced behind the
ETL's back) is counted again from its Parquet footers, and the rows missing are reported; a
raw file the writer recorded and the lake no longer lists is reported with its records.
Each missing partition or raw file is a failed `reconciliation` result naming the partition
and the count missing (error severity, gating by default: detection stops before the day);
each dataset also gets one result that says how many partitions or files were compared.
Whatever removes lake files on purpose (`mad etl reprocess`, compaction) updates the ledger
first, so only a loss shows.

From the ingest API to the raw lake (`ingest_results`): per stream shard and append hour,
the records the API acknowledged (`mad.state.IngestAcks`, counted by the API) against the
stream records in the raw files of that hour that are still in the lake (the raw writer
records how many of each shard every file holds). An hour of a shard is compared once the
writer has landed every record of it (its landed position is past the highest acknowledged
one); fewer landed than acknowledged fails, naming the shard, the hour and the count. More
landed than acknowledged is at-least-once at work (a writer restarted and wrote some
records again, or an API stopped before it counted its last second) and is shown, not
failed. The embedded stream gives the API its own append times, so both sides count the
same hour; Kinesis stamps its arrival time only on the records it serves, so a record
acknowledged within a moment of an hour's end can be counted in the next hour by one side:
a shortfall in one hour made up by the excess of the hour beside it is netted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mad import lake
from mad.config import ReconciliationCheck
from mad.quality.model import RUN, Result, Status


def lake_results(recorded: Sequence[Mapping[str, Any]],
                 listing: Callable[[str], dict[str, int]],
                 count_rows: Callable[[list[str]], int],
                 cfg: ReconciliationCheck) -> list[Result]:
    """Compare every ledger row `recorded` (dataset, partition, rows, files, bytes) with
    `listing(dataset/partition/)` (key -> bytes); `count_rows(keys)` counts the rows of the
    files still there."""
    out: list[Result] = []
    checked: dict[str, int] = {}
    for row in recorded:
        dataset, partition = str(row["dataset"]), str(row["partition"])
        files = listing(f"{dataset}/{partition}/")
        checked[dataset] = checked.get(dataset, 0) + 1
        if len(files) == int(row["files"]) and sum(files.values()) == int(row["bytes"]):
            continue
        try:
            rows = count_rows(sorted(files)) if files else 0
        except Exception as err:  # a file replaced by something that is not Parquet
            why = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            out.append(_result(cfg, dataset, partition, "unreadable_files", len(files), "fail",
                               f"its files changed behind the ledger and cannot be counted "
                               f"({why}); {rebuild(dataset, partition)}"))
            continue
        missing = int(row["rows"]) - rows
        if missing <= 0:
            continue  # rewritten with as many rows or more (a later write not yet recorded)
        out.append(_result(cfg, dataset, partition, "missing_rows", missing, "fail",
                           f"{missing} of {row['rows']} rows missing: {len(files)} of "
                           f"{row['files']} files left (published by run {row['run_id']}); "
                           f"{rebuild(dataset, partition)}"))
    for dataset, n in sorted(checked.items()):
        lost = sum(1 for r in out if r.dataset == dataset)
        out.append(_result(cfg, dataset, RUN, "partitions_missing_rows", lost,
                           "pass" if lost == 0 else "fail",
                           f"{n} partitions compared with the ledger, {lost} short"))
    return out


def rebuild(dataset: str, partition: str) -> str:
    """How an operator rebuilds a partition of `dataset` from the raw lake."""
    if dataset in lake.TRANSFORMED_DATASETS.values():
        return f"rebuild it with `mad etl reprocess --dataset {dataset} --partition {partition}`"
    if dataset == lake.AGGREGATES_DATASET:
        return "the next pass recomputes it from the transformed lake"
    return "rebuild it from the raw lake with `mad etl backfill`"


def released(held: Iterable[Mapping[str, Any]], results: Sequence[Result],
             compared: Iterable[str]) -> list[Result]:
    """Passing results for the partitions of `compared` datasets that the gate holds for
    reconciliation alone and that reconcile again (rebuilt, recomputed), so the gate opens
    them."""
    short = {(r.dataset, r.partition) for r in results if r.failed}
    out = []
    for row in held:
        key = (str(row["dataset"]), str(row["partition"]))
        reasons = str(row["reason"]).split("; ")
        if key[0] in compared and key not in short and all(
                r.startswith("reconciliation ") for r in reasons):
            out.append(Result(key[0], key[1], "reconciliation", "*", "missing_rows", 0.0,
                              threshold=0.0, status="pass", severity="error", gate=True,
                              detail="matches the ledger again"))
    return out


def raw_results(recorded: Mapping[str, Mapping[str, int]],
                listing: Callable[[str], dict[str, int]],
                cfg: ReconciliationCheck) -> list[Result]:
    """Compare the raw writer's ledger (`recorded`: dataset -> {key: records}) with the
    listing of each raw dataset."""
    out: list[Result] = []
    for dataset, files in sorted(recorded.items()):
        if not files:
            continue
        present = listing(dataset + "/")
        gone: dict[str, list[tuple[str, int]]] = {}
        for key, records in sorted(files.items()):
            if key not in present:
                partition = key.removeprefix(dataset + "/").rsplit("/", 1)[0]
                gone.setdefault(partition, []).append((key, records))
        for partition, lost in sorted(gone.items()):
            records = sum(n for _, n in lost)
            out.append(_result(cfg, dataset, partition, "missing_records", records, "fail",
                               f"{len(lost)} raw files with {records} records missing, e.g. "
                               f"{lost[0][0]}"))
        out.append(_result(cfg, dataset, RUN, "files_missing", sum(len(v) for v in gone.values()),
                           "pass" if not gone else "fail",
                           f"{len(files)} raw files recorded by the writer, "
                           f"{sum(len(v) for v in gone.values())} not in the lake"))
    return out


STREAM = "stream"  # the dataset name of the acknowledgement results


def ingest_results(acked: Mapping[tuple[str, int], tuple[int, int]],
                   files: Iterable[tuple[str, int, Mapping[str, int]]],
                   present: Callable[[str], bool], landed_through: Mapping[str, int],
                   cfg: ReconciliationCheck) -> list[Result]:
    """`acked`: (shard, hour) -> (records, highest position) from the API; `files`: the raw
    files (key, append hour, records per shard) the writer recorded; `present(key)`: the
    file is in the lake; `landed_through`: per shard, the position the writer has landed."""
    if not acked:
        return []
    landed: dict[tuple[str, int], int] = {}
    for key, hour, shards in files:
        if present(key):
            for shard, n in shards.items():
                landed[(shard, hour)] = landed.get((shard, hour), 0) + n
    out: list[Result] = []
    compared = waiting = again = 0
    for shard in sorted({s for s, _ in acked}):
        through = landed_through.get(shard)
        hours = sorted(h for s, h in acked if s == shard)
        settled = [h for h in hours if through is not None and through >= acked[(shard, h)][1]]
        waiting += len(hours) - len(settled)
        diff = {h: landed.get((shard, h), 0) - acked[(shard, h)][0] for h in settled}
        for i, h in enumerate(settled):  # net a boundary spill with the hours beside it
            for j in (i + 1, i - 1):
                if diff[h] < 0 and 0 <= j < len(settled) and diff[settled[j]] > 0 and abs(
                        settled[j] - h) == 3600:
                    moved = min(-diff[h], diff[settled[j]])
                    diff[h] += moved
                    diff[settled[j]] -= moved
        for h in settled:
            compared += 1
            again += max(diff[h], 0)
            if diff[h] < 0:
                at = f"{datetime.fromtimestamp(h, UTC):%Y-%m-%dT%H}"
                n = acked[(shard, h)][0]
                out.append(_result(cfg, STREAM, f"shard={shard}/hour={at}", "unlanded_records",
                                   -diff[h], "fail",
                                   f"{-diff[h]} of {n} records acknowledged by the ingest API "
                                   f"on shard {shard} in the hour from {at}:00 UTC are not in "
                                   "the raw lake"))
    lost = sum(int(r.value) for r in out)
    out.append(_result(cfg, STREAM, RUN, "unlanded_records", lost,
                       "pass" if lost == 0 else "fail",
                       f"{compared} shard-hours compared, {waiting} wait for the writer; "
                       f"{lost} acknowledged records not in the raw lake, {again} landed "
                       "more than once (at least once: a writer restart)"))
    return out


def _result(cfg: ReconciliationCheck, dataset: str, partition: str, metric: str,
            value: float, status: Status, detail: str) -> Result:
    failed = status == "fail"
    return Result(dataset, partition, "reconciliation", "*", metric, float(value),
                  threshold=0.0, status=status if not failed or cfg.severity == "error"
                  else "warn", severity=cfg.severity, gate=cfg.gates, detail=detail)
