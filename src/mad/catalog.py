"""The 59 event types of the six simulated banking services: the single source of truth.

The generator draws from it, ETL validates against it (and fills `service` from it when a
producer leaves it out), `mad catalog` prints it and `docs/catalog.md` is rendered from it.

Each event type names the numeric series it carries in its `metrics` object. A series has a
typical value (`median`), a spread (log-normal sigma), a unit, and the service-state factor
that drives it in the simulator (`latency`, `traffic`, `memory`, ...), so incidents and
their knock-on effects show up in exactly the series that an operator would watch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["log", "metric", "apm"]
Outcome = Literal["ok", "error", "alert"]
Factor = Literal[
    "none", "latency", "db", "traffic", "memory", "queue", "amount", "fraud", "errors", "cpu"
]

SERVICES: tuple[str, ...] = ("gateway", "auth", "accounts", "payments", "fraud", "notifications")
KINDS: tuple[str, ...] = ("log", "metric", "apm")
LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARN", "ERROR")

# Instances per service; metric events are scraped per host.
HOSTS: dict[str, int] = {
    "gateway": 3, "auth": 2, "accounts": 2, "payments": 3, "fraud": 2, "notifications": 2,
}
# Share of request-driven traffic each service emits, and the dependencies it calls.
TRAFFIC_SHARE: dict[str, float] = {
    "gateway": 0.28, "auth": 0.15, "accounts": 0.16, "payments": 0.19, "fraud": 0.11,
    "notifications": 0.11,
}
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "gateway": ("auth", "accounts", "payments"),
    "auth": (),
    "accounts": (),
    "payments": ("accounts", "fraud", "notifications"),
    "fraud": (),
    "notifications": (),
}
# Services whose requests hit the core database (a slow database slows them down).
USES_DATABASE: tuple[str, ...] = ("auth", "accounts", "payments")


@dataclass(frozen=True)
class Series:
    """A numeric measurement carried in an event's `metrics` object."""

    name: str
    unit: str
    median: float
    spread: float = 0.3
    factor: Factor = "none"
    integer: bool = False
    description: str = ""


@dataclass(frozen=True)
class FieldSpec:
    """A top-level or `context` field an event type carries besides the common envelope."""

    name: str
    type: Literal["string", "integer", "number", "boolean"]
    unit: str = ""
    description: str = ""


@dataclass(frozen=True)
class EventType:
    name: str
    services: tuple[str, ...]
    kind: Kind
    category: str
    levels: dict[str, float]
    series: tuple[Series, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    outcome: Outcome = "ok"
    weight: float = 1.0
    message: str = ""
    error_codes: tuple[str, ...] = ()
    status_codes: tuple[int, ...] = ()
    has_user: bool = True

    @property
    def series_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.series)


# Reusable series definitions.
def _lat(name: str = "latency_ms", median: float = 40.0, factor: Factor = "latency") -> Series:
    return Series(name, "ms", median, 0.45, factor, description="time to serve the request")


AMOUNT = Series("amount", "EUR", 85.0, 1.1, "amount", description="transaction amount")
STATUS = FieldSpec("status_code", "integer", description="HTTP status returned")
CURRENCY = FieldSpec("currency", "string", description="ISO 4217 currency of `amount`")
VERSION = FieldSpec("version", "string", description="deployed build")

INFO = {"INFO": 0.97, "DEBUG": 0.03}
INFO_WARN = {"INFO": 0.9, "WARN": 0.08, "DEBUG": 0.02}
WARN = {"WARN": 1.0}
ERROR = {"ERROR": 1.0}
GAUGE = {"INFO": 1.0}

ALL = SERVICES
_T: list[EventType] = []


def _add(*types: EventType) -> None:
    _T.extend(types)


# -- shared by every service --------------------------------------------------------------
_add(
    EventType("host.cpu", ALL, "metric", "resource", GAUGE, (
        Series("cpu_pct", "%", 35.0, 0.12, "cpu", description="CPU busy"),
        Series("load_avg", "1", 1.2, 0.15, "cpu", description="1-minute load average"),
    )),
    EventType("host.memory", ALL, "metric", "resource", GAUGE, (
        Series("memory_mb", "MiB", 900.0, 0.04, "memory", description="resident memory"),
        Series("heap_used_pct", "%", 55.0, 0.06, "memory", description="heap in use"),
    )),
    EventType("runtime.gc", ALL, "metric", "resource", GAUGE, (
        Series("gc_pause_ms", "ms", 8.0, 0.3, "memory", description="GC pause, last interval"),
        Series("gc_count", "1", 4.0, 0.3, "memory", integer=True, description="GC cycles"),
    )),
    EventType("runtime.threadpool", ALL, "metric", "resource", GAUGE, (
        Series("active_threads", "1", 24.0, 0.15, "traffic", integer=True),
        Series("queue_depth", "1", 3.0, 0.5, "queue", integer=True, description="pending tasks"),
    )),
    EventType("service.deploy.completed", ALL, "log", "deploy", {"INFO": 1.0}, (), (VERSION,),
              weight=0.0, message="deployment finished", has_user=False),
    EventType("service.health_check", ALL, "apm", "health", GAUGE,
              (_lat("duration_ms", 3.0),), (STATUS,), weight=0.25,
              message="health probe", has_user=False),
)

