"""User errors end as one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MAD = [sys.executable, "-m", "mad.cli"]


def mad(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    return subprocess.run([*MAD, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env)


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def command_paths() -> list[list[str]]:
    """Every command and group of the Typer tree, as argument lists (the root is `[]`)."""
    import typer

    from mad.cli import app

    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_the_walk_finds_every_stage() -> None:
    groups = {p[0] for p in command_paths() if p}
    assert {"generate", "simulate", "ingest", "etl", "detect", "bench", "up"} <= groups
    assert len(command_paths()) > 20


@pytest.mark.parametrize("args", command_paths(), ids=lambda a: " ".join(a) or "mad")
def test_every_command_has_help(args: list[str]) -> None:
    proc = mad(*args, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout


def test_bad_flag(tmp_path: Path) -> None:
    one_line_error(mad("generate", "--out", str(tmp_path), "--bogus"), "--bogus")


def test_unknown_scenario(tmp_path: Path) -> None:
    proc = mad("generate", "--out", str(tmp_path), "--scenarios", "error_burst,meteor_strike")
    one_line_error(proc, "meteor_strike", "error_burst", "fraud_spike")


def test_negative_rate(tmp_path: Path) -> None:
    one_line_error(mad("generate", "--out", str(tmp_path), "--rate", "-5"),
                   "generate.rate", "> 0")


def test_bad_duration(tmp_path: Path) -> None:
    one_line_error(mad("generate", "--out", str(tmp_path), "--duration", "soon"),
                   "generate.duration")


def test_unwritable_out(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(mad("generate", "--out", str(blocker / "sub"), "--duration", "10m"), "--out")
    if os.geteuid() != 0:  # root can write anywhere; a read-only dir only stops others
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        one_line_error(mad("generate", "--out", str(ro), "--duration", "10m"), "not writable")


def test_missing_config_file(tmp_path: Path) -> None:
    one_line_error(mad("generate", "--out", str(tmp_path), "--config", str(tmp_path / "no.yaml")),
                   "config file not found")


def test_bad_setting_in_yaml_names_key_and_allowed_values(tmp_path: Path) -> None:
    (tmp_path / "mad.yaml").write_text("log_level: LOUD\n")
    one_line_error(mad("catalog", cwd=tmp_path), "log_level", "DEBUG | INFO | WARNING | ERROR")


def test_unknown_service_for_catalog() -> None:
    one_line_error(mad("catalog", "--service", "ledger"), "ledger", "payments")


def test_etl_backfill_needs_an_ordered_range(tmp_path: Path) -> None:
    one_line_error(mad("etl", "backfill", "--from", "2026-11-02T00:00:00Z", "--to",
                       "2026-11-01T00:00:00Z", cwd=tmp_path), "--from < --to")


def test_etl_reprocess_of_an_unknown_partition(tmp_path: Path) -> None:
    proc = mad("etl", "reprocess", "--partition", "date=2026-11-01/hour=07", cwd=tmp_path)
    one_line_error(proc, "no run wrote md-transformed-logs/date=2026-11-01/hour=07")


def test_catalog_prints_all_types() -> None:
    proc = mad("catalog")
    assert proc.returncode == 0
    assert "59 event types" in proc.stdout


def test_up_refuses_a_rate_the_live_simulator_cannot_keep(tmp_path: Path) -> None:
    one_line_error(mad("up", "--rate", "5000000", cwd=tmp_path), "--rate", "20000")


def test_version() -> None:
    from mad import __version__

    proc = mad("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"mad {__version__}"


def test_log_lines_carry_timestamps_and_follow_log_level(tmp_path: Path) -> None:
    (tmp_path / "mad.yaml").write_text("ingest:\n  stream:\n    kinesis_shards: 2\n")
    proc = mad("catalog", cwd=tmp_path)  # the deprecation warning is a plain line
    assert proc.returncode == 0 and "deprecated" in proc.stderr
    script = ("from mad.cli.common import settings_from\nimport logging\n"
              "settings_from(None)\nlogging.getLogger('mad.x').warning('hello')\n"
              "logging.getLogger('mad.x').info('quiet')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**env, "MAD_LOG_LEVEL": "WARNING"}, timeout=60).stderr
    import re

    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ WARNING mad\.x: hello", out), out
    assert "quiet" not in out


@pytest.mark.parametrize("group", ["ingest", "etl", "detect"])
def test_a_status_command_on_a_mistyped_data_folder_creates_nothing(
    tmp_path: Path, group: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
    proc = subprocess.run([*MAD, group, "status"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env={**env, "MAD_DATA_DIR": str(tmp_path / "typo")})
    one_line_error(proc, "no ")
    assert not (tmp_path / "typo").exists()


def test_ingest_post_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    one_line_error(mad("ingest", "post", str(tmp_path / "nope.jsonl")), "no file at")


def test_ingest_post_refuses_a_url_that_is_not_http(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("{}\n")
    one_line_error(mad("ingest", "post", str(tmp_path / "e.jsonl"), "--url", "file:///x"),
                   "--url")


@pytest.mark.slow
def test_ingest_post_splits_a_file_over_the_request_limits(tmp_path: Path) -> None:
    """A file far over one request's limits: every record is answered, every accepted one
    reaches the lake; with the API's limits unknown to the client (lower than its own
    settings), requests answered 413 are split until they fit."""
    import gzip
    import re
    import signal

    from mad.config import load_settings
    from mad.generate.backfill import run_backfill
    from tests.runtime.test_supervisor import Serve, raw_ids

    out = tmp_path / "gen"
    run_backfill(load_settings(env={}, overrides={
        "generate.duration": "4m", "generate.rate": 25, "generate.seed": 9,
        "generate.start": "2026-11-06T08:00:00Z"}).generate, out, progress=False)
    lines = (out / "events.jsonl").read_bytes().splitlines(keepends=True)
    lines.append(lines[10])  # one more copy of an event already in the file
    lines.append(b"\n")  # blank lines are skipped
    lines.append(b'{"not": "an event"}\n')
    first, second = tmp_path / "first.jsonl.gz", tmp_path / "second.jsonl"
    first.write_bytes(gzip.compress(b"".join(lines[: len(lines) // 2])))
    second.write_bytes(b"".join(lines[len(lines) // 2:]))
    limits = {"MAD_INGEST__MAX_RECORDS": "300", "MAD_INGEST__MAX_BODY_BYTES": "65536"}
    assert len(lines) > 3 * 300 and second.stat().st_size > 3 * 65536
    serve = Serve(tmp_path, **limits)
    url = f"http://127.0.0.1:{serve.port}/v1/events"
    totals = []
    try:
        for path, env in ((first, {**serve.env}), (second, {**serve.env, **{
                k: "" for k in limits}})):  # the client with its own, higher limits
            env = {k: v for k, v in env.items() if v != ""}
            proc = subprocess.run([*MAD, "ingest", "post", str(path), "--url", url],
                                  capture_output=True, text=True, timeout=300, env=env)
            assert proc.returncode == 0, proc.stderr
            found = re.search(r"(\d+) records in (\d+) requests: (\d+) accepted, (\d+) "
                              r"duplicates.*?(\d+) rejected", proc.stdout)
            assert found, proc.stdout
            totals.append([int(n) for n in found.groups()])
    finally:
        serve.proc.send_signal(signal.SIGTERM)
        serve.output()
    records = [r for r in lines if r.strip()]
    assert sum(t[0] for t in totals) == len(records)
    assert all(t[1] > 3 for t in totals)  # split into many requests
    halves = [_ids_of(lines[: len(lines) // 2]), _ids_of(lines[len(lines) // 2:])]
    in_lake = raw_ids(serve.lake)
    assert in_lake <= halves[0] | halves[1]
    # every accepted record is in the lake, none lost (a copy in each file counts in each)
    assert sum(t[2] for t in totals) == len(in_lake) + len(halves[0] & halves[1] & in_lake)
    assert sum(t[3] for t in totals) >= 1  # the copy within the second file
    assert sum(t[4] for t in totals) >= 1  # the record that is not an event
    assert sum(t[2] + t[3] + t[4] for t in totals) == len(records)


def _ids_of(lines: list[bytes]) -> set[str]:
    import orjson

    ids: set[str] = set()
    for line in lines:
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("event_id"), str):
            ids.add(rec["event_id"])
    return ids
