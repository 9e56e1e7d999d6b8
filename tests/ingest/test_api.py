"""The ingest API served for real on loopback ports, over real embedded streams (and a real
Kinesis on a moto server that goes away)."""

from __future__ import annotations

import base64
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import free_port, start_moto, stop_process
from tests.ingest.conftest import ApiServer, Start

from mad.config import load_settings
from mad.ingest.intake import ERRORS_KEY
from mad.ingest.streams import Ack, NullMonitor, Position, Stream, StreamRecord
from mad.ingest.wiring import open_configured_stream as open_ingest_stream
from mad.ingest.wiring import stream_monitor
from mad.ingest.writer import status_rows
from mad.ingest.writer_health import HealthFile, WriterHealth, health_path

NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], dict[str, Any]]:
    """Ten minutes of `mad generate` output (faults included) and its labels."""
    from mad.generate.backfill import run_backfill

    out = tmp_path_factory.mktemp("generated")
    settings = load_settings(config_file=None, env={}, overrides={"generate.duration": "10m"})
    run_backfill(settings.generate, out, progress=False)
    lines = (out / "events.jsonl").read_bytes().splitlines(keepends=True)
    return lines, orjson.loads((out / "labels.json").read_bytes())


def read_stream(stream: Stream) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for shard in stream.shards():
        after = None
        while batch := stream.read(shard, after, 1000):
            out += [(r.key, r.payload) for r in batch]
            after = batch[-1].position
    return out


def stored_errors(stream: Stream) -> list[dict[str, Any]]:
    return [orjson.loads(p) for k, p in read_stream(stream) if k == ERRORS_KEY]


