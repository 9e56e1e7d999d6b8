"""Timestamps the way producers send them: ISO-8601 with assorted offsets, or epoch numbers.

Formatting is on the hot path of the generator, so the date part is cached per second.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Producer clock formats: an ISO offset in minutes, or an epoch unit.
ISO_OFFSETS_MIN = (0, 0, 60, 420, -300, 330, -180)
EPOCH_FORMATS = ("epoch_s", "epoch_ms")


def iso_utc(epoch: float) -> str:
    """`2026-11-01T06:30:00Z` (whole seconds) or with milliseconds when not whole."""
    dt = datetime.fromtimestamp(epoch, UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class TimestampFormatter:
    """Renders an epoch time in one producer's format (`"iso"` with an offset, or epoch)."""

    def __init__(self, fmt: str, offset_min: int = 0) -> None:
        self.fmt = fmt
        self.offset_s = offset_min * 60
        self.suffix = ""
        if fmt == "iso":
            if offset_min == 0:
                self.suffix = "Z"
            else:
                sign = "+" if offset_min > 0 else "-"
                hh, mm = divmod(abs(offset_min), 60)
                self.suffix = f"{sign}{hh:02d}:{mm:02d}"
        self._sec = -1
        self._prefix = ""

    def __call__(self, epoch: float) -> str | float | int:
        if self.fmt == "epoch_s":
            return round(epoch, 3)
        if self.fmt == "epoch_ms":
            return int(epoch * 1000)
        sec = int(epoch)
        if sec != self._sec:
            local = datetime(1970, 1, 1) + timedelta(seconds=sec + self.offset_s)
            self._prefix = local.strftime("%Y-%m-%dT%H:%M:%S.")
            self._sec = sec
        ms = int((epoch - sec) * 1000)
        return f"{self._prefix}{ms:03d}{self.suffix}"
