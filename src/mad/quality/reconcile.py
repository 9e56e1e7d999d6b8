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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

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
        rows = count_rows(sorted(files)) if files else 0
        missing = int(row["rows"]) - rows
        if missing <= 0:
            continue  # rewritten with as many rows or more (a later write not yet recorded)
        out.append(_result(cfg, dataset, partition, "missing_rows", missing, "fail",
                           f"{missing} of {row['rows']} rows missing: {len(files)} of "
                           f"{row['files']} files left (published by run {row['run_id']})"))
    for dataset, n in sorted(checked.items()):
        lost = sum(1 for r in out if r.dataset == dataset)
        out.append(_result(cfg, dataset, RUN, "partitions_missing_rows", lost,
                           "pass" if lost == 0 else "fail",
                           f"{n} partitions compared with the ledger, {lost} short"))
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


def _result(cfg: ReconciliationCheck, dataset: str, partition: str, metric: str,
            value: float, status: Status, detail: str) -> Result:
    failed = status == "fail"
    return Result(dataset, partition, "reconciliation", "*", metric, float(value),
                  threshold=0.0, status=status if not failed or cfg.severity == "error"
                  else "warn", severity=cfg.severity, gate=cfg.gates, detail=detail)