# -- gateway ---------------------------------------------------------------------------------
_add(
    EventType("gateway.request.completed", ("gateway",), "log", "http", INFO, (
        _lat(median=55.0), Series("response_bytes", "B", 2400.0, 0.8, integer=True),
    ), (STATUS, FieldSpec("route", "string")), weight=10, message="request served",
        status_codes=(200, 200, 200, 201, 204)),
    EventType("gateway.request.failed", ("gateway",), "log", "http", ERROR, (_lat(median=120.0),),
              (STATUS, FieldSpec("route", "string")), outcome="error", weight=0.12,
              message="upstream failed", error_codes=("UPSTREAM_5XX", "UPSTREAM_TIMEOUT"),
              status_codes=(502, 503, 504)),
    EventType("gateway.rate_limited", ("gateway",), "log", "http", WARN, (), (STATUS,), weight=0.4,
              message="client over its rate limit", status_codes=(429,)),
    EventType("gateway.route.not_found", ("gateway",), "log", "http", WARN, (), (STATUS,),
              weight=0.3, message="no route", status_codes=(404,)),
    EventType("gateway.tls.handshake_failed", ("gateway",), "log", "security", ERROR, (),
              (FieldSpec("tls_version", "string"),), outcome="error", weight=0.04,
              message="TLS handshake failed", error_codes=("TLS_CERT_EXPIRED", "TLS_BAD_CERT")),
    EventType("gateway.http_span", ("gateway",), "apm", "http", INFO, (
        _lat("duration_ms", 60.0), _lat("upstream_ms", 45.0),
    ), (STATUS, FieldSpec("route", "string")), weight=4, message="span",
        status_codes=(200, 200, 201)),
    EventType("gateway.connections", ("gateway",), "metric", "throughput", GAUGE, (
        Series("active_connections", "1", 180.0, 0.1, "traffic", integer=True),
        Series("requests_per_s", "1/s", 40.0, 0.1, "traffic"),
    )),
)

# -- auth ------------------------------------------------------------------------------------
_add(
    EventType("auth.login.succeeded", ("auth",), "log", "authentication", INFO,
              (_lat(median=90.0),),
              (FieldSpec("method", "string"),), weight=5, message="login ok"),
    EventType("auth.login.failed", ("auth",), "log", "authentication", {"WARN": 0.6, "ERROR": 0.4},
              (_lat(median=95.0),), (FieldSpec("method", "string"),), outcome="error", weight=0.12,
              message="login failed", error_codes=("BAD_CREDENTIALS", "CERT_INVALID")),
    EventType("auth.mfa.challenge_sent", ("auth",), "log", "authentication", INFO, (),
              (FieldSpec("channel", "string"),), weight=1.5, message="MFA challenge sent"),
    EventType("auth.mfa.verified", ("auth",), "log", "authentication", INFO, (_lat(median=30.0),),
              weight=1.4, message="MFA verified"),
    EventType("auth.token.issued", ("auth",), "log", "token", INFO, (_lat(median=12.0),),
              weight=4, message="access token issued"),
    EventType("auth.token.validation_failed", ("auth",), "log", "token", ERROR,
              (_lat(median=8.0),), outcome="error", weight=0.05, message="token rejected",
              error_codes=("TOKEN_EXPIRED", "SIGNATURE_INVALID", "CERT_EXPIRED")),
    EventType("auth.account.locked", ("auth",), "log", "security", WARN, (), weight=0.08,
              message="account locked after failures"),
    EventType("auth.token_span", ("auth",), "apm", "token", INFO, (
        _lat("duration_ms", 15.0), _lat("db_time_ms", 4.0, "db"),
    ), weight=3, message="span"),
    EventType("auth.sessions", ("auth",), "metric", "throughput", GAUGE, (
        Series("active_sessions", "1", 5200.0, 0.08, "traffic", integer=True),
        Series("token_cache_hit_pct", "%", 93.0, 0.02),
    )),
)

