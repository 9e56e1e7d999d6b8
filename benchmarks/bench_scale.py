"""Scale-out: our Spark engine's ETL pass on a Spark standalone cluster of 1 and 2 workers, and
a hand-written PySpark job on the 2-worker cluster, on the same generated input, in one run.

The input is `bench_etl.prepare`'s raw lake (one simulated day of about `--events` lines, with
its duplicates, late, malformed, nested and unknown fields), each file gzipped as the ingest
path writes it (`.jsonl.gz`); it is kept in `--work` for the next run. Contenders:

* ours-1w, ours-2w: `EtlRunner(settings, engine=SparkEngine(session=spark))`, one
  `run_once()` (validation, quarantine, dedup, event-time partitions, staging and swap, the
  1m/5m/1h aggregates) with the session on a `LocalCluster` of 1 or 2 workers of 1 core;
* peer-2w: `peer_spark_etl.run` (read, parse, drop malformed, dedup, flatten, Parquet by
  kind/date/hour, per-service per-minute count/avg/p95) on a 2-worker cluster.

Every measurement gets a fresh cluster, a fresh child process (its own driver JVM, so none is
warmer than another) and its own hard-linked copy of the raw lake. `pass s` is the job alone,
timed in the child after the session is up; `session s` is the session start; `wall s` is
the child from start to exit. Rows/s is input lines over `pass s`. The driver and the
workers share the machine's cores: on 2 cores a second worker competes with the driver.

    .venv/bin/python benchmarks/bench_scale.py [--events 200000] [--work /tmp/mad-bench-scale]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD_SECONDS = 1800.0  # upper bound on one measurement's child process
EXECUTOR_WAIT = 60.0  # seconds for the executors to register with the driver
CONTENDERS = (("ours-1w", "ours", 1), ("ours-2w", "ours", 2), ("peer-2w", "peer", 2))


@dataclass
class Result:
    name: str
    workers: int
    lines: int
    wall_s: float
    session_s: float
    pass_s: float
    detail: dict[str, Any]

    @property
    def rows_per_s(self) -> float:
        return self.lines / self.pass_s if self.pass_s else 0.0


# -- data ------------------------------------------------------------------------------------

def prepare_gz(work: Path, events: int) -> tuple[Path, int, int]:
    """`bench_etl.prepare`'s raw lake with every file gzipped: (lake, lines, gzipped bytes)."""
    from bench_etl import prepare

    gz, done = work / "raw-gz", work / "raw-gz.json"
    if done.is_file():
        meta = json.loads(done.read_text())
        return gz, int(meta["lines"]), int(meta["bytes"])
    raw, lines, _ = prepare(work, events, 1)
    shutil.rmtree(gz, ignore_errors=True)
    size = 0
    for src in sorted(raw.rglob("*.jsonl")):
        dst = gz / src.relative_to(raw).with_suffix(".jsonl.gz")
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fin, gzip.open(dst, "wb", compresslevel=6) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        size += dst.stat().st_size
    done.write_text(json.dumps({"lines": lines, "bytes": size}))
    return gz, lines, size


def linked_copy(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=os.link)


# -- in the child ----------------------------------------------------------------------------

