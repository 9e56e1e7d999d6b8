"""`redis`: the hot store on a Redis server (`store.hot.redis.url`).

Keys, under `store.hot.redis.prefix` (default `mad:`), per dataset and window size:
- `{prefix}h:{dataset}:{window}`: a hash, hour start -> fingerprint of the hours held;
- `{prefix}k:{dataset}:{window}`: a set of the series keys held;
- `{prefix}z:{dataset}:{window}:{series key}`: a sorted set per series, scored by window
  start, each member `{n}|{row}` (n keeps equal rows apart).

Every key's TTL is the hot horizon plus an hour, renewed by each replace, so an idle store
empties itself. A replace is one `MULTI`/`EXEC` transaction (pipelined), watched on the keys
set so two feeds never interleave; a read is one transaction too (two when every series is
read). Any Redis error is a `HotStoreDown`: readers use the lake, the feed retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from mad.hotstore.backends.base import HOT_STORES, HOUR, Held, HotStoreDown, HourRows
from mad.registry import Options

ATTEMPTS = 5
"""Replaces retried when another writer changed the keys set meanwhile."""


class RedisOptions(Options):
    """`store.hot.redis.*`."""

    url: str = Field("redis://127.0.0.1:6379/0", pattern=r"^rediss?://[^\s]+$",
                     description="redis://[user:password@]host:port/db (rediss:// for TLS)")
    prefix: str = Field("mad:", pattern=r"^[A-Za-z0-9_.:-]{0,64}$")
    timeout_s: float = Field(0.5, gt=0, le=30, description="connect and reply timeout")


@HOT_STORES.register("redis", RedisOptions)
def redis_hot_store(url: str, prefix: str, timeout_s: float, ttl_s: int = 25 * HOUR,
                    **_: Any) -> RedisHot:
    return RedisHot(url, prefix, timeout_s, ttl_s)


class RedisHot:
    name = "redis"

    def __init__(self, url: str, prefix: str = "mad:", timeout_s: float = 0.5,
                 ttl_s: int = 25 * HOUR) -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self.ttl_s = max(int(ttl_s), 60)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._watch_error = redis.WatchError
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                           socket_connect_timeout=timeout_s,
                                           retry_on_timeout=False)

    def _hours_key(self, dataset: str, window: str) -> str:
        return f"{self.prefix}h:{dataset}:{window}"

    def _keys_key(self, dataset: str, window: str) -> str:
        return f"{self.prefix}k:{dataset}:{window}"

    def _series(self, dataset: str, window: str, key: str) -> str:
        return f"{self.prefix}z:{dataset}:{window}:{key}"

    def _down(self, err: BaseException) -> HotStoreDown:
        lines = str(err).strip().splitlines()
        return HotStoreDown(f"hot store {self.url}: {lines[0] if lines else type(err).__name__}")

    def hours(self, dataset: str, window: str) -> dict[int, str]:
        try:
            found = self.client.hgetall(self._hours_key(dataset, window))
        except self._errors as err:
            raise self._down(err) from None
        return {int(h): _text(v) for h, v in found.items()}

    def replace(self, dataset: str, window: str, hours: Sequence[HourRows],
                keep_from: int) -> None:
        hkey, kkey = self._hours_key(dataset, window), self._keys_key(dataset, window)
        try:
            for _ in range(ATTEMPTS):
                with self.client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(kkey, hkey)
                        series = {_text(m) for m in pipe.smembers(kkey)}
                        old_hours = [int(h) for h in pipe.hkeys(hkey)]
                        new = {k for h in hours for k, _, _ in h.rows}
                        pipe.multi()
                        self._queue(pipe, dataset, window, hours, keep_from, series | new,
                                    old_hours)
                        pipe.execute()
                        return
                    except self._watch_error:
                        continue
            raise HotStoreDown(f"hot store {self.url}: {dataset} {window} kept changing "
                               f"under {ATTEMPTS} replaces")
        except self._errors as err:
            raise self._down(err) from None

    def _queue(self, pipe: Any, dataset: str, window: str, hours: Sequence[HourRows],
               keep_from: int, series: set[str], old_hours: list[int]) -> None:
        hkey, kkey = self._hours_key(dataset, window), self._keys_key(dataset, window)
        for key in sorted(series):
            zkey = self._series(dataset, window, key)
            pipe.zremrangebyscore(zkey, "-inf", f"({keep_from}")
            for h in hours:
                pipe.zremrangebyscore(zkey, h.hour, f"({h.hour + HOUR}")
        for h in hours:
            by_key: dict[str, dict[bytes, float]] = {}
            for n, (key, ts, row) in enumerate(h.rows):
                by_key.setdefault(key, {})[b"%d|" % n + row] = ts
            for key, members in by_key.items():
                pipe.zadd(self._series(dataset, window, key), members)
            pipe.hset(hkey, str(h.hour), h.fingerprint)
        dropped = [str(h) for h in old_hours if h < keep_from]
        if dropped:
            pipe.hdel(hkey, *dropped)
        if series:
            pipe.sadd(kkey, *sorted(series))
        for key in sorted(series):
            pipe.expire(self._series(dataset, window, key), self.ttl_s)
        pipe.expire(hkey, self.ttl_s)
        pipe.expire(kkey, self.ttl_s)

    def read(self, dataset: str, window: str, start: float, end: float,
             keys: Sequence[str] | None = None) -> Held:
        hkey = self._hours_key(dataset, window)
        try:
            wanted = sorted(set(keys)) if keys is not None else sorted(
                _text(m) for m in self.client.smembers(self._keys_key(dataset, window)))
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(hkey)
                for key in wanted:
                    pipe.zrange(self._series(dataset, window, key), start, f"({end}",
                                byscore=True, withscores=True)
                found = pipe.execute()
        except self._errors as err:
            raise self._down(err) from None
        first = int(start // HOUR * HOUR)
        hours = {h: _text(v) for k, v in found[0].items()
                 if first <= (h := int(k)) < end}
        merged: list[tuple[float, str, bytes]] = []
        for key, members in zip(wanted, found[1:], strict=True):
            merged += [(ts, key, m.split(b"|", 1)[1]) for m, ts in members]
        merged.sort(key=lambda r: (r[0], r[1]))
        return Held(hours, [row for _, _, row in merged])

    def keys(self, dataset: str, window: str) -> list[str]:
        try:
            return sorted(_text(m) for m in self.client.smembers(
                self._keys_key(dataset, window)))
        except self._errors as err:
            raise self._down(err) from None

    def wipe(self) -> None:
        try:
            names = list(self.client.scan_iter(match=f"{_glob(self.prefix)}[hkz]:*",
                                               count=500))
            for n in range(0, len(names), 500):
                self.client.delete(*names[n:n + 500])
        except self._errors as err:
            raise self._down(err) from None

    def ping(self) -> None:
        try:
            self.client.ping()
        except self._errors as err:
            raise self._down(err) from None

    def close(self) -> None:
        self.client.close()


def _glob(text: str) -> str:
    """`text` with Redis glob characters escaped (the prefix is checked, this is belt and
    braces)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
