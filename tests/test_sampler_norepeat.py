"""No id twice in a batch, for every strategy, under adversarial group sizes, extreme tau and
reward spikes; UCB's group allocation is the capped softmax (remainders go to the other groups
in proportion to their probabilities)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sampler import Sampler, alloc
from sampler import strategies as S


def _groups(sizes: list[int], seed: int = 0) -> np.ndarray:
    g = np.repeat(np.arange(len(sizes)), sizes).astype(np.int32)
    return np.random.default_rng(seed).permutation(g)


def _reference_allocation(z: np.ndarray, sizes: np.ndarray, G: int) -> np.ndarray:
    """Water-filling the slow, obvious way: give the remaining slots to the open groups in
    proportion to exp(z) (a softmax over the open groups), close every group that got more than
    it holds at its size, repeat."""
    a = np.zeros(len(sizes))
    open_ = np.ones(len(sizes), dtype=bool)
    while open_.any():
        R = G - a[~open_].sum()
        zo = z[open_] - z[open_].max()
        share = R * np.exp(zo) / np.exp(zo).sum()
        full = share >= sizes[open_]
        if not full.any():
            a[open_] = share
            return a
        idx = np.flatnonzero(open_)[full]
        a[idx] = sizes[idx]
        open_[idx] = False
    return a


def _check_ucb_batch(s: Sampler, groups: np.ndarray) -> None:
    strat = s.strategy
    G = s.global_batch
    b = s.sample()
    ids = b.global_indices.numpy()
    assert np.unique(ids).size == G  # no repeat
    a = strat.allocation(G)
    sizes = strat.sizes
    assert np.all(a <= sizes + 1e-9) and a.sum() == pytest.approx(G, abs=1e-6)
    np.testing.assert_allclose(a, _reference_allocation(strat.z, sizes, G), rtol=1e-7, atol=1e-7)
    # served counts per group: floor or ceil of the allocation
    labels = strat.labels.numpy()
    counts = np.array([(groups[ids] == lab).sum() for lab in labels])
    assert np.all(counts >= np.floor(a - 1e-9)) and np.all(counts <= np.ceil(a + 1e-9))
    st_ = s.stats()
    np.testing.assert_allclose(st_["group_served_share"].numpy(), a / G)
    assert float(st_["group_target_share"].sum()) == pytest.approx(1.0)


def test_issue_cluster_of_ten_with_high_advantage():
    """The issue's case: 10 items whose advantages are high win the softmax (tau = 0.1); a batch
    of 1024 used to hold those 10 ids ~100 times each."""
    sizes = [10] + [500] * 8
    groups = _groups(sizes)
    s = Sampler({"cluster": groups}, S.UCB(tau=0.1), 1024, seed=1, device="cpu")
    hot = np.flatnonzero(groups == 0)
    for _ in range(5):
        s.update(torch.from_numpy(hot), advantage=torch.full((10,), 5.0))
    p = s.stats()["group_target_share"]
    assert float(p[0]) > 0.99  # the softmax wants the small group
    for _ in range(3):
        _check_ucb_batch(s, groups)
    served = s.stats()["group_served_share"]
    assert float(served[0]) == pytest.approx(10 / 1024)  # all of it, once
    # the remainder is shared in proportion to the others' probabilities (equal here)
    np.testing.assert_allclose(served[1:].numpy(), (1 - 10 / 1024) / 8, rtol=1e-9)


def test_issue_two_equal_groups_at_step_zero():
    groups = _groups([10, 1024])
    s = Sampler({"cluster": groups}, S.UCB(), 1024, device="cpu")
    b = s.sample().indices.numpy()
    assert np.unique(b).size == 1024
    assert (groups[b] == 0).sum() == 10 and (groups[b] == 1).sum() == 1014


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(1, 400), min_size=1, max_size=10),
    frac=st.floats(0.01, 1.0),
    tau=st.sampled_from([1e-6, 1e-3, 0.1, 1.0, 1e3]),
    spikes=st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from([0.0, 1.0, 1e6, 1e30, -1e38])), max_size=6
    ),
    seed=st.integers(0, 3),
)
def test_ucb_never_repeats_and_follows_capped_softmax(sizes, frac, tau, spikes, seed):
    groups = _groups(sizes, seed)
    n = groups.size
    G = max(1, int(frac * n))
    s = Sampler({"cluster": groups}, S.UCB(tau=tau, window=5), G, seed=seed, device="cpu")
    _check_ucb_batch(s, groups)
    for g, v in spikes:
        members = np.flatnonzero(groups == g % len(sizes))[:3]
        s.update(torch.from_numpy(members), advantage=torch.full((members.size,), v))
        _check_ucb_batch(s, groups)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 2000),
    frac=st.floats(0.001, 1.0),
    sigma=st.sampled_from([1e-3, 1.0, 50.0, 1e9]),
    nan_frac=st.floats(0, 0.9),
    moves=st.lists(st.sampled_from([0.0, 1.0]), max_size=5),
    nan=st.sampled_from(["last", "exclude"]),
)
def test_angle_window_never_repeats(n, frac, sigma, nan_frac, moves, nan):
    rs = np.random.default_rng(n)
    score = rs.random(n).astype(np.float32)
    score[rs.random(n) < nan_frac] = np.nan
    scored = int((~np.isnan(score)).sum())
    G = max(1, int(frac * n))
    servable = n if nan == "last" else scored
    strat = S.AngleWindow(sigma=sigma, n=1e6, adj_max=1e7, nan=nan)
    if servable == 0:
        with pytest.raises(ValueError):
            Sampler({"angle_concentration": score}, strat, G, device="cpu")
        return
    s = Sampler({"angle_concentration": score}, strat, G, device="cpu")
    for c in [None, *moves]:
        if c is not None:
            s.update(torch.arange(1), correct=torch.tensor([c]))
        ids = s.sample().indices.numpy()
        if servable >= G:
            assert np.unique(ids).size == G
        else:  # fewer servable records than the batch: each floor/ceil(G / S) times
            cnt = np.bincount(ids, minlength=n)[np.unique(ids)]
            assert np.unique(ids).size == servable
            assert cnt.min() >= G // servable and cnt.max() <= -(-G // servable)
        if nan == "exclude":
            assert not np.isnan(score[ids]).any()


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 2000),
    frac=st.floats(0.001, 1.0),
    alpha=st.sampled_from([0.05, 0.6, 1.0, 3.0]),
    spikes=st.lists(
        st.tuples(st.integers(0, 1999), st.sampled_from([0.0, 1e-30, 1.0, 1e6, 1e30])),
        max_size=30,
    ),
)
def test_prioritized_never_repeats(n, frac, alpha, spikes):
    G = max(1, int(frac * n))
    s = Sampler({"x": np.zeros(n)}, S.Prioritized(alpha=alpha), G, device="cpu")
    if spikes:
        idx = torch.tensor([i % n for i, _ in spikes])
        s.update(idx, loss=torch.tensor([v for _, v in spikes]))
    for _ in range(3):
        b = s.sample()
        assert b.indices.unique().numel() == G
        assert b.weights is not None and bool(torch.isfinite(b.weights).all())


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 2000),
    frac=st.floats(0.001, 1.0),
    drop=st.floats(0, 1),
    revision=st.integers(0, 5),
)
def test_dropout_never_repeats(n, frac, drop, revision):
    G = max(1, int(frac * n))
    s = Sampler({"x": np.zeros(n)}, S.ProgressiveDropout(revision_step=revision), G, device="cpu")
    correct = (np.random.default_rng(n).random(n) < drop).astype(np.float64)
    s.update(torch.arange(n), correct=torch.from_numpy(correct))
    for _ in range(6):
        b = s.sample()
        assert b.indices.unique().numel() == G


@pytest.mark.parametrize(
    "name", ["uniform", "curriculum", "ucb", "angle", "prioritized", "dropout"]
)
def test_source_smaller_than_batch_spreads_repeats_evenly(name):
    from _sampler_util import make, source

    n, G = 10, 37
    s = Sampler(source(n=n, groups=3), make(name), G, device="cpu")
    for _ in range(3):
        b = s.sample()
        cnt = np.bincount(b.indices.numpy(), minlength=n)
        assert b.indices.numel() == G
        assert cnt.min() == G // n and cnt.max() == math.ceil(G / n)
        if b.weights is not None:
            assert b.weights.numel() == G and float(b.weights.max()) == 1.0


def test_allocation_in_log_domain_when_probabilities_underflow():
    # p underflows to exactly 0 for groups 1 and 2, yet they share the remainder 2 : 1
    z = np.array([0.0, -1e5, -1e5 - math.log(2)])
    sizes = np.array([3, 100, 100])
    a = alloc.allocate(z, sizes, 33)
    np.testing.assert_allclose(a, [3, 20, 10])


def test_round_off_repair_moves_a_slot_to_a_group_with_room():
    # an allocation that (as a round-off would) gives the 1-item group 2 slots
    A = np.array([1.5, 3.0])
    g = alloc.slot_groups(A, np.array([1, 5]), 3, 0.2)
    assert g.tolist() == [0, 1, 1]
    counts = alloc.repair(np.array([3, 0, 1]), np.array([2.4, 2.5, 4.0]), np.array([1, 2, 9]))
    # the 2 extra slots go to the group with room and the largest unserved allocation (2: 0.5)
    assert counts.tolist() == [1, 0, 3]
