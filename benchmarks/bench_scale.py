"""Scale-out: the ETL on a Spark cluster of 1 and 2 workers, detection with 1 and 2 worker
processes, and the raw writer on a Kinesis stream of 1 and 2 shards, in one run.

ETL part: our Spark engine's ETL pass on a Spark standalone cluster of 1 and 2 workers, and
a hand-written PySpark job on the 2-worker cluster, on the same generated input.

The input is `bench_etl.prepare`'s raw lake (one simulated day of about `--events` lines, with
its duplicates, late, malformed, nested and unknown fields), each file gzipped as the ingest
path writes it (`.jsonl.gz`); it is kept in `--work` for the next run. Contenders:

* ours-1w, ours-2w: `EtlRunner(settings, engine=SparkEngine(session=spark))`, one
  `run_once()` (validation, quarantine, dedup, event-time partitions, staging and swap, the
  1m/5m/1h aggregates) with the session on a `LocalCluster` of 1 or 2 workers of 1 core;
* peer-2w: `peer_spark_etl.run` (read, parse, keep the contract's valid events, dedup,
  flatten, Parquet by kind/date/hour, per-service per-minute count/avg/p95) on a 2-worker
  cluster. Its `new` (events it wrote, read back after the timed part) must equal ours.

Every measurement gets a fresh cluster, a fresh child process (its own driver JVM, so none is
warmer than another) and its own hard-linked copy of the raw lake. `pass s` is the job alone,
timed in the child after the session is up; `session s` is the session start; `wall s` is
the child from start to exit. Rows/s is input lines over `pass s`. The driver and the
workers share the machine's cores: on 2 cores a second worker competes with the driver.

Detection part (detect-1w, detect-2w): the 1m aggregates of that raw lake (made once by the
DuckDB engine's `EtlRunner`, kept in `--work`), scored with `detect.window: 1m` and
`detect.shards: 4` by one `mad detect run --watch` process, then by two started together,
each contender on its own copy of the aggregates and a fresh SQLite state database. Timed
from the start of the processes until every shard's "complete to" and the incident step's
"fed to" reach the end of the data (polled in the state database every 0.5 s; the first
run's end is the value they all reach and then keep for `STABLE_S`, timed to when they first
reached it; later runs stop at that value), then SIGTERM. Series-windows/s is the series
windows the passes recorded (`detect_runs.points`) over that time, also from the first
recorded pass's start (process start-up left out); the anomalies and incidents of every run
must be the same.

Ingest part (ingest-1s, ingest-2s): a moto server (S3 and Kinesis emulator) on a free
loopback port, a stream of 1 and of 2 shards filled beforehand (PutRecords of 500, keyed by
service as the API does) with `--ingest-events` generated events, then one `mad ingest
writer` process draining it into a local lake. Timed from the process start (and, on its
own, from the writer's first shard lease) until every shard is committed to its last record;
events/s per shard is events over that time over shards.

Every child process (Spark driver, detection workers, writer, moto) exits when this script
does. The machine's cores are shared by every process of a contender (and by moto).

    .venv/bin/python benchmarks/bench_scale.py [--events 200000] [--work /tmp/mad-bench-scale]
        [--only etl,detect,ingest] [--contenders detect-1w,detect-2w,...] [--repeat 3]
        [--ingest-events 80000]

`--repeat N` runs each detection and ingest contender N times, interleaved (the ETL
contenders once).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD_SECONDS = 1800.0  # upper bound on one measurement's child process
EXECUTOR_WAIT = 60.0  # seconds for the executors to register with the driver
CONTENDERS = (("ours-1w", "ours", 1), ("ours-2w", "ours", 2), ("peer-2w", "peer", 2))
DETECT = (("detect-1w", 1), ("detect-2w", 2))  # worker processes, on DETECT_SHARDS shards
INGEST = (("ingest-1s", 1), ("ingest-2s", 2))  # Kinesis shards, one writer process
PARTS = {"etl": [c[0] for c in CONTENDERS], "detect": [c[0] for c in DETECT],
         "ingest": [c[0] for c in INGEST]}
DETECT_WINDOW = "1m"
DETECT_SHARDS = 4
DETECT_SECONDS = 1500.0  # upper bound on one detection contender
STABLE_S = 15.0  # the end of the data: every shard at the same "complete to" this long
INGEST_SECONDS = 600.0  # upper bound on one writer draining its stream
WRITER_CONSUMER = "raw-writer"


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


# -- child processes of the detection and ingest parts ---------------------------------------

def run_module(module: str, args: list[str]) -> None:
    """In a child: run `python -m module args` in this process, exiting with the parent."""
    die_with_parent()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def module_child(module: str, args: list[str], env: dict[str, str],
                 log: Path) -> subprocess.Popen[bytes]:
    """`python -m module args` through this script (so it dies with it), output to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--module", module, "--", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(procs: list[subprocess.Popen[bytes]], grace: float = 120.0) -> list[int | None]:
    """SIGTERM every process still running, wait up to `grace` s, then SIGKILL; exit codes."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    return [proc.returncode for proc in procs]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any MAD_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def tail(log: Path, chars: int = 1500) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else ""


# -- detection part --------------------------------------------------------------------------

@dataclass
class DetectResult:
    name: str
    workers: int
    seconds: float
    series_windows: int
    series: int
    anomalies: int
    incidents: int
    complete_to: str
    exit_codes: list[int | None]
    from_pass_s: float  # from the first recorded pass's start (process start-up left out)
    holders: int  # worker processes seen holding a shard lease during the run

    @property
    def per_s(self) -> float:
        return self.series_windows / self.seconds if self.seconds else 0.0

    @property
    def per_s_from_pass(self) -> float:
        return self.series_windows / self.from_pass_s if self.from_pass_s else 0.0


def prepare_aggregates(raw: Path, work: Path) -> tuple[Path, dict[str, Any]]:
    """The 1m aggregates of the raw lake by the DuckDB engine's `EtlRunner` (kept in `work`):
    (folder holding `md-aggregates`, what the ETL reported)."""
    from mad.config import load_settings
    from mad.etl.runner import EtlRunner
    from mad.lake import AGGREGATES_DATASET

    src, done = work / "detect-src", work / "detect-src.json"
    if done.is_file():
        return src / "aggregates", dict(json.loads(done.read_text()))
    shutil.rmtree(src, ignore_errors=True)
    linked_copy(raw, src / "lake")
    settings = load_settings(env={}, overrides={
        "data_dir": str(src / "data"), "lake.url": str(src / "lake"),
        "state.url": f"sqlite:///{src / 'data' / 'state.db'}", "etl.windows": [DETECT_WINDOW],
        "etl.engine.backend": "duckdb"})
    start = time.perf_counter()
    runner = EtlRunner(settings)
    try:
        summary = runner.run_once()
    finally:
        runner.close()
    meta = {"etl_s": round(time.perf_counter() - start, 1), "rows_in": summary.rows_in,
            "new": summary.rows_out}
    out = src / "aggregates"
    shutil.copytree(src / "lake" / AGGREGATES_DATASET, out / AGGREGATES_DATASET)
    shutil.rmtree(src / "lake")
    shutil.rmtree(src / "data")
    done.write_text(json.dumps(meta))
    return out, meta


def detect_progress(engine: Any) -> list[str | None]:
    """Every shard's "complete to" and the incident step's "fed to" (None: not yet)."""
    from sqlalchemy.exc import SQLAlchemyError

    from mad.lake import shard_name
    from mad.state import DetectStore

    db = DetectStore(engine)
    prefix = f"complete:{DETECT_WINDOW}:"
    try:
        complete = db.load_meta_under(prefix)
        step = db.load_meta(f"incidents:{DETECT_WINDOW}:of{DETECT_SHARDS}") or {}
    except SQLAlchemyError:  # tables not there yet, or the database busy
        return [None] * (DETECT_SHARDS + 1)
    ends = [(complete.get(prefix + shard_name(k, DETECT_SHARDS)) or {}).get("to")
            for k in range(DETECT_SHARDS)]
    return [*[str(e) if e is not None else None for e in ends],
            str(step["fed_to"]) if step.get("fed_to") is not None else None]


def shard_holders_now(engine: Any) -> set[str]:
    """Owners (host:pid:id) of the detection shard leases held now."""
    from sqlalchemy.exc import SQLAlchemyError

    from mad.state.leases import LeaseStore

    try:
        return {h.owner for h in LeaseStore(engine).held(f"detect:{DETECT_WINDOW}:shard:")}
    except SQLAlchemyError:
        return set()


def detect_counts(run: Path, state_url: str) -> tuple[int, int, int, float]:
    """(series windows recorded by the passes, anomalies stored, incidents, the first
    recorded pass's start as epoch seconds)."""
    import pyarrow.parquet as pq
    from sqlalchemy import func, select

    from mad.lake import ANOMALIES_DATASET
    from mad.state import DetectStore, open_state
    from mad.state.detect_runs import detect_runs

    engine = open_state(state_url)
    try:
        with engine.connect() as conn:
            points, first = conn.execute(
                select(func.coalesce(func.sum(detect_runs.c.points), 0),
                       func.min(detect_runs.c.started_at))
                .where(detect_runs.c.window == DETECT_WINDOW)).one()
        db = DetectStore(engine)
        incidents = len(db.incidents(1_000_000))
    finally:
        engine.dispose()
    files = sorted((run / "lake" / ANOMALIES_DATASET).rglob("*.parquet"))
    anomalies = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return int(points), anomalies, incidents, first.timestamp() if first else 0.0


def detect_measurement(name: str, workers: int, aggregates: Path, work: Path,
                       target: str | None) -> DetectResult | None:
    """`workers` detection processes sharing DETECT_SHARDS shards, until all are complete."""
    from mad.state import open_state

    run = work / f"run-{name}"
    shutil.rmtree(run, ignore_errors=True)
    linked_copy(aggregates, run / "lake")
    (run / "data").mkdir(parents=True)
    state_url = f"sqlite:///{run / 'data' / 'state.db'}"
    env = clean_env(MAD_DATA_DIR=str(run / "data"), MAD_LAKE__URL=str(run / "lake"),
                    MAD_STATE__URL=state_url, MAD_DETECT__WINDOW=DETECT_WINDOW,
                    MAD_DETECT__SHARDS=str(DETECT_SHARDS), MAD_DETECT__WATCH_INTERVAL_S="1")
    print(f"  {name}: {workers} `mad detect run --watch` process(es), "
          f"{DETECT_SHARDS} shards ...", flush=True)
    logs = [run / f"worker{i}.log" for i in range(workers)]
    start = time.perf_counter()
    to_epoch = time.time() - start
    procs = [module_child("mad.cli", ["detect", "run", "--watch"], env, log) for log in logs]
    engine = open_state(state_url)
    seen: str | None = None
    seen_at = 0.0
    finished: float | None = None
    owners: set[str] = set()
    try:
        while time.perf_counter() - start < DETECT_SECONDS:
            owners |= shard_holders_now(engine)
            if any(p.poll() is not None for p in procs):
                print(f"    {name}: a worker exited early:\n{tail(logs[0])}", flush=True)
                break
            ends = detect_progress(engine)
            now = time.perf_counter()
            same = ends[0] if ends[0] is not None and len(set(ends)) == 1 else None
            if same != seen:
                seen, seen_at = same, now
            if seen is not None and (seen == target or
                                     (target is None and now - seen_at >= STABLE_S)):
                finished = seen_at
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
        codes = stop(procs)
    if finished is None or seen is None:
        print(f"    {name}: not complete within {DETECT_SECONDS:.0f} s (last {seen}); left out",
              flush=True)
        return None
    windows, anomalies, incidents, first = detect_counts(run, state_url)
    series = count_series(run)
    seconds = finished - start
    from_pass = finished + to_epoch - first if first else seconds
    holders = len({o.rsplit(":", 1)[0] for o in owners})
    print(f"    complete to {seen} after {seconds:.1f} s ({from_pass:.1f} s from the first "
          f"pass); {holders} process(es) held shards; exit codes {codes}", flush=True)
    return DetectResult(name, workers, seconds, windows, series, anomalies, incidents, seen,
                        codes, from_pass, holders)


def count_series(run: Path) -> int:
    """Distinct (service, series) of the aggregates scored."""
    import duckdb

    from mad.lake import AGGREGATES_DATASET

    glob = str(run / "lake" / AGGREGATES_DATASET / "**" / "*.parquet")
    con = duckdb.connect()
    try:
        row = con.execute("select count(*) from (select distinct service, series from "
                          f"read_parquet('{glob}', hive_partitioning = true) where "
                          f"\"window\" = '{DETECT_WINDOW}')").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def detect_measurements(raw: Path, work: Path, names: list[str],
                        repeat: int) -> list[DetectResult]:
    print("preparing the 1m aggregates (DuckDB engine) ...", flush=True)
    aggregates, meta = prepare_aggregates(raw, work)
    print(f"  {json.dumps(meta)}", flush=True)
    results: list[DetectResult] = []
    target: str | None = None
    for name, workers in [c for _ in range(repeat) for c in DETECT if c[0] in names]:
        got = detect_measurement(name, workers, aggregates, work, target)
        if got is not None:
            results.append(got)
            target = target or got.complete_to
            shutil.rmtree(work / f"run-{name}", ignore_errors=True)
    return results


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def report_detect(results: list[DetectResult]) -> None:
    print(f"\n{load_average()}")
    print(f"{'contender':<10} {'workers':>7} {'series':>6} {'series-windows':>14} "
          f"{'seconds':>7} {'s-w/s':>6} {'from pass':>9} {'s-w/s':>6} {'anomalies':>9} "
          f"{'incidents':>9} {'held by':>7}  complete to")
    for r in results:
        print(f"{r.name:<10} {r.workers:>7} {r.series:>6} {r.series_windows:>14,} "
              f"{r.seconds:>7.1f} {r.per_s:>6,.0f} {r.from_pass_s:>9.1f} "
              f"{r.per_s_from_pass:>6,.0f} {r.anomalies:>9,} {r.incidents:>9,} "
              f"{r.holders:>7}  {r.complete_to}")
    one = [r for r in results if r.name == "detect-1w"]
    two = [r for r in results if r.name == "detect-2w"]
    if one and two:
        for label, rate in (("from start", lambda r: r.per_s),
                            ("from the first pass", lambda r: r.per_s_from_pass)):
            a, b = median([rate(r) for r in one]), median([rate(r) for r in two])
            print(f"speed-up 2 workers vs 1 (median series-windows/s, {label}): "
                  f"{b / a:.2f}x ({a:,.0f} -> {b:,.0f})")
        pairs = [f"{y.per_s / x.per_s:.2f}x" for x, y in zip(one, two, strict=False)]
        print(f"  per round (from start; 1 worker, then 2, back to back): {', '.join(pairs)}")
    outcomes = {(r.series_windows, r.anomalies, r.incidents, r.complete_to) for r in results}
    if len(results) > 1:
        print(f"same series windows, anomalies, incidents and end in every run: "
              f"{'yes' if len(outcomes) == 1 else 'NO'} {sorted(outcomes)}")


# -- ingest part -----------------------------------------------------------------------------

@dataclass
class IngestResult:
    name: str
    shards: int
    events: int
    per_shard: list[int]
    seconds: float
    from_lease_s: float
    lake_lines: int
    exit_code: int | None

    @property
    def per_s_per_shard(self) -> float:
        return self.events / self.seconds / self.shards if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A moto server on a free loopback port, once it answers HTTP."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = module_child("moto.server", ["-H", "127.0.0.1", "-p", str(port)], clean_env(),
                        work / "moto.log")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"moto server exited: {tail(work / 'moto.log')}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return proc, url
        except urllib.error.HTTPError:  # any HTTP answer means it is up
            return proc, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    stop([proc])
    raise SystemExit("moto server did not answer within 60 s")


