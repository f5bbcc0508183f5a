"""The bounded shard cache: LRU within limit + one shard, pinned shards kept, local files and
foreign files never evicted, one download per shard for threads and processes sharing it."""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from _serving_util import cached_files, dataset, same_rows, upload
from stores import s3_server

from shards import ShardSet
from shards.cache import Entry, ShardCache, parse_size, unique_suffix

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """An indexed dataset of 24 shards (~140 KB each) in a moto S3 bucket, and its copy."""
    with s3_server("gradum-cache") as s3:
        local = dataset(tmp_path_factory.mktemp("src") / "d", n=6000, rows=250)
        yield s3, upload(s3, local, "ds"), local


def test_parse_size():
    assert parse_size("20GB") == 20 * 10**9 and parse_size("512MiB") == 512 * 2**20
    assert parse_size(1234) == 1234 and parse_size("1.5k") == 1500 and parse_size(None) is None
    for bad in ("lots", "-1GB", -5, True):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_temporary_names_are_unique_across_hosts_and_processes():
    a, b = unique_suffix(), unique_suffix()
    assert a != b and str(os.getpid()) in a and a.split("-")[0]


def test_the_cache_stays_within_its_limit_plus_one_shard(remote, tmp_path):
    s3, url, local = remote
    limit = 500_000
    ss = ShardSet.open(url, cache_dir=tmp_path / "c", cache_limit=limit)
    here = ShardSet.open(local)
    biggest = max(int(s["bytes"]) for s in ss.manifest["shards"])
    rs = np.random.default_rng(0)
    for _ in range(12):
        idx = rs.integers(0, ss.num_rows, 40)
        assert same_rows(ss.take(idx), here.take(idx))
        used = sum(p.stat().st_size for p in cached_files(tmp_path / "c"))
        assert used <= limit + biggest
    stats = ss.stats()
    assert stats["evictions"] > 0 and stats["downloads"] > 4
    assert not [p for p in (tmp_path / "c").rglob("*tmp-*")]  # no partial file left


def test_a_pinned_shard_is_never_evicted(remote, tmp_path):
    s3, url, _ = remote
    ss = ShardSet.open(url, cache_dir=tmp_path / "c", cache_limit=1)  # evicts everything else
    entered, release = threading.Event(), threading.Event()

    def hold():
        with ss._shards.use(0) as t:
            entered.set()
            release.wait(30)
            assert t.num_rows == 250

    th = threading.Thread(target=hold)
    th.start()
    assert entered.wait(30)
    pinned = ss._remote.entry(ss.manifest["shards"][0]["path"]).data
    ss.take([300, 600, 900])  # three more shards: each download evicts what it can
    assert pinned.exists()  # shard 0 is in use: kept
    release.set()
    th.join()
    ss.take([1200])
    assert not pinned.exists()  # once released, it goes
    assert len(cached_files(tmp_path / "c")) == 1


def test_local_files_and_foreign_files_are_never_evicted(remote, tmp_path):
    _, url, local = remote
    before = sorted(p for p in local.rglob("*") if p.is_file())
    ss = ShardSet.open(local, cache_dir=local, cache_limit=1)
    ss.take([0, 5000])
    assert sorted(p for p in local.rglob("*") if p.is_file()) == before
    cache = tmp_path / "c"
    (cache / "mine").mkdir(parents=True)
    (cache / "mine" / "notes.arrow").write_bytes(b"x" * 100_000)
    (cache / "shards").mkdir()
    (cache / "shards" / "part-00000.arrow").write_bytes(b"y" * 100_000)
    ShardSet.open(url, cache_dir=cache, cache_limit=1).take([0, 3000, 5999])
    assert (cache / "mine" / "notes.arrow").exists()
    assert (cache / "shards" / "part-00000.arrow").exists()


def test_the_kept_file_is_the_verified_file(tmp_path):
    cache = ShardCache(tmp_path, None)
    entry = Entry(tmp_path / "k" / "shards" / "part-00000.arrow")

    def download(dest):
        dest.write_bytes(b"good bytes")

    import hashlib

    sha = hashlib.sha256(b"good bytes").hexdigest()
    pin, hit = cache.pin(entry, sha, 10, download)
    pin.release()
    assert not hit and entry.valid(sha, 10)
    entry.data.write_bytes(b"evil bytes")  # changed after verification: no longer served
    assert not entry.valid(sha, 10)


def test_threads_share_one_download_per_shard(remote, tmp_path):
    _, url, local = remote
    ss = ShardSet.open(url, cache_dir=tmp_path / "c")
    here = ShardSet.open(local)
    rs = np.random.default_rng(1)
    batches = [rs.integers(0, 6000, 64) for _ in range(16)]
    errors = []

    def work(k):
        try:
            for b in batches[k::4]:
                assert same_rows(ss.take(b), here.take(b))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    touched = {int(s) for b in batches for s in here.shards_of(b)}
    assert ss.stats()["downloads"] == len(touched)


def test_processes_share_one_cache_directory(remote, tmp_path):
    s3, url, _ = remote
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        sys.path[:0] = [{ROOT!r}]
        from shards import ShardSet
        ss = ShardSet.open({url!r}, cache_dir={str(tmp_path / "c")!r})
        ss.take(np.arange(0, 6000, 7))
        print(json.dumps(ss.stats()["downloads"]))
        """
    )
    env = dict(os.environ, **s3.env)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
        for _ in range(3)
    ]
    downloads = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(downloads) == 24  # each shard downloaded once, by one of the processes
    assert len(cached_files(tmp_path / "c")) == 24
    assert not [p for p in (tmp_path / "c").rglob("*tmp-*")]
