"""What every tab shares: the time range, reads that become a one-line warning instead of a
traceback (or the empty state when there is no lake yet), tables from rows, the empty-state
message, and how numbers and times are written."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from mad.errors import ConfigError

T = TypeVar("T")

EMPTY = "No data yet: is the ingest API up? Try `make run`, or `mad up`."
RANGES_H: dict[str, float] = {
    "last 1 h": 1, "last 6 h": 6, "last 24 h": 24, "last 7 d": 24 * 7, "last 30 d": 24 * 30,
}


@dataclass(frozen=True)
class TimeRange:
    """The period the sidebar selected, in UTC."""

    start: datetime
    end: datetime
    label: str


def time_range(label: str, now: datetime | None = None) -> TimeRange:
    """The period of a sidebar label (`last 6 h`); an unknown label is the last 6 h."""
    end = now or datetime.now(UTC)
    hours = RANGES_H.get(label, 6)
    return TimeRange(end - timedelta(hours=hours), end, label)


def default_range_label(default_h: int) -> str:
    """The sidebar label closest to `dashboard.default_range_h`."""
    return min(RANGES_H, key=lambda name: abs(RANGES_H[name] - default_h))


def one_line(err: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(err).strip().splitlines()
    detail = text[0][:200] if text else ""
    return f"{type(err).__name__}: {detail}" if detail else type(err).__name__


def read(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """`fn(*args, **kwargs)`, or `None` after a one-line warning naming `what` when it fails
    (a part that cannot be read must not take the page down)."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as err:  # no lake or no state database yet: the empty state
        st.info(f"{EMPTY} ({err})")
    except Exception as err:  # any other failure of a read is shown, never raised
        st.warning(f"{what} cannot be read: {one_line(err)}")
    return None


def held_note(held: Sequence[str] | None) -> None:
    """Say that the quality gate held partitions back from what the page shows (a read's
    `held`, see `mad.query.gate`)."""
    if not held:
        return
    names = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
    noun = "partition" if len(held) == 1 else "partitions"
    st.warning(f"{len(held)} {noun} held by the quality gate — see "
               f"[Quality](?tab=quality): their data is left out here ({names}).",
               icon=":material/block:")


SOURCES = {"hot": "from the hot store", "lake": "from the lake",
           "hot+lake": "from the hot store for its hours and the lake before them"}


def source_note(source: str | None) -> None:
    """Say where a read's rows came from (a read's `source`, see `mad.query.hot`)."""
    if source in SOURCES:
        st.caption(f"Read {SOURCES[source]} (see `mad store status`).")


def bucket_for(period: TimeRange) -> str:
    """A bucket size that gives a readable number of bars or points over `period`."""
    hours = (period.end - period.start).total_seconds() / 3600
    return "1m" if hours <= 6 else "5m" if hours <= 24 else "1h" if hours <= 24 * 7 else "1d"


def clamp(period: TimeRange, max_days: float) -> TimeRange:
    """The newest `max_days` of `period` (a query reads at most so many days at once)."""
    longest = timedelta(days=max_days)
    if period.end - period.start <= longest:
        return period
    return TimeRange(period.end - longest, period.end, f"last {max_days:g} d")


def frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
          ) -> pd.DataFrame:
    """Rows as a table; with `columns`, those that exist, in that order."""
    df = pd.DataFrame([dict(r) for r in rows])
    if columns is not None and not df.empty:
        df = df[[c for c in columns if c in df.columns]]
    return df


def number(value: Any) -> str:
    """A count or measure as shown on the page: thousands separated, 2 decimals at most."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:,.2f}"
    return str(value)


def when(value: Any) -> str:
    """A timestamp as shown on the page (UTC, to the second)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def seconds(value: Any) -> str:
    """A duration in seconds as shown on the page (`42 s`, `3.5 min`, `2.0 h`)."""
    if value is None:
        return "–"
    s = float(value)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