def ingest_events(work: Path, events: int) -> list[tuple[str, bytes]]:
    """About `events` generated lines at the default rate (no malformed lines), keyed by
    service; kept in `work`."""
    from mad.config import load_settings
    from mad.generate.backfill import run_backfill

    folder = work / f"ingest-{events}"
    path = folder / "events.jsonl"
    rate = load_settings(env={}).generate.rate
    minutes = max(1, round(events / rate / 60))
    while True:  # the daily curve is low at the start of the day: double until enough
        if not path.is_file():
            settings = load_settings(env={}, overrides={"generate.faults.malformed": 0,
                                                        "generate.duration": f"{minutes}m"})
            run_backfill(settings.generate, folder, progress=False)
        lines = path.read_bytes().splitlines()
        if len(lines) >= events or minutes >= 24 * 60:
            break
        path.unlink()
        minutes *= 2
    lines = lines[:events]
    return [(str(json.loads(line).get("service") or "unknown"), line) for line in lines]


def lake_lines(lake: Path) -> int:
    return sum(len(gzip.decompress(p.read_bytes()).splitlines())
               for p in lake.glob("md-raw-*/**/*.jsonl.gz"))


def ingest_measurement(name: str, shards: int, url: str, events: list[tuple[str, bytes]],
                       work: Path) -> IngestResult | None:
    """Fill a stream of `shards` shards, then time one writer process draining it."""
    from mad.ingest.shard_leases import shard_holders
    from mad.ingest.streams.kinesis.stream import KinesisStream
    from mad.state import open_state
    from mad.state.leases import LeaseStore

    run = work / f"run-{name}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    state_url = f"sqlite:///{run / 'state.db'}"
    stream = f"bench-{name}-{os.getpid()}-{time.monotonic_ns()}"
    print(f"  {name}: stream of {shards} shard(s), {len(events):,} events ...", flush=True)
    feed = KinesisStream(stream_name=stream, shards=shards, endpoint_url=url,
                         access_key_id="testing", secret_access_key="testing",
                         state_url=state_url, wait_seconds=60)
    engine = open_state(state_url)
    proc: subprocess.Popen[bytes] | None = None
    try:
        last: dict[str, int] = {}
        counts: dict[str, int] = {}
        put_start = time.perf_counter()
        for i in range(0, len(events), 500):
            for ack in feed.append(events[i:i + 500]):
                last[ack.shard] = max(last.get(ack.shard, -1), ack.position)
                counts[ack.shard] = counts.get(ack.shard, 0) + 1
        print(f"    put in {time.perf_counter() - put_start:.1f} s: "
              f"{[counts.get(s, 0) for s in feed.shards()]} per shard", flush=True)
        env = clean_env(
            MAD_DATA_DIR=str(run / "data"), MAD_STATE__URL=state_url,
            MAD_LAKE__URL=str(run / "lake"), MAD_INGEST__STREAM__BACKEND="kinesis",
            MAD_INGEST__STREAM__KINESIS__STREAM_NAME=stream, MAD_AWS__ENDPOINT_URL=url,
            MAD_AWS__ACCESS_KEY_ID="testing", MAD_AWS__SECRET_ACCESS_KEY="testing",
            MAD_WRITER__FLUSH_INTERVAL_S="1")
        leases = LeaseStore(engine)
        start = time.perf_counter()
        proc = module_child("mad.cli", ["ingest", "writer"], env, run / "writer.log")
        leased: float | None = None
        finished: float | None = None
        while time.perf_counter() - start < INGEST_SECONDS:
            if proc.poll() is not None:
                print(f"    the writer exited early:\n{tail(run / 'writer.log')}", flush=True)
                break
            if leased is None and shard_holders(leases, WRITER_CONSUMER):
                leased = time.perf_counter()
            if all((feed.committed(WRITER_CONSUMER, s) or -1) >= pos
                   for s, pos in last.items()):
                finished = time.perf_counter()
                break
            time.sleep(0.2)
        code = stop([proc])[0]
    finally:
        if proc is not None and proc.poll() is None:
            stop([proc])
        feed.close()
        engine.dispose()
    if finished is None:
        print(f"    {name}: not drained within {INGEST_SECONDS:.0f} s; left out", flush=True)
        return None
    lines = lake_lines(run / "lake")
    seconds = finished - start
    from_lease = finished - (leased if leased is not None else start)
    print(f"    drained in {seconds:.1f} s ({from_lease:.1f} s from the first lease); "
          f"{lines:,} lines in the lake; exit code {code}", flush=True)
    shutil.rmtree(run, ignore_errors=True)
    return IngestResult(name, shards, len(events), [counts.get(s, 0) for s in sorted(counts)],
                        seconds, from_lease, lines, code)


