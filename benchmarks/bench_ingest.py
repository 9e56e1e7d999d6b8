"""Ingest throughput against the old Kinesis -> S3 way and against a floor, in one run, with
the raw writer in a process of its own (today) and in a thread of the API's process.

Same generated events (a backfill, faults included) for all four:

* ours, writer process: `mad ingest serve` (embedded stream, raw writer, local lake) as a
  subprocess, loaded by several client processes posting NDJSON batches over keep-alive
  HTTP. Sustained events/s is the events acknowledged over the time from the first post
  until the raw writer has committed them all (stream lag 0 in /metrics), i.e. until the
  lake holds everything. The raw writer is the supervisor's child process, reading the
  stream as a reader.
* ours, writer thread: the same API (`mad.runtime.servers.ServerThread`) with
  `mad.runtime.writer.run_writer` in a thread of the same process, on the owner's stream;
  started by this script (`--serve-thread`), not a product setting. Same load, same measure.
* peer: one `put_record` per event to Kinesis on a moto server, and a consumer
  (GetShardIterator / GetRecords) writing each GetRecords batch as one JSONL object to S3 on
  the same moto server. moto is slow, so this runs on a sample; the figure is a rate.
* floor: the same bytes gzip'ed to local files in ~5 MiB chunks (the raw writer's flush size),
  each fsync'ed, in one process, with no HTTP and no stream.
* base commit (with `--base DIR`): `mad ingest serve` of another source tree, e.g. an earlier
  commit checked out with `git worktree add DIR <commit>`, run first with the same load, to
  compare a change with what it replaces in one run.

    .venv/bin/python benchmarks/bench_ingest.py [--events 300000] [--procs 3] [--conns 2]
        [--batch 500] [--gzip] [--peer-events 5000] [--peer-shards 1] [--base DIR]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from mad.config import GenerateSettings, WriterSettings
from mad.generate.backfill import run_backfill

ROOT = Path(__file__).resolve().parents[1]
FLUSH_BYTES = WriterSettings().flush_bytes  # the raw writer's default flush size (uncompressed)
GZIP_LEVEL = WriterSettings().gzip_level  # and its compression level
MAX_ATTEMPTS = 20  # per batch, on 429 / 503 / a dropped connection
CATCH_UP_TIMEOUT_S = 120.0
PEER_TIMEOUT_S = 300.0
PEER_IDLE_S = 0.2  # consumer sleep when GetRecords returns nothing
LAG_METRIC = "mad_ingest_stream_lag_records"


def conftest() -> ModuleType:
    """tests/conftest.py, for `free_port` and `start_moto`."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import conftest as module

    return module


# -- test data -----------------------------------------------------------------------------


def make_events(n: int, tmp: Path) -> list[bytes]:
    """The first `n` lines of a one-hour backfill (faults included), newline-terminated."""
    rate = max(1.0, n * 3.2 / 3600)
    while True:
        out = tmp / f"backfill-{rate:.0f}"
        gs = GenerateSettings(rate=min(rate, 1_000_000), duration="1h",
                              start="2026-11-02T09:00:00Z")
        run_backfill(gs, out, progress=False)
        lines = (out / "events.jsonl").read_bytes().splitlines(keepends=True)
        if len(lines) >= n or rate >= 1_000_000:
            return lines[:n]
        rate *= 1.5


def batches_of(lines: list[bytes], size: int, compress: bool) -> list[tuple[int, bytes]]:
    """(line count, request body) per batch, built before anything is timed."""
    out = []
    for i in range(0, len(lines), size):
        body = b"".join(lines[i:i + size])
        out.append((len(lines[i:i + size]), gzip.compress(body, 1) if compress else body))
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- ours: the ingest API under load -------------------------------------------------------


@dataclass
class ConnResult:
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    failed: int = 0
    first: float = float("inf")
    last: float = 0.0


