"""The bounded shard cache: LRU within limit + one shard, pinned shards kept, local files and
foreign files never evicted, one download per shard for threads and processes sharing it."""

import functools
import os
import subprocess
import sys
import textwrap
import threading
import time

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


def _python(script: str, env: dict) -> subprocess.Popen:
    """``script`` in another Python process, spoken to on stdin / stdout (text)."""
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **env),
    )


def _rows_of(ss, shard, k=3):
    lo = int(ss.offsets[shard])
    return list(range(lo, lo + k))


def test_a_take_on_a_kept_shard_makes_no_system_call(remote, tmp_path, monkeypatch):
    import fcntl

    _, url, local = remote
    ss = ShardSet.open(url, cache_dir=tmp_path / "c", cache_limit="100MB")
    here = ShardSet.open(local)
    ss.take(_rows_of(ss, 0) + _rows_of(ss, 1))  # pinned, mapped and kept
    assert sorted(ss._shards.held()) == [0, 1]
    calls = []
    me = threading.get_ident()  # the keeper's background thread stats want markers on its own

    def spy(*a, _real, _name, **k):
        if threading.get_ident() == me:
            calls.append(_name)
        return _real(*a, **k)

    for mod, name in ((os, "open"), (os, "stat"), (os, "utime"), (os, "close"), (fcntl, "flock")):
        monkeypatch.setattr(mod, name, functools.partial(spy, _real=getattr(mod, name), _name=name))
    idx = _rows_of(ss, 1, 20) + _rows_of(ss, 0, 7)
    got = ss.take(idx)
    monkeypatch.undo()
    assert calls == []
    assert same_rows(got, here.take(idx))
    assert ss.stats()["hits"] >= 2


def test_a_download_that_ends_while_another_waits_does_not_drop_its_kept_pin(tmp_path):
    """The waiter sees "not done" while the download runs, then the shard valid and pinned
    (kept by the thread that downloaded it): it must stop waiting, not ask the keeper to let
    go (a race that dropped a just-kept shard under load)."""
    from shards.cache import add_keeper, exclusive
    from shards.locks import FileLock

    entry = Entry(tmp_path / "part-00000.arrow")
    entry.data.write_bytes(b"x" * 10)
    st = entry.data.stat()
    entry.stamp.write_text(f"None {st.st_size} {st.st_mtime_ns}")
    pin = FileLock(entry.lock_path)
    assert pin.acquire(exclusive=False)  # the downloader's pin, kept after its download

    class Keeper:
        asked: list = []

        def let_go(self, path):
            self.asked.append(path)

    keeper = Keeper()
    add_keeper(keeper)
    answers = iter([False])  # "not done" once: the download had not ended at the first look
    got = exclusive(entry, lambda: next(answers, True))
    pin.release()
    assert got is None and keeper.asked == [] and not entry.want_path.exists()


def test_want_markers_are_per_process_and_a_process_ignores_its_own(tmp_path):
    """Another process's fresh marker asks keepers to let go; this process's own marker (a
    sibling thread waiting for the same shard) and a stale one do not."""
    from shards.cache import WANT_FRESH, Entry, _touch_marker, wanted

    entry = Entry(tmp_path / "part-00000.arrow")
    assert not wanted(entry)
    _touch_marker(entry)  # this process waits: its own keepers are asked directly instead
    assert entry.want_path.exists() and not wanted(entry)
    other = entry.want_dir / "otherhost-1"
    other.touch()
    assert wanted(entry)
    old = time.time() - WANT_FRESH - 5
    os.utime(other, (old, old))
    assert not wanted(entry)  # left by a waiter that is gone


def test_a_waiter_clears_the_stale_markers_of_killed_waiters_and_keeps_fresh_ones(tmp_path):
    from shards.cache import WANT_FRESH, Entry, exclusive
    from shards.locks import FileLock

    entry = Entry(tmp_path / "part-00000.arrow")
    entry.data.write_bytes(b"x")
    pin = FileLock(entry.lock_path)
    assert pin.acquire(exclusive=False)  # a pin in use: the waiter asks, then is told done
    entry.want_dir.mkdir()
    dead, alive = entry.want_dir / "gone-1", entry.want_dir / "otherhost-2"
    dead.touch()
    alive.touch()
    old = time.time() - WANT_FRESH - 5
    os.utime(dead, (old, old))
    answers = iter([False, False])  # not done for the first look: the waiter leaves a marker
    assert exclusive(entry, lambda: next(answers, True)) is None
    pin.release()
    assert sorted(p.name for p in entry.want_dir.iterdir()) == ["otherhost-2"]
    alive.unlink()
    answers = iter([False, False])
    assert pin.acquire(exclusive=False)
    assert exclusive(entry, lambda: next(answers, True)) is None
    pin.release()
    assert not entry.want_dir.exists()  # the last waiter removes the directory


def test_a_shard_this_process_downloads_is_kept_while_its_own_prefetch_waits(remote, tmp_path):
    """The race behind a flaky CI run: a prefetch thread of this process, waiting for the
    shard the take is downloading, had left a want marker; the take then did not keep the
    shard it had just pinned."""
    from shards.cache import _touch_marker

    _, url, _ = remote
    ss = ShardSet.open(url, cache_dir=tmp_path / "c", cache_limit="100MB")
    entry = ss._shards.remote.entry(ss._shards.entries[0]["path"])
    entry.data.parent.mkdir(parents=True, exist_ok=True)
    _touch_marker(entry)  # what the waiting prefetch thread leaves, for the whole take
    ss.take(_rows_of(ss, 0) + _rows_of(ss, 1))
    assert sorted(ss._shards.held()) == [0, 1]
    entry.want_path.unlink()


