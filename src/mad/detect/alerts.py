"""Alert sinks and the dispatcher that sends each incident change once per sink.

Every `IncidentChange` becomes one alert. A sink is a small class behind `AlertSink`; it
raises `TransientError` when sending may work later (the dispatcher leaves the alert unsent
and the next pass tries again) and `AlertRejected` when the receiver refused it for good (a
4xx, a redirect): that is recorded once as failed, with the reason, and never sent again.
Delivery is at least once: the `SentLog` is marked only after a sink accepted the alert, so a
crash in between re-sends it, and receivers deduplicate on `dedup_key` (also sent as the
`Idempotency-Key` header).

Webhook requests are signed when `detect.alerts.webhook_secret` (or `_file`) is set:
`X-Mad-Timestamp: <unix seconds>` and `X-Mad-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>" with the secret>`; a receiver recomputes it and rejects old
timestamps. Redirects are not followed. The URL is shown with any user, password and query
values masked (tokens often travel there).

Operators can silence alerts (snoozes and maintenance windows, `mad.detect.operator`): the
dispatcher asks its `Silencer` first, and a change it silences goes to no sink, is recorded
as silenced with the reason, and counts as done (it is not sent later).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import orjson

from mad.config import Settings
from mad.detect.model import Anomaly, Incident, IncidentChange
from mad.errors import ConfigError, MadError, TerminalError, TransientError
from mad.words import plural

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0  # one wait between webhook attempts is never longer than this
RETRY_STATUS = {408, 425, 429}  # 4xx that mean "later", retried like 5xx


class AlertRejected(TerminalError):
    """The receiver refused the alert (a 4xx): retrying the same request will not help."""


class AlertSink(Protocol):
    name: str

    def send(self, change: IncidentChange) -> None:
        """Deliver one alert; raise TransientError to have it retried on the next pass."""


class Silencer(Protocol):
    """Which changes operators silenced; `silence` records them and returns
    `{dedup_key: reason}` for those not to send."""

    def silence(self, changes: Sequence[IncidentChange]) -> dict[str, str]: ...


class NoSilences:
    """The silencer that silences nothing (no state database to ask)."""

    def silence(self, changes: Sequence[IncidentChange]) -> dict[str, str]:
        return {}


class SentLog(Protocol):
    """Which `<sink>:<dedup_key>` alerts need no more attempts: delivered (`mark`) or refused
    for good (`fail`); database tables in the pipeline."""

    def seen(self, key: str) -> bool: ...

    def mark(self, key: str) -> None: ...

    def fail(self, key: str, error: str) -> None: ...


def redact_url(url: str) -> str:
    """`url` with its user, password and query values masked, for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.username or parts.password:
        host = f"***@{host}"
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Mad-Signature` value: `sha256=` + hex HMAC-SHA256 of `timestamp.body`."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _fmt(value: float) -> str:
    return f"{value:.4g}" if value == value else "NaN"


def anomalies_text(n: int) -> str:
    return plural(n, "anomaly", "anomalies")


def rule_of(anomaly: Anomaly) -> str | None:
    """The threshold rule behind an anomaly (`rule:<name>` detectors), or None for a
    statistical detection."""
    rules = [d.removeprefix("rule:") for d in anomaly.detectors if d.startswith("rule:")]
    return ", ".join(rules) if rules else None


def _what(a: Anomaly) -> str:
    """The anomaly in words: a rule names itself and its threshold, a detector its band."""
    head = f"{a.service} {a.series} {a.stat} {_fmt(a.observed)} at {a.window_start:%H:%M} UTC"
    rule = rule_of(a)
    if rule is None:
        return (f"{head}, expected {_fmt(a.expected)} "
                f"(normal {_fmt(a.lower)}..{_fmt(a.upper)})")
    side = ("above" if a.observed > a.expected else "below" if a.observed < a.expected
            else "at")
    return f"{head}, {side} rule threshold {_fmt(a.expected)} (rule {rule})"


def _named_after(incident_id: str) -> str:
    """The service in an id `inc-<started>-<service>[-n]`, or "" for another form."""
    parts = incident_id.split("-")
    return parts[2] if len(parts) >= 3 and parts[0] == "inc" else ""


def origin_text(inc: Incident) -> str:
    """`origin <service>`, with the series whose change named it and since when."""
    e = next((e for e in inc.evidence if e.origin), None)
    if e is None:
        return f"origin {inc.origin}"
    return f"origin {inc.origin} ({e.series} {e.stat} out of its band from {e.onset:%H:%M} UTC)"


def summary(change: IncidentChange) -> str:
    """One line a person reads first: what changed, where, and by how much."""
    inc = change.incident
    services = ", ".join(inc.services) or inc.origin
    head = f"[{inc.severity.upper()}] incident {inc.id} {change.change}"
    if _named_after(inc.id) not in ("", inc.origin):
        head += f" (origin now {inc.origin})"  # the id was sent before the origin moved
    if change.change == "resolved":
        minutes = (inc.last_seen - inc.started).total_seconds() / 60
        return (f"{head}: quiet since {inc.last_seen:%Y-%m-%d %H:%M} UTC after "
                f"{minutes:.0f} min, {anomalies_text(inc.anomalies)} on {services}; "
                f"{origin_text(inc)}")
    a = change.anomaly
    what = f": {_what(a)};" if a is not None else ""
    return f"{head}{what} {origin_text(inc)}, services {services}"


def alert_body(change: IncidentChange) -> dict[str, Any]:
    """The JSON object every sink sends: the incident (with its `evidence`, per series the
    change and its onset), the series and its values (and, for a threshold rule, the rule and
    its threshold)."""
    a = change.anomaly
    rule = rule_of(a) if a is not None else None
    return {
        "dedup_key": change.dedup_key,
        "change": change.change,
        "seq": change.seq,
        "summary": summary(change),
        "incident": change.incident.to_dict(),
        "series": a.key if a is not None else None,
        "observed": a.observed if a is not None else None,
        "expected": a.expected if a is not None else None,
        "rule": rule,
        "threshold": a.expected if a is not None and rule is not None else None,
        "anomaly": a.to_dict() if a is not None else None,
    }


class JsonlSink:
    """Appends one JSON line per alert to a file and fsyncs it before returning."""

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def send(self, change: IncidentChange) -> None:
        line = orjson.dumps(alert_body(change)) + b"\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise TransientError(f"cannot append alert to {self.path}: "
                                 f"{err.strerror or err}") from None


class WebhookSink:
    """POSTs the alert as JSON; retries 5xx, 408/425/429 and connection errors with
    exponential backoff (at most `retries` more attempts, each wait at most 30 s). Another
    4xx or a redirect is `AlertRejected`; with a `secret` every request is signed."""

    name = "webhook"

    def __init__(self, url: str, retries: int = 5, timeout_s: float = 5.0,
                 backoff_s: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 secret: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise MadError(f"webhook URL must start with http:// or https://, not "
                           f"{redact_url(url)!r}")
        self.url = url
        self.shown = redact_url(url)
        self.retries = max(0, retries)
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.secret = secret.encode() if secret else None
        self.attempts = 0  # requests made over the sink's life, for status output

    def send(self, change: IncidentChange) -> None:
        body = orjson.dumps(alert_body(change))
        problem = ""
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            for attempt in range(self.retries + 1):
                if attempt:
                    self.sleep(min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1)))
                self.attempts += 1
                try:
                    resp = client.post(self.url, content=body, headers=self._headers(change,
                                                                                     body))
                except httpx.HTTPError as err:
                    problem = type(err).__name__
                    continue
                code = resp.status_code
                if code < 300:
                    return
                if code < 400:
                    raise AlertRejected(
                        f"webhook {self.shown} answered alert {change.dedup_key} with a "
                        f"redirect (HTTP {code}); redirects are not followed: configure the "
                        "final URL")
                if code < 500 and code not in RETRY_STATUS:
                    raise AlertRejected(
                        f"webhook {self.shown} rejected alert {change.dedup_key} with HTTP "
                        f"{code}: {resp.text[:200]!r}")
                problem = f"HTTP {code}"
        raise TransientError(f"webhook {self.shown} failed {self.retries + 1} times for alert "
                             f"{change.dedup_key} (last: {problem})")

    def _headers(self, change: IncidentChange, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": change.dedup_key}
        if self.secret is not None:
            stamp = str(int(time.time()))
            headers["X-Mad-Timestamp"] = stamp
            headers["X-Mad-Signature"] = signature(self.secret, stamp, body)
        return headers


def open_sinks(settings: Settings) -> list[AlertSink]:
    """The sinks `settings.detect.alerts` asks for: the JSONL file, then the webhook."""
    cfg = settings.detect.alerts
    sinks: list[AlertSink] = []
    if cfg.jsonl:
        sinks.append(JsonlSink(settings.alerts_path))
    if cfg.webhook_url:
        sinks.append(WebhookSink(cfg.webhook_url, cfg.webhook_retries, cfg.webhook_timeout_s,
                                 cfg.webhook_backoff_s, secret=webhook_secret(settings)))
    return sinks


def webhook_secret(settings: Settings) -> str | None:
    """The signing secret: `detect.alerts.webhook_secret`, or the first line of
    `webhook_secret_file` (so it need not sit in a settings file or the environment)."""
    cfg = settings.detect.alerts
    if cfg.webhook_secret_file is None:
        return cfg.webhook_secret
    try:
        text = cfg.webhook_secret_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read detect.alerts.webhook_secret_file "
                          f"{cfg.webhook_secret_file}: {err}") from None
    if not text:
        raise ConfigError(f"detect.alerts.webhook_secret_file {cfg.webhook_secret_file} is "
                          "empty")
    return text.splitlines()[0]


@dataclass
class Failure:
    sink: str
    dedup_key: str
    error: str


@dataclass
class Dispatcher:
    """Sends each change to each sink unless the SentLog has it, and marks it after success.

    Changes not yet done are first offered to the `silencer`: those it silences go to no
    sink (`silenced` holds their dedup keys and reasons). A failing sink does not stop the
    others. After a transient failure the sink's remaining alerts of this pass are not tried
    (they would wait out the same outage, and would arrive out of order); they count as
    failures too and stay unmarked, so the next pass sends them.
    """

    sinks: Sequence[AlertSink]
    sent: SentLog
    silencer: Silencer = field(default_factory=NoSilences)
    failures: list[Failure] = field(default_factory=list)  # of the last dispatch
    silenced: dict[str, str] = field(default_factory=dict)  # of the last dispatch

    def dispatch(self, changes: Iterable[IncidentChange]) -> int:
        """Deliver what is not yet delivered; return how many deliveries succeeded."""
        changes = list(changes)
        self.failures = []
        todo = [c for c in changes
                if not all(self.sent.seen(f"{s.name}:{c.dedup_key}") for s in self.sinks)]
        self.silenced = self.silencer.silence(todo) if todo else {}
        changes = [c for c in changes if c.dedup_key not in self.silenced]
        delivered = 0
        for sink in self.sinks:
            down = ""
            for change in changes:
                key = f"{sink.name}:{change.dedup_key}"
                if self.sent.seen(key):
                    continue
                if down:
                    self.failures.append(Failure(sink.name, change.dedup_key, down))
                    continue
                try:
                    sink.send(change)
                except AlertRejected as err:  # for good: recorded once, not sent again
                    self.sent.fail(key, str(err))
                    self._fail(sink.name, change.dedup_key, str(err))
                    continue
                except TransientError as err:
                    down = f"not tried after: {err}"
                    self._fail(sink.name, change.dedup_key, str(err))
                    continue
                except Exception as err:  # a bad sink must not stop the others
                    self._fail(sink.name, change.dedup_key, f"{type(err).__name__}: {err}")
                    continue
                self.sent.mark(key)
                delivered += 1
        return delivered

    @property
    def failed(self) -> int:
        return len(self.failures)

    def _fail(self, sink: str, key: str, error: str) -> None:
        log.warning("alert %s not delivered to %s: %s", key, sink, error)
        self.failures.append(Failure(sink, key, error))
