"""What the quality gate holds back from the dashboard's reads.

A partition the gate holds (`quality_gate.status = 'held'`, see `mad.state.quality`) stays in
the lake but is left out of what the dashboard reads until an operator accepts it (`mad
quality accept`) or a later run passes; `accepted` and `open` partitions are shown. A held
hour of a transformed dataset hides its own partition in the Data Browser and its whole
`date=` day of aggregates and anomalies (the aggregates of every window are computed from the
transformed hours, and detection does not read a held day either); a held aggregates partition
(`window=1m/date=...`, from reconciliation) hides that window's day.

Each read asks the gate once (`held_now`) and returns its rows as `Shown`: a list, with
`held`, the held partitions that hid part of it, so a page can say "2 partitions held by the
quality gate — see Quality". With `quality.enabled: false` nothing is hidden (detection reads
every day then, too); a state database that is missing or older than the gate hides nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from mad import lake
from mad.config import Settings
from mad.errors import ConfigError, TransientError
from mad.query.access import DB_ERRORS, state_db
from mad.state import QualityStore

T = TypeVar("T")


class Shown(list[T]):
    """The rows a read returns, and `held`: the held partitions (`dataset/partition`) that
    left something out of it, oldest first (empty when nothing was held back); `source`:
    where the rows came from (`hot`, `lake` or `hot+lake`; None for reads that are not
    split, see `mad.query.hot`)."""

    held: list[str]
    source: str | None

    def __init__(self, rows: Iterable[T] = (), held: Iterable[str] = (),
                 source: str | None = None) -> None:
        super().__init__(rows)
        self.held = sorted(set(held))
        self.source = source


@dataclass(frozen=True)
class Held:
    """The partitions the gate holds now: (dataset, partition) pairs."""

    rows: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rows)

    def partitions(self, dataset: str) -> set[str]:
        """The held partitions of one dataset."""
        return {p for d, p in self.rows if d == dataset}

    def days(self, window: str | None = None) -> dict[str, list[str]]:
        """`YYYY-MM-DD` -> the held partitions (`dataset/partition`) that hide that day of
        the aggregates of `window` (None: of any window, as the anomalies are)."""
        out: dict[str, list[str]] = {}
        for dataset, partition in self.rows:
            day = _day(dataset, partition, window)
            if day is not None:
                out.setdefault(day, []).append(f"{dataset}/{partition}")
        return out

    def hiding(self, dataset: str, partition: str) -> list[str]:
        """The held partitions that hide `partition` of `dataset` from the Data Browser: the
        partition itself, or for the aggregates and anomalies, those holding its day."""
        if (dataset, partition) in self.rows:
            return [f"{dataset}/{partition}"]
        if dataset not in (lake.AGGREGATES_DATASET, lake.ANOMALIES_DATASET):
            return []
        parts = dict(p.split("=", 1) for p in partition.split("/") if "=" in p)
        window = parts.get("window") if dataset == lake.AGGREGATES_DATASET else None
        return sorted(self.days(window).get(parts.get("date", ""), []))

    def of_days(self, days: Iterable[str], window: str | None = None) -> list[str]:
        """The held partitions that hide any of `days` (of `window`'s aggregates)."""
        by_day = self.days(window)
        return sorted({p for d in days for p in by_day.get(d, ())})


def _day(dataset: str, partition: str, window: str | None) -> str | None:
    """The day of aggregates a held partition hides, if any."""
    parts = dict(p.split("=", 1) for p in partition.split("/") if "=" in p)
    if dataset in lake.TRANSFORMED_DATASETS.values():
        return parts.get("date")
    if dataset == lake.AGGREGATES_DATASET and (window is None or parts.get("window") == window):
        return parts.get("date")
    return None


def held_now(settings: Settings) -> Held:
    """What the gate holds now, in one query (nothing when quality is off or the state
    database cannot tell)."""
    if not settings.quality.enabled:
        return Held()
    try:
        with state_db(settings) as engine:
            rows = QualityStore(engine).held()
    except (ConfigError, TransientError, *DB_ERRORS):
        return Held()
    return Held(tuple((str(r["dataset"]), str(r["partition"])) for r in rows))

