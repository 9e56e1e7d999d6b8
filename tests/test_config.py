"""Settings layers: defaults < mad.yaml < MAD_SECTION__KEY env < CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from mad.config import load_settings, parse_duration
from mad.errors import ConfigError


def test_defaults() -> None:
    s = load_settings(env={})
    assert s.generate.rate == 50.0 and s.simulate.port == 8000
    assert s.data_dir == Path("data")


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    cfg = tmp_path / "mad.yaml"
    cfg.write_text(
        "generate:\n  rate: 10\n  seed: 3\n  faults:\n    late: 0.01\nsimulate:\n  port: 9000\n"
    )
    s = load_settings(cfg, env={})
    assert (s.generate.rate, s.generate.seed, s.generate.faults.late) == (10, 3, 0.01)
    s = load_settings(cfg, env={"MAD_GENERATE__RATE": "20", "MAD_GENERATE__FAULTS__LATE": "0.02"})
    assert (s.generate.rate, s.generate.seed, s.generate.faults.late) == (20, 3, 0.02)
    s = load_settings(cfg, env={"MAD_GENERATE__RATE": "20"}, overrides={"generate.rate": 30,
                                                                       "generate.seed": None})
    assert (s.generate.rate, s.generate.seed, s.simulate.port) == (30, 3, 9000)


def test_unrelated_environment_is_ignored() -> None:
    s = load_settings(env={"MADNESS": "1", "MAD_": "x", "PATH": "/bin"})
    assert s.generate.rate == 50.0


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"MAD_GENERATE__RATE": "-1"}, ["generate.rate", "> 0"]),
        ({"MAD_LOG_LEVEL": "LOUD"}, ["log_level", "DEBUG | INFO | WARNING | ERROR"]),
        ({"MAD_GENERATE__RATTE": "1"}, ["generate.ratte", "rate"]),
        ({"MAD_SIMULATE__PORT": "70000"}, ["simulate.port", "<= 65535"]),
        ({"MAD_GENERATE__START": "2026-11-01T00:00:00"}, ["generate.start", "offset"]),
        ({"MAD_GENERATE__FAULTS__LATE": "2"}, ["generate.faults.late", "<= 0.5"]),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(
    env: dict[str, str], needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    for needle in needles:
        assert needle in str(err.value)


def test_bad_yaml_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "mad.yaml"
    cfg.write_text("generate: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(cfg, env={})
    cfg.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(cfg, env={})


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("6h", 21600),
                                                ("2d", 172800), ("45", 45), ("1.5h", 5400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "soon", "5y", "400d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