# -- accounts --------------------------------------------------------------------------------
_add(
    EventType("accounts.balance.queried", ("accounts",), "log", "query", INFO,
              (_lat(median=25.0),), weight=8, message="balance read"),
    EventType("accounts.statement.generated", ("accounts",), "log", "query", INFO, (
        _lat(median=240.0), Series("page_count", "1", 3.0, 0.6, integer=True),
    ), weight=0.8, message="statement generated"),
    EventType("accounts.profile.updated", ("accounts",), "log", "profile", INFO,
              (_lat(median=60.0),), weight=0.7, message="profile updated"),
    EventType("accounts.account.opened", ("accounts",), "log", "profile", INFO,
              (_lat(median=300.0),), weight=0.15, message="account opened"),
    EventType("accounts.kyc.check_failed", ("accounts",), "log", "compliance", WARN, (),
              (FieldSpec("reason", "string"),), weight=0.1, message="KYC check failed"),
    EventType("accounts.db.query_failed", ("accounts",), "log", "database", ERROR,
              (_lat("db_time_ms", 900.0, "db"),), outcome="error", weight=0.08,
              message="database query failed", error_codes=("DB_TIMEOUT", "DB_CONN_REFUSED")),
    EventType("accounts.db_query", ("accounts",), "apm", "database", INFO, (
        _lat("duration_ms", 9.0, "db"), Series("rows", "1", 12.0, 0.8, integer=True),
    ), weight=5, message="span"),
    EventType("accounts.http_span", ("accounts",), "apm", "http", INFO, (
        _lat("duration_ms", 30.0), _lat("db_time_ms", 10.0, "db"),
    ), (STATUS,), weight=3, message="span", status_codes=(200,)),
    EventType("accounts.db_pool", ("accounts",), "metric", "database", GAUGE, (
        Series("db_connections_active", "1", 14.0, 0.15, "db", integer=True),
        Series("db_pool_wait_ms", "ms", 2.0, 0.3, "db"),
    )),
)

# -- payments --------------------------------------------------------------------------------
_add(
    EventType("payments.transfer.initiated", ("payments",), "log", "transfer", INFO, (AMOUNT,),
              (CURRENCY,), weight=3, message="transfer initiated"),
    EventType("payments.transfer.completed", ("payments",), "log", "transfer", INFO,
              (AMOUNT, _lat(median=180.0)), (CURRENCY,), weight=2.8, message="transfer completed"),
    EventType("payments.transfer.failed", ("payments",), "log", "transfer", ERROR,
              (AMOUNT, _lat(median=400.0)), (CURRENCY,), outcome="error", weight=0.12,
              message="transfer failed",
              error_codes=("LEDGER_TIMEOUT", "INSUFFICIENT_FUNDS", "DOWNSTREAM_UNAVAILABLE")),
    EventType("payments.card.authorized", ("payments",), "log", "card", INFO,
              (AMOUNT, _lat(median=140.0)), (CURRENCY, FieldSpec("card_brand", "string")),
              weight=4, message="card payment authorized"),
    EventType("payments.card.declined", ("payments",), "log", "card", WARN, (AMOUNT,),
              (CURRENCY, FieldSpec("decline_reason", "string")), weight=0.4,
              message="card payment declined"),
    EventType("payments.refund.issued", ("payments",), "log", "transfer", INFO, (AMOUNT,),
              (CURRENCY,), weight=0.3, message="refund issued"),
    EventType("payments.settlement.batch_completed", ("payments",), "log", "settlement", INFO, (
        Series("batch_size", "1", 400.0, 0.3, "traffic", integer=True),
        Series("amount", "EUR", 34000.0, 0.4, "amount"),
    ), (CURRENCY,), weight=0.05, message="settlement batch completed", has_user=False),
    EventType("payments.ledger.write_timeout", ("payments",), "log", "database", ERROR,
              (_lat("db_time_ms", 2000.0, "db"),), outcome="error", weight=0.05,
              message="ledger write timed out", error_codes=("LEDGER_TIMEOUT",)),
    EventType("payments.http_span", ("payments",), "apm", "http", INFO, (
        _lat("duration_ms", 170.0), _lat("db_time_ms", 35.0, "db"),
        _lat("fraud_check_ms", 25.0),
    ), (STATUS,), weight=4, message="span", status_codes=(200, 201)),
    EventType("payments.db_transaction", ("payments",), "apm", "database", INFO,
              (_lat("duration_ms", 22.0, "db"),), weight=2.5, message="span"),
    EventType("payments.throughput", ("payments",), "metric", "throughput", GAUGE, (
        Series("tps", "1/s", 9.0, 0.1, "traffic"),
        Series("amount_per_min", "EUR", 45000.0, 0.2, "amount"),
    )),
)

