"""One contract suite for every registered object store (the local folder; S3 on a real moto
server). A new store adds a line to `LOCATIONS` and runs every test here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mad.config import AwsSettings
from mad.errors import ConfigError
from mad.stores import STORES, ObjectNotFound, ObjectStore, open_store
from mad.stores.local import LocalStore
from mad.stores.s3 import S3Store

# scheme -> (a fresh, empty location for one test, the AWS settings it needs)
Location = Callable[[pytest.FixtureRequest, Path], tuple[str, AwsSettings | None]]
LOCATIONS: dict[str, Location] = {
    "file": lambda request, tmp: (str(tmp / "lake"), None),
    "s3": lambda request, tmp: (request.getfixturevalue("bucket_url"),
                                request.getfixturevalue("aws")),
}


def test_every_registered_store_is_under_contract() -> None:
    assert sorted(LOCATIONS) == STORES.names()


@pytest.fixture(params=sorted(LOCATIONS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    url, aws = LOCATIONS[request.param](request, tmp_path)
    yield open_store(url, aws, create=True)


def test_put_get_list_delete_exists(store: ObjectStore) -> None:
    store.put("a/b/one.bin", b"1")
    store.put("a/b/two.bin", b"22")
    store.put("a/c/three.bin", b"")
    store.put("ab.bin", b"x" * 1000)
    assert store.get("a/b/two.bin") == b"22"
    assert store.get("a/c/three.bin") == b""
    assert store.list() == ["a/b/one.bin", "a/b/two.bin", "a/c/three.bin", "ab.bin"]
    assert store.list("a/") == ["a/b/one.bin", "a/b/two.bin", "a/c/three.bin"]
    assert store.list("a/b/t") == ["a/b/two.bin"]
    assert store.list("a") == store.list()
    assert store.list("zz/") == []
    assert store.sizes("a/") == {"a/b/one.bin": 1, "a/b/two.bin": 2, "a/c/three.bin": 0}
    assert store.sizes() == {**store.sizes("a/"), "ab.bin": 1000}
    assert store.exists("a/b/one.bin") and not store.exists("a/b/none.bin")
    assert not store.exists("a/b")
    store.put("a/b/one.bin", b"replaced")
    assert store.get("a/b/one.bin") == b"replaced"
    store.delete("a/b/one.bin")
    store.delete("a/b/one.bin")  # idempotent
    assert not store.exists("a/b/one.bin")
    with pytest.raises(ObjectNotFound):
        store.get("a/b/one.bin")
    assert store.list("a/b/") == ["a/b/two.bin"]


def test_list_many_keys(store: ObjectStore) -> None:
    if isinstance(store, S3Store):
        store.page_size = 7  # several pages without thousands of keys
    keys = [f"p/hour={i % 3:02d}/part-{i:04d}.jsonl" for i in range(50)]
    for key in keys:
        store.put(key, key.encode())
    assert store.list("p/") == sorted(keys)
    assert store.list("p/hour=01/") == sorted(k for k in keys if "hour=01" in k)


def test_local_put_leaves_no_partial_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("d/x.bin", b"old")
    # a crash mid-put leaves only a hidden temp file: simulate one beside the object
    (tmp_path / "d" / ".tmp-0123").write_bytes(b"half")
    store.put("d/x.bin", b"new" * 1000)
    assert store.list() == ["d/x.bin"]
    assert store.get("d/x.bin") == b"new" * 1000
    assert sorted(os.listdir(tmp_path / "d")) == [".tmp-0123", "x.bin"]
    with pytest.raises(Exception, match="bad object key"):
        store.put("d/.tmp-0123", b"")
    with pytest.raises(Exception, match="bad object key"):
        store.get("../x")


def test_s3_multipart_is_visible_only_complete(aws: AwsSettings, bucket_url: str) -> None:
    bucket = bucket_url[5:].split("/")[0]
    store = S3Store(bucket, "mp", aws, create_bucket=True,
                    multipart_threshold=6 * 2**20, part_size=5 * 2**20)
    data = os.urandom(11 * 2**20 + 17)
    store.put("big.bin", data)
    assert store.get("big.bin") == data
    assert store.list() == ["big.bin"]


def test_s3_missing_bucket_is_a_config_error(aws: AwsSettings, bucket_url: str) -> None:
    store = open_store(bucket_url, aws)
    with pytest.raises(ConfigError, match="does not exist"):
        store.put("x", b"1")


@pytest.mark.slow
def test_s3_list_over_a_thousand_keys(aws: AwsSettings, bucket_url: str) -> None:
    store = open_store(bucket_url, aws, create=True)
    keys = [f"k/{i:05d}" for i in range(1100)]
    for key in keys:
        store.put(key, b"")
    assert store.list("k/") == keys


def test_a_store_reads_its_options_from_the_lake_settings(tmp_path: Path,
                                                           bucket_url: str) -> None:
    from mad.config import load_settings
    from mad.stores import lake_store

    settings = load_settings(env={}, overrides={
        "lake.url": bucket_url, "lake.s3.page_size": 7, "aws.endpoint_url": "http://127.0.0.1:9"})
    store = lake_store(settings)
    assert isinstance(store, S3Store) and store.page_size == 7
    with pytest.raises(ConfigError, match=r"lake.s3.page_size"):
        load_settings(env={}, overrides={"lake.s3.page_size": 0})


def test_open_store_by_scheme(tmp_path: Path) -> None:
    for url in (str(tmp_path), f"file://{tmp_path}"):
        store = open_store(url)
        assert isinstance(store, LocalStore) and store.root == tmp_path
    with pytest.raises(ConfigError, match=r"file://, s3://"):
        open_store("gs://bucket/lake")
    with pytest.raises(ConfigError, match="bucket"):
        open_store("s3://")


def test_root_exists(store: ObjectStore, tmp_path: Path) -> None:
    assert store.root_exists()  # the fixture made it (create=True)
    assert not open_store(str(tmp_path / "nowhere")).root_exists()


def test_a_missing_s3_bucket_has_no_root(aws: AwsSettings, bucket_url: str) -> None:
    assert not open_store(bucket_url, aws).root_exists()


def test_leftovers_of_interrupted_puts_are_swept_when_old(tmp_path: Path, aws: AwsSettings,
                                                          bucket_url: str) -> None:
    local = LocalStore(tmp_path)
    local.put("raw/a/x.bin", b"1")
    old, fresh = tmp_path / "raw" / "a" / ".tmp-old", tmp_path / "raw" / "a" / ".tmp-new"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (1_000_000_000, 1_000_000_000))
    assert local.sweep_partial("raw/", 3600) == 1
    assert not old.exists() and fresh.exists() and local.get("raw/a/x.bin") == b"1"
    assert local.sweep_partial("nothing/", 0) == 0

    s3 = open_store(bucket_url, aws, create=True)
    assert isinstance(s3, S3Store)
    s3._client.create_multipart_upload(Bucket=s3.bucket, Key=s3.prefix + "raw/b/big.bin")
    s3._client.create_multipart_upload(Bucket=s3.bucket, Key=s3.prefix + "other/c.bin")
    # moto reports every upload as initiated in 2010, so the age rule is not exercised here
    assert s3.sweep_partial("raw/", 3600) == 1
    left = s3._client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert [u["Key"] for u in left] == [s3.prefix + "other/c.bin"]
