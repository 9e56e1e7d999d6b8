"""A Spark standalone cluster on loopback: one master and N workers from the installed PySpark.

`LocalCluster(workers=2, cores=1, memory="1g")` starts `bin/spark-class` of
`pyspark.find_spark_home()` as a master and workers bound to 127.0.0.1 on free ports, each in
its own process group with its log in a temporary folder, and waits (bounded) until the
master's `/json/` page lists every worker ALIVE. `master_url` is the `spark://` URL to give
`spark_session(master=...)` or `etl.engine.spark.master`. `stop()` terminates, then kills,
each process group, so no JVM outlives it. Used by the tests to run the Spark engine with real
executors; any machine with Java and PySpark can use it the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from mad.errors import ConfigError

START_SECONDS = 60.0  # how long start() waits for every worker to be ALIVE
STOP_SECONDS = 10.0  # how long stop() waits after SIGTERM before SIGKILL
HOST = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held open together while choosing)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


class LocalCluster:
    """A standalone master and `workers` workers of `cores` cores and `memory` each."""

    def __init__(self, workers: int = 2, cores: int = 1, memory: str = "1g") -> None:
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.port = 0
        self.webui_port = 0
        self.log_dir: Path | None = None
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.port}"

    @property
    def webui_url(self) -> str:
        return f"http://{HOST}:{self.webui_port}"

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def spark_class(self) -> str:
        try:
            from pyspark import find_spark_home
        except ImportError as exc:
            raise ConfigError("a local Spark cluster needs pyspark installed") from exc
        script = Path(find_spark_home._find_spark_home()) / "bin" / "spark-class"
        if not script.is_file():
            raise ConfigError(f"spark-class not found at {script}")
        return str(script)

    def launch(self, name: str, args: list[str]) -> None:
        assert self.log_dir is not None
        log = self.log_dir / f"{name}.log"
        env = {**os.environ, "SPARK_LOCAL_IP": HOST, "SPARK_LOG_DIR": str(self.log_dir),
               "SPARK_WORKER_DIR": str(self.log_dir / "work")}
        with log.open("wb") as out:
            proc = subprocess.Popen([self.spark_class(), *args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        self.procs.append((name, proc, log))

    def alive_workers(self) -> int:
        """Workers the master's web UI lists as ALIVE (0 while it does not answer)."""
        try:
            with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=2) as answer:
                state = json.loads(answer.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return 0
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def start(self) -> None:
        """Start the master and workers; return once all workers are ALIVE, or raise."""
        if self.procs:
            return
        self.port, self.webui_port = free_ports(2)
        self.log_dir = Path(tempfile.mkdtemp(prefix="mad-spark-cluster-"))
        try:
            self.launch("master", ["org.apache.spark.deploy.master.Master", "--host", HOST,
                                   "--port", str(self.port), "--webui-port",
                                   str(self.webui_port)])
            for i in range(self.workers):
                work = self.log_dir / f"worker-{i}"
                work.mkdir()
                self.launch(f"worker-{i}", [
                    "org.apache.spark.deploy.worker.Worker", "--host", HOST,
                    "--webui-port", "0", "--cores", str(self.cores), "--memory", self.memory,
                    "--work-dir", str(work), self.master_url])
            self.wait_alive()
        except BaseException:
            self.stop()
            raise

    def wait_alive(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            for name, proc, log in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"spark {name} exited with {proc.returncode}: "
                                       f"{log_tail(log)}")
            if self.alive_workers() >= self.workers:
                return
            time.sleep(0.5)
        _, _, master_log = self.procs[0]
        raise RuntimeError(f"spark master at {self.master_url} did not list {self.workers} "
                           f"ALIVE workers within {START_SECONDS:.0f} s: {log_tail(master_log)}")

    def stop(self) -> None:
        """Terminate, then kill, every process group (workers first); remove the logs."""
        for _, proc, _ in reversed(self.procs):
            signal_group(proc, signal.SIGTERM)
        for _, proc, _ in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_SECONDS)
            signal_group(proc, signal.SIGKILL)  # also any child left in the group
            proc.wait()
        self.procs = []
        if self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
