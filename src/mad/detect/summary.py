"""What a detection pass reports: per batch (progress output) and per pass (one line)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mad.words import plural


@dataclass
class DetectSummary:
    window: str
    batches: int = 0
    windows: int = 0  # window starts scored
    points: int = 0  # series windows scored
    anomalies: int = 0
    changes: int = 0  # incident changes (one alert each)
    alerts: int = 0  # deliveries to sinks
    pending: int = 0  # changes not yet delivered to every sink
    duplicates: int = 0  # duplicate aggregate rows of new windows (the first one is scored)
    bad_rows: int = 0  # aggregate rows without a window start, service or series
    bad_values: int = 0  # NaN / inf / missing values of scored stats (not scored)
    watermark: datetime | None = None  # the latest window start scored in this pass
    event_watermark: datetime | None = None  # how far events are complete (the pass's
    # event-time watermark, `mad.detect.watermark`; windows end this much before it is scored)
    watermark_basis: str = ""  # what gave it: hosts, services, ingest, previous
    late_windows: int = 0  # series windows found changed after they were scored
    late_events: int = 0  # events added to them since (counted on the `events` series)
    held: str = ""  # why the pass stopped before the newest data, if it did

    def line(self) -> str:
        text = (f"detect {self.window}: {plural(self.batches, 'batch', 'batches')}, "
                f"{plural(self.windows, 'window')}, "
                f"{plural(self.points, 'series window')} scored, "
                f"{plural(self.anomalies, 'anomaly', 'anomalies')}, "
                f"{plural(self.changes, 'incident change')}, "
                f"{plural(self.alerts, 'alert')} sent")
        if self.pending:
            text += f" ({self.pending} waiting)"
        if self.duplicates or self.bad_rows or self.bad_values:
            text += (f"; skipped {plural(self.duplicates, 'duplicate row')}, "
                     f"{plural(self.bad_rows, 'row')} without keys, "
                     f"{plural(self.bad_values, 'bad value')}")
        if self.watermark is not None:
            text += f"; scored up to {self.watermark:%Y-%m-%d %H:%M} UTC"
        if self.event_watermark is not None:
            text += (f"; events complete to {self.event_watermark:%Y-%m-%d %H:%M:%S} UTC "
                     f"({self.watermark_basis})")
        if self.late_windows:
            text += f"; late after scoring: {plural(self.late_windows, 'series window')}"
            if self.late_events:
                text += f" (+{plural(self.late_events, 'event')})"
        return text + (f"; held back: {self.held}" if self.held else "")


@dataclass(frozen=True)
class BatchReport:
    """What one committed batch did, for progress output."""

    first: datetime
    last: datetime
    points: int
    anomalies: int
    changes: int
