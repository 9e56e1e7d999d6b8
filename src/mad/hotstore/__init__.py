"""Stage 03's hot store: the newest hours of aggregates and anomalies, answered before the
lake (docs/query.md).

    backends/   the `HotStore` Protocol and its backends, `embedded` and `redis`
    feed.py     `HotFeed`: copies what changed in the lake's newest hours into the hot store,
                after every ETL and detection pass (and refills a wiped or restarted store)

`open_hot(settings)` is the configured backend, for reading (an embedded store that does not
exist yet is not created); the feed opens it with `create=True`.
"""

from __future__ import annotations

from mad.config import Settings
from mad.hotstore.backends import HOUR, HotStore


def open_hot(settings: Settings, create: bool = False) -> HotStore:
    """The configured hot store (`store.hot`); building it reaches no server."""
    hot: HotStore = settings.store.hot.create(
        data_dir=settings.data_dir, create=create,
        ttl_s=int(settings.store.horizon_h * HOUR) + HOUR)
    return hot


def hot_url(hot: HotStore) -> str:
    """Where a hot store lives, for messages (no password)."""
    url = str(getattr(hot, "url", hot.name))
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        url = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
