"""Files of a NAB-format corpus: series CSVs, the windows JSON, and NAB's results layout."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from mad.errors import MadError

Series = tuple[np.ndarray, np.ndarray]
Windows = dict[str, list[tuple[np.datetime64, np.datetime64]]]


def parse_time(text: str) -> np.datetime64:
    """A NAB timestamp (`2014-04-10 07:15:00[.000000]`) as a datetime64 in seconds."""
    return np.datetime64(text.strip().replace(" ", "T")[:19], "s")


def read_series(path: Path) -> Series:
    """`timestamp,value` CSV -> (datetime64[s] array, float array); unparsable values are NaN."""
    stamps: list[np.datetime64] = []
    values: list[float] = []
    try:
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
                raise MadError(f"{path}: expected a 'timestamp,value' header")
            for row in reader:
                if not row:
                    continue
                stamps.append(parse_time(row[0]))
                try:
                    values.append(float(row[1]))
                except (ValueError, IndexError):
                    values.append(float("nan"))
    except OSError as err:
        raise MadError(f"cannot read {path}: {err.strerror}") from err
    except ValueError as err:
        raise MadError(f"{path}: bad timestamp ({err})") from err
    return np.asarray(stamps, dtype="datetime64[s]"), np.asarray(values, dtype=float)


def list_series(data_dir: Path) -> list[str]:
    """Relative paths `<category>/<file>.csv` under a NAB data folder, sorted."""
    if not data_dir.is_dir():
        raise MadError(f"data folder not found: {data_dir}")
    names = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv"))
    if not names:
        raise MadError(f"no <category>/<file>.csv series under {data_dir}")
    return names


def read_windows(path: Path) -> Windows:
    """NAB's `combined_windows.json` as datetime64 pairs per relative path."""
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise MadError(f"cannot read windows file {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise MadError(f"windows file {path} is not JSON: {err.msg}") from err
    if not isinstance(raw, dict):
        raise MadError(f"windows file {path}: expected an object of file -> [[start, end], ...]")
    return {
        name: sorted((parse_time(a), parse_time(b)) for a, b in pairs)
        for name, pairs in raw.items()
    }


def results_path(out_dir: Path, detector: str, name: str) -> Path:
    """NAB's results layout: `OUT/<detector>/<category>/<detector>_<file>.csv`."""
    category, file = name.split("/", 1)
    return out_dir / detector / category / f"{detector}_{file}"


def write_results(path: Path, timestamps: np.ndarray, values: np.ndarray,
                  scores: np.ndarray) -> None:
    """Write `timestamp,value,anomaly_score` atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".csv")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["timestamp", "value", "anomaly_score"])
            for t, v, s in zip(timestamps, values, scores, strict=True):
                stamp = str(t).replace("T", " ")
                writer.writerow([stamp, repr(float(v)), f"{float(s):.6f}"])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
