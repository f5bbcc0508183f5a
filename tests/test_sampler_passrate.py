"""PassRateFilter's group prior for unseen prompts (``group=``): the per-group counts of first
rollouts, the weights (1 + D_g) / (2 + D_g + A_g), the allocation over cells, the draw
frequencies, snapshots and the backward compatibility of the filter without a group. The
generic suites (determinism, snapshots, resume in a new process, numpy vs torch, two ranks) run
it as ``passrate_group`` through ``_sampler_util.NAMES``."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from _sampler_util import states_equal
from hypothesis import given, settings
from hypothesis import strategies as st

from sampler import Sampler, draw
from sampler import strategies as S

K_ROLL = 4  # rollouts per prompt in these tests


def _rollouts(ids: torch.Tensor, kind: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """K_ROLL rewards per prompt: kind 0 all pass, 1 all fail, 2 half pass (disagree)."""
    rew = np.zeros((ids.numel(), K_ROLL))
    k = kind[ids.numpy()]
    rew[k == 0] = 1.0
    rew[k == 2, : K_ROLL // 2] = 1.0
    return ids.repeat_interleave(K_ROLL), torch.from_numpy(rew.reshape(-1))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(4, 60),
    st.integers(1, 5),
    st.integers(1, 8),
    st.one_of(st.none(), st.integers(1, 3)),
    st.integers(0, 2**31 - 1),
    st.integers(0, 8),
    st.sampled_from([1.0, 0.5, 3.0]),
)
def test_probabilities_sum_to_one_and_follow_the_group_weights(n, K, G, ttl, seed, rounds, a):
    G = min(G, n)
    rs = np.random.default_rng(seed)
    group = rs.integers(0, K, n)
    kind = rs.integers(0, 3, n)
    f = S.PassRateFilter(ttl=ttl, group="g", power=a)
    s = Sampler({"g": group}, f, G, seed=seed % 1000, device="cpu")
    first: dict[int, bool] = {}
    for _ in range(rounds):
        ids = s.sample().indices
        for i in ids.tolist():
            first.setdefault(i, kind[i] == 2)
        idx, rew = _rollouts(ids, kind)
        s.update(idx, reward=rew)
    # the counts are the first rollouts of each group
    labels = f.labels.numpy()
    for j, lab in enumerate(labels):
        mine = [i for i in first if group[i] == lab]
        assert f.disagreed[j] == sum(first[i] for i in mine)
        assert f.agreed[j] == len(mine) - f.disagreed[j]
    np.testing.assert_allclose(
        f.prior(), ((1 + f.disagreed) / (2 + f.disagreed + f.agreed)) ** a, rtol=1e-15
    )
    p = f.probabilities().numpy()
    assert p.shape == (n,) and (p >= 0).all()
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p <= 1 / G + 1e-12).all()  # an item is at most once in a batch
    if f.eligible_count() < G:
        np.testing.assert_allclose(p, 1 / n)
        return
    seen = f.rate.numpy() >= 0
    known = f.tree.leaves().numpy() > 0
    assert (p[seen & ~known] == 0).all()  # filtered
    w = np.where(seen, 1.0, f.prior()[np.searchsorted(labels, group)])
    on = p > 0
    assert (on == (~seen | known)).all()
    # p_i = min(1, lam w_i) / G: proportional to the weights below the cap
    free = on & (p < 1 / G - 1e-12)
    if free.any():
        lam = (p[free] / w[free]).mean()
        np.testing.assert_allclose(p[free], lam * w[free], rtol=1e-9)
        assert (lam * w[on & ~free] >= 1 / G - 1e-9).all()
    b = s.sample().indices
    assert b.unique().numel() == G and (p[b.numpy()] > 0).all()


def test_unseen_prompts_of_a_group_that_always_agrees_are_served_less():
    """Group 0 always agrees, group 1 always disagrees: after a few steps group 0's unseen
    prompts have weight (1 + 0) / (2 + A_0), group 1's (1 + D_1) / (2 + D_1); the draws follow
    (stratified over the cells: frequencies match the probabilities), while the filter without
    a group serves both groups' unseen prompts alike."""
    n, G = 2000, 20
    group = np.arange(n) % 2
    kind = np.where(group == 0, 0, 2)
    served = {}
    for g in ("g", None):
        f = S.PassRateFilter(group=g)
        s = Sampler({"g": group}, f, G, seed=3, device="cpu")
        for _ in range(5):
            ids = s.sample().indices
            idx, rew = _rollouts(ids, kind)
            s.update(idx, reward=rew)
        unseen = f.rate.numpy() < 0
        counts = np.zeros(n)
        steps = 400
        for _ in range(steps):  # no feedback: the state and the probabilities stay fixed
            np.add.at(counts, s.sample().indices.numpy(), 1)
        freq = [counts[unseen & (group == k)].sum() / (steps * G) for k in (0, 1)]
        per = [f_ / (unseen & (group == k)).sum() for k, f_ in enumerate(freq)]
        served[g] = per[0] / per[1]
        if g is not None:
            w = f.prior()
            assert w[0] == pytest.approx(1 / (2 + f.agreed[0])) and w[0] < 0.1
            assert w[1] == pytest.approx((1 + f.disagreed[1]) / (2 + f.disagreed[1]))
            assert served[g] == pytest.approx(w[0] / w[1], rel=0.1)
            p = f.probabilities().numpy()
            np.testing.assert_allclose(counts / steps, p * G, atol=0.03)
            st_ = s.stats()
            assert st_["group_unseen"].tolist() == [
                int((unseen & (group == k)).sum()) for k in (0, 1)
            ]
    assert served[None] == pytest.approx(1.0, rel=0.1)


