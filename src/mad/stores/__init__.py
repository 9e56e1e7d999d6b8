"""Object stores behind the lake: one Protocol, and a registry of backends by URL scheme.

A key is a relative, `/`-separated path (`md-raw-logs/service=auth/.../part-1.jsonl.gz`).
Each backend module registers itself in `STORES` under its URL scheme, with its options;
`open_store` picks one from a URL, so adding a backend touches only this folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mad.errors import ConfigError, TerminalError
from mad.registry import Registry

if TYPE_CHECKING:
    from mad.config import AwsSettings, Settings


class ObjectNotFound(TerminalError):
    """`get` of a key that does not exist."""


@runtime_checkable
class ExpiresByRule(Protocol):
    """A store that deletes old objects by itself, by rules per key prefix (S3's bucket
    lifecycle): retention writes rules instead of deleting object by object."""

    def set_expiry(self, rules: dict[str, int]) -> None:
        """Expire the objects under each prefix (relative to the store's root) this many
        days after they were written; replaces the rules written before, keeps others'."""
        ...

    def expiry(self) -> dict[str, int]:
        """The rules `set_expiry` wrote: prefix -> days."""
        ...


class ObjectStore(Protocol):
    """Whole objects under string keys; a put is visible only once it is complete."""

    url: str

    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any object there; durable when it returns."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under `key`; raises `ObjectNotFound` when there are none."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key that starts with `prefix` (a plain string prefix), sorted."""
        ...

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Every key that starts with `prefix`, with its size in bytes (one listing)."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...

    def root_exists(self) -> bool:
        """Whether the store's root (its folder, its bucket) exists at all."""
        ...

    def sweep_partial(self, prefix: str, older_than_s: float) -> int:
        """Delete what interrupted puts under `prefix` left behind (hidden temp files, open
        multipart uploads) that is older than `older_than_s`, so no live put is touched;
        returns how many were removed."""
        ...


STORES: Registry[ObjectStore] = Registry("object store", __name__, setting="lake")
"""Object stores by URL scheme (`file`, `s3`); each factory takes its options plus
`location` (the URL after `scheme://`), `aws` (AwsSettings or None) and `create` (make a
missing bucket)."""


def open_store(url: str, aws: AwsSettings | None = None, create: bool = False,
               options: Any = None) -> ObjectStore:
    """The object store for a URL: a local path, `file://PATH` or `s3://bucket[/prefix]`.

    `create` makes a missing bucket (S3) or folder (local) now; otherwise a local folder is
    made on the first write.
    `options` are the store's own (`lake.<scheme>` in the settings)."""
    scheme, location = split_url(url)
    if scheme not in STORES.names():
        known = ", ".join(f"{s}://" for s in STORES.names())
        raise ConfigError(f"unknown lake URL scheme in {url!r}; known: {known} or a local path")
    return STORES.create(scheme, options, location=location, aws=aws, create=create)


def split_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` -> (`s3`, `bucket/prefix`); a plain path is (`file`, path)."""
    scheme, sep, location = url.partition("://")
    if not sep:
        return "file", url
    return scheme.lower(), location


def lake_store(settings: Settings, create: bool = False,
               must_exist: bool = False) -> ObjectStore:
    """The object store of the configured lake, with its options. With `must_exist` (status
    commands, which only look) a lake whose folder or bucket is missing is a ConfigError:
    a mistyped `--lake` or data folder is said so, instead of shown as an empty lake."""
    url = settings.lake_url
    store = open_store(url, settings.aws, create, settings.lake.options(split_url(url)[0]))
    if must_exist and not store.root_exists():
        raise ConfigError(f"no lake at {store.url}: nothing has been written there (check "
                          "--lake, --config, MAD_DATA_DIR, lake.url)")
    return store


__all__ = [
    "STORES",
    "ExpiresByRule",
    "ObjectNotFound",
    "ObjectStore",
    "lake_store",
    "open_store",
    "split_url",
]
