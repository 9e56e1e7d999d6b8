"""`mad dashboard` as a real process: it serves until SIGTERM and then exits 0; a port that
is taken, or a bad flag, is one line and a non-zero exit code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MAD = [sys.executable, "-m", "mad.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(data: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MAD_")},
            "MAD_DATA_DIR": str(data)}


def test_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*MAD, "dashboard", "--port", str(port)], env=env_for(tmp_path),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        answer = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=2) as reply:
                    answer = reply.read()
                    break
            except OSError:
                time.sleep(0.2)
        assert answer == b"ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(tmp_path.iterdir()) == [], "serving an empty data folder created files"


def test_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*MAD, "dashboard", "--port", str(port)], env=env_for(tmp_path),
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_port_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([*MAD, "dashboard", "--port", "70000"], env=env_for(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "mad: error: bad setting dashboard.port=70000: Input should be less than or equal "
        "to 65535 (allowed: >= 1 and <= 65535)"]


def test_a_bind_beyond_loopback_is_warned_about() -> None:
    from mad.dashboard.server import exposure_warning

    for host in ("127.0.0.1", "localhost", "::1"):
        assert exposure_warning(host) is None
    for host in ("0.0.0.0", "10.1.2.3", "dashboard.internal"):
        warning = exposure_warning(host)
        assert warning is not None and "no login" in warning and host in warning
