"""Prefetch from the sampler's known future: a take never waits for a shard the ShardSet was
told about early enough; strategies driven by feedback correct the plan after each update."""

import threading
import time

import numpy as np
import pytest
import torch
from _serving_util import dataset, same_rows, upload
from stores import s3_server

from sampler import Sampler, pacing
from sampler.strategies import UCB, Curriculum, Prioritized, Uniform
from shards import ShardSet
from shards.prefetch import Prefetcher


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    with s3_server("gradum-prefetch") as s3:
        local = dataset(tmp_path_factory.mktemp("src") / "d", n=6000, rows=250)
        yield upload(s3, local, "ds"), local


def _serve(s, ss, steps, wait):
    """Draw, take and feed back ``steps`` batches; with ``wait``, let the prefetch of the
    known future land before each take. Returns the stalls of the takes."""
    before = ss.stats()["stalls"]
    for _ in range(steps):
        if wait:
            s._planner.plan_now(s)
            assert ss.wait_prefetched(60)
        b = s.sample()
        ss.take(b.indices.numpy())
        s.update(b.indices, loss=torch.rand(b.indices.numel(), dtype=torch.float64))
    return ss.stats()["stalls"] - before


@pytest.mark.parametrize("make", [Uniform, lambda: UCB(reward="loss", window=8), Prioritized])
def test_a_take_never_waits_for_a_shard_told_early_enough(remote, tmp_path, make):
    url, _ = remote
    ss = ShardSet.open(url, cache_dir=tmp_path / "c", cache_limit="100MB")
    s = Sampler(ss, make(), 16, seed=3, device="cpu", prefetch=2)
    assert _serve(s, ss, 6, wait=True) == 0
    assert ss.stats()["prefetched"] > 0 and ss.stats()["prefetch_errors"] == []
    s.close()
    cold = ShardSet.open(url, cache_dir=tmp_path / "cold")
    t = Sampler(cold, make(), 16, seed=3, device="cpu", prefetch=0)
    assert _serve(t, cold, 2, wait=False) > 0  # without the plan, the takes wait


def test_the_plan_follows_the_state_after_an_update(remote, tmp_path):
    url, _ = remote
    ss = ShardSet.open(url, cache_dir=tmp_path / "c")
    s = Sampler(ss, UCB(reward="loss", window=4, tau=0.01), 32, seed=1, device="cpu", prefetch=3)
    first = s._planner.plan_now(s)
    b = s.sample()
    # a large loss on one cluster: the bandit moves towards it, and the plan with it
    cluster = ss.column("cluster")[b.indices.numpy()]
    s.update(b.indices, loss=torch.from_numpy((cluster == cluster[0]) * 100.0))
    plan = s._planner.plan_now(s)
    assert _in_order_of_first_use(
        plan, [ss.shards_of(s.peek(t)) for t in range(s.step, s.step + 3)]
    )
    assert plan != first


def _in_order_of_first_use(plan, batches):
    """``plan`` lists the shards of ``batches`` once each, batch after batch (in any order
    inside a batch: one take uses them together)."""
    seen, k = set(), 0
    for shards in batches:
        new = {int(x) for x in shards} - seen
        if set(plan[k : k + len(new)]) != new:
            return False
        seen |= new
        k += len(new)
    return k == len(plan)


def test_a_single_host_plans_from_the_batch_unshuffled_and_a_quarter_window_ahead(remote, tmp_path):
    url, _ = remote
    ss = ShardSet.open(url, cache_dir=tmp_path / "c")
    s = Sampler(ss, Curriculum(pacing.linear(20, c0=0.2)), 16, seed=0, device="cpu", prefetch=8)
    for t in range(3):  # every rank is on this host: the same rows as the shuffled batch
        assert sorted(s.host_rows(t).tolist()) == sorted(s.peek(t).tolist())
    p = s._planner
    p.close()  # its thread stops: the plan below is the test's alone
    p._thread.join(30)
    p._event.clear()
    plan = p.plan_now(s)
    assert sorted(p._cache) == list(range(s.step, s.step + 8 + 2 - 1)) and p._due == s.step + 2
    assert _in_order_of_first_use(plan, [ss.shards_of(s.peek(t)) for t in range(9)])
    p.advance(1)
    assert not p._event.is_set()  # the plan still covers 8 batches past step 1
    p.advance(2)
    assert p._event.is_set()
    u = Sampler(ss, UCB(reward="loss"), 16, device="cpu", prefetch=8)  # adaptive: 8 exactly
    u._planner.close()
    u._planner._thread.join(30)
    u._planner.plan_now(u)
    assert sorted(u._planner._cache) == list(range(8)) and u._planner._due == 1
    u.close()


