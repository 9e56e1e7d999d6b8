"""One typed settings object for every stage.

Layers, lowest first: the defaults below < a YAML file (`mad.yaml` in the working directory,
or `--config FILE`) < `MAD_SECTION__KEY` environment variables < CLI flags. A bad value at any
layer raises `ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mad.errors import ConfigError
from mad.registry import Registry, describe_error

ENV_PREFIX = "MAD_"
DEFAULT_CONFIG_FILE = "mad.yaml"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float) -> float:
    """`90s`, `30m`, `6h`, `2d` or a plain number of seconds; must be positive."""
    raw = str(text).strip().lower()
    unit = _UNITS.get(raw[-1:])
    number = raw[:-1] if unit else raw
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"'{text}' is not a duration like 90s, 30m, 6h or 2d") from None
    if not value > 0 or value > 366 * 86400:
        raise ValueError(f"duration '{text}' must be > 0 and at most 366d")
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackendChoice(Section):
    """A swap point: `backend` names a registered backend, and a key named after a backend
    holds that backend's own options (`etl.engine.backend: spark`, `etl.engine.spark.master:
    ...`). Both are checked against the swap point's `Registry`; a plain string in place of
    the section is short for `{backend: <string>}`."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    registry_path: ClassVar[str] = ""  # "module:NAME" of the Registry, imported when checked
    backend: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"backend": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> Self:
        registry = self.registry()
        registry.entry(self.backend)
        extra = self.__pydantic_extra__ or {}
        for name in list(extra):
            if name not in registry.names():
                known = ", ".join(["backend", *registry.names()])
                raise ConfigError(f"unknown setting '{registry.setting}.{name}' "
                                  f"(known here: {known})")
            extra[name] = registry.options(name, extra[name])
        return self

    @classmethod
    def registry(cls) -> Registry[Any]:
        module, _, name = cls.registry_path.partition(":")
        found: Registry[Any] = getattr(importlib.import_module(module), name)
        return found

    def options(self, name: str | None = None) -> BaseModel:
        """The options of backend `name` (default: the chosen one), defaults filled in."""
        name = name or self.backend
        return self.registry().options(name, (self.__pydantic_extra__ or {}).get(name))

    def create(self, **context: Any) -> Any:
        """The chosen backend, built from its options and `context`."""
        return self.registry().create(self.backend, self.options(), **context)


class FaultRates(Section):
    """Data faults the generator injects, as fractions of emitted events."""

    duplicates: float = Field(0.005, ge=0, le=0.5, description="exact re-sends of an event")
    late: float = Field(0.002, ge=0, le=0.5, description="sent 15 min to `late_max_hours` late")
    late_max_hours: float = Field(3.0, gt=0.25, le=48, description="upper bound of lateness")
    out_of_order: float = Field(0.02, ge=0, le=1, description="delivered up to 30 s out of order")
    malformed: float = Field(0.001, ge=0, le=0.5, description="broken records of five kinds")
    unknown_fields: float = Field(0.01, ge=0, le=1, description="events with extra fields")
    skewed_hosts: int = Field(2, ge=0, le=20, description="hosts whose clocks are off by 30-120 s")
    epoch_hosts: int = Field(3, ge=0, le=20, description="hosts that send epoch timestamps")


class GenerateSettings(Section):
    start: datetime = Field(datetime.fromisoformat("2026-11-01T00:00:00+00:00"))
    duration: str = Field("6h", description="simulated time span, e.g. 90m, 6h, 2d")
    rate: float = Field(50.0, gt=0, le=1_000_000, description="events/s over all services")
    seed: int = Field(7, ge=0)
    scenarios: list[str] = Field(default_factory=lambda: ["all"])
    incidents_per_day: float = Field(24.0, ge=0, le=500)
    scrape_interval_s: float = Field(10.0, gt=0, le=3600)
    gzip: bool = False
    faults: FaultRates = Field(default_factory=lambda: FaultRates())

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("start")
    @classmethod
    def _start(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-11-01T00:00:00Z")
        return value

    @property
    def duration_s(self) -> float:
        return parse_duration(self.duration)


class GuardedSection(Section):
    """A section of an HTTP server guarded like the others (`mad.web.Guard`)."""

    auth_token: str | None = Field(None, description="bearer token every route but /health "
                                   "needs (see docs/operations.md)")
    auth_token_file: Path | None = Field(None, description="read the token from this file")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header names "
                                     "accepted; default: loopback names when bound to "
                                     "loopback, any otherwise; '*' for any")


class SimulateSettings(GuardedSection):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    sink: str = Field(
        "data/simulator/events.jsonl",
        description="a JSONL file path, or an http(s):// URL of the ingest API",
    )
    faults: bool = Field(True, description="inject data faults in live mode")


class StreamSettings(BackendChoice):
    """The durable stream between the ingest API and the raw writer: `embedded` (a local
    log, options under `ingest.stream.embedded`) or `kinesis` (`ingest.stream.kinesis`)."""

    registry_path: ClassVar[str] = "mad.ingest.streams:STREAMS"
    backend: str = "embedded"


class AwsSettings(Section):
    """Endpoint and credentials for S3 and Kinesis (AWS, MinIO, LocalStack or moto)."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None


class IngestSettings(GuardedSection):
    host: str = "127.0.0.1"
    port: int = Field(8010, ge=1, le=65535)
    max_body_bytes: int = Field(5 * 2**20, ge=1024, description="413 above this")
    max_record_bytes: int = Field(256 * 1024, ge=256, description="rejected above this")
    max_depth: int = Field(16, ge=2, le=64, description="nesting limit of one event")
    max_records: int = Field(10_000, ge=1, description="records per request; 413 above this")
    max_listed_rejections: int = Field(
        100, ge=0, description="rejections of one request answered one by one; past it they "
        "are counted by reason (and packed by reason in the stream)")
    max_lag_records: int = Field(5_000_000, ge=1, description="429 above this backlog")
    max_connections: int = Field(1000, ge=1, description="open connections; past it a "
                                 "request gets 503 (/health and /metrics still answer)")
    backlog: int = Field(2048, ge=1, description="connections the kernel queues unaccepted")
    keep_alive_s: int = Field(5, ge=1, description="an idle kept-alive connection is closed")
    header_timeout_s: float = Field(10.0, gt=0, description="a request head not complete "
                                    "within this (idle or slow socket) is a 408, closed")
    body_timeout_s: float = Field(60.0, gt=0, description="a request body not complete "
                                  "within this is a 408, closed")
    max_disk_bytes: int = Field(20 * 2**30, ge=2**20, description="503 above this")
    stream: StreamSettings = Field(default_factory=lambda: StreamSettings())


class RetentionSettings(Section):
    """Days each group of datasets is kept, counted from the end of a partition's day (0:
    forever); `mad lake retention --apply` deletes what is older."""

    raw: float = Field(7.0, ge=0, description="the raw lake of events, by ingest day")
    errors: float = Field(30.0, ge=0, description="the records ingest rejected")
    transformed: float = Field(90.0, ge=0, description="the Parquet events, by event day")
    quarantine: float = Field(90.0, ge=0, description="the lines the ETL quarantined")
    aggregates: float = Field(90.0, ge=0, description="the 1m/5m/1h aggregates")
    anomalies: float = Field(365.0, ge=0, description="the anomalies detection found")


class LakeSettings(Section):
    """Where the lake is; the URL's scheme picks the object store, whose options live under
    its name (`lake.s3.multipart_threshold_bytes`)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    url: str | None = Field(
        None, description="a local folder or s3://bucket[/prefix]; default <data_dir>/lake"
    )
    retention: RetentionSettings = Field(default_factory=lambda: RetentionSettings())

    @model_validator(mode="after")
    def _check(self) -> Self:
        from mad.stores import STORES

        extra = self.__pydantic_extra__ or {}
        for name in list(extra):
            if name not in STORES.names():
                known = ", ".join(["url", *STORES.names()])
                raise ConfigError(f"unknown setting 'lake.{name}' (known here: {known})")
            extra[name] = STORES.options(name, extra[name])
        return self

    def options(self, scheme: str) -> BaseModel:
        """The options of the object store for `scheme` (`file`, `s3`)."""
        from mad.stores import STORES

        return STORES.options(scheme, (self.__pydantic_extra__ or {}).get(scheme))


class WriterSettings(Section):
    """Firehose-style buffering of the raw writer: a file per partition at size or age."""

    consumer: str = "raw-writer"
    flush_bytes: int = Field(5 * 2**20, ge=1024)
    flush_interval_s: float = Field(300.0, gt=0)
    gzip: bool = True
    gzip_level: int = Field(1, ge=1, le=9, description="1: ~3x faster than 6, files ~25% larger")
    read_batch: int = Field(5000, ge=1, le=100_000)
    stale_temp_s: float = Field(3600.0, gt=0, description="at start, delete the temp files "
                                "(.tmp-*) older than this that a crash left in a local raw lake")
    lease_s: float = Field(30.0, gt=0, le=3600, description="how long a raw writer's lease on "
                           "a stream shard lasts unless renewed (about every third of it), when "
                           "several writers share a Kinesis stream through the state database; "
                           "a writer that dies on another host is taken over after this (one of "
                           "this host at once)")
    revalidate: bool | None = Field(
        None, description="check every event again; default: only when the stream is not "
        "embedded (the embedded stream's one appender, the ingest API, already checked them)",
    )


Window = Literal["1m", "5m", "1h"]
WINDOWS: tuple[Window, ...] = ("1m", "5m", "1h")


class EngineSettings(BackendChoice):
    """The ETL engine: `duckdb` (in process; `etl.engine.duckdb.memory_limit`, `threads`) or
    `spark` (`etl.engine.spark.master`, `jars`)."""

    registry_path: ClassVar[str] = "mad.etl.engines:ENGINES"
    backend: str = "duckdb"


class EtlSettings(Section):
    """Stage 02: raw lake -> Parquet lake and aggregates."""

    engine: EngineSettings = Field(default_factory=lambda: EngineSettings())
    batch_bytes: int = Field(1 * 2**30, ge=2**20, description="raw bytes per run at most")
    batch_files: int = Field(2000, ge=1)
    watch_interval_s: float = Field(60.0, gt=0, description="`mad etl run --watch` poll")
    retries: int = Field(3, ge=0, le=20, description="attempts after a transient failure")
    target_file_bytes: int = Field(128 * 2**20, ge=2**20, description="compaction target")
    windows: list[Window] = Field(default_factory=lambda: list(WINDOWS))
    unreadable_attempts: int = Field(3, ge=1, le=100, description="passes that find a raw "
                                     "file unreadable (a cut .gz) before it is quarantined whole")
    dedup_horizon_hours: int = Field(168, ge=0, le=24 * 366, description="event_ids are "
                                     "checked against the partitions within this many hours "
                                     "of event time (0: only the partitions a run rewrites)")

Stat = Literal["avg", "min", "max", "p50", "p95", "p99", "count"]


class RuleSettings(Section):
    """A threshold on one aggregate series: `series` `stat` `op` `threshold` for `windows`
    consecutive windows (e.g. error_rate avg > 0.05 for 3 windows)."""

    name: str
    series: str
    stat: Stat = "avg"
    op: Literal[">", ">=", "<", "<="] = ">"
    threshold: float
    windows: int = Field(3, ge=1, le=1000, description="consecutive windows before it fires")
    services: list[str] = Field(default_factory=list, description="empty: every service")
    severity: Literal["warning", "critical"] = "critical"


class SloSettings(Section):
    """p99 latency objectives per service (ms); a window over it counts as a rule breach."""

    series: str = "latency_ms"
    p99_ms: dict[str, float] = Field(default_factory=lambda: {
        "gateway": 1500.0, "auth": 800.0, "accounts": 800.0, "payments": 1500.0,
        "fraud": 800.0, "notifications": 2000.0,
    })
    windows: int = Field(3, ge=1, le=1000)


class AlertSettings(Section):
    """Where alerts go: one per incident state change (opened, escalated, resolved)."""

    webhook_url: str | None = Field(None, description="POST JSON here (with a dedup key)")
    webhook_retries: int = Field(5, ge=0, le=50)
    webhook_timeout_s: float = Field(5.0, gt=0, le=120)
    webhook_backoff_s: float = Field(0.5, ge=0, le=60, description="first retry delay")
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 signing secret: "
                                       "requests carry X-Mad-Timestamp and X-Mad-Signature")
    webhook_secret_file: Path | None = Field(None, description="read the secret from here")
    jsonl_path: Path | None = Field(None, description="default <data_dir>/alerts.jsonl")
    jsonl: bool = Field(True, description="write alerts to the JSONL file")


class DetectorSettings(BackendChoice):
    """The detector scored on every series, and its parameters under its name
    (`detect.detector.ensemble.warmup`)."""

    registry_path: ClassVar[str] = "mad.detect.detectors:DETECTORS"
    backend: str = "ensemble"


class DetectSettings(Section):
    """Stage 04: aggregates -> anomalies -> incidents -> alerts."""

    window: Window = "1m"
    stats: list[Stat] = Field(default_factory=lambda: list[Stat](["avg"]),
                              description="aggregate columns scored per series")
    detector: DetectorSettings = Field(default_factory=lambda: DetectorSettings())
    threshold: float = Field(0.6, ge=0, le=1, description="vote score that opens an anomaly "
                             "(chosen with `mad bench incidents`, docs/detection.md)")
    clear: float = Field(0.4, ge=0, le=1, description="score below which it closes")
    cooldown: int = Field(0, ge=0, description="windows after a close before a new one")
    incident_gap_s: float = Field(900.0, gt=0, description="anomalies closer than this group")
    resolve_after_s: float = Field(1800.0, gt=0, description="quiet time before resolved")
    confirm_windows: int = Field(2, ge=1, le=60, description=(
        "alert an incident once its anomalies span this many windows (a rule, or an anomaly "
        "scoring `confirm_score`, alerts at once)"))
    confirm_score: float = Field(0.8, ge=0, le=2, description=(
        "an anomaly scoring at least this confirms its incident at once (above 1: never)"))
    watch_interval_s: float = Field(60.0, gt=0, description="`mad detect run --watch` poll")
    critical_sigmas: float = Field(6.0, gt=0, le=1000, description="distance from the "
                                   "baseline, in robust sigmas, from which a detector anomaly "
                                   "is critical (rules carry their own severity)")
    allowed_lateness_s: float = Field(60.0, ge=0, le=86400, description="a window is scored "
                                      "once the watermark has passed its end by this much "
                                      "(events arriving later count as late)")
    idle_host_s: float = Field(180.0, gt=0, le=86400, description="a host whose newest event "
                               "is this far behind the median host no longer holds the "
                               "watermark back")
    late_horizon_hours: int = Field(48, ge=1, le=24 * 366, description="how long what each "
                                    "window was scored with is kept, to count the late events "
                                    "that change it afterwards")
    hold_windows: int = Field(0, ge=0, le=1000, description="also hold back the newest N window "
                              "starts in the lake (before the watermark, the only guard; 0: "
                              "the watermark alone)")
    batch_windows: int = Field(60, ge=1, le=100_000, description="window starts per batch "
                               "(anomalies, incidents and alerts are saved per batch)")
    shards: int = Field(1, ge=1, le=1024, description="split the series of a window size "
                        "into this many shards, leased through the state database, so several "
                        "`mad detect run --watch` workers share them (every worker of a window "
                        "size must use the same value; 1: one worker per window size)")
    lease_s: float = Field(600.0, ge=10, le=86400, description="how long a detection lease "
                           "(a window size, a shard, the incident step) lasts unless renewed; "
                           "a worker that dies on another host is taken over after this (one "
                           "of this host at once); at least 3 x watch_interval_s is used")
    checkpoint_s: float = Field(300.0, ge=0, le=86400, description="seconds between saves of "
                                "the detector state (0: after every batch); a restart replays "
                                "the windows after the last save")
    rules: list[RuleSettings] = Field(default_factory=lambda: [
        RuleSettings(name="error-rate-5pct", series="error_rate", threshold=0.05, windows=3),
    ])
    slo: SloSettings = Field(default_factory=lambda: SloSettings())
    alerts: AlertSettings = Field(default_factory=lambda: AlertSettings())


class SupervisorSettings(Section):
    """How `mad up` and `mad ingest serve` keep their parts alive and stop them."""

    restart_backoff_s: float = Field(1.0, gt=0, le=300, description="wait before the first "
                                     "restart of a part that died; doubles each time")
    max_backoff_s: float = Field(30.0, gt=0, le=3600)
    max_restarts: int = Field(5, ge=0, le=1000, description="restarts within "
                              "`restart_window_s` before the whole service exits non-zero")
    restart_window_s: float = Field(600.0, gt=0, le=86400)
    writer_stop_s: float = Field(120.0, gt=0, le=3600, description="time the raw writer gets "
                                 "to write what is left when stopping")
    loop_stop_s: float = Field(60.0, gt=0, le=3600, description="time an ETL or detection "
                               "pass gets to finish when stopping (a pass cut short is "
                               "finished or undone at the next start)")
    status_host: str = Field("127.0.0.1", description="bind address of the supervisor's "
                             "status endpoint (GET /health, /metrics) under `mad up`")
    status_port: int = Field(8030, ge=1, le=65535)
    backfill_hours: float = Field(3.0, ge=0, le=168, description="hours of labelled traffic "
                                  "`mad up` posts once, on its first start, before going live "
                                  "(0: none)")
    backfill_rate: float | None = Field(None, gt=0, le=1000, description="events/s of that "
                                        "backfill; default generate.rate")


class DashboardSettings(Section):
    """The operator dashboard (Streamlit) that `mad up` and `mad dashboard` serve."""

    enabled: bool = Field(True, description="`mad up` serves the dashboard")
    host: str = "127.0.0.1"
    port: int = Field(8020, ge=1, le=65535)
    refresh_s: int = Field(10, ge=2, le=3600, description="live refresh interval")
    default_range_h: int = Field(6, ge=1, le=24 * 31, description="time range shown first")


class CheckSettings(Section):
    """One quality check: on or off, what a failure means (`warn` or `error`), and whether a
    failure holds the partition (`gate`; unset: error-severity failures hold)."""

    enabled: bool = True
    severity: Literal["warn", "error"] = "warn"
    gate: bool | None = Field(None, description="hold a partition this check fails; "
                              "default: when severity is error")

    @property
    def gates(self) -> bool:
        return self.severity == "error" if self.gate is None else self.gate


class CompletenessCheck(CheckSettings):
    severity: Literal["warn", "error"] = "error"
    max_null_rate: float = Field(0.05, ge=0, le=1, description="per required column")
    max_missing_rate: float = Field(0.05, ge=0, le=1, description="lines of a run quarantined "
                                    "for a missing envelope field")
    columns: dict[str, list[str]] = Field(
        default_factory=lambda: {"log": ["level", "host", "message"], "metric": ["host"],
                                 "apm": ["host"]},
        description="required flat columns per kind (the envelope is always required)")


class UniquenessCheck(CheckSettings):
    severity: Literal["warn", "error"] = "error"
    max_duplicate_rate: float = Field(0.05, ge=0, le=1, description="raw lines of a run "
                                      "dropped as re-sends; above: warn (a producer retrying)")


class ValidityCheck(CheckSettings):
    severity: Literal["warn", "error"] = "error"
    max_invalid_rate: float = Field(0.01, ge=0, le=1, description="rows of a partition with "
                                    "an unknown level, a negative measurement, a status code "
                                    "outside 100-599 or a time in the future")
    max_rejected_rate: float = Field(0.05, ge=0, le=1, description="lines of a run "
                                     "quarantined as invalid (bad JSON, unknown type, ...)")
    future_skew_s: float = Field(300.0, ge=0, le=86400, description="event times after the "
                                 "end of their ingest hour by more than this are invalid")


class FreshnessCheck(CheckSettings):
    max_p95_s: float = Field(7200.0, gt=0, description="event time to lake time, p95")


class VolumeCheck(CheckSettings):
    severity: Literal["warn", "error"] = "error"
    min_ratio: float = Field(0.5, ge=0, le=1, description="of the seasonal baseline")
    max_ratio: float = Field(3.0, ge=1, description="of the seasonal baseline")
    days: int = Field(7, ge=1, le=90, description="same hour on this many earlier days")
    weeks: int = Field(4, ge=0, le=52, description="same hour of week on earlier weeks")
    recent_hours: int = Field(6, ge=1, le=168, description="without seasonal history: the "
                              "median of this many earlier hours")
    min_history: int = Field(3, ge=1, le=100, description="points before judging")


class DistributionCheck(CheckSettings):
    max_shift: float = Field(0.5, gt=0, description="|value - baseline| / |baseline| of a "
                             "series' mean and p95 (baseline as the volume check's)")
    min_rows: int = Field(30, ge=1, description="values of a series before judging it")


class SchemaCheck(CheckSettings):
    max_retyped: int = Field(0, ge=0, description="values of a known field of the wrong "
                             "JSON type per run")
    examples: int = Field(3, ge=1, le=20)


class ReconciliationCheck(CheckSettings):
    severity: Literal["warn", "error"] = "error"


class HistoryCheck(CheckSettings):
    """Each watched metric's history, scored by a streaming detector: flags a drift or a
    drop that crosses no fixed threshold."""

    detector: str = Field("cusum", description="a detector of `detect.detector`")
    options: dict[str, Any] = Field(default_factory=dict, description="its parameters")
    threshold: float = Field(0.8, gt=0, lt=1, description="detector score that flags")
    points: int = Field(168, ge=8, le=5000, description="history replayed per metric")


class QualitySettings(Section):
    """Stage 02 quality: checks after every ETL run, history, the write-audit-publish gate."""

    enabled: bool = Field(True, description="run the checks after every ETL run")
    keep_days: float = Field(35.0, ge=1, le=3660, description="results and scores kept this "
                             "long (the volume baseline looks back `volume.weeks` weeks)")
    superseded_hours: float = Field(24.0, ge=1, le=24 * 3660, description="after this, "
                                    "only the newest result of each metric and partition is "
                                    "kept (a live pass measures the current hour every time)")
    completeness: CompletenessCheck = Field(default_factory=lambda: CompletenessCheck())
    uniqueness: UniquenessCheck = Field(default_factory=lambda: UniquenessCheck())
    validity: ValidityCheck = Field(default_factory=lambda: ValidityCheck())
    freshness: FreshnessCheck = Field(default_factory=lambda: FreshnessCheck())
    volume: VolumeCheck = Field(default_factory=lambda: VolumeCheck())
    distribution: DistributionCheck = Field(default_factory=lambda: DistributionCheck())
    schema_drift: SchemaCheck = Field(default_factory=lambda: SchemaCheck())
    reconciliation: ReconciliationCheck = Field(default_factory=lambda: ReconciliationCheck())
    history: HistoryCheck = Field(default_factory=lambda: HistoryCheck())


class HotStoreSettings(BackendChoice):
    """The hot store: `embedded` (a SQLite file, `store.hot.embedded.path`) or `redis`
    (`store.hot.redis.url`, `prefix`, `timeout_s`)."""

    registry_path: ClassVar[str] = "mad.hotstore.backends:HOT_STORES"
    backend: str = "embedded"


class StoreSettings(Section):
    """Stage 03: the hot store that answers the newest hours of aggregates and anomalies
    before the lake (docs/query.md)."""

    enabled: bool = Field(True, description="false: every read goes to the lake")
    horizon_h: float = Field(24.0, ge=1, le=24 * 14, description="hours the hot store holds")
    retry_s: float = Field(5.0, gt=0, le=600, description="after a failure to reach the hot "
                           "store, reads go to the lake for this long before trying again")
    hot: HotStoreSettings = Field(default_factory=lambda: HotStoreSettings())


class ApiSettings(GuardedSection):
    """The read API (`mad api serve`; docs/api.md): the query functions over HTTP."""

    host: str = "127.0.0.1"
    port: int = Field(8030, ge=1, le=65535, description="the supervisor's status endpoint "
                      "defaults to this port too: `mad up` serves the read API there, so "
                      "`mad api serve` is for running it alone")
    max_rows: int = Field(10_000, ge=1, le=1_000_000, description="rows of one page at most "
                          "(`limit`)")


class StateSettings(Section):
    url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/state.db"
    )


class Settings(Section):
    profile: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]{0,31}$", description=(
        "the named profile these settings were built with (`--profile`, `MAD_PROFILE`, "
        "or `profile:` in mad.yaml): its values sit above the file's own sections"))
    data_dir: Path = Path("data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    generate: GenerateSettings = Field(default_factory=lambda: GenerateSettings())
    simulate: SimulateSettings = Field(default_factory=lambda: SimulateSettings())
    aws: AwsSettings = Field(default_factory=lambda: AwsSettings())
    ingest: IngestSettings = Field(default_factory=lambda: IngestSettings())
    lake: LakeSettings = Field(default_factory=lambda: LakeSettings())
    writer: WriterSettings = Field(default_factory=lambda: WriterSettings())
    state: StateSettings = Field(default_factory=lambda: StateSettings())
    store: StoreSettings = Field(default_factory=lambda: StoreSettings())
    api: ApiSettings = Field(default_factory=lambda: ApiSettings())
    etl: EtlSettings = Field(default_factory=lambda: EtlSettings())
    detect: DetectSettings = Field(default_factory=lambda: DetectSettings())
    quality: QualitySettings = Field(default_factory=lambda: QualitySettings())
    supervisor: SupervisorSettings = Field(default_factory=lambda: SupervisorSettings())
    dashboard: DashboardSettings = Field(default_factory=lambda: DashboardSettings())

    @property
    def lake_url(self) -> str:
        return self.lake.url or str(self.data_dir / "lake")

    @property
    def alerts_path(self) -> Path:
        return self.detect.alerts.jsonl_path or self.data_dir / "alerts.jsonl"

    @property
    def state_url(self) -> str:
        return self.state.url or f"sqlite:///{self.data_dir / 'state.db'}"


# Old setting names, still read with a one-line warning: backend options moved under their
# backend's name (docs/architecture.md, "Settings of a backend").
RENAMED: dict[str, str] = {
    "ingest.stream.path": "ingest.stream.embedded.path",
    "ingest.stream.shards": "ingest.stream.embedded.shards",
    "ingest.stream.fsync": "ingest.stream.embedded.fsync",
    "ingest.stream.segment_bytes": "ingest.stream.embedded.segment_bytes",
    "ingest.stream.retention_seconds": "ingest.stream.embedded.retention_seconds",
    "ingest.stream.kinesis_stream": "ingest.stream.kinesis.stream_name",
    "ingest.stream.kinesis_shards": "ingest.stream.kinesis.shards",
    "etl.duckdb_memory_limit": "etl.engine.duckdb.memory_limit",
    "etl.duckdb_threads": "etl.engine.duckdb.threads",
    "etl.spark_master": "etl.engine.spark.master",
    "etl.spark_jars": "etl.engine.spark.jars",
}
_CHOICES = ("ingest.stream", "etl.engine", "detect.detector")  # BackendChoice sections

# Named profiles: a layer of settings chosen by name. `embedded` is the defaults (one machine,
# no servers); `scale` puts every stage on a distributed engine. Their endpoints are the
# usual local ports: set the real ones under `profiles.scale` in mad.yaml (or by
# `MAD_...` variables); `mad doctor` checks each one.
DEFAULT_PROFILE = "embedded"
PROFILES: dict[str, dict[str, Any]] = {
    DEFAULT_PROFILE: {},
    "scale": {
        "ingest": {"stream": {"backend": "kinesis"}},
        "lake": {"url": "s3://mad-lake"},
        "etl": {"engine": {"backend": "spark",
                           "spark": {"master": "spark://127.0.0.1:7077"}}},
        "state": {"url": "postgresql+psycopg://postgres@127.0.0.1:5432/mad"},
        "store": {"hot": {"backend": "redis"}},
    },
}


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from every layer.

    `overrides` holds CLI flags as dotted keys (`{"generate.rate": 200}`); `None` values are
    ignored so unset flags do not mask lower layers.
    """
    data: dict[str, Any] = {}
    default = Path(DEFAULT_CONFIG_FILE)
    path = config_file or (default if default.exists() else None)
    file_layer = _read_yaml(path) if path is not None else {}
    custom = _custom_profiles(file_layer.pop("profiles", None))
    upper: list[dict[str, Any]] = []
    for dotted in (_env_layer(os.environ if env is None else env),
                   {k: v for k, v in (overrides or {}).items() if v is not None}):
        layer: dict[str, Any] = {}
        for key, value in dotted.items():
            _set_dotted(layer, key, value)
        upper.append(layer)
    name = next((layer["profile"] for layer in reversed([file_layer, *upper])
                 if layer.get("profile") is not None), None)
    layers = [file_layer, *_profile_layers(name, custom), *upper]
    for layer in layers:
        _merge(data, _normalize(layer))
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from None


def _custom_profiles(raw: Any) -> dict[str, dict[str, Any]]:
    """`profiles:` of mad.yaml: a mapping of profile name to a mapping of sections."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping | None) for k, v in raw.items()):
        raise ConfigError("'profiles' must map each profile name to a mapping of sections, "
                          "e.g. profiles: {scale: {lake: {url: s3://bucket}}}")
    return {name: dict(value or {}) for name, value in raw.items()}


def _profile_layers(name: Any, custom: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The layers profile `name` adds: the built-in one, then mad.yaml's `profiles.<name>`."""
    if name is None:
        return []
    known = sorted({*PROFILES, *custom})
    if not isinstance(name, str) or name not in known:
        raise ConfigError(f"unknown profile {name!r} (known: {', '.join(known)}; define "
                          "more under 'profiles:' in mad.yaml)")
    builtin = PROFILES.get(name, {})
    return [_copy(builtin), dict(custom.get(name, {}))]


def _copy(layer: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, Mapping) else v for k, v in layer.items()}


def _normalize(layer: dict[str, Any]) -> dict[str, Any]:
    """One layer with old names moved to the new ones (warning once each) and a backend
    name given in place of its section expanded to `{backend: name}`."""
    for key in _CHOICES:
        found, value = _pop_dotted(layer, key)
        if found:
            _set_dotted(layer, key, {"backend": value} if isinstance(value, str) else value)
    for old, new in RENAMED.items():
        found, value = _pop_dotted(layer, old)
        if found:
            _warn(f"setting '{old}' is deprecated: use '{new}'")
            _set_dotted(layer, new, value)
    found, params = _pop_dotted(layer, "detect.params")
    if found:
        _warn("setting 'detect.params' is deprecated: use 'detect.detector.<name>.<param>'")
    if isinstance(params, Mapping):
        choice = _get_dotted(layer, "detect.detector")
        backend = choice.get("backend") if isinstance(choice, Mapping) else None
        name = str(backend or DetectorSettings.model_fields["backend"].default)
        _merge(layer, {"detect": {"detector": {name: dict(params)}}})
    return layer


_WARNED: set[str] = set()


def _warn(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"mad: warning: {message}", file=sys.stderr, flush=True)


def _get_dotted(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _pop_dotted(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    *parents, last = key.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        return True, node.pop(last)
    return False, None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except yaml.YAMLError as err:
        detail = str(err).replace("\n", " ")
        raise ConfigError(f"config file {path} is not valid YAML: {detail}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not a list/scalar")
    return loaded


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    """`MAD_GENERATE__RATE=200` -> {"generate.rate": 200}; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if "__" not in name and name[len(ENV_PREFIX) :].lower() not in Settings.model_fields:
            continue
        key = ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            out[key] = raw
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _describe(err: ValidationError) -> str:
    return describe_error(err, Settings)