# -- fraud -----------------------------------------------------------------------------------
_add(
    EventType("fraud.score.computed", ("fraud",), "log", "scoring", INFO, (
        Series("fraud_score", "1", 0.08, 0.6, "fraud"), _lat(median=18.0),
    ), weight=8, message="transaction scored"),
    EventType("fraud.alert.raised", ("fraud",), "log", "alert", WARN, (
        Series("fraud_score", "1", 0.86, 0.05), AMOUNT,
    ), outcome="alert", weight=0.15, message="fraud alert raised"),
    EventType("fraud.transaction.blocked", ("fraud",), "log", "alert", WARN, (
        Series("fraud_score", "1", 0.95, 0.02), AMOUNT,
    ), (CURRENCY,), outcome="alert", weight=0.05, message="transaction blocked"),
    EventType("fraud.scoring.failed", ("fraud",), "log", "scoring", ERROR, (_lat(median=250.0),),
              (FieldSpec("rule_id", "string"),), outcome="error", weight=0.1,
              message="scoring failed, fallback rules applied",
              error_codes=("MODEL_TIMEOUT", "FEATURE_STORE_UNAVAILABLE")),
    EventType("fraud.velocity.check", ("fraud",), "log", "rules", INFO, (
        Series("tx_per_hour", "1/h", 2.0, 0.5, "fraud", integer=True),
    ), weight=2, message="velocity checked"),
    EventType("fraud.model.reloaded", ("fraud",), "log", "model", INFO, (),
              (FieldSpec("model_version", "string"),), weight=0.004,
              message="model reloaded", has_user=False),
    EventType("fraud.model_inference", ("fraud",), "apm", "model", INFO, (
        _lat("duration_ms", 14.0), Series("feature_count", "1", 120.0, 0.05, integer=True),
    ), weight=4, message="span"),
    EventType("fraud.model", ("fraud",), "metric", "model", GAUGE, (
        Series("model_latency_ms", "ms", 14.0, 0.1, "latency"),
        Series("alert_rate_pct", "%", 1.5, 0.2, "fraud"),
    )),
)

# -- notifications ---------------------------------------------------------------------------
_add(
    EventType("notifications.email.sent", ("notifications",), "log", "delivery", INFO,
              (_lat(median=220.0),), weight=3, message="email sent"),
    EventType("notifications.sms.sent", ("notifications",), "log", "delivery", INFO, (
        _lat(median=350.0), Series("cost", "EUR", 0.04, 0.1),
    ), weight=2, message="SMS sent"),
    EventType("notifications.push.sent", ("notifications",), "log", "delivery", INFO,
              (_lat(median=80.0),), weight=3, message="push notification sent"),
    EventType("notifications.delivery.failed", ("notifications",), "log", "delivery", ERROR,
              (_lat(median=900.0),), (FieldSpec("channel", "string"),), outcome="error",
              weight=0.12, message="delivery failed",
              error_codes=("PROVIDER_5XX", "PROVIDER_TIMEOUT")),
    EventType("notifications.template.render_failed", ("notifications",), "log", "template",
              ERROR, (), (FieldSpec("template", "string"),), outcome="error", weight=0.03,
              message="template render failed", error_codes=("TEMPLATE_MISSING_VAR",)),
    EventType("notifications.queue.backlog", ("notifications",), "log", "queue", WARN, (
        Series("queue_depth", "1", 40.0, 0.3, "queue", integer=True),
    ), weight=0.05, message="queue backlog above watermark", has_user=False),
    EventType("notifications.provider_call", ("notifications",), "apm", "delivery", INFO, (
        _lat("duration_ms", 200.0),
    ), (STATUS,), weight=4, message="span", status_codes=(200, 202)),
    EventType("notifications.queue", ("notifications",), "metric", "queue", GAUGE, (
        Series("queue_depth", "1", 40.0, 0.3, "queue", integer=True),
        Series("consumer_lag_s", "s", 1.5, 0.3, "queue"),
    )),
    EventType("notifications.provider", ("notifications",), "metric", "delivery", GAUGE, (
        Series("provider_error_pct", "%", 0.8, 0.3, "errors"),
        Series("send_rate", "1/s", 8.0, 0.1, "traffic"),
    )),
)

EVENT_TYPES: tuple[EventType, ...] = tuple(_T)
BY_NAME: dict[str, EventType] = {t.name: t for t in EVENT_TYPES}


@dataclass(frozen=True)
class ServiceView:
    """The catalog seen from one service."""

    name: str
    types: tuple[EventType, ...] = field(default_factory=tuple)

    @property
    def series(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for t in self.types:
            for s in t.series:
                seen.setdefault(s.name, None)
        return tuple(seen)


def service_view(service: str) -> ServiceView:
    return ServiceView(service, tuple(t for t in EVENT_TYPES if service in t.services))


def default_service(event_type: str) -> str | None:
    """The service an event type belongs to when the producer omits it (None if shared)."""
    t = BY_NAME.get(event_type)
    if t is None or len(t.services) != 1:
        return None
    return t.services[0]


def series_unit(name: str) -> str:
    for t in EVENT_TYPES:
        for s in t.series:
            if s.name == name:
                return s.unit
    raise KeyError(name)