def ingest_measurements(work: Path, events: int, names: list[str],
                        repeat: int) -> list[IngestResult]:
    chosen = [c for _ in range(repeat) for c in INGEST if c[0] in names]
    if not chosen:
        return []
    print(f"preparing {events:,} events for the stream ...", flush=True)
    lines = ingest_events(work, events)
    size = sum(len(line) for _, line in lines)
    print(f"  {len(lines):,} events, {size / len(lines):,.0f} bytes/event", flush=True)
    moto, url = start_moto(work)
    try:
        return [r for name, shards in chosen
                if (r := ingest_measurement(name, shards, url, lines, work)) is not None]
    finally:
        stop([moto], grace=10)


def report_ingest(results: list[IngestResult]) -> None:
    print(f"\n{load_average()}")
    print(f"{'contender':<10} {'shards':>6} {'events':>7} {'per shard':>15} {'seconds':>7} "
          f"{'from lease':>10} {'events/s':>8} {'ev/s/shard':>10} {'lake lines':>10}")
    for r in results:
        print(f"{r.name:<10} {r.shards:>6} {r.events:>7,} {r.per_shard!s:>15} "
              f"{r.seconds:>7.1f} {r.from_lease_s:>10.1f} {r.events / r.seconds:>8,.0f} "
              f"{r.per_s_per_shard:>10,.0f} {r.lake_lines:>10,}")
    one = [r for r in results if r.name == "ingest-1s"]
    two = [r for r in results if r.name == "ingest-2s"]
    if one and two:
        a = median([r.events / r.seconds for r in one])
        b = median([r.events / r.seconds for r in two])
        print(f"one writer, 2 shards vs 1 (median events/s): {b / a:.2f}x "
              f"({a:,.0f} -> {b:,.0f}; per shard {a:,.0f} -> {b / 2:,.0f})")
        pairs = [f"{y.events / y.seconds / (x.events / x.seconds):.2f}x"
                 for x, y in zip(one, two, strict=False)]
        print(f"  per round (1 shard, then 2 shards, back to back): {', '.join(pairs)}")


