"""Counters, gauges and histograms of the ingest API, rendered in the Prometheus text
exposition format 0.0.4 (`GET /metrics`).

Small on purpose: samples keyed by their label values, one lock per registry, no global
state. Names follow the Prometheus conventions `promtool check metrics` enforces: snake case,
base units as suffixes (`_seconds`, `_bytes`), counters ending in `_total`.
"""

from __future__ import annotations

import bisect
import math
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LabelValues = tuple[str, ...]


class Metric(ABC):
    """Shared parts: name, help text, label names and the registry lock."""

    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str], lock: threading.Lock):
        if not NAME_RE.match(name):
            raise ValueError(f"bad metric name {name!r}")
        for label in labels:
            if not LABEL_RE.match(label) or label.startswith("__") or label == "le":
                raise ValueError(f"bad label name {label!r} on {name}")
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)
        self._lock = lock

    def _key(self, values: dict[str, str]) -> LabelValues:
        if set(values) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(values)}")
        return tuple(str(values[name]) for name in self.labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    @abstractmethod
    def samples(self) -> list[str]:
        """The sample lines of this metric, in exposition format."""

    def _labels(self, values: LabelValues, extra: str = "") -> str:
        parts = [f'{k}="{_escape_label(v)}"' for k, v in zip(self.labels, values, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""


class _Valued(Metric):
    """A metric with one number per label set."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str], lock: threading.Lock):
        super().__init__(name, help_text, labels, lock)
        self._values: dict[LabelValues, float] = {}

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        items = sorted(self._values.items())
        return [f"{self.name}{self._labels(k)} {_number(v)}" for k, v in items]


class Counter(_Valued):
    """A value that only goes up; the name must end in `_total`."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str], lock: threading.Lock):
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        super().__init__(name, help_text, labels, lock)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter cannot go down")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def copy(self, total: float, **labels: str) -> None:
        """Take the total of a counter another process keeps (read at scrape time; it
        starts again from 0 when that process restarts, which Prometheus handles)."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = total


class Gauge(_Valued):
    """A value that is set to the current reading."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value

    def add(self, delta: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + delta


class Histogram(Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str],
        lock: threading.Lock,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ):
        super().__init__(name, help_text, labels, lock)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        slot = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0] * (len(self.buckets) + 1)
                self._sums[key] = 0.0
            counts[slot] += 1
            self._sums[key] += value

    def count(self, **labels: str) -> int:
        return sum(self._counts.get(self._key(labels), []))

    def samples(self) -> list[str]:
        out = []
        for key in sorted(self._counts):
            counts, running = self._counts[key], 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                le = 'le="' + _number(bound) + '"'
                out.append(f"{self.name}_bucket{self._labels(key, le)} {running}")
            out.append(f"{self.name}_sum{self._labels(key)} {_number(self._sums[key])}")
            out.append(f"{self.name}_count{self._labels(key)} {running}")
        return out


M = TypeVar("M", bound=Metric)


class Registry:
    """The metrics of one process, in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, Metric] = {}

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels, self._lock))

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels, self._lock))

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._add(Histogram(name, help_text, labels, self._lock, buckets))

    def _add(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is registered twice")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        """All metrics in the text exposition format, ending with a newline."""
        lines: list[str] = []
        with self._lock:
            for metric in self._metrics.values():
                lines += metric.header()
                lines += metric.samples()
        return "\n".join(lines) + "\n"


class IngestMetrics:
    """The ingest API's own metrics, by name."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.records = r.counter(
            "mad_ingest_records_total", "Records received, by result.", ["result"])
        self.rejected = r.counter(
            "mad_ingest_rejected_total", "Records rejected, by reason.", ["reason"])
        self.requests = r.counter(
            "mad_ingest_requests_total", "Requests to POST /v1/events, by HTTP status code.",
            ["code"])
        self.request_errors = r.counter(
            "mad_ingest_request_errors_total",
            "Requests refused as a whole (4xx/5xx), by reason.", ["reason"])
        self.bytes = r.counter(
            "mad_ingest_bytes_total", "Request body bytes received, before decompression.")
        self.lag_records = r.gauge(
            "mad_ingest_stream_lag_records",
            "Records in the stream not yet committed by the raw writer, per shard.", ["shard"])
        self.lag_seconds = r.gauge(
            "mad_ingest_stream_lag_seconds",
            "Age of the oldest record the raw writer has not committed, over all shards.")
        self.disk_bytes = r.gauge(
            "mad_ingest_stream_disk_bytes", "Bytes of the stream's files on disk.")
        self.append_seconds = r.histogram(
            "mad_ingest_append_seconds",
            "Time of one durable stream append (write and flush), per request.")
        self.request_seconds = r.histogram(
            "mad_ingest_request_seconds", "Time to handle one POST /v1/events.")
        self.writer_unrecorded_files = r.gauge(
            "mad_ingest_writer_unrecorded_files",
            "Files the raw writer put in the lake that wait to be recorded in the state "
            "database (from the writer's health report).")
        self.writer_failures = r.counter(
            "mad_ingest_writer_failures_total",
            "Failed operations of the raw writer, retried, by target: lake, stream, state.",
            ["target"])
        self.writer_report_age = r.gauge(
            "mad_ingest_writer_report_age_seconds",
            "Seconds since the raw writer last published its health report.")
        self.open_connections = r.gauge(
            "mad_ingest_open_connections", "Client connections open now.")
        self.connections_refused = r.counter(
            "mad_ingest_connections_refused_total",
            "Requests and connections refused (503) at ingest.max_connections.")
        self.header_timeouts = r.counter(
            "mad_ingest_header_timeouts_total",
            "Connections closed (408) whose request head did not arrive within "
            "ingest.header_timeout_s, idle or slow.")
        self.client_disconnects = r.counter(
            "mad_ingest_client_disconnects_total",
            "Requests whose client went away before its body had arrived.")
        for result in ("accepted", "rejected"):
            self.records.inc(0, result=result)
        self.open_connections.set(0)
        for counter in (self.connections_refused, self.header_timeouts,
                        self.client_disconnects):
            counter.inc(0)

    def render(self) -> str:
        return self.registry.render()


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
