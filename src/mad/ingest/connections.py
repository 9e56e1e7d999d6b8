"""The ingest API's connection bounds, as the server wrapper (`mad.runtime.servers`) reads
them from `app.state.serve_limits`, and the connection events it reports, counted into the
API's metrics.

The event names are the wrapper's (`opened`, `closed`, `refused`, `header_timeout`); this
module only counts them, so the stage does not depend on how it is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mad.config import IngestSettings
from mad.ingest.metrics import IngestMetrics

UNLIMITED_PATHS = frozenset({"/health", "/metrics"})
"""Answered even at the connection limit: cheap, and needed most under overload."""


@dataclass(frozen=True)
class ConnectionLimits:
    """`ingest.max_connections`, `backlog`, `keep_alive_s` and `header_timeout_s`, and where
    the server's connection events go."""

    max_connections: int
    backlog: int
    keep_alive_s: int
    header_timeout_s: float
    metrics: IngestMetrics
    unlimited_paths: frozenset[str] = field(default=UNLIMITED_PATHS)

    @classmethod
    def from_settings(cls, ing: IngestSettings, metrics: IngestMetrics) -> ConnectionLimits:
        return cls(ing.max_connections, ing.backlog, ing.keep_alive_s, ing.header_timeout_s,
                   metrics)

    def count(self, event: str) -> None:
        """One connection event of the server (called on its event loop)."""
        m = self.metrics
        if event == "opened":
            m.open_connections.add(1)
        elif event == "closed":
            m.open_connections.add(-1)
        elif event == "refused":
            m.connections_refused.inc()
        elif event == "header_timeout":
            m.header_timeouts.inc()
