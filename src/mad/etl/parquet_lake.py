"""Publishing an engine's staged output into the Parquet lake, one partition at a time.

An engine writes a run's output under a staging folder INSIDE the lake,
`{lake}/.staging/{run_id}/out/<output>/key=value/...` (same filesystem, so renames are
atomic; the leading dot keeps it out of every `key=value` glob). `publish` then replaces each
partition found there:

1. write the marker `{lake}/.staging/{run_id}/COMMIT` (the staged output is complete); it
   names the datasets each output goes to, so recovery needs nothing else;
2. move appended outputs (the quarantine) into their live partitions;
3. per replaced partition: rename the live folder aside to `.staging/{run_id}/old/...`,
   rename the staged folder into place, delete the old one;
4. delete `.staging/{run_id}`.

Durability: before the marker is written, every staged file and folder is fsynced
(`sync_stage`); each rename into the lake is followed by an fsync of the folder it lands in,
and a folder created in the lake by an fsync of its parent. So once `publish` returns, and
before the runner records the run as done in the state database, a power loss can lose
neither the files nor the names that point at them.

A partition's content is always the old or the new set of files, never a mix (a reader that
lists the folder in the instant between the two renames sees it missing and retries).
Recovery (`recover`, run at start-up before any new run): a staging folder WITH the marker
is rolled forward with the same idempotent steps, for the datasets the marker names (a
partition whose staged copy is gone and whose old copy is aside is finished by deleting the
old copy; one whose live folder is missing but old copy is aside gets the staged copy; an
appended file still staged is moved in under the name the marker gives it); one WITHOUT the
marker died while the engine was still writing and is deleted. Runs over the same dataset
must not overlap (the events plan merges the live rows it read), so the runner holds a lock
and runs them one at a time.

Events are MERGED, not appended: the events plan reads the full rows of every partition it
touches (`existing`) and writes them back with the new rows, so a published partition is
complete and, being written by one COPY, compact (one file per partition unless large).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mad.lake import STAGING

MARKER = "COMMIT"


def staging_dir(lake: str | Path, run_id: str) -> Path:
    """Where an engine run writes: pass `staging_dir(...) / "out"` as `out_dir`."""
    return Path(lake) / STAGING / run_id


def partition_dirs(root: Path) -> list[Path]:
    """The leaf `key=value/...` folders under `root` (relative paths), sorted."""
    if not root.is_dir():
        return []
    found = {p.parent.relative_to(root) for p in root.rglob("*.parquet")}
    return sorted(found)


def partition_files(lake: str | Path, dataset: str,
                    partitions: Iterable[tuple[str, str]]) -> list[str]:
    """The Parquet files of the `(date, hour)` partitions of a dataset that exist."""
    files: list[str] = []
    for date, hour in partitions:
        folder = Path(lake) / dataset / f"date={date}" / f"hour={hour}"
        if folder.is_dir():
            files += sorted(str(p) for p in folder.glob("*.parquet"))
    return files


def dataset_files(lake: str | Path, dataset: str) -> list[str]:
    """Every Parquet file of a dataset (hidden staging folders excluded)."""
    root = Path(lake) / dataset
    return sorted(str(p) for p in root.rglob("*.parquet")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))


def publish(lake: str | Path, run_id: str, targets: dict[str, str],
            append: dict[str, str] | None = None, key: str = "") -> list[str]:
    """Swap the staged outputs into the lake: `targets` maps an output name to its dataset
    folder (e.g. `{"events": lake.transformed_dataset("log")}`); returns the partitions
    replaced.

    Outputs in `append` (e.g. `{"quarantine": lake.QUARANTINE_DATASET}`) are added instead: each
    staged file is renamed into its live partition as `part-{key}-{n}.parquet`, so re-running
    the same input (same `key`, e.g. a hash of the raw file list) replaces its own files and
    leaves other runs' files alone."""
    return finish(lake, run_id, commit(lake, run_id, targets, append, key))


def prepare(lake: str | Path, run_id: str, targets: dict[str, str],
            append: dict[str, str] | None = None, key: str = "") -> dict[str, Any]:
    """The marker's record for publishing the stage of `run_id`: the datasets of the swaps and
    every appended file's move. Nothing is written: a stage without its marker is deleted by
    `recover`."""
    stage = staging_dir(lake, run_id)
    moves: list[tuple[str, str]] = []  # (staged file, live file), both relative
    for output, dataset in sorted((append or {}).items()):
        root = stage / "out" / output
        for rel in partition_dirs(root):
            for n, f in enumerate(sorted((root / rel).glob("*.parquet"))):
                moves.append((f.relative_to(stage).as_posix(),
                              f"{dataset}/{rel.as_posix()}/part-{key or run_id}-{n}.parquet"))
    return {"replace": dict(targets), "moves": moves}