def post_all(port: int, batches: list[tuple[int, bytes]], compress: bool,
             res: ConnResult) -> None:
    """Post `batches` in order on one keep-alive connection, retrying 429/503 boundedly."""
    headers = {"Content-Type": "application/x-ndjson"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _, body in batches:
        for _attempt in range(MAX_ATTEMPTS):
            t = time.monotonic()
            res.first = min(res.first, t)
            try:
                conn.request("POST", "/v1/events", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                res.retries += 1
                time.sleep(0.1)
                continue
            done = time.monotonic()
            if resp.status == 200:
                res.latencies.append(done - t)
                ack = orjson.loads(data)
                res.accepted += int(ack["accepted"])
                res.rejected += int(ack["rejected"])
                res.last = done
                break
            if resp.status in (429, 503):
                res.retries += 1
                time.sleep(min(float(resp.getheader("Retry-After") or 1), 5.0))
                continue
            res.failed += 1
            break
        else:
            res.failed += 1
    conn.close()


def client_process(port: int, per_conn: list[list[tuple[int, bytes]]], compress: bool,
                   ready: Barrier, out: Any) -> None:
    """One load-generator process: a thread per connection, started together."""
    results = [ConnResult() for _ in per_conn]
    threads = [threading.Thread(target=post_all, args=(port, b, compress, r))
               for b, r in zip(per_conn, results, strict=True)]
    ready.wait()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(results)


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def stream_lag(base: str) -> int | None:
    """Records not yet committed by the raw writer, summed over shards (None: no shards)."""
    total, seen = 0, False
    for line in get(f"{base}/metrics").decode().splitlines():
        if line.startswith(LAG_METRIC + "{") or line.startswith(LAG_METRIC + " "):
            total += int(float(line.rsplit(" ", 1)[1]))
            seen = True
    return total if seen else None


def count_lake(lake: Path) -> dict[str, int]:
    """Records per dataset in the lake's part files."""
    counts: dict[str, int] = {}
    for path in lake.rglob("part-*.jsonl*"):
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        dataset = path.relative_to(lake).parts[0]
        counts[dataset] = counts.get(dataset, 0) + data.count(b"\n")
    return counts


@dataclass
class Ours:
    name: str
    sent: int
    accepted: int
    rejected: int
    retries: int
    failed: int
    requests: int
    post_s: float  # first post -> last ack
    total_s: float  # first post -> lag 0
    p50_ms: float
    p99_ms: float
    exit_code: int | None
    lake: dict[str, int]

    @property
    def rate(self) -> float:
        return (self.accepted + self.rejected) / self.total_s


SERVE_PROCESS = [sys.executable, "-m", "mad.cli", "ingest", "serve"]
SERVE_THREAD = [sys.executable, str(Path(__file__).resolve()), "--serve-thread"]


def serve_with_writer_thread() -> int:
    """`--serve-thread`: what `mad ingest serve` runs, with the raw writer in a thread of this
    process on the owner's stream instead of a child process on a reader, so the API and the
    writer share one interpreter. Settings from MAD_* as for `mad ingest serve`; SIGTERM stops
    the API first, then lets the writer write what is left, then closes the stream."""
    from mad.config import load_settings
    from mad.ingest.api import create_app
    from mad.ingest.wiring import open_configured_stream
    from mad.runtime.servers import ServerThread
    from mad.runtime.signals import stop_on_signals
    from mad.runtime.writer import run_writer

    settings = load_settings()
    ing = settings.ingest
    stop, writer_stop = threading.Event(), threading.Event()
    stream = open_configured_stream(settings)
    api = ServerThread(create_app(settings, stream), ing.host, ing.port, "bench-ingest-api")
    writer = threading.Thread(
        target=run_writer, args=(settings,), name="bench-raw-writer",
        kwargs={"stream": stream, "stop": writer_stop, "drain": True, "signals": ()})
    try:
        writer.start()
        api.start()
        with stop_on_signals(stop):
            while not stop.wait(0.5):
                if not (api.alive() and writer.is_alive()):
                    print("the API or the writer thread stopped", file=sys.stderr)
                    return 1
    finally:
        api.stop()
        writer_stop.set()
        writer.join()
        stream.close()
    return 0


def run_ours(name: str, command: list[str], lines: list[bytes], tmp: Path, procs: int,
             conns: int, batch: int, compress: bool,
             extra_env: dict[str, str] | None = None) -> Ours:
    """Start `command` (the ingest service, settings through MAD_*), load it, time it."""
    tmp.mkdir()
    port = conftest().free_port()
    base = f"http://127.0.0.1:{port}"
    batches = batches_of(lines, batch, compress)
    env = {**os.environ, "MAD_DATA_DIR": str(tmp / "data"), "MAD_LAKE__URL": str(tmp / "lake"),
           "MAD_INGEST__PORT": str(port), "MAD_INGEST__HOST": "127.0.0.1",
           "MAD_INGEST__STREAM__BACKEND": "embedded", "MAD_WRITER__FLUSH_INTERVAL_S": "1",
           "MAD_LOG_LEVEL": "WARNING", **(extra_env or {})}
    log = (tmp / "serve.log").open("wb")
    server = subprocess.Popen(command, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"ingest serve exited: {(tmp / 'serve.log').read_text()}")
            try:
                get(f"{base}/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("ingest serve did not answer within 60 s") from None
                time.sleep(0.1)

        n_conn = procs * conns
        per_conn = [batches[i::n_conn] for i in range(n_conn)]
        ctx = mp.get_context("fork")  # batches are inherited, not pickled
        ready = ctx.Barrier(procs + 1)
        out = ctx.Queue()
        workers = [ctx.Process(target=client_process,
                               args=(port, per_conn[p * conns:(p + 1) * conns], compress, ready,
                                     out))
                   for p in range(procs)]
        for w in workers:
            w.start()
        ready.wait(timeout=60)
        results: list[ConnResult] = [r for _ in workers for r in out.get(timeout=600)]
        for w in workers:
            w.join()

        first = min(r.first for r in results)
        last_ack = max(r.last for r in results)
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while True:
            lag = stream_lag(base)
            now = time.monotonic()
            if lag == 0 or now > deadline:
                break
            time.sleep(0.05)
        caught_up = now
        if lag != 0:
            print(f"warning: raw writer still {lag} records behind after "
                  f"{CATCH_UP_TIMEOUT_S:.0f} s", file=sys.stderr)

        server.send_signal(signal.SIGTERM)
        try:
            code: int | None = server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()

    lat = [x for r in results for x in r.latencies]
    return Ours(
        name=name, sent=len(lines), accepted=sum(r.accepted for r in results),
        rejected=sum(r.rejected for r in results), retries=sum(r.retries for r in results),
        failed=sum(r.failed for r in results), requests=len(lat),
        post_s=last_ack - first, total_s=caught_up - first,
        p50_ms=pct(lat, 0.50) * 1000, p99_ms=pct(lat, 0.99) * 1000,
        exit_code=code, lake=count_lake(tmp / "lake"),
    )


# -- peer: put_record per event to Kinesis, GetRecords batches to S3 (moto) ----------------


def aws_client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def peer_consumer(endpoint: str, stream: str, bucket: str, expected: int, out: Any) -> None:
    """GetRecords on every shard; each non-empty batch becomes one JSONL object in S3."""
    kinesis, s3 = aws_client("kinesis", endpoint), aws_client("s3", endpoint)
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    its = {s: kinesis.get_shard_iterator(StreamName=stream, ShardId=s,
                                         ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
           for s in shards}
    written = objects = 0
    last = time.monotonic()
    deadline = last + PEER_TIMEOUT_S
    while written < expected and time.monotonic() < deadline:
        got = 0
        for shard in shards:
            resp = kinesis.get_records(ShardIterator=its[shard], Limit=10_000)
            its[shard] = resp["NextShardIterator"]
            recs = resp["Records"]
            if not recs:
                continue
            body = b"".join(r["Data"] if r["Data"].endswith(b"\n") else r["Data"] + b"\n"
                            for r in recs)
            s3.put_object(Bucket=bucket, Key=f"raw/{shard}/{recs[0]['SequenceNumber']}.jsonl",
                          Body=body)
            written += len(recs)
            objects += 1
            got += len(recs)
            last = time.monotonic()
        if not got:
            time.sleep(PEER_IDLE_S)
    out.put((written, objects, last))


@dataclass
class Peer:
    events: int
    written: int
    objects: int
    in_s3: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.written / self.seconds


def run_peer(lines: list[bytes], tmp: Path, shards: int) -> Peer:
    moto, endpoint = conftest().start_moto(tmp)
    try:
        kinesis, s3 = aws_client("kinesis", endpoint), aws_client("s3", endpoint)
        stream, bucket = "md-events-bench", "md-raw-bench"
        kinesis.create_stream(StreamName=stream, ShardCount=shards)
        kinesis.get_waiter("stream_exists").wait(StreamName=stream,
                                                 WaiterConfig={"Delay": 0.2})
        s3.create_bucket(Bucket=bucket)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        consumer = ctx.Process(target=peer_consumer,
                               args=(endpoint, stream, bucket, len(lines), out))
        consumer.start()
        first = time.monotonic()
        for i, line in enumerate(lines):
            kinesis.put_record(StreamName=stream, Data=line, PartitionKey=str(i))
        written, objects, last = out.get(timeout=PEER_TIMEOUT_S + 60)
        consumer.join()
        in_s3 = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                in_s3 += s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().count(
                    b"\n")
    finally:
        conftest().stop_process(moto)
    return Peer(len(lines), written, objects, in_s3, last - first)


# -- floor: gzip to local files ------------------------------------------------------------


def run_floor(lines: list[bytes], tmp: Path) -> float:
    """Seconds to gzip the lines into ~FLUSH_BYTES files (fsync'ed), one process."""
    out = tmp / "floor"
    out.mkdir()
    t = time.monotonic()
    chunk: list[bytes] = []
    size = n = 0
    for line in [*lines, b""]:
        if line:
            chunk.append(line)
            size += len(line)
        if chunk and (size >= FLUSH_BYTES or not line):
            data = gzip.compress(b"".join(chunk), compresslevel=GZIP_LEVEL, mtime=0)
            fd = os.open(out / f"part-{n:05d}.jsonl.gz", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            chunk, size, n = [], 0, n + 1
    return time.monotonic() - t


# -- report --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="events for ours / floor")
    parser.add_argument("--procs", type=int, default=3, help="load-generator processes")
    parser.add_argument("--conns", type=int, default=2, help="connections per process")
    parser.add_argument("--batch", type=int, default=500, help="NDJSON lines per request")
    parser.add_argument("--gzip", action="store_true", help="gzip request bodies")
    parser.add_argument("--peer-events", type=int, default=5_000,
                        help="sample posted to Kinesis on moto (first N of the same events)")
    parser.add_argument("--peer-shards", type=int, default=1, help="Kinesis shards (moto)")
    parser.add_argument("--base", type=Path, help="another source tree (e.g. a git worktree of "
                        "an earlier commit): its `mad ingest serve` runs as one more contender")
    parser.add_argument("--serve-thread", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.base is not None and not (args.base / "src" / "mad").is_dir():
        parser.error(f"--base {args.base} holds no src/mad (git worktree add DIR <commit>)")
    if args.serve_thread:  # the launcher of the writer-thread contender, in its own process
        raise SystemExit(serve_with_writer_thread())
    if min(args.events, args.procs, args.conns, args.batch, args.peer_events,
           args.peer_shards) < 1:
        parser.error("every number must be >= 1")

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as d:
        tmp = Path(d)
        lines = make_events(max(args.events, args.peer_events), tmp)
        (tmp / "peer").mkdir()
        work = (lines[:args.events], args.procs, args.conns, args.batch, args.gzip)
        base = None
        if args.base is not None:  # first, so a warming machine does not favour ours
            base = run_ours("base commit", SERVE_PROCESS, work[0], tmp / "base", *work[1:],
                            extra_env={"PYTHONPATH": str(args.base.resolve() / "src")})
        ours = run_ours("writer process", SERVE_PROCESS, work[0], tmp / "ours", *work[1:])
        thread = run_ours("writer thread", SERVE_THREAD, work[0], tmp / "thread", *work[1:])
        peer = run_peer(lines[:args.peer_events], tmp / "peer", args.peer_shards)
        floor_s = run_floor(lines[:args.events], tmp)
    load1 = os.getloadavg()

    floor = args.events / floor_s
    mb = sum(len(x) for x in lines[:args.events]) / 2**20
    print(f"events                 : {args.events:,} lines ({mb:.0f} MiB NDJSON), faults "
          f"included; peer sample {args.peer_events:,}")
    print(f"load generator         : {args.procs} processes x {args.conns} connections, "
          f"{args.batch} lines/request, gzip {'on' if args.gzip else 'off'}")
    runs = [r for r in (base, ours, thread) if r is not None]
    for run in runs:
        describe(run)
    ok = "OK" if peer.in_s3 == peer.events else "MISMATCH"
    print(f"peer sanity            : {peer.in_s3:,} records in {peer.objects} S3 objects vs "
          f"{peer.events:,} put: {ok}")
    print()
    rows = [("base commit: mad ingest serve (post -> lake)", f"{base.rate:,.0f}")] if base \
        else []
    rows += [
        ("ours: mad ingest serve, writer process (post -> lake)", f"{ours.rate:,.0f}"),
        ("ours: API + writer thread, one process (post -> lake)", f"{thread.rate:,.0f}"),
        ("peer (a): put_record/event -> Kinesis -> S3 (moto)", f"{peer.rate:,.0f}"),
        ("floor (b): gzip ~5 MiB chunks to local files", f"{floor:,.0f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'events/s':>12}")
    for name, value in rows:
        print(f"{name:<{width}}  {value:>12}")
    print()
    if base is not None:
        print(f"ratio ours/base commit : {ours.rate / base.rate:,.2f}x")
    print(f"ratio thread/process   : {thread.rate / ours.rate:,.2f}x")
    print(f"ratio ours/peer        : {ours.rate / peer.rate:,.1f}x")
    print(f"ratio floor/ours       : {floor / ours.rate:,.1f}x")
    for run in runs:
        print(f"ack latency, {run.name:<14}: p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms "
              f"per {args.batch}-line request")
    print(f"CPUs                   : {os.cpu_count()}; load average before "
          f"{load0[0]:.2f}, after {load1[0]:.2f} (1 min)")


def describe(run: Ours) -> None:
    """What one contender acknowledged, when, and whether its lake holds every line."""
    acked = run.accepted + run.rejected
    label = f"{run.name:<15}"
    print(f"{label}acknowledged: {acked:,} ({run.accepted:,} accepted, {run.rejected:,} "
          f"rejected) in {run.requests:,} requests; {run.retries} retries, {run.failed} failed")
    print(f"{label}timeline    : last ack {run.post_s:.2f} s, lake complete "
          f"{run.total_s:.2f} s after first post")
    total, errors = sum(run.lake.values()), run.lake.get("md-raw-errors", 0)
    ok = "OK" if total == run.sent else "MISMATCH"
    print(f"{label}lake sanity : {total:,} records ({total - errors:,} valid + {errors:,} "
          f"md-raw-errors) vs {run.sent:,} lines sent: {ok}; server exit {run.exit_code}")


if __name__ == "__main__":
    main()
