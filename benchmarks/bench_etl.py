"""ETL wall time and peak memory: our DuckDB engine, our Spark engine and a floor, in one run.

The same generated raw lake (a backfill with its faults: duplicates, late, malformed, nested
and unknown fields, split into raw-lake files by simulated ingest hour) goes through:

* duckdb: `EtlRunner.run_once()` with the embedded DuckDB engine (the default): validation,
  quarantine, dedup, event-time partitions, staging and swap, and the 1m/5m/1h aggregates;
* spark: the same runner and plans on the Spark engine, PySpark `local[*]` (the engine of the
  old system's jobs), session start included as the old jobs paid it on every run;
* floor: DuckDB `read_json` of the same files straight to snappy Parquet, one COPY per kind,
  no transform, no dedup, no partitions, no aggregates.

Each runs in a fresh child process on its own hard-linked copy of the raw lake; wall time is
measured from start to exit of the child, peak memory is the largest sum of resident memory
over the child's process tree (the JVM included), sampled every 100 ms from /proc. Data
preparation (generate + split) is not timed and is kept in `--work` for the next run.

Scale N is N simulated days of about `--events` lines each (the lake grows by days, as a real
one does).

* duckdb@base (with `--base DIR`): the DuckDB contender run from another source tree, e.g.
  an earlier commit checked out with `git worktree add DIR <commit>`, on the same data in the
  same run, to compare a change with what it replaces. A contender may be listed more than
  once (`--engines duckdb@base,duckdb,duckdb@base,duckdb`); the summary uses the median.

    .venv/bin/python benchmarks/bench_etl.py [--events 2000000] [--scales 1,4]
        [--engines duckdb,spark,floor] [--work /tmp/mad-bench-etl] [--base DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Simulated traffic: whole days (1x = one day) at the daily-mean rate that gives `--events`
# lines per day: about 58,800 lines per day per unit of rate plus 54,000 metric scrapes.
LINES_PER_RATE_DAY = 58_800
SCRAPES_PER_DAY = 54_000
START = "2026-11-02T00:00:00Z"
SEED = 11
KINDS = {"log": "logs", "metric": "metrics", "apm": "apm"}


@dataclass
class Result:
    scale: int
    engine: str
    lines: int
    raw_bytes: int
    wall_s: float
    peak_rss: int
    detail: dict[str, Any]

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.wall_s if self.wall_s else 0.0


# -- data ------------------------------------------------------------------------------------

def prepare(work: Path, events_per_day: int, days: int) -> tuple[Path, int, int]:
    """The raw lake of `days` simulated days of about `events_per_day` lines each, under
    `work` (kept for the next run): (lake, lines, bytes)."""
    from mad.config import GenerateSettings
    from mad.generate.backfill import run_backfill
    from mad.generate.raw_lake import split_backfill

    lake, done = work / "raw", work / "raw.json"
    if done.is_file():
        meta = json.loads(done.read_text())
        return lake, int(meta["lines"]), int(meta["bytes"])
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rate = max(0.1, (events_per_day - SCRAPES_PER_DAY) / LINES_PER_RATE_DAY)
    gs = GenerateSettings(rate=rate, duration=f"{days}d", start=START, seed=SEED)
    print(f"  generating {days} day(s) at {rate:.1f} events/s (daily mean) ...", flush=True)
    run_backfill(gs, work / "gen", progress=False)
    split_backfill(work / "gen" / "events.jsonl", lake)
    shutil.rmtree(work / "gen")
    files = [p for p in lake.rglob("*.jsonl")]
    lines = 0
    for f in files:
        with open(f, "rb") as fh:
            lines += sum(1 for line in fh if line.strip())
    size = sum(f.stat().st_size for f in files)
    done.write_text(json.dumps({"lines": lines, "bytes": size, "files": len(files)}))
    return lake, lines, size


def linked_copy(src: Path, dst: Path) -> None:
    """A copy of the raw lake made of hard links (instant, no extra disk)."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=os.link)


# -- measuring a child process ---------------------------------------------------------------

def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid and p not in tree]
        tree.update(kids)
        frontier += kids
    return sum(rss.get(p, 0) for p in tree)


