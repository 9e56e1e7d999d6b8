"""Detectors by name: each module registers its factory; unknown names list the known ones."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from mad.detect.detectors.base import Detector
from mad.errors import ConfigError

Factory = Callable[..., Detector]

_FACTORIES: dict[str, Factory] = {}
_MODULES = ("seasonal", "holt", "changepoint", "hst", "spatial", "ensemble")


def register(name: str, factory: Factory) -> None:
    """Make `factory(**params)` available as `name`."""
    _FACTORIES[name] = factory


def _load_builtins() -> None:
    for module in _MODULES:
        importlib.import_module(f"mad.detect.detectors.{module}")


def known() -> list[str]:
    """Names of every registered detector, sorted."""
    _load_builtins()
    return sorted(_FACTORIES)


def create(name: str, **params: Any) -> Detector:
    """A fresh detector by name; raises ConfigError listing the known names."""
    _load_builtins()
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(sorted(_FACTORIES))}")
    try:
        return factory(**params)
    except TypeError as err:
        raise ConfigError(f"detector {name!r}: bad parameters ({err})") from err


def accepts(name: str, param: str) -> bool:
    """True when the detector `name` takes a parameter called `param`."""
    _load_builtins()
    factory = _FACTORIES.get(name)
    return factory is not None and param in inspect.signature(factory).parameters


def restore(state: dict[str, Any]) -> Detector:
    """Rebuild any registered detector from its `state()` (which records its name)."""
    _load_builtins()
    name = state.get("name")
    factory = _FACTORIES.get(str(name))
    if factory is None:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(sorted(_FACTORIES))}")
    cls = getattr(factory, "from_state", None)
    if cls is None:
        raise ConfigError(f"detector {name!r} cannot be restored")
    result: Detector = cls(state)
    return result