def metric_samples(server: ApiServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = server.client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def event(event_id: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "timestamp": "2026-11-01T00:00:00Z", "service": "payments",
            "event_type": "payments.http_span", "kind": "apm",
            "metrics": {"duration_ms": 1.5}, **extra}


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


# -- the happy path with generated data -------------------------------------------------------


def test_generated_events_are_all_accounted_for(
    start: Start, generated: tuple[list[bytes], dict[str, Any]]
) -> None:
    lines, labels = generated
    api = start()
    accepted_ids: list[str] = []
    rejected: Counter[str] = Counter()
    sent = 0
    for n, first in enumerate(range(0, len(lines), 500)):
        batch = lines[first:first + 500]
        body = b"".join(batch)
        headers = dict(NDJSON)
        if n % 3 == 1:
            body, headers["content-encoding"] = gzip.compress(body), "gzip"
        resp = api.post(body, headers)
        assert resp.status_code == 200, resp.text
        doc = resp.json()
        assert doc["accepted"] + doc["rejected"] == len(batch) == len(doc["records"])
        assert [r["index"] for r in doc["records"]] == list(range(len(batch)))
        sent += len(batch)
        for r in doc["records"]:
            if r["status"] == "accepted":
                accepted_ids.append(r["event_id"])
            else:
                rejected[r["error_code"]] += 1
    assert len(accepted_ids) + sum(rejected.values()) == sent == len(lines)
    assert sum(rejected.values()) == labels["faults"]["malformed_total"] > 0
    assert len(set(accepted_ids)) == labels["valid_events"]

    records = read_stream(api.stream)
    stored = Counter(orjson.loads(p)["event_id"] for k, p in records if k != ERRORS_KEY)
    assert stored == Counter(accepted_ids)
    assert all(orjson.loads(p)["event_id"] == k for k, p in records if k != ERRORS_KEY)
    errors = stored_errors(api.stream)
    assert Counter(e["error_code"] for e in errors) == rejected
    assert all(e["source"] == "ingest-api" and e["attempts"] == 1 for e in errors)
    assert {base64.b64decode(e["raw_data"]) + b"\n" for e in errors} <= set(lines)

    samples = metric_samples(api)
    assert samples[("mad_ingest_records_total", (("result", "accepted"),))] == len(accepted_ids)
    assert samples[("mad_ingest_records_total", (("result", "rejected"),))] == len(errors)
    assert samples[("mad_ingest_requests_total", (("code", "200"),))] == n + 1
    assert samples[("mad_ingest_append_seconds_count", ())] == n + 1


def test_single_event_and_array_bodies(start: Start) -> None:
    api = start()
    one = orjson.dumps(event("single-1"))
    resp = api.post(one, JSON)
    assert resp.json() == {"accepted": 1, "rejected": 0, "records": [
        {"index": 0, "status": "accepted", "event_id": "single-1"}]}
    items = [event("arr-0"), {"event_id": "arr-1"}, event("arr-2", kind="log")]
    doc = api.post(orjson.dumps(items), JSON).json()
    assert (doc["accepted"], doc["rejected"]) == (1, 2)
    assert [r.get("error_code") for r in doc["records"]] == [None, "missing_field",
                                                             "kind_mismatch"]
    payloads = {p for k, p in read_stream(api.stream) if k != ERRORS_KEY}
    assert payloads == {one, orjson.dumps(items[0])}


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_answer_and_the_server_keeps_serving(start: Start) -> None:
    api = start(max_body_bytes=2 * 2**20)
    good = ndjson([event("good-0")])
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(59):
        deep = {"child": deep}
    bomb = gzip.compress(b"\n" * (64 * 2**20))
    whole_request = [
        ("malformed JSON", b'[{"event_id": "a"},', JSON, 400, "invalid_json"),
        ("body over the limit", good * (3 * 2**20 // len(good)), NDJSON, 413, "body_too_large"),
        ("gzip bomb", bomb, {**NDJSON, "content-encoding": "gzip"}, 413, "body_too_large"),
        ("wrong content type", good, {"content-type": "text/plain"}, 415,
         "unsupported_media_type"),
        ("bad gzip", b"\x1f\x8b\x08\x00garbage" * 10, {**NDJSON, "content-encoding": "gzip"},
         400, "bad_gzip"),
        ("non-UTF-8 JSON body", b'{"event_id": "\xff"}', JSON, 400, "invalid_utf8"),
    ]
    for i, (name, body, headers, status, code) in enumerate(whole_request):
        resp = api.post(body, headers)
        assert resp.status_code == status, name
        assert resp.json()["error_code"] == code, name
        assert resp.json()["message"], name
        ok = api.post(ndjson([event(f"after-{i}")]))
        assert ok.status_code == 200 and ok.json()["accepted"] == 1, name

    per_record = [
        ("60-deep object", orjson.dumps(event("deep", extra=deep)), "too_deep"),
        ("1 MB string field", orjson.dumps(event("big", message="x" * 2**20)),
         "record_too_large"),
        ("non-UTF-8 bytes", orjson.dumps(event("latin"))[:-1] + b',"note":"caf\xe9"}',
         "invalid_utf8"),
        ("malformed line", b'{"event_id": "cut", "timest', "invalid_json"),
    ]
    for i, (name, line, reason) in enumerate(per_record):
        body = line + b"\n" + orjson.dumps(event(f"beside-{i}")) + b"\n"
        doc = api.post(body).json()
        assert doc["accepted"] == 1 and doc["rejected"] == 1, name
        assert doc["records"][0]["error_code"] == reason, name

    errors = stored_errors(api.stream)
    assert [e["error_code"] for e in errors] == [reason for _, _, reason in per_record]
    assert base64.b64decode(errors[1]["raw_data"]) == per_record[1][1]
    samples = metric_samples(api)
    for _, _, _, status, code in whole_request:
        assert samples[("mad_ingest_request_errors_total", (("reason", code),))] >= 1
        assert samples[("mad_ingest_requests_total", (("code", str(status)),))] >= 1
    for _, _, reason in per_record:
        assert samples[("mad_ingest_rejected_total", (("reason", reason),))] == 1
    assert api.client.get("/health").json()["status"] == "ok"


def test_many_tiny_gzip_members_neither_hang_nor_block_health(start: Start) -> None:
    """5 MiB of 2-byte gzip members, three bodies at once: each is answered (413, too many
    records once inflated) and /health answers while they are decoded."""
    api = start()
    member = gzip.compress(b"x\n", mtime=0)
    body = member * (5 * 2**20 // len(member))
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=api.url, timeout=60) as client:
            answers.append(client.post("/v1/events", content=body,
                                       headers={**NDJSON, "content-encoding": "gzip"}))

    posts = [threading.Thread(target=post, daemon=True) for _ in range(3)]
    for t in posts:
        t.start()
    during = 0
    with httpx.Client(base_url=api.url, timeout=10) as health:
        for _ in range(1200):  # at most 60 s
            busy = any(t.is_alive() for t in posts)
            if not busy:
                break
            assert health.get("/health").status_code == 200
            during += 1
            time.sleep(0.05)
    for t in posts:
        t.join(timeout=1)
    assert len(answers) == 3, "a body of many gzip members got no answer within 60 s"
    assert {(r.status_code, r.json()["error_code"]) for r in answers} == {
        (413, "too_many_records")}
    assert during >= 1
    assert read_stream(api.stream) == []


def test_records_per_request_are_capped_and_rejections_summarised(start: Start) -> None:
    api = start(max_records=1000, max_listed_rejections=20)
    flood = b"x\n" * 200_000  # 400 KB of one-byte invalid records
    resp = api.post(flood)
    assert resp.status_code == 413
    assert resp.json()["error_code"] == "too_many_records"
    assert "ingest.max_records=1000" in resp.json()["message"]
    assert read_stream(api.stream) == []

    body = b"x\n" * 990 + ndjson([event(f"keep-{i}") for i in range(10)])
    resp = api.post(body)
    doc = resp.json()
    assert resp.status_code == 200 and len(resp.content) < 8 * 1024
    assert (doc["accepted"], doc["rejected"], doc["omitted_rejections"]) == (10, 990, 970)
    assert doc["rejected_by_reason"] == {"invalid_json": 990}
    listed = [r for r in doc["records"] if r["status"] == "rejected"]
    assert [r["index"] for r in listed] == list(range(20))
    assert [r["event_id"] for r in doc["records"] if r["status"] == "accepted"] == [
        f"keep-{i}" for i in range(10)]
    errors = stored_errors(api.stream)
    assert sum(e.get("records", 1) for e in errors) == 990  # every rejection is kept
    kept = b"".join(base64.b64decode(e["raw_data"]) for e in errors)
    assert kept.count(b"x") == 990
    error_bytes = sum(len(p) for k, p in read_stream(api.stream) if k == ERRORS_KEY)
    assert error_bytes < 20 * 400 + 4 * len(body)  # not a 200-byte envelope per line
    samples = metric_samples(api)
    assert samples[("mad_ingest_rejected_total", (("reason", "invalid_json"),))] == 990
    assert samples[("mad_ingest_request_errors_total", (("reason", "too_many_records"),))] == 1


def test_a_record_with_an_identity_field_twice_is_kept_as_an_error(start: Start) -> None:
    api = start()
    twice = orjson.dumps(event("dupA"))[:-1] + b',"event_id":"dupB","service":"payments"}'
    doc = api.post(twice + b"\n" + ndjson([event("single")])).json()
    assert (doc["accepted"], doc["rejected"]) == (1, 1)
    assert doc["records"][0]["error_code"] == "duplicate_key"
    assert "event_id" in doc["records"][0]["message"]
    [stored] = stored_errors(api.stream)
    assert stored["error_code"] == "duplicate_key"
    assert base64.b64decode(stored["raw_data"]) == twice
    ids = [orjson.loads(p)["event_id"] for k, p in read_stream(api.stream) if k != ERRORS_KEY]
    assert ids == ["single"]


# -- backpressure ------------------------------------------------------------------------------


def post_until(api: ApiServer, status: int, body: bytes, meanwhile: int = 200) -> httpx.Response:
    """Post `body` until the answer is `status` (the pressure check is cached for a moment);
    every other answer must be `meanwhile`."""
    for _ in range(100):
        resp = api.post(body)
        if resp.status_code == status:
            return resp
        assert resp.status_code == meanwhile, resp.text
        time.sleep(0.05)
    pytest.fail(f"no {status} after 100 requests")


def test_writer_lag_over_the_limit_is_a_429(start: Start) -> None:
    api = start(max_lag_records=1)
    resp = post_until(api, 429, ndjson([event("a"), event("b")]))
    assert resp.headers["retry-after"].isdigit()
    assert resp.json()["error_code"] == "writer_behind"
    samples = metric_samples(api)
    assert samples[("mad_ingest_requests_total", (("code", "429"),))] >= 1
    lag = sum(v for (name, _), v in samples.items() if name == "mad_ingest_stream_lag_records")
    assert lag >= 2
    # the raw writer catches up: commit everything and the API takes events again
    for shard in api.stream.shards():
        records = api.stream.read(shard, None, 10_000)
        if records:
            api.stream.commit("raw-writer", shard, records[-1].position)
    post_until(api, 200, ndjson([event("c")]), meanwhile=429)


def test_stream_over_its_disk_budget_is_a_503(start: Start) -> None:
    api = start(max_disk_bytes=2**20)
    body = ndjson([event(f"fill-{i}", message="m" * 1000) for i in range(300)])
    resp = post_until(api, 503, body)
    assert resp.headers["retry-after"].isdigit()
    assert resp.json()["error_code"] == "stream_full"
    assert metric_samples(api)[("mad_ingest_stream_disk_bytes", ())] > 2**20


class BareStream:
    """A real stream seen only through the `Stream` Protocol, as a backend that reports no
    lag or status would be: every call goes through to the embedded stream inside."""

    def __init__(self, inner: Stream) -> None:
        self.inner = inner
        self.appends_checked = inner.appends_checked

    def shards(self) -> list[str]:
        return self.inner.shards()

    def append(self, records: Sequence[tuple[str, bytes]]) -> list[Ack]:
        return self.inner.append(records)

    def read(self, shard: str, after: Position | None, limit: int) -> list[StreamRecord]:
        return self.inner.read(shard, after, limit)

    def commit(self, consumer: str, shard: str, position: Position) -> None:
        self.inner.commit(consumer, shard, position)

    def committed(self, consumer: str, shard: str) -> Position | None:
        return self.inner.committed(consumer, shard)

    def close(self) -> None:
        self.inner.close()


def test_a_stream_without_a_monitor_is_served_with_a_null_one(tmp_path: Path) -> None:
    settings = load_settings(config_file=None, env={}, overrides={
        "data_dir": str(tmp_path / "data"), "ingest.max_lag_records": 1})
    bare = BareStream(open_ingest_stream(settings))
    try:
        assert stream_monitor(settings, bare.inner) is bare.inner
        monitor = stream_monitor(settings, bare)
        assert isinstance(monitor, NullMonitor)
        api = ApiServer(settings, bare)
        try:
            for i in range(3):  # no lag is known, so max_lag_records=1 never refuses
                resp = api.post(ndjson([event(f"bare-{i}-a"), event(f"bare-{i}-b")]))
                assert resp.status_code == 200 and resp.json()["accepted"] == 2, resp.text
            health = api.client.get("/health").json()
            assert (health["status"], health["lag_records"], health["disk_bytes"]) == (
                "ok", 0, 0)
            assert metric_samples(api)[("mad_ingest_stream_disk_bytes", ())] == 0
        finally:
            api.stop()
        assert len(read_stream(bare)) == 6
        consumer = settings.writer.consumer
        rows = status_rows(monitor, consumer)
        assert [(r["shard"], r["committed"], r["lag_records"]) for r in rows] == [
            ("0", None, None)]
        bare.commit(consumer, "0", 5)
        assert status_rows(monitor, consumer)[0]["committed"] == 5
        assert monitor.status().backend == settings.ingest.stream.backend
    finally:
        bare.close()


def test_a_stream_that_cannot_be_reached_is_a_503(tmp_path: Path) -> None:
    moto, endpoint = start_moto(tmp_path)
    try:
        settings = load_settings(config_file=None, env={}, overrides={
            "data_dir": str(tmp_path / "data"), "ingest.stream.backend": "kinesis",
            "ingest.stream.kinesis.shards": 1, "aws.endpoint_url": endpoint,
            "aws.access_key_id": "testing", "aws.secret_access_key": "testing"})
        stream = open_ingest_stream(settings)
    finally:
        stop_process(moto)  # the stream service goes away under the open stream
    api = ApiServer(settings, stream)
    try:
        resp = api.client.get("/health")
        assert resp.status_code == 503
        assert resp.json()["status"] == "failed" and resp.json()["detail"]
        resp = api.post(ndjson([event("unreachable")]))
        assert resp.status_code == 503 and resp.headers["retry-after"].isdigit()
        assert resp.json()["error_code"] == "stream_unavailable"
    finally:
        api.stop()
        stream.close()


# -- metrics and OpenAPI -------------------------------------------------------------------------


def test_metrics_follow_the_prometheus_rules(start: Start) -> None:
    api = start()
    api.post(ndjson([event("m-1")]) + b"not json\n")
    api.post(b"x", {"content-type": "text/csv"})
    resp = api.client.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["mad_ingest_append_seconds"].type == "histogram"
    assert families["mad_ingest_stream_lag_seconds"].type == "gauge"
    helps = re.findall(r"^# HELP (\S+) ", text, re.M)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert len(helps) == len(set(helps)) == len(types) == len(families)
    for name, kind in types.items():
        assert name.startswith("mad_ingest_") and re.fullmatch(r"[a-z_]+", name), name
        assert (kind == "counter") == name.endswith("_total"), name
        if kind in ("histogram", "gauge"):
            assert name.endswith(("_seconds", "_bytes", "_records", "_files",
                                  "_connections")), name
    for line in text.splitlines():
        if not line.startswith("#"):
            for label in re.findall(r'([^{},=]+)="', line):
                assert re.fullmatch(r"[a-z_][a-z0-9_]*", label) and not label.startswith("__")
    lint = promtool_check(text)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    samples = metric_samples(api)
    assert samples[("mad_ingest_rejected_total", (("reason", "invalid_json"),))] == 1
    assert samples[("mad_ingest_requests_total", (("code", "415"),))] == 1
    assert samples[("mad_ingest_bytes_total", ())] > 0


def test_metrics_show_the_raw_writer_health_it_publishes(start: Start, tmp_path: Path) -> None:
    api = start()
    assert ("mad_ingest_writer_unrecorded_files", ()) not in metric_samples(api)  # no report
    report = HealthFile(health_path(tmp_path / "data0", "raw-writer"))
    report.publish(WriterHealth(pid=os.getpid(), updated_at=time.time(), files=7,
                                unrecorded_files=3, failures={"state": 4, "lake": 1},
                                failing={"state": "database or disk is full"}))
    report.close()
    samples = metric_samples(api)
    assert samples[("mad_ingest_writer_unrecorded_files", ())] == 3
    assert samples[("mad_ingest_writer_failures_total", (("target", "state"),))] == 4
    assert samples[("mad_ingest_writer_failures_total", (("target", "lake"),))] == 1
    assert samples[("mad_ingest_writer_failures_total", (("target", "stream"),))] == 0
    assert 0 <= samples[("mad_ingest_writer_report_age_seconds", ())] < 600
    lint = promtool_check(api.client.get("/metrics").text)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """Prometheus' own linter (`make test` installs it with Debian's prometheus package)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make test` installs it (Debian package prometheus)")
        pytest.skip("promtool not installed; `make test` installs it")
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)


def resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def conforms(value: Any, schema: dict[str, Any], doc: dict[str, Any]) -> bool:
    """The parts of JSON Schema that FastAPI's models use: $ref, anyOf/oneOf, type,
    const/enum, required, properties and array items."""
    schema = resolve(schema, doc)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return any(conforms(value, s, doc) for s in schema[key])
    if "const" in schema and value != schema["const"]:
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "null": type(None),
             "number": (int, float), "boolean": bool}
    kind = schema.get("type")
    if kind is not None and not isinstance(value, kinds[kind]):
        return False
    if kind == "object":
        if any(name not in value for name in schema.get("required", [])):
            return False
        props = schema.get("properties", {})
        return all(conforms(v, props[k], doc) for k, v in value.items() if k in props)
    if kind == "array":
        return all(conforms(v, schema.get("items", {}), doc) for v in value)
    return True


def test_responses_match_the_openapi_document(start: Start) -> None:
    api = start(max_lag_records=1, max_body_bytes=4096)
    doc = api.client.get("/openapi.json").json()
    op = doc["paths"]["/v1/events"]["post"]
    assert set(op["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}

    def check(resp: httpx.Response, path: str = "/v1/events") -> dict[str, Any]:
        method = "post" if path == "/v1/events" else "get"
        declared = doc["paths"][path][method]["responses"][str(resp.status_code)]
        schema = declared["content"]["application/json"]["schema"]
        body = resp.json()
        assert conforms(body, schema, doc), (resp.status_code, body)
        return resolve(schema, doc)

    mixed = check(api.post(ndjson([event("o-1"), {"event_id": "o-2"}]) + b"{bad\n"))
    assert set(mixed["required"]) == {"accepted", "rejected", "records"}
    summarised = start(max_listed_rejections=1).post(b"x\n" * 3 + ndjson([event("o-4")]))
    assert summarised.json()["omitted_rejections"] == 2
    assert {"omitted_rejections", "rejected_by_reason"} <= set(check(summarised)["properties"])
    rejected_model = resolve({"$ref": "#/components/schemas/RejectedRecord"}, doc)
    assert not conforms({"index": 0, "status": "rejected"}, rejected_model, doc)
    too_big = api.post(b"[" + b" " * 8000 + b"]", JSON)
    assert too_big.status_code == 413
    assert set(check(too_big)["required"]) == {"error_code", "message"}
    assert api.post(b"{}", {"content-type": "text/plain"}).status_code == 415
    check(api.post(b"{}", {"content-type": "text/plain"}))
    check(post_until(api, 429, ndjson([event("o-3")])))
    health = api.client.get("/health")
    assert set(check(health, "/health")["required"]) >= {"status", "backend"}
    assert health.json()["status"] == "ok"


# -- crash between append and acknowledgement -----------------------------------------------------


def start_process(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """`mad ingest serve --no-writer`: the API alone in a process of its own."""
    env = {**os.environ, "MAD_DATA_DIR": str(tmp_path / "data"),
           "MAD_INGEST__PORT": str(port), "MAD_INGEST__STREAM__EMBEDDED__SHARDS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "mad.cli", "ingest", "serve", "--no-writer"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
        if proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"ingest API did not start: {proc.stderr.read().decode()[-800:]}")  # type: ignore[union-attr]


def test_killed_api_loses_no_acknowledged_event(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/events"
    acked: list[str] = []
    retries = 0
    done = threading.Event()

    def produce() -> None:
        nonlocal retries
        with httpx.Client(timeout=5) as client:
            for batch in range(40):
                events = [event(f"crash-{batch}-{i}") for i in range(200)]
                for _ in range(400):
                    try:
                        resp = client.post(url, content=ndjson(events), headers=NDJSON)
                        if resp.status_code == 200:
                            acked.extend(r["event_id"] for r in resp.json()["records"])
                            break
                    except httpx.HTTPError:
                        pass
                    retries += 1
                    time.sleep(0.025)
        done.set()

    proc = start_process(tmp_path, port)
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    for _ in range(400):
        if len(acked) >= 1000:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    killed_at = len(acked)
    proc = start_process(tmp_path, port)
    producer.join(timeout=60)
    assert done.is_set(), "producer did not finish"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM)

    assert 0 < killed_at < 40 * 200 and retries > 0
    assert len(set(acked)) == len(acked) == 40 * 200
    settings = load_settings(config_file=None, env={}, overrides={
        "data_dir": str(tmp_path / "data"), "ingest.stream.embedded.shards": 2})
    stream = open_ingest_stream(settings)
    try:
        stored = {orjson.loads(p)["event_id"] for k, p in read_stream(stream)}
    finally:
        stream.close()
    assert set(acked) <= stored


def test_the_token_guards_every_route_but_health(
    start: Start, generated: tuple[list[bytes], dict[str, Any]],
) -> None:
    api = start(auth_token="s3cr3t")
    event = generated[0][0]
    assert api.client.get("/health").status_code == 200
    for path in ("/metrics", "/openapi.json"):
        assert api.client.get(path).status_code == 401, path
    refused = api.post(event)
    assert refused.status_code == 401 and refused.json()["error_code"] == "unauthorized"
    assert read_stream(api.stream) == []  # nothing was appended
    ok = api.post(event, {**NDJSON, "Authorization": "Bearer s3cr3t"})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    other_host = api.client.get("/health", headers={"Host": "rebound.example.com"})
    assert other_host.status_code == 421