def test_a_kept_pin_is_released_when_the_lru_or_the_plan_drops_its_shard(remote, tmp_path):
    from shards.locks import FileLock

    _, url, _ = remote
    sizes = [int(s["bytes"]) for s in ShardSet.open(url).manifest["shards"][:3]]
    limit = sizes[0] + sizes[1] + sizes[2] // 2  # room to keep two shards, not three
    ss = ShardSet.open(url, cache_dir=tmp_path / "c", cache_limit=limit)
    entry = ss._remote.entry(ss.manifest["shards"][0]["path"])

    def pinned():
        probe = FileLock(entry.lock_path)
        free = probe.acquire(exclusive=True, blocking=False)
        probe.release()
        return not free

    ss.take(_rows_of(ss, 0))
    assert ss._shards.held() == [0] and pinned()  # kept after the take
    ss.take(_rows_of(ss, 1))
    assert ss._shards.held() == [0, 1] and pinned()
    ss.take(_rows_of(ss, 2))  # over the share: the least recently used goes
    assert ss._shards.held() == [1, 2] and not pinned() and entry.data.exists()
    ss.take(_rows_of(ss, 0))
    assert 0 in ss._shards.held() and pinned()
    ss.prefetch([5, 6])  # a plan without shard 0: its pin goes
    assert 0 not in ss._shards.held() and not pinned()
    ss.close()
    assert ss._shards.held() == []


def test_holders_share_the_limit_and_dead_holders_do_not_count(tmp_path):
    cache = ShardCache(tmp_path, 1000)
    a, b = cache.register(), cache.register()
    assert cache.holders() == 2 and cache.hold_share() == 500
    b.close()  # what its process dying does: the lock goes, the file stays
    assert cache.holders() == 1 and cache.hold_share() == 1000
    assert len(os.listdir(tmp_path / ".holders")) == 1  # the dead one's file was removed
    a.close()
    assert ShardCache(tmp_path, None).hold_share() is None


def test_a_shard_kept_by_another_process_is_not_evicted_until_its_lru_drops_it(remote, tmp_path):
    s3, url, _ = remote
    cache = tmp_path / "c"
    sizes = [int(s["bytes"]) for s in ShardSet.open(url).manifest["shards"]]
    limit = 4 * max(sizes)  # two holders: each keeps at most two shards
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{ROOT!r}]
        import shards.fetcher
        shards.fetcher.REFRESH = 0  # recount the holders at every use
        from shards import ShardSet
        ss = ShardSet.open({url!r}, cache_dir={str(cache)!r}, cache_limit={limit})
        for line in sys.stdin:
            i = int(line)
            ss.take([int(ss.offsets[i])])
            print(*ss._shards.held(), flush=True)
        """
    )
    other = _python(script, s3.env)

    def tell(i):
        other.stdin.write(f"{i}\n")
        other.stdin.flush()
        return other.stdout.readline().split()

    import shards.fetcher

    old, shards.fetcher.REFRESH = shards.fetcher.REFRESH, 0
    try:
        ss = ShardSet.open(url, cache_dir=cache, cache_limit=limit)
        ss.take([0])  # registers this process too: two holders
        assert tell(5) == ["5"]
        kept = ss._remote.entry(ss.manifest["shards"][5]["path"]).data
        for i in range(8, 20):  # each download evicts what it can: never the other's shard 5
            ss.take(_rows_of(ss, i))
            assert kept.exists()
            used = sum(p.stat().st_size for p in cached_files(cache))
            assert used <= limit + max(sizes)
        assert tell(6) == ["5", "6"] and tell(7) == ["6", "7"]  # its LRU dropped shard 5
        for i in range(20, 24):
            ss.take(_rows_of(ss, i))
        assert not kept.exists()
    finally:
        shards.fetcher.REFRESH = old
        other.stdin.close()
        other.wait(60)
    assert other.returncode == 0


def test_a_kept_pin_never_blocks_a_replacement_for_long(remote, tmp_path):
    """A download of another version (here what ``gradum shards validate`` does: a fetch
    without the sha256) needs the entry's exclusive lock: pins kept by this process go at
    once, another process's within about a second (its want marker)."""
    s3, url, local = remote
    cache = tmp_path / "c"
    ss = ShardSet.open(url, cache_dir=cache, cache_limit="100MB")
    rel = ss.manifest["shards"][0]["path"]

    def fetch_within(rel, seconds):
        th = threading.Thread(target=ss._remote.fetch, args=(rel, None), daemon=True)
        th.start()
        th.join(seconds)
        return not th.is_alive()

    ss.take(_rows_of(ss, 0))
    assert ss._shards.held() == [0]
    assert fetch_within(rel, 30) and ss._shards.held() == []
    assert same_rows(ss.take(_rows_of(ss, 0)), ShardSet.open(local).take(_rows_of(ss, 0)))
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{ROOT!r}]
        from shards import ShardSet
        ss = ShardSet.open({url!r}, cache_dir={str(cache)!r}, cache_limit="100MB")
        ss.take([int(ss.offsets[3])])
        print(*ss._shards.held(), flush=True)
        sys.stdin.read()  # idle, the shard kept, until told to end
        """
    )
    other = _python(script, s3.env)
    try:
        assert other.stdout.readline().split() == ["3"]
        assert fetch_within(ss.manifest["shards"][3]["path"], 30)
    finally:
        other.stdin.close()
        other.wait(60)
    assert other.returncode == 0
