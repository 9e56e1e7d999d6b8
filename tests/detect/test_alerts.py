"""Alert sinks against a real HTTP server on loopback, the JSONL file, and the dispatcher."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.conftest import free_port

from mad.config import load_settings
from mad.detect.alerts import (
    AlertRejected,
    Dispatcher,
    JsonlSink,
    WebhookSink,
    open_sinks,
    summary,
)
from mad.detect.incidents import IncidentTracker
from mad.detect.model import Anomaly, IncidentChange
from mad.errors import TransientError

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """What the test server got, and the statuses it answers with (then 200)."""

    statuses: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                rec.requests.append((dict(self.headers), json.loads(body)))
                status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
    thread.join()


class MemorySentLog:
    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.failed: dict[str, str] = {}

    def seen(self, key: str) -> bool:
        return key in self.keys or key in self.failed

    def mark(self, key: str) -> None:
        self.keys.add(key)

    def fail(self, key: str, error: str) -> None:
        self.failed[key] = error


def changes() -> list[IncidentChange]:
    """opened, escalated (payments joins) and resolved, from the real tracker."""
    def anomaly(minute: int, service: str) -> Anomaly:
        return Anomaly(service, "latency_ms", "avg", "1m", T0.replace(minute=minute), 0.97,
                       "critical", 912.5, 120.0, 80.0, 160.0, ("holt",))

    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    out = tr.observe([anomaly(0, "accounts")]) + tr.observe([anomaly(3, "payments")])
    return out + tr.advance(T0.replace(hour=5))


def waits() -> tuple[list[float], Any]:
    slept: list[float] = []
    return slept, slept.append


def test_body_names_incident_series_and_values(receiver: Receiver) -> None:
    opened = changes()[0]
    WebhookSink(receiver.url, retries=0).send(opened)
    ((headers, body),) = receiver.requests
    assert headers["Idempotency-Key"] == body["dedup_key"] == "inc-20261127T0300-accounts:0:opened"
    assert body["change"] == "opened"
    assert body["incident"]["id"] == "inc-20261127T0300-accounts"
    assert body["incident"]["status"] == "open"
    assert body["incident"]["origin"] == "accounts"
    assert body["incident"]["services"] == ["accounts"]
    assert body["series"] == "accounts/latency_ms/avg"
    assert (body["observed"], body["expected"]) == (912.5, 120.0)
    assert "expected 120" in body["summary"] and "912.5" in body["summary"]


def test_webhook_retries_5xx_with_bounded_backoff(receiver: Receiver) -> None:
    receiver.statuses = [500, 503, 502]
    slept, sleep = waits()
    sink = WebhookSink(receiver.url, retries=5, backoff_s=0.5, sleep=sleep)
    sink.send(changes()[0])
    assert len(receiver.requests) == 4
    assert slept == [0.5, 1.0, 2.0]
    keys = {h["Idempotency-Key"] for h, _ in receiver.requests}
    assert keys == {"inc-20261127T0300-accounts:0:opened"}


def test_webhook_gives_up_after_retries_as_transient(receiver: Receiver) -> None:
    receiver.statuses = [500] * 10
    slept, sleep = waits()
    with pytest.raises(TransientError, match="failed 3 times"):
        WebhookSink(receiver.url, retries=2, backoff_s=100, sleep=sleep).send(changes()[0])
    assert len(receiver.requests) == 3
    assert slept == [30.0, 30.0]  # each wait is capped


def test_webhook_does_not_retry_4xx(receiver: Receiver) -> None:
    receiver.statuses = [400]
    slept, sleep = waits()
    with pytest.raises(AlertRejected, match="HTTP 400"):
        WebhookSink(receiver.url, retries=5, sleep=sleep).send(changes()[0])
    assert len(receiver.requests) == 1 and slept == []


def test_webhook_retries_429(receiver: Receiver) -> None:
    receiver.statuses = [429]
    _, sleep = waits()
    WebhookSink(receiver.url, retries=1, sleep=sleep).send(changes()[0])
    assert len(receiver.requests) == 2


def test_connection_refused_is_transient() -> None:
    _, sleep = waits()
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", retries=2, sleep=sleep)
    with pytest.raises(TransientError, match="ConnectError"):
        sink.send(changes()[0])
    assert sink.attempts == 3


def test_jsonl_lines_parse(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "alerts.jsonl"
    sink = JsonlSink(path)
    for change in changes():
        sink.send(change)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [x["change"] for x in lines] == ["opened", "escalated", "resolved"]
    assert lines[2]["anomaly"] is None and lines[2]["incident"]["status"] == "resolved"
    assert "resolved" in lines[2]["summary"]


def test_dispatch_dedup_holds_across_dispatchers(receiver: Receiver, tmp_path: Path) -> None:
    sent = MemorySentLog()
    _, sleep = waits()
    sinks = [JsonlSink(tmp_path / "alerts.jsonl"), WebhookSink(receiver.url, sleep=sleep)]
    assert Dispatcher(sinks, sent).dispatch(changes()) == 6
    again = Dispatcher(sinks, sent)
    assert again.dispatch(changes()) == 0 and again.failed == 0
    assert len(receiver.requests) == 3
    assert len((tmp_path / "alerts.jsonl").read_bytes().splitlines()) == 3
    assert "webhook:inc-20261127T0300-accounts:1:escalated" in sent.keys


def test_failing_sink_does_not_stop_others_and_is_retried(
    receiver: Receiver, tmp_path: Path
) -> None:
    sent = MemorySentLog()
    _, sleep = waits()
    down = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", retries=1, sleep=sleep)
    sinks = [down, JsonlSink(tmp_path / "alerts.jsonl")]
    first = Dispatcher(sinks, sent)
    assert first.dispatch(changes()) == 3
    assert first.failed == 3  # one tried, two held back: none marked
    assert {f.sink for f in first.failures} == {"webhook"}
    assert down.attempts == 2
    up = WebhookSink(receiver.url, sleep=sleep)
    second = Dispatcher([up, JsonlSink(tmp_path / "alerts.jsonl")], sent)
    assert second.dispatch(changes()) == 3 and second.failed == 0
    assert [b["change"] for _, b in receiver.requests] == ["opened", "escalated", "resolved"]


def test_rejected_alert_is_failed_once_and_the_rest_still_go(receiver: Receiver) -> None:
    receiver.statuses = [422]
    sent = MemorySentLog()
    d = Dispatcher([WebhookSink(receiver.url, retries=3)], sent)
    assert d.dispatch(changes()) == 2
    assert d.failed == 1 and "HTTP 422" in d.failures[0].error
    key = "webhook:inc-20261127T0300-accounts:0:opened"
    assert key not in sent.keys and "HTTP 422" in sent.failed[key]
    again = Dispatcher([WebhookSink(receiver.url, retries=3)], sent)
    assert again.dispatch(changes()) == 0 and again.failed == 0  # not sent every pass
    assert len(receiver.requests) == 3


def test_a_redirect_is_a_permanent_failure_not_followed(receiver: Receiver) -> None:
    receiver.statuses = [302, 302, 302]
    sent = MemorySentLog()
    _, sleep = waits()
    with pytest.raises(AlertRejected, match="redirect"):
        WebhookSink(receiver.url, retries=5, sleep=sleep).send(changes()[0])
    assert len(receiver.requests) == 1  # neither retried nor followed
    d = Dispatcher([WebhookSink(receiver.url, retries=5, sleep=sleep)], sent)
    d.dispatch(changes()[:1])
    assert "redirect" in sent.failed["webhook:inc-20261127T0300-accounts:0:opened"]


def test_requests_are_signed_with_the_secret(receiver: Receiver) -> None:
    import hashlib
    import hmac

    WebhookSink(receiver.url, secret="s3cr3t").send(changes()[0])
    headers, body = receiver.requests[0]
    stamp, sig = headers["X-Mad-Timestamp"], headers["X-Mad-Signature"]
    raw = orjson.dumps(body)  # the receiver got compact orjson bytes
    want = hmac.new(b"s3cr3t", stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    assert sig == f"sha256={want}"
    WebhookSink(receiver.url).send(changes()[0])
    assert "X-Mad-Signature" not in receiver.requests[1][0]


def test_secrets_in_the_url_never_reach_messages(caplog: pytest.LogCaptureFixture) -> None:
    from mad.detect.alerts import redact_url

    url = f"http://alice:pa55@127.0.0.1:{free_port()}/hook?token=abc123&x=1"
    assert redact_url(url).endswith("/hook?token=***&x=***")
    assert "pa55" not in redact_url(url) and "abc123" not in redact_url(url)
    _, sleep = waits()
    sent = MemorySentLog()
    d = Dispatcher([WebhookSink(url, retries=1, sleep=sleep)], sent)
    with caplog.at_level("WARNING"):
        d.dispatch(changes()[:1])
    text = caplog.text + " ".join(f.error for f in d.failures)
    assert d.failed == 1 and "pa55" not in text and "abc123" not in text


def test_open_sinks_from_settings(tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path)})
    sinks = open_sinks(settings)
    assert [s.name for s in sinks] == ["jsonl"]
    assert isinstance(sinks[0], JsonlSink) and sinks[0].path == tmp_path / "alerts.jsonl"
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "detect.alerts.jsonl": False,
        "detect.alerts.webhook_url": "http://127.0.0.1:9/x", "detect.alerts.webhook_retries": 2,
    })
    (hook,) = open_sinks(settings)
    assert isinstance(hook, WebhookSink) and hook.retries == 2 and hook.secret is None
    secret = tmp_path / "hook.secret"
    secret.write_text("from-a-file\n")
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "detect.alerts.webhook_url": "http://127.0.0.1:9/x",
        "detect.alerts.webhook_secret_file": str(secret)})
    assert [s.secret for s in open_sinks(settings) if isinstance(s, WebhookSink)] == [
        b"from-a-file"]


def test_summary_of_each_change() -> None:
    opened, escalated, resolved = changes()
    assert summary(opened).startswith("[CRITICAL] incident inc-20261127T0300-accounts opened")
    assert "services accounts, payments" in summary(escalated)
    assert "resolved" in summary(resolved) and "origin accounts" in summary(resolved)


def test_a_rule_alert_names_the_rule_and_its_threshold() -> None:
    from mad.detect.rules import Rule, RuleCounters

    rule = Rule("error_rate_high", "error_rate", "avg", ">", 0.05, 2, (), "critical")
    counters = RuleCounters()
    found = []
    for minute, value in enumerate((0.2, 0.31)):
        found = counters.evaluate([rule], "1m", T0.replace(minute=minute), "payments",
                                  "error_rate", {"avg": value})
    (a,) = found
    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    (opened,) = tr.observe([a])
    text = summary(opened)
    assert ("payments error_rate avg 0.31 at 03:01 UTC, above rule threshold 0.05 "
            "(rule error_rate_high)") in text
    assert "normal" not in text and "expected" not in text
    body = JsonlBody.of(opened)
    assert (body["rule"], body["threshold"], body["observed"]) == ("error_rate_high", 0.05, 0.31)
    stat = changes()[0]  # a statistical detector keeps its band
    assert "expected 120 (normal 80..160)" in summary(stat)
    assert JsonlBody.of(stat)["rule"] is None and JsonlBody.of(stat)["threshold"] is None


class JsonlBody:
    @staticmethod
    def of(change: IncidentChange) -> dict[str, Any]:
        from mad.detect.alerts import alert_body

        return orjson.loads(orjson.dumps(alert_body(change)))


def test_an_incident_is_named_after_its_origin() -> None:
    def at(minute: int, service: str) -> Anomaly:
        return Anomaly(service, "error_rate", "avg", "1m", T0.replace(minute=minute), 0.9,
                       "warning", 0.3, 0.01, 0.0, 0.02, ("holt",))

    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    (opened,) = tr.observe([at(0, "gateway"), at(0, "payments")])  # gateway sorts first
    assert opened.incident.origin == "payments"
    assert opened.incident.id == "inc-20261127T0300-payments"
    assert "origin now" not in summary(opened)
    # the origin moves after the id was sent: the id stays, the summary says so
    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    opened, moved = tr.observe([at(0, "gateway"), at(1, "accounts")])
    assert moved.incident.id == opened.incident.id == "inc-20261127T0300-gateway"
    assert summary(moved).startswith(
        "[WARNING] incident inc-20261127T0300-gateway escalated (origin now accounts):")
    # the name of a resolved incident is not reused: late anomalies get the next free one
    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    (first,) = tr.observe([at(0, "payments")])
    tr.advance(T0.replace(hour=5))
    (late,) = tr.observe([at(0, "gateway"), at(0, "payments")])
    assert first.incident.id == "inc-20261127T0300-payments"
    assert late.incident.id == "inc-20261127T0300-payments-2"
    assert "origin now" not in summary(late)


def test_counts_in_alert_texts_are_singular_or_plural() -> None:
    from mad.words import plural

    assert [plural(n, "incident") for n in (0, 1, 2)] == [
        "0 incidents", "1 incident", "2 incidents"]
    assert plural(1, "anomaly", "anomalies") == "1 anomaly"
    assert plural(3, "anomaly", "anomalies") == "3 anomalies"
    tr = IncidentTracker(gap_s=900, resolve_after_s=1800)
    tr.observe([Anomaly("auth", "latency_ms", "avg", "1m", T0, 0.9, "warning", 9.0, 1.0, 0.5,
                        1.5, ("holt",))])
    (resolved,) = tr.advance(T0.replace(hour=5))
    assert "1 anomaly on auth" in summary(resolved)
    assert "2 anomalies on accounts, payments" in summary(changes()[2])


def test_the_pass_line_counts_in_the_right_number() -> None:
    from mad.detect.summary import DetectSummary

    one = DetectSummary("1m", batches=1, windows=1, points=1, anomalies=1, changes=1, alerts=1)
    assert one.line() == ("detect 1m: 1 batch, 1 window, 1 series window scored, 1 anomaly, "
                          "1 incident change, 1 alert sent")
    two = DetectSummary("1m", batches=2, windows=2, points=4, anomalies=0, changes=2, alerts=3)
    assert two.line().startswith("detect 1m: 2 batches, 2 windows, 4 series windows scored, "
                                 "0 anomalies, 2 incident changes, 3 alerts sent")
