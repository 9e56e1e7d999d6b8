"""The one registry behind every swap point: names, typed options, context, clear errors."""

from __future__ import annotations

import pytest
from pydantic import Field

from mad.errors import ConfigError
from mad.registry import Options, Registry, signature_options


class ToyOptions(Options):
    size: int = Field(1, ge=1)
    label: str = "x"


def toy_registry() -> Registry[object]:
    reg: Registry[object] = Registry("toy backend", "mad.lake", setting="toys")

    @reg.register("box", ToyOptions)
    def make_box(*, size: int, label: str, context: str) -> object:
        return ("box", size, label, context)

    return reg


def test_create_passes_validated_options_and_the_context() -> None:
    reg = toy_registry()
    assert reg.names() == ["box"]
    assert reg.create("box", {"size": 3}, context="c") == ("box", 3, "x", "c")
    assert reg.create("box", ToyOptions(label="y"), context="c") == ("box", 1, "y", "c")


def test_unknown_names_and_bad_options_are_config_errors_naming_the_setting() -> None:
    reg = toy_registry()
    with pytest.raises(ConfigError, match=r"toys.backend='crate'.*unknown toy backend.*box"):
        reg.entry("crate")
    with pytest.raises(ConfigError, match=r"toys.box.size=0"):
        reg.options("box", {"size": 0})
    with pytest.raises(ConfigError, match=r"unknown setting 'toys.box.colour'"):
        reg.options("box", {"colour": "red"})


def test_signature_options_type_a_plain_class() -> None:
    class Thing:
        def __init__(self, alpha: float = 0.5, steps: int = 3) -> None:
            self.alpha, self.steps = alpha, steps

    model = signature_options(Thing, "ThingOptions")
    assert model().model_dump() == {"alpha": 0.5, "steps": 3}
    with pytest.raises(Exception, match="steps"):
        model.model_validate({"steps": "many"})


@pytest.mark.parametrize(("module", "name", "expected"), [
    ("mad.stores", "STORES", ["file", "s3"]),
    ("mad.ingest.streams", "STREAMS", ["embedded", "kinesis"]),
    ("mad.etl.engines", "ENGINES", ["duckdb", "spark"]),
    ("mad.etl.publish", "PARTITION_STORES", ["file", "s3"]),
])
def test_each_swap_point_finds_its_backends_by_itself(module: str, name: str,
                                                      expected: list[str]) -> None:
    import importlib

    registry = getattr(importlib.import_module(module), name)
    assert registry.names() == expected


def test_detectors_are_found_with_their_parameters_as_options() -> None:
    from mad.detect.detectors import DETECTORS

    assert {"ensemble", "holt", "seasonal", "hst"} <= set(DETECTORS.names())
    assert DETECTORS.options("holt", {"alpha": 0.2}).model_dump()["alpha"] == 0.2
    with pytest.raises(ConfigError, match=r"detect\.detector\.holt"):
        DETECTORS.options("holt", {"alpha": "high"})