def measure(cmd: list[str], extra_env: dict[str, str] | None = None
            ) -> tuple[float, int, dict[str, Any]]:
    """Run `cmd`; (wall seconds, peak tree RSS bytes, the JSON it printed last)."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(extra_env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(proc.pid))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed with exit code {proc.returncode}")
    return wall, peak, json.loads(out.decode().strip().splitlines()[-1])


# -- the three contenders (run in the child) --------------------------------------------------

def child_ours(engine: str, run: Path) -> dict[str, Any]:
    from mad.config import load_settings
    from mad.etl.runner import EtlRunner

    settings = load_settings(overrides={
        "data_dir": str(run), "lake": {"url": str(run / "lake")},
        "etl": {"engine": {"backend": engine, "spark": {"master": "local[*]"}}},
    })
    runner = EtlRunner(settings)
    try:
        summary = runner.run_once()
    finally:
        runner.close()
    return {"lines_in": summary.rows_in, "new": summary.rows_out,
            "duplicates": summary.duplicates, "quarantined": summary.quarantined,
            "late": summary.late, "runs": summary.runs}


def child_floor(run: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '4GB'")
    con.execute("SET preserve_insertion_order = false")
    rows = 0
    for kind, plural in KINDS.items():
        pattern = f"{run}/lake/md-raw-{plural}/**/*.jsonl"
        out = run / "floor" / f"{kind}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        got = con.execute(
            f"COPY (SELECT * FROM read_json('{pattern}', format = 'newline_delimited', "
            f"ignore_errors = true, maximum_object_size = 1048576)) "
            f"TO '{out}' (FORMAT parquet, COMPRESSION snappy)").fetchone()
        rows += int(got[0]) if got else 0
    return {"rows": rows}


# -- driver ----------------------------------------------------------------------------------

def run_one(scale: int, engine: str, raw: Path, lines: int, size: int, work: Path,
            base: Path | None = None) -> Result:
    run = work / f"run-{engine.replace('@', '-')}"
    shutil.rmtree(run, ignore_errors=True)
    linked_copy(raw, run / "lake")
    name, _, where = engine.partition("@")
    script, env = Path(__file__), None
    if where == "base":  # the other tree's own script and package, on the same interpreter
        assert base is not None
        script = base / "benchmarks" / "bench_etl.py"
        env = {"PYTHONPATH": str(base / "src")}
    cmd = [sys.executable, str(script), "--child", name, "--run", str(run)]
    wall, peak, detail = measure(cmd, env)
    shutil.rmtree(run, ignore_errors=True)
    return Result(scale, engine, lines, size, wall, peak, detail)


def median_run(runs: list[Result]) -> Result:
    """The run of median wall time among repeats of one contender."""
    return sorted(runs, key=lambda r: r.wall_s)[(len(runs) - 1) // 2]


def report(results: list[Result]) -> None:
    print()
    print(f"{'scale':>5} {'engine':<11} {'lines':>11} {'raw MB':>8} {'wall s':>8} "
          f"{'lines/s':>10} {'peak MB':>8}  detail")
    for r in results:
        print(f"{r.scale:>4}x {r.engine:<11} {r.lines:>11,} {r.raw_bytes / 2**20:>8.0f} "
              f"{r.wall_s:>8.1f} {r.lines_per_s:>10,.0f} {r.peak_rss / 2**20:>8.0f}  "
              f"{json.dumps(r.detail)}")
    print()
    by = {(r.scale, r.engine): median_run([x for x in results
                                           if (x.scale, x.engine) == (r.scale, r.engine)])
          for r in results}
    for scale in sorted({r.scale for r in results}):
        duck, spark, floor = (by.get((scale, e)) for e in ("duckdb", "spark", "floor"))
        old = by.get((scale, "duckdb@base"))
        if duck and old:
            print(f"{scale}x: duckdb takes {duck.wall_s / old.wall_s:.2f}x the time of "
                  f"duckdb@base (median of {sum(1 for r in results if r.engine == 'duckdb')}"
                  f" and {sum(1 for r in results if r.engine == 'duckdb@base')} runs), "
                  f"{duck.peak_rss / max(old.peak_rss, 1):.2f}x its peak memory")
        if duck and spark:
            print(f"{scale}x: duckdb is {spark.wall_s / duck.wall_s:.1f}x faster than spark "
                  f"(memory {spark.peak_rss / max(duck.peak_rss, 1):.1f}x less)")
        if duck and floor:
            print(f"{scale}x: duckdb takes {duck.wall_s / floor.wall_s:.2f}x the floor's time")
    scales = sorted({r.scale for r in results})
    if len(scales) > 1:
        lo, hi = scales[0], scales[-1]
        for engine in ("duckdb", "spark", "floor"):
            a, b = by.get((lo, engine)), by.get((hi, engine))
            if a and b:
                print(f"{engine}: {hi // lo}x input -> {b.wall_s / a.wall_s:.1f}x time, "
                      f"{b.peak_rss / max(a.peak_rss, 1):.2f}x peak memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000,
                        help="lines per simulated day; scale N is N days")
    parser.add_argument("--scales", default="1,4")
    parser.add_argument("--engines", default="duckdb,spark,floor")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mad-bench-etl"))
    parser.add_argument("--base", type=Path, help="another source tree (e.g. a git worktree "
                        "of an earlier commit) for the duckdb@base contender")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        detail = child_floor(args.run) if args.child == "floor" else child_ours(args.child,
                                                                               args.run)
        print(json.dumps(detail))
        return
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - {"duckdb", "spark", "floor", "duckdb@base"}
    if unknown:
        raise SystemExit(f"unknown engine(s) {sorted(unknown)}; known: duckdb, spark, floor, "
                         "duckdb@base")
    if "duckdb@base" in engines and (args.base is None or not (args.base / "src").is_dir()):
        raise SystemExit("duckdb@base needs --base DIR, a source tree with src/ and "
                         "benchmarks/ (git worktree add DIR <commit>)")
    results: list[Result] = []
    for scale in (int(s) for s in args.scales.split(",")):
        work = args.work / f"x{scale}"
        print(f"{scale}x: preparing the raw lake in {work}", flush=True)
        raw, lines, size = prepare(work, args.events, scale)
        print(f"  {lines:,} lines, {size / 2**20:,.0f} MB raw", flush=True)
        for engine in engines:
            print(f"  {engine} ...", flush=True)
            results.append(run_one(scale, engine, raw, lines, size, work, args.base))
            r = results[-1]
            print(f"    {r.wall_s:.1f} s, peak {r.peak_rss / 2**20:,.0f} MB", flush=True)
    report(results)


if __name__ == "__main__":
    main()
