"""Detectors by name in `DETECTORS`: each module registers its class, whose keyword
parameters are its typed options (`detect.detector.<name>.<param>` in the settings)."""

from __future__ import annotations

import inspect
from typing import Any

from mad.detect.detectors.base import Detector
from mad.errors import ConfigError
from mad.registry import Registry, signature_options

DETECTORS: Registry[Detector] = Registry("detector", "mad.detect.detectors",
                                         setting="detect.detector")


def register(name: str, factory: Any) -> None:
    """Make `factory(**params)` available as `name`; its parameters are its options."""
    DETECTORS.register(name, signature_options(factory, f"{name.title()}Options"))(factory)


def known() -> list[str]:
    """Names of every registered detector, sorted."""
    return DETECTORS.names()


def create(name: str, **params: Any) -> Detector:
    """A fresh detector by name; raises ConfigError listing the known names, or naming a
    parameter it does not take or a value of the wrong type."""
    try:
        return DETECTORS.create(name, params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"detector {name!r}: bad parameters ({err})") from err


def accepts(name: str, param: str) -> bool:
    """True when the detector `name` takes a parameter called `param`."""
    return name in DETECTORS.names() and param in DETECTORS.entry(name).options.model_fields


def restore(state: dict[str, Any]) -> Detector:
    """Rebuild any registered detector from its `state()` (which records its name)."""
    factory = DETECTORS.entry(str(state.get("name"))).factory
    cls = getattr(factory, "from_state", None)
    if cls is None or not inspect.ismethod(cls):
        raise ConfigError(f"detector {state.get('name')!r} cannot be restored")
    result: Detector = cls(state)
    return result
