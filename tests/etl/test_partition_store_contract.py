"""One contract suite for every registered partition store (a local folder; S3 on a real moto
server): what `mad.etl.publish.PartitionStore` promises, checked the same way on each.

A new store adds a line to `LOCATIONS` and runs every test here. Killed processes are
simulated with the store's own steps (`prepare`, `commit`): a store killed after `prepare`
is undone by `recover`, one killed after `commit` is finished by it. Files are read back
through the default engine, given the store's `credentials`, as the runner reads them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mad.config import AwsSettings, load_settings
from mad.etl.engines import Engine
from mad.etl.plan import Plan, Step
from mad.etl.publish import PARTITION_STORES, PartitionStore, open_partition_store
from mad.stores import open_store

# scheme -> (a fresh, empty lake URL for one test, the AWS settings it needs)
Location = Callable[[pytest.FixtureRequest, Path], tuple[str, AwsSettings | None]]
LOCATIONS: dict[str, Location] = {
    "file": lambda request, tmp: (f"file://{tmp / 'lake'}", None),
    "s3": lambda request, tmp: (request.getfixturevalue("bucket_url"),
                                request.getfixturevalue("aws")),
}

EVENTS, QUARANTINE = "ds-events", "ds-quarantine"
HOUR6, HOUR7 = "date=2026-11-01/hour=06", "date=2026-11-01/hour=07"
TAGS = Plan("tags", (Step("tags", "SELECT tag FROM rows"),), outputs=(), datasets=("rows",))


def test_every_registered_partition_store_is_under_contract() -> None:
    assert sorted(LOCATIONS) == PARTITION_STORES.names()


@pytest.fixture(params=sorted(LOCATIONS))
def opened(request: pytest.FixtureRequest,
           tmp_path: Path) -> Iterator[Callable[[], PartitionStore]]:
    """Opens the store of one fresh lake, again each call (as a restarted process does)."""
    url, aws = LOCATIONS[request.param](request, tmp_path)
    overrides = {"data_dir": str(tmp_path / "data"), "lake.url": url}
    if aws is not None:
        overrides.update({"aws.endpoint_url": aws.endpoint_url, "aws.region": aws.region,
                          "aws.access_key_id": aws.access_key_id,
                          "aws.secret_access_key": aws.secret_access_key})
    settings = load_settings(env={}, overrides=overrides)
    open_store(url, aws, create=True)
    yield lambda: open_partition_store(settings)


@pytest.fixture
def store(opened: Callable[[], PartitionStore]) -> PartitionStore:
    return opened()


@pytest.fixture
def engine(store: PartitionStore, tmp_path: Path) -> Iterator[Engine]:
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path / "data")})
    made: Engine = settings.etl.engine.create(s3=store.credentials)
    yield made
    made.close()


def stage(store: PartitionStore, run_id: str, output: str, partition: str,
          *files: list[str]) -> None:
    """Stage one Parquet file per list of tags in `partition` of `output`."""
    folder = store.stage(run_id) / "out" / output / partition
    folder.mkdir(parents=True, exist_ok=True)
    for n, tags in enumerate(files):
        pq.write_table(pa.table({"tag": pa.array(tags, pa.string())}),
                       folder / f"part-{uuid.uuid4().hex[:8]}-{n}.parquet")


def tags(store: PartitionStore, engine: Engine, prefix: str) -> list[str]:
    """The tags in every file under `prefix`, read by the engine at their locations."""
    files = [store.location(k) for k in sorted(store.files(prefix))]
    if not files:
        return []
    return sorted(r["tag"] for r in engine.query(TAGS, [], {"rows": files}, "tags"))


def test_publish_replaces_a_partition_whole(store: PartitionStore, engine: Engine) -> None:
    stage(store, "run-1", "events", HOUR6, ["a", "b"], ["c"])
    stage(store, "run-1", "events", HOUR7, ["x"])
    assert sorted(store.publish("run-1", {"events": EVENTS})) == [
        f"{EVENTS}/{HOUR6}", f"{EVENTS}/{HOUR7}"]
    assert len(store.files(f"{EVENTS}/{HOUR6}/")) == 2
    assert tags(store, engine, f"{EVENTS}/") == ["a", "b", "c", "x"]
    stage(store, "run-2", "events", HOUR6, ["d"])
    assert store.publish("run-2", {"events": EVENTS}) == [f"{EVENTS}/{HOUR6}"]
    assert len(store.files(f"{EVENTS}/{HOUR6}/")) == 1
    assert tags(store, engine, f"{EVENTS}/{HOUR6}/") == ["d"]
    assert tags(store, engine, f"{EVENTS}/{HOUR7}/") == ["x"]  # not in the stage: kept
    assert not store.stage("run-2").exists()


def test_appends_add_files_beside_the_live_ones(store: PartitionStore,
                                                engine: Engine) -> None:
    stage(store, "run-1", "events", HOUR6, ["e"])
    stage(store, "run-1", "quarantine", HOUR6, ["q1"])
    assert store.publish("run-1", {"events": EVENTS}, append={"quarantine": QUARANTINE},
                         key="k1") == [f"{EVENTS}/{HOUR6}"]
    stage(store, "run-2", "quarantine", HOUR6, ["q2"], ["q3"])
    assert store.publish("run-2", {}, append={"quarantine": QUARANTINE}, key="k2") == []
    assert len(store.files(f"{QUARANTINE}/{HOUR6}/")) == 3
    assert tags(store, engine, f"{QUARANTINE}/") == ["q1", "q2", "q3"]
    assert tags(store, engine, f"{EVENTS}/") == ["e"]


def test_files_lists_parquet_under_a_prefix_and_never_a_stage(store: PartitionStore) -> None:
    stage(store, "run-1", "events", HOUR6, ["a"])
    store.publish("run-1", {"events": EVENTS})
    stage(store, "run-2", "events", HOUR7, ["staged"])
    stage(store, "run-2", "quarantine", HOUR7, ["staged"])
    everything = store.files("")
    assert list(everything) == list(store.files(f"{EVENTS}/"))
    assert len(everything) == 1
    ((key, size),) = everything.items()
    assert key.startswith(f"{EVENTS}/{HOUR6}/") and key.endswith(".parquet") and size > 0
    assert store.files(f"{EVENTS}/{HOUR7}/") == {}


def test_locations_are_readable_by_the_engine(store: PartitionStore, engine: Engine) -> None:
    stage(store, "run-1", "events", HOUR6, ["a", "b", "c"], ["d"])
    store.publish("run-1", {"events": EVENTS})
    locations = [store.location(k) for k in sorted(store.files(f"{EVENTS}/"))]
    assert engine.count_rows(locations) == 4
    assert tags(store, engine, f"{EVENTS}/") == ["a", "b", "c", "d"]


def test_recover_finishes_a_publish_killed_after_its_commit(
    opened: Callable[[], PartitionStore], engine: Engine,
) -> None:
    store = opened()
    stage(store, "run-1", "events", HOUR6, ["old"])
    store.publish("run-1", {"events": EVENTS})
    stage(store, "run-2", "events", HOUR6, ["new-1"], ["new-2"])
    stage(store, "run-2", "quarantine", HOUR6, ["q"])
    store.commit(store.prepare("run-2", {"events": EVENTS}, {"quarantine": QUARANTINE}, "k"))
    # the process dies here; the next one recovers before any new run
    restarted = opened()
    assert restarted.recover() == [f"{EVENTS}/{HOUR6}"]
    assert tags(restarted, engine, f"{EVENTS}/") == ["new-1", "new-2"]
    assert tags(restarted, engine, f"{QUARANTINE}/") == ["q"]
    assert not restarted.stage("run-2").exists()
    assert restarted.recover() == []  # nothing left to do


def test_recover_undoes_a_publish_killed_before_its_commit(
    opened: Callable[[], PartitionStore], engine: Engine,
) -> None:
    store = opened()
    stage(store, "run-1", "events", HOUR6, ["old"])
    stage(store, "run-1", "quarantine", HOUR6, ["q-old"])
    store.publish("run-1", {"events": EVENTS}, {"quarantine": QUARANTINE}, "k1")
    before = store.files("")
    stage(store, "run-2", "events", HOUR6, ["new"])
    stage(store, "run-2", "events", HOUR7, ["new"])
    stage(store, "run-2", "quarantine", HOUR6, ["q-new"])
    store.prepare("run-2", {"events": EVENTS}, {"quarantine": QUARANTINE}, "k2")
    stage(store, "run-3", "events", HOUR6, ["still being written"])  # killed mid-write
    restarted = opened()
    assert restarted.recover() == []
    assert restarted.files("") == before
    assert tags(restarted, engine, f"{EVENTS}/") == ["old"]
    assert tags(restarted, engine, f"{QUARANTINE}/") == ["q-old"]
    assert not restarted.stage("run-2").exists() and not restarted.stage("run-3").exists()


def test_remove_deletes_every_file_under_a_prefix(store: PartitionStore) -> None:
    stage(store, "run-1", "events", HOUR6, ["a"], ["b"])
    stage(store, "run-1", "events", HOUR7, ["c"])
    store.publish("run-1", {"events": EVENTS})
    store.remove(f"{EVENTS}/{HOUR6}")
    assert store.files(f"{EVENTS}/{HOUR6}/") == {}
    assert len(store.files(f"{EVENTS}/")) == 1
    store.remove(f"{EVENTS}/{HOUR6}")  # nothing there: not an error


def test_discard_deletes_a_stage_and_publishes_nothing(store: PartitionStore) -> None:
    stage(store, "probe-1", "events", HOUR6, ["a"])
    assert store.stage("probe-1").is_dir()
    store.discard("probe-1")
    assert not store.stage("probe-1").exists()
    assert store.files("") == {}
    store.discard("probe-1")  # idempotent