def die_with_parent() -> None:
    """Exit this child (and so its driver JVM) as soon as the parent process is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def resources(workers: int) -> dict[str, str]:
    """The same executor settings for every contender: one 1-core executor per worker."""
    return {"spark.executor.memory": "768m", "spark.executor.cores": "1",
            "spark.cores.max": str(workers)}


def wait_executors(spark: Any, workers: int) -> int:
    """Executors registered with the driver, waiting a bounded time for `workers` of them."""
    deadline = time.monotonic() + EXECUTOR_WAIT
    while True:
        count = int(spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size()) - 1
        if count >= workers or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def run_ours(spark: Any, run: Path) -> dict[str, Any]:
    from mad.config import load_settings
    from mad.etl.engines.spark.engine import SparkEngine
    from mad.etl.runner import EtlRunner

    settings = load_settings(env={}, overrides={
        "data_dir": str(run / "data"), "lake": {"url": str(run / "lake")},
        "etl": {"engine": {"backend": "spark",
                           "spark": {"master": spark.sparkContext.master}}},
    })
    runner = EtlRunner(settings, engine=SparkEngine(session=spark))
    try:
        summary = runner.run_once()
    finally:
        runner.close()
    return {"lines_in": summary.rows_in, "new": summary.rows_out,
            "duplicates": summary.duplicates, "quarantined": summary.quarantined,
            "late": summary.late}


def run_peer(spark: Any, run: Path) -> dict[str, Any]:
    from peer_spark_etl import run as peer_run

    peer_run(spark, str(run / "lake"), str(run / "peer"))
    return {}


def peer_counts(spark: Any, run: Path) -> dict[str, Any]:
    """Rows the peer wrote (read back after the timed part)."""
    return {"new": spark.read.parquet(str(run / "peer" / "events")).count(),
            "aggregate_rows": spark.read.parquet(str(run / "peer" / "aggregates_1m")).count()}


def child(kind: str, master: str, workers: int, run: Path) -> dict[str, Any]:
    """One measurement in this process: session on `master`, the job, the timings."""
    die_with_parent()
    os.environ["PYSPARK_PYTHON"] = sys.executable
    start = time.perf_counter()
    if kind == "ours":
        from mad.etl.engines.spark.session import spark_session

        spark = spark_session(master=master, app_name="bench-scale-ours",
                              extra=resources(workers))
    else:
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.master(master).appName("bench-scale-peer")
        for key, value in resources(workers).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    try:
        executors = wait_executors(spark, workers)
        began = time.perf_counter()
        detail = run_ours(spark, run) if kind == "ours" else run_peer(spark, run)
        done = time.perf_counter()
        if kind == "peer":
            detail = peer_counts(spark, run)
    finally:
        spark.stop()
    return {"session_s": began - start, "pass_s": done - began, "executors": executors,
            **detail}


# -- in the parent ---------------------------------------------------------------------------

def etl_measurements(raw: Path, lines: int, work: Path, names: list[str]) -> list[Result]:
    """Each ETL contender in `names` on a fresh cluster, in a fresh child, on its own copy of
    `raw`."""
    from mad.etl.engines.spark.cluster import LocalCluster

    results: list[Result] = []
    for name, kind, workers in (c for c in CONTENDERS if c[0] in names):
        run = work / f"run-{name}"
        shutil.rmtree(run, ignore_errors=True)
        linked_copy(raw, run / "lake")
        print(f"  {name}: {kind} on {workers} worker(s) ...", flush=True)
        with LocalCluster(workers=workers, cores=1, memory="1g") as cluster:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind,
                   "--master", cluster.master_url, "--workers", str(workers),
                   "--run", str(run)]
            env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
            try:
                out, _ = proc.communicate(timeout=CHILD_SECONDS)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
            wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(f"    {name} failed with exit code {proc.returncode}; left out", flush=True)
            continue
        got = json.loads(out.decode().strip().splitlines()[-1])
        shutil.rmtree(run, ignore_errors=True)
        session_s, pass_s = float(got.pop("session_s")), float(got.pop("pass_s"))
        results.append(Result(name, workers, lines, wall, session_s, pass_s, got))
        print(f"    pass {pass_s:.1f} s, wall {wall:.1f} s", flush=True)
    return results


def report_etl(results: list[Result]) -> None:
    print()
    print(f"{'contender':<9} {'workers':>7} {'lines':>9} {'session s':>9} {'pass s':>7} "
          f"{'wall s':>7} {'rows/s':>8}  detail")
    for r in results:
        print(f"{r.name:<9} {r.workers:>7} {r.lines:>9,} {r.session_s:>9.1f} {r.pass_s:>7.1f} "
              f"{r.wall_s:>7.1f} {r.rows_per_s:>8,.0f}  {json.dumps(r.detail)}")
    print()
    by = {r.name: r for r in results}
    one, two, peer = by.get("ours-1w"), by.get("ours-2w"), by.get("peer-2w")
    if one and two:
        print(f"speed-up 2 workers vs 1 (ours, pass): {one.pass_s / two.pass_s:.2f}x")
    if two and peer:
        print(f"ours / peer on 2 workers (pass time): {two.pass_s / peer.pass_s:.2f} "
              f"({'ours faster' if two.pass_s < peer.pass_s else 'peer faster'})")


def versions() -> str:
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    java_line = (java.stderr or java.stdout).splitlines()[0] if (java.stderr or java.stdout) \
        else "java: unknown"
    return (f"python {platform.python_version()}, pyspark {pyspark.__version__}, {java_line}, "
            f"{os.cpu_count()} cores, {platform.platform()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000,
                        help="lines of the simulated day")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mad-bench-scale"))
    parser.add_argument("--contenders", default=",".join(c[0] for c in CONTENDERS),
                        help="comma-separated subset of " + ", ".join(c[0] for c in CONTENDERS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.master, args.workers, args.run)))
        return
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = set(names) - {c[0] for c in CONTENDERS}
    if unknown:
        raise SystemExit(f"unknown contender(s) {sorted(unknown)}")
    print("$ " + " ".join([os.path.relpath(sys.executable), *sys.argv]))
    print(versions())
    work = args.work / f"e{args.events}"
    print(f"preparing the raw lake in {work}", flush=True)
    raw, lines, size = prepare_gz(work, args.events)
    print(f"  {lines:,} lines, {size / 2**20:,.1f} MB gzipped", flush=True)
    report_etl(etl_measurements(raw, lines, work, names))


if __name__ == "__main__":
    main()
