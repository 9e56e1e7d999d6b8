"""A process that ignores Ctrl-C (a `mad up` child) still ignores it once it runs Spark:
PySpark's own SIGINT handler would cancel every job and raise KeyboardInterrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

CHILD = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from mad.etl.engines.spark.session import spark_session
    spark = spark_session(master="local[1]", app_name="mad-signal-test")
    print("ready", flush=True)
    sys.stdin.readline()  # the test sends SIGINT before this line arrives
    print("count", spark.range(3).count(), flush=True)
    spark.stop()
""")


def test_sigint_is_still_ignored_after_the_session_starts() -> None:
    pytest.importorskip("pyspark", reason="pyspark is not installed")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGINT)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "count 3"
    assert "KeyboardInterrupt" not in err