def _stream(s: Sampler, kind: np.ndarray, steps: int) -> list[torch.Tensor]:
    out = []
    for _ in range(steps):
        ids = s.sample().indices
        out.append(ids.clone())
        idx, rew = _rollouts(ids, kind)
        s.update(idx, reward=rew)
    return out


@pytest.mark.parametrize("ttl", [None, 3])
def test_snapshot_resume_is_exact(ttl):
    n, G = 300, 12
    rs = np.random.default_rng(1)
    src = {"level": rs.integers(1, 5, n)}
    kind = rs.integers(0, 3, n)
    a = Sampler(src, S.PassRateFilter(ttl=ttl, group="level"), G, seed=4, device="cpu")
    _stream(a, kind, 7)
    snap = a.state_dict()
    buf = io.BytesIO()
    torch.save(snap, buf)
    rest = _stream(a, kind, 9)
    b = Sampler(src, S.PassRateFilter(ttl=ttl, group="level"), G, seed=4, device="cpu")
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert states_equal(snap, b.state_dict())
    again = _stream(b, kind, 9)
    assert all(torch.equal(x, y) for x, y in zip(rest, again, strict=True))
    assert states_equal(a.state_dict(), b.state_dict())
    fa, fb = a.strategy, b.strategy
    assert torch.equal(fa.fresh.leaves(), fb.fresh.leaves())
    assert torch.equal(fa.tree.leaves(), fb.tree.leaves())


def test_without_a_group_the_filter_is_unchanged():
    """No group: the same state keys and config as before the prior existed, and each batch is
    the stratified draw of distinct ranks among the eligible items."""
    n, G = 200, 8
    kind = np.random.default_rng(2).integers(0, 3, n)
    f = S.PassRateFilter(ttl=5)
    s = Sampler({"x": np.zeros(n)}, f, G, seed=6, device="cpu")
    assert f.config() == {"name": "passrate", "signal": "reward", "low": 0.0, "high": 1.0,
                          "threshold": 0.5, "ttl": 5}  # fmt: skip
    assert f.bytes_per_item == 13
    for step in range(12):
        elig = np.flatnonzero(f.tree.leaves().numpy())
        want = elig[draw.positions_np(6, step, np.arange(G), elig.size)]
        ids = s.sample().indices
        assert sorted(ids.tolist()) == sorted(want.tolist())
        idx, rew = _rollouts(ids, kind)
        s.update(idx, reward=rew)
    assert set(s.state_dict()["strategy_state"]) == {
        "rate", "until", "eligible", "queue_item", "queue_until", "t"
    }  # fmt: skip


def test_group_and_plain_states_do_not_mix_and_bad_counts_are_refused():
    n, G = 120, 6
    src = {"level": np.arange(n) % 3}
    kind = np.arange(n) % 3
    g = Sampler(src, S.PassRateFilter(group="level"), G, device="cpu")
    p = Sampler(src, S.PassRateFilter(), G, device="cpu")
    _stream(g, kind, 4)
    _stream(p, kind, 4)
    sg, sp = g.state_dict(), p.state_dict()
    for s, state in ((g, sp), (p, sg)):
        before = s.state_dict()
        with pytest.raises(ValueError, match="group prior"):
            s.load_state_dict(state)
        assert states_equal(before, s.state_dict())
    bads = []
    bad = copy.deepcopy(sg)
    bad["strategy_state"]["agreed"][0] += 1  # more seen than the pass rates say
    bads.append(bad)
    bad = copy.deepcopy(sg)
    bad["strategy_state"]["disagreed"] = torch.zeros(2, dtype=torch.int64)
    bads.append(bad)
    bad = copy.deepcopy(sg)
    unseen = int(torch.nonzero(bad["strategy_state"]["rate"] < 0)[0])
    bad["strategy_state"]["eligible"][unseen] = 0
    bads.append(bad)
    for bad in bads:
        with pytest.raises(ValueError):
            g.load_state_dict(bad)
        assert states_equal(sg, g.state_dict())
    with pytest.raises(ValueError, match="no column"):
        Sampler(src, S.PassRateFilter(group="cluster"), G, device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        Sampler({"level": np.array([0.0, np.nan] * 10)}, S.PassRateFilter(group="level"), 2,
                device="cpu")  # fmt: skip
    for kw in ({"group": ""}, {"group": "level", "power": 0.0}, {"power": float("nan")}):
        with pytest.raises(ValueError):
            S.PassRateFilter(**kw)


def test_group_prior_serves_everything_when_too_few_are_eligible():
    n, G = 20, 8
    s = Sampler({"level": np.arange(n) % 2}, S.PassRateFilter(group="level"), G, device="cpu")
    s.update(torch.arange(15), reward=torch.ones(15))  # 5 eligible left < G
    assert s.strategy.eligible_count() == 5
    b = s.sample()
    assert b.indices.unique().numel() == G
    assert set(b.indices.tolist()) - set(range(15, 20))
    assert s.strategy.probabilities().sum().item() == pytest.approx(1.0)
