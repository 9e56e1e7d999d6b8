"""Object stores behind the lake: one Protocol, and a registry of backends by URL scheme.

A key is a relative, `/`-separated path (`md-raw-logs/service=auth/.../part-1.jsonl.gz`).
Each backend module registers a factory for its schemes with `register_store`; `mad.lake`
picks one from the lake URL, so adding a backend touches only this folder.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from mad.errors import TerminalError

if TYPE_CHECKING:
    from mad.config import AwsSettings


class ObjectNotFound(TerminalError):
    """`get` of a key that does not exist."""


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


# (location after the scheme, AWS settings, create the container if missing) -> store
StoreFactory = Callable[[str, "AwsSettings | None", bool], ObjectStore]
_REGISTRY: dict[str, StoreFactory] = {}


def register_store(*schemes: str) -> Callable[[StoreFactory], StoreFactory]:
    """Decorator a backend module uses to serve URLs of `schemes` (e.g. "s3")."""

    def add(factory: StoreFactory) -> StoreFactory:
        for scheme in schemes:
            _REGISTRY[scheme] = factory
        return factory

    return add


def store_schemes() -> list[str]:
    """Every known scheme, importing each backend module of this package first."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(_REGISTRY)


def store_factory(scheme: str) -> StoreFactory | None:
    """The factory registered for `scheme`, or None."""
    if scheme not in _REGISTRY:
        store_schemes()
    return _REGISTRY.get(scheme)


__all__ = [
    "ObjectNotFound",
    "ObjectStore",
    "StoreFactory",
    "register_store",
    "store_factory",
    "store_schemes",
]
