"""Hot store backends behind one Protocol (`base.HotStore`), chosen by `store.hot.backend`:

    base.py      the Protocol, the `HOT_STORES` registry, the row codec
    embedded.py  `embedded` (default): a SQLite file beside the state database
    redis.py     `redis`: a Redis server, keys with TTLs, sorted sets per series

Importing this package imports neither backend's client library.
"""

from mad.hotstore.backends.base import (
    COLUMNS,
    DATASETS,
    HOT_STORES,
    HOUR,
    Held,
    HotStore,
    HotStoreDown,
    HourRows,
    decode_many,
)

__all__ = ["COLUMNS", "DATASETS", "HOT_STORES", "HOUR", "Held", "HotStore", "HotStoreDown",
           "HourRows", "decode_many"]
