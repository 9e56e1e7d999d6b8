"""What a failed run says: one line naming the cause and, when it is known, what to do.

A run fails with whatever its engine or the file system raised: a DuckDB `IOException`, a
PySpark error carrying a Java stack, an `OSError`. The pass records each failure in the state
database and goes on with the other datasets, so the reason must stand on its own in
`mad etl status` and on the command line:

- a full disk (ENOSPC, or an engine saying so) is `DiskFull`, a TransientError: the next pass
  tries again, and this pass stops (every write would fail the same way);
- an I/O error (an `OSError`, DuckDB's `IOException` / `HTTPException`, a TransientError) is
  transient: retried, whatever file it names (an S3 hiccup says nothing about the file);
- any other error that names a Parquet file of the lake is a corrupt file: the reason names
  it, and for a transformed partition the command that rebuilds it from raw;
- any other error that names a raw input file blames that file (`Blame.raw`: DuckDB refuses
  bytes that are not UTF-8), which the runner treats as unreadable (retried, then
  quarantined whole);
- anything else is its type and the first line of its message.

`PassFailed` is what `EtlRunner.run_once` raises after a pass in which runs failed: one line,
exit code 3 when every failure may pass by itself, 1 otherwise.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from mad import lake
from mad.errors import MadError, TransientError

MAX_REASON = 400
_IO_TYPES = frozenset({"IOException", "HTTPException", "ConnectionException"})
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "database or disk is full")


class DiskFull(TransientError):
    """The stage folder or the lake has no room left; retried by the next pass."""


class PassFailed(MadError):
    """Runs of a pass failed; their reasons are in the state database (`mad etl status`)."""

    exit_code = 1

    def __init__(self, reasons: Sequence[str], transient: bool) -> None:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        super().__init__(f"{len(reasons)} ETL run(s) failed: {reasons[0]}{more}; "
                         "see `mad etl status`")
        self.reasons = list(reasons)
        if transient:
            self.exit_code = TransientError.exit_code


@dataclass(frozen=True)
class Blame:
    """Why a run failed, as one line; `raw` is the raw input file it blames, if any."""

    reason: str
    transient: bool = False
    disk_full: bool = False
    raw: str | None = None


def first_line(err: BaseException) -> str:
    """`Type: first line of the message`, cut to a length a status table can show."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 3] + "..."


def is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err).lower()
    return any(marker in text for marker in _DISK_FULL_TEXT)


def is_io_error(err: BaseException) -> bool:
    """An error of the storage or the network, not of the data read."""
    return (isinstance(err, OSError | TransientError)
            or type(err).__name__ in _IO_TYPES)


def named_file(err: BaseException, locations: Sequence[str]) -> str | None:
    """The one of `locations` (paths or URLs) the error's message names, if any. Engines
    spell a path their own way (Spark: `file:/...` or `s3a://...`), so a location counts
    as named when its last two path parts appear (file names are unique: a uuid or run id)."""
    text = str(err)
    for location in locations:
        parts = PurePosixPath(location.split("://", 1)[-1]).parts
        if "/".join(parts[-2:]) in text:
            return location
    return None


def blame(err: BaseException, raw: Mapping[str, str], parquet: Mapping[str, str]) -> Blame:
    """The one-line reason of a failed run that read the raw files `raw` and the lake's
    Parquet files `parquet` (both: location -> lake key)."""
    if isinstance(err, DiskFull) or is_disk_full(err):
        return Blame(f"disk full: {first_line(err)}; free space in the lake or the ETL's "
                     "stage folder, the next pass retries", transient=True, disk_full=True)
    if is_io_error(err):
        return Blame(first_line(err), transient=True)
    bad = named_file(err, list(parquet))
    if bad is not None:
        return Blame(_corrupt(parquet[bad], err))
    culprit = named_file(err, list(raw))
    if culprit is not None:
        return Blame(f"cannot read raw file {raw[culprit]}: {first_line(err)}", raw=culprit)
    return Blame(first_line(err))


def _corrupt(key: str, err: BaseException) -> str:
    dataset, _, rest = key.partition("/")
    partition = rest.rsplit("/", 1)[0]
    text = f"unreadable Parquet file {key} ({first_line(err)})"
    if dataset in lake.TRANSFORMED_DATASETS.values():
        return (f"{text}: rebuild the partition from raw with `mad etl reprocess --dataset "
                f"{dataset} --partition {partition}`")
    if dataset == lake.QUARANTINE_DATASET:
        return (f"{text}: move it out of the lake; `mad etl backfill` over its ingest hour "
                "quarantines those lines again")
    return f"{text}: move it out of the lake, then run the ETL again"
