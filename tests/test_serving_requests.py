"""Requests per read of a bucket, counted in the servers' own logs (moto for S3, the GCS
emulator): a shard download is HEAD + one GET on S3 (pyarrow 25's S3 filesystem sends the
HEAD whenever it opens an object: its Python API takes no ``FileInfo`` with the size) and one
GET on GCS; a shard larger than one read is HEAD + one GET per ``shards.remote.S3_READ`` bytes
(not one per 8 MiB); the manifest is HEAD + GET (no request to ask first whether it exists);
the first take reads no shard header; a cached shard costs no request; a shard whose bytes
differ from the manifest is refused; a missing manifest or shard says so as before."""

import math

import pytest
from _serving_util import dataset, upload
from stores import gcs_server, s3_server

import shards.remote as remote_mod
from shards import (
    DatasetNotFoundError,
    IncompleteDatasetError,
    ShardMismatchError,
    ShardsError,
    ShardSet,
)
from shards.remote import RemoteDataset

SERVERS = {"gcs": gcs_server, "s3": s3_server}
# what one whole-object read costs on each store (pyarrow 25)
WHOLE = {"s3": ["HEAD", "GET"], "gcs": ["GET media"]}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def store(request, tmp_path_factory):
    """A dataset of 8 shards (~30 KB each) in the store."""
    with SERVERS[request.param]() as s:
        local = dataset(tmp_path_factory.mktemp("src") / "d", n=800, rows=100)
        yield request.param, s, upload(s, local, "ds"), local


def test_a_shard_download_is_one_get_after_pyarrows_head(store, tmp_path):
    kind, s, url, _ = store
    ss = ShardSet.open(url, cache_dir=tmp_path / "c")
    s.requests.clear()
    ss.take([0, 1, 2])  # rows of shard 0 only
    shard0 = ss.manifest["shards"][0]["path"]
    assert s.requests_for(f"ds/{shard0}") == WHOLE[kind]
    # the first take read no other object (no header of another shard for the schema)
    assert len(s.requests) == len(WHOLE[kind])
    assert ss.stats()["read"]["requests"] == len(WHOLE[kind]) * 2  # manifest + shard 0
    s.requests.clear()
    ss.take([3, 4, 99])  # cached (and kept): no request
    assert s.requests == []


def test_the_manifest_is_read_without_asking_first(store, tmp_path):
    kind, s, url, _ = store
    s.requests.clear()
    RemoteDataset(url, cache_dir=tmp_path / "c").manifest()
    assert s.requests_for("ds/manifest.json") == WHOLE[kind]
    assert len(s.requests) == len(WHOLE[kind])


def test_a_shard_larger_than_one_read_costs_one_get_per_read(store, tmp_path, monkeypatch):
    kind, s, url, _ = store
    ss = ShardSet.open(url, cache_dir=tmp_path / "c")
    entry = ss.manifest["shards"][1]
    step = 8192
    monkeypatch.setattr(remote_mod, "S3_READ", step)
    monkeypatch.setattr(remote_mod, "STREAM_READ", step)
    s.requests.clear()
    ss.take([entry["rows"] + 5])  # a row of shard 1
    got = s.requests_for(f"ds/{entry['path']}")
    if kind == "s3":  # one ranged GET per read, the last one sized to what is left
        assert got == ["HEAD"] + ["GET"] * math.ceil(int(entry["bytes"]) / step)
    else:  # a stream: one GET however it is read
        assert got == ["GET media"]


@pytest.mark.parametrize("change", ["longer", "shorter", "flipped"])
def test_a_shard_unlike_its_manifest_entry_is_refused(store, tmp_path, change):
    kind, s, url, local = store
    prefix = f"bad-{change}"
    bad = upload(s, local, prefix)
    ss = ShardSet.open(bad, cache_dir=tmp_path / "c")
    rel = ss.manifest["shards"][2]["path"]
    data = bytearray(s.get(f"{prefix}/{rel}"))
    if change == "longer":
        data += b"\0" * 16
    elif change == "shorter":
        del data[-16:]
    else:
        data[len(data) // 2] ^= 0xFF
    s.put(f"{prefix}/{rel}", bytes(data))
    row = int(ss.offsets[2])
    with pytest.raises(ShardMismatchError, match="sha256" if change == "flipped" else "bytes"):
        ss.take([row])
    assert not list((tmp_path / "c").rglob(rel.rsplit("/", 1)[-1]))  # nothing kept
    here = ShardSet.open(local)
    assert ss.take([0]).column("id").equals(here.take([0]).column("id"))  # shard 0 is sound


def test_a_missing_manifest_or_shard_says_so(store, tmp_path):
    kind, s, url, local = store
    with pytest.raises(DatasetNotFoundError):
        ShardSet.open(s.url("nothing-here"), cache_dir=tmp_path / "c")
    s.put("half/shards/part-00000.arrow", (local / "shards" / "part-00000.arrow").read_bytes())
    if kind == "s3":  # (on gcp-storage-emulator pyarrow's non-recursive listing, sent with
        # includeTrailingDelimiter=true, finds nothing under the prefix: an incomplete dataset
        # reads as absent there, before this change too)
        with pytest.raises(IncompleteDatasetError, match="manifest.json is missing"):
            ShardSet.open(s.url("half"), cache_dir=tmp_path / "c")
    s.put("half/manifest.json", (local / "manifest.json").read_bytes())
    ss = ShardSet.open(s.url("half"), cache_dir=tmp_path / "c")
    assert ss.take([5]).num_rows == 1
    with pytest.raises(
        ShardsError, match="part-00001.arrow: shard listed in the manifest is missing"
    ):
        ss.take([int(ss.offsets[1])])