def staged_partitions(lake: str | Path, run_id: str, targets: dict[str, str]) -> list[str]:
    """The live partitions (`dataset/key=value/...`) the stage of `run_id` replaces."""
    out = staging_dir(lake, run_id) / "out"
    return [f"{dataset}/{rel.as_posix()}" for output, dataset in sorted(targets.items())
            for rel in partition_dirs(out / output)]


def write_marker(lake: str | Path, run_id: str, record: dict[str, Any]) -> None:
    """The commit point: from here on `recover` finishes the publish `record` describes.
    The staged output is made durable first: recovery moves those files into the lake."""
    sync_stage(lake, run_id)
    _fsync_write(staging_dir(lake, run_id) / MARKER, json.dumps(record, sort_keys=True))


def sync_stage(lake: str | Path, run_id: str) -> int:
    """fsync every file and folder of the staged output of `run_id`, files first; returns how
    many files. (The engines write with plain buffered I/O and never sync.)"""
    out = staging_dir(lake, run_id) / "out"
    if not out.is_dir():
        return 0
    files = 0
    for folder, _dirs, names in os.walk(out, topdown=False):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            files += 1
        _fsync_dir(Path(folder))
    return files


def commit(lake: str | Path, run_id: str, targets: dict[str, str],
           append: dict[str, str] | None = None, key: str = "") -> dict[str, Any]:
    """Step 1 of `publish`: write the marker that names every swap and move still to do
    (from here on `recover` finishes the publish); returns what it wrote."""
    record = prepare(lake, run_id, targets, append, key)
    write_marker(lake, run_id, record)
    return record


def finish(lake: str | Path, run_id: str, record: dict[str, Any]) -> list[str]:
    """Do the committed `record`'s moves and swaps, then delete the stage; returns the
    partitions replaced."""
    done = _finish(Path(lake), staging_dir(lake, run_id), record)
    shutil.rmtree(staging_dir(lake, run_id), ignore_errors=True)
    return done


def recover(lake: str | Path, targets: dict[str, str] | None = None) -> list[str]:
    """Finish or discard the half-done runs found under `{lake}/.staging` (see module doc);
    returns the partitions replaced. `targets` is only used for a marker written before
    markers named their datasets."""
    root = Path(lake) / STAGING
    done: list[str] = []
    if not root.is_dir():
        return done
    for stage in sorted(root.iterdir()):
        if (stage / MARKER).exists():
            done += _finish(Path(lake), stage, _read_marker(stage / MARKER, targets or {}))
        shutil.rmtree(stage, ignore_errors=True)
    return done


def _read_marker(path: Path, fallback: dict[str, str]) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        record = json.loads(text)
    except ValueError:  # the older format: repr of the sorted (output, dataset) pairs
        return {"replace": dict(ast.literal_eval(text)) or fallback}
    return dict(record)


def _finish(lake: Path, stage: Path, record: dict[str, Any]) -> list[str]:
    """Do the marker's moves whose staged file is still there, then the partition swaps."""
    folders: set[Path] = set()
    for staged, live in record.get("moves", []):
        if (stage / staged).exists():
            _make_dirs((lake / live).parent)
            os.replace(stage / staged, lake / live)
            folders.add((lake / live).parent)
    for folder in sorted(folders):
        _fsync_dir(folder)
    return _roll_forward(lake, stage, dict(record.get("replace", {})))


def _roll_forward(lake: Path, stage: Path, targets: dict[str, str]) -> list[str]:
    done: list[str] = []
    for output, dataset in sorted(targets.items()):
        new_root, old_root = stage / "out" / output, stage / "old" / dataset
        rels = set(partition_dirs(new_root)) | set(partition_dirs(old_root))
        for rel in sorted(rels):
            live, new, old = lake / dataset / rel, new_root / rel, old_root / rel
            if new.exists():
                if live.exists() and not old.exists():
                    old.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(live, old)
                _make_dirs(live.parent)
                os.replace(new, live)
                _fsync_dir(live.parent)
            if old.exists():
                shutil.rmtree(old)
            done.append(f"{dataset}/{rel}")
    return done


def _make_dirs(folder: Path) -> None:
    """`mkdir -p`, with an fsync of the parent of every folder it creates (a new folder's
    name lives in its parent), outermost first."""
    missing: list[Path] = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(new.parent)


def _fsync_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