def versions() -> str:
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    java_line = (java.stderr or java.stdout).splitlines()[0] if (java.stderr or java.stdout) \
        else "java: unknown"
    return (f"python {platform.python_version()}, pyspark {pyspark.__version__}, {java_line}, "
            f"{os.cpu_count()} cores, {platform.platform()}")


def main() -> None:
    if len(sys.argv) > 3 and sys.argv[1] == "--module" and sys.argv[3] == "--":
        run_module(sys.argv[2], sys.argv[4:])
        return
    every = [*PARTS["etl"], *PARTS["detect"], *PARTS["ingest"]]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000,
                        help="lines of the simulated day")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mad-bench-scale"))
    parser.add_argument("--only", help="comma-separated parts: " + ", ".join(PARTS))
    parser.add_argument("--contenders", default=",".join(every),
                        help="comma-separated subset of " + ", ".join(every))
    parser.add_argument("--ingest-events", type=int, default=80_000,
                        help="events put in the Kinesis stream of the ingest part")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each detection and ingest contender, interleaved")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.master, args.workers, args.run)))
        return
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = set(names) - set(every)
    if unknown:
        raise SystemExit(f"unknown contender(s) {sorted(unknown)}")
    if args.only:
        parts = [p.strip() for p in args.only.split(",") if p.strip()]
        if set(parts) - set(PARTS):
            raise SystemExit(f"unknown part(s) {sorted(set(parts) - set(PARTS))}")
        names = [n for n in names if any(n in PARTS[p] for p in parts)]
    print("$ " + " ".join([os.path.relpath(sys.executable), *sys.argv]))
    print(versions())
    print(load_average())
    work = args.work / f"e{args.events}"
    if any(n in PARTS["etl"] or n in PARTS["detect"] for n in names):
        print(f"preparing the raw lake in {work}", flush=True)
        raw, lines, size = prepare_gz(work, args.events)
        print(f"  {lines:,} lines, {size / 2**20:,.1f} MB gzipped", flush=True)
        if any(n in PARTS["etl"] for n in names):
            report_etl(etl_measurements(raw, lines, work, names))
        if any(n in PARTS["detect"] for n in names):
            report_detect(detect_measurements(raw, work, names, args.repeat))
    if any(n in PARTS["ingest"] for n in names):
        work.mkdir(parents=True, exist_ok=True)
        report_ingest(ingest_measurements(work, args.ingest_events, names, args.repeat))

if __name__ == "__main__":
    main()
