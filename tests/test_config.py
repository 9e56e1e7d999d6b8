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


def test_backend_options_live_under_the_backend_name(tmp_path: Path) -> None:
    cfg = tmp_path / "mad.yaml"
    cfg.write_text("etl:\n  engine:\n    backend: spark\n    spark:\n      master: local[2]\n"
                   "    duckdb:\n      memory_limit: 1GB\n")
    s = load_settings(cfg, env={"MAD_ETL__ENGINE__DUCKDB__THREADS": "3"})
    assert s.etl.engine.backend == "spark"
    assert s.etl.engine.options().model_dump()["master"] == "local[2]"
    duckdb = s.etl.engine.options("duckdb").model_dump()
    assert (duckdb["memory_limit"], duckdb["threads"]) == ("1GB", 3)
    # a name alone is short for {backend: name}, and keeps the options of lower layers
    s = load_settings(cfg, env={"MAD_ETL__ENGINE": "duckdb"})
    assert s.etl.engine.backend == "duckdb"
    assert s.etl.engine.options().model_dump()["memory_limit"] == "1GB"
    s = load_settings(cfg, env={}, overrides={"etl.engine": "duckdb",
                                              "ingest.stream.backend": "kinesis"})
    assert (s.etl.engine.backend, s.ingest.stream.backend) == ("duckdb", "kinesis")


def test_settings_round_trip_through_json_for_child_processes() -> None:
    from mad.config import Settings

    s = load_settings(env={"MAD_INGEST__STREAM__EMBEDDED__SHARDS": "3",
                           "MAD_DETECT__DETECTOR__ENSEMBLE__WARMUP": "30"})
    again = Settings.model_validate(s.model_dump(mode="json"))
    assert again.ingest.stream.options().model_dump()["shards"] == 3
    assert again.detect.detector.options().model_dump()["warmup"] == 30


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"MAD_ETL__ENGINE": "sparky"}, ["etl.engine.backend", "sparky", "duckdb, spark"]),
        ({"MAD_INGEST__STREAM__BACKEND": "kafka"}, ["ingest.stream", "embedded, kinesis"]),
        ({"MAD_ETL__ENGINE__SPORK__MASTER": "x"}, ["etl.engine.spork", "duckdb, spark"]),
        ({"MAD_ETL__ENGINE__DUCKDB__MEMORY_LIMIT": "lots"},
         ["etl.engine.duckdb.memory_limit", "lots"]),
        ({"MAD_ETL__ENGINE__DUCKDB__MEMORY_LIMIT": "1GB'; COPY x TO 'y'"},
         ["etl.engine.duckdb.memory_limit"]),
        ({"MAD_INGEST__STREAM__KINESIS__SHARDS": "0"}, ["ingest.stream.kinesis.shards", ">="]),
        ({"MAD_DETECT__DETECTOR": "oracle"}, ["detect.detector", "oracle", "ensemble"]),
        ({"MAD_DETECT__DETECTOR__ENSEMBLE__WARMUP": "soon"},
         ["detect.detector.ensemble.warmup"]),
        ({"MAD_LAKE__GS__X": "1"}, ["lake.gs", "file, s3"]),
    ],
)
def test_bad_backend_settings_name_the_key_and_the_known_names(
    env: dict[str, str], needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


@pytest.mark.parametrize(("old", "new", "value"), [
    ("MAD_ETL__DUCKDB_MEMORY_LIMIT", ("etl.engine", "duckdb", "memory_limit"), "1GB"),
    ("MAD_ETL__DUCKDB_THREADS", ("etl.engine", "duckdb", "threads"), 3),
    ("MAD_ETL__SPARK_MASTER", ("etl.engine", "spark", "master"), "local[2]"),
    ("MAD_INGEST__STREAM__PATH", ("ingest.stream", "embedded", "path"), Path("/tmp/s")),
    ("MAD_INGEST__STREAM__SHARDS", ("ingest.stream", "embedded", "shards"), 2),
    ("MAD_INGEST__STREAM__KINESIS_STREAM", ("ingest.stream", "kinesis", "stream_name"), "ev"),
    ("MAD_INGEST__STREAM__KINESIS_SHARDS", ("ingest.stream", "kinesis", "shards"), 8),
])
def test_old_setting_names_still_work_with_a_one_line_warning(
    old: str, new: tuple[str, str, str], value: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from mad import config

    config._WARNED.clear()
    s = load_settings(env={old: str(value)})
    section, backend, key = new
    node = s.etl.engine if section == "etl.engine" else s.ingest.stream
    assert node.options(backend).model_dump()[key] == value
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "deprecated" in lines[0] and f"{section}.{backend}.{key}" in lines[0]


def test_old_detector_params_go_to_the_chosen_detector(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    from mad import config

    config._WARNED.clear()
    s = load_settings(env={}, overrides={"detect.params": {"warmup": 30}})
    assert s.detect.detector.options().model_dump()["warmup"] == 30
    assert "detect.detector.<name>" in capsys.readouterr().err
