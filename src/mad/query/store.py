"""The hot store as `mad store status` shows it: which backend, whether it answers, and per
dataset and window size the hours it holds and how many series."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mad.config import Settings
from mad.hotstore import hot_url, open_hot
from mad.hotstore.backends import DATASETS, HOUR, HotStoreDown
from mad.query.hot import counters
from mad.query.series import WINDOWS


def store_status(settings: Settings) -> dict[str, Any]:
    """`enabled`, `backend`, `url`, `horizon_h`, `up`, `error`, `reads` (this process's
    hot and lake reads) and `held`: per dataset and window, `hours`, `first` and `last`
    hour held (ISO text or None) and `series` (aggregates; None for anomalies)."""
    out: dict[str, Any] = {"enabled": settings.store.enabled,
                           "backend": settings.store.hot.backend, "url": None,
                           "horizon_h": settings.store.horizon_h, "up": False, "error": None,
                           "reads": counters(), "held": []}
    if not settings.store.enabled:
        return out
    hot = open_hot(settings)
    out["url"] = hot_url(hot)
    try:
        hot.ping()
        for dataset in DATASETS:
            for window in WINDOWS:
                hours = sorted(hot.hours(dataset, window))
                if not hours:
                    continue
                out["held"].append({
                    "dataset": dataset, "window": window, "hours": len(hours),
                    "first": _iso(hours[0]), "last": _iso(hours[-1] + HOUR),
                    "series": len(hot.keys(dataset, window))
                    if dataset == "aggregates" else None})
        out["up"] = True
    except HotStoreDown as err:
        out["error"] = str(err)
    finally:
        hot.close()
    return out


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