def test_background_planning_runs_off_the_training_thread(remote, tmp_path):
    url, local = remote
    ss = ShardSet.open(url, cache_dir=tmp_path / "c")
    here = ShardSet.open(local)
    s = Sampler(ss, Curriculum(pacing.linear(20, c0=0.2)), 16, seed=0, device="cpu")
    assert s.prefetch == 4 and s._planner is not None
    deadline = time.monotonic() + 30
    while s._planner.plans == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ss.wait_prefetched(60) and ss.stats()["prefetched"] > 0
    b = s.sample()
    assert same_rows(ss.take(b.indices.numpy()), here.take(b.indices.numpy()))
    s.close()


def test_the_prefetcher_keeps_to_its_budget_and_replaces_its_plan():
    fetched, gate = [], threading.Event()

    def fetch(i):
        gate.wait(10)
        fetched.append(i)

    p = Prefetcher(fetch, lambda i: i in fetched, lambda i: 100, budget=250, threads=1)
    p.plan([5, 6, 7, 8])  # 7 would take the planned bytes past 250
    gate.set()
    assert p.wait_idle(10)
    assert fetched == [5, 6]
    p.plan([9, 5])
    assert p.wait_idle(10)
    assert fetched == [5, 6, 9]
    p.close()


def test_urgent_shards_count_once_and_leave_the_list_once_cached():
    """A take's urgent shards are in the plan too: counted twice, they kept the next shards
    of a plan out of a small budget (every block round of a 10 % cache stalled), and a stale
    urgent shard was fetched again after its eviction."""
    fetched, cached = [], set()

    def fetch(i):
        fetched.append(i)
        cached.add(i)

    p = Prefetcher(fetch, lambda i: i in cached, lambda i: 100, budget=400, threads=1)
    p.urgent([0, 1])  # a take found 0 and 1 missing
    assert p.wait_idle(10) and fetched == [0, 1]
    p.plan([0, 1, 2, 3])  # 400 planned bytes: all fit
    assert p.wait_idle(10) and fetched == [0, 1, 2, 3]
    cached.discard(0)  # evicted
    p.forget(0)
    p.plan([2, 3, 4])
    assert p.wait_idle(10) and fetched == [0, 1, 2, 3, 4]  # not 0 again: no take wants it
    p.close()


def test_shards_of_lists_each_shard_once_in_order_of_first_use(remote):
    _, local = remote
    ss = ShardSet.open(local)
    assert ss.shards_of([5999, 0, 251, 3, 5998]).tolist() == [23, 0, 1]
    assert np.array_equal(ss.offsets[:3], [0, 250, 500])


def test_a_remote_set_pickles_as_a_reopen_for_dataloader_workers(remote, tmp_path):
    import pickle

    from sampler.torch import ShardDataset

    url, local = remote
    ss = ShardSet.open(url, cache_dir=tmp_path / "c", cache_limit="5MB")
    again = pickle.loads(pickle.dumps(ss))  # what a DataLoader worker receives
    assert again.location == url and again._remote.cache.limit == 5_000_000
    assert same_rows(again.take([7, 4000]), ShardSet.open(local).take([7, 4000]))
    ds = ShardDataset(url, columns=["id"], cache_dir=tmp_path / "c", cache_limit="5MB")
    assert ds[4000]["id"] == ShardSet.open(local).take([4000]).column("id")[0].as_py()
