"""EXP3 (Online Data Mixing) and PassRateFilter (online difficulty filtering): formulas,
importance-weighted rewards, eligibility against a reference model and state. The generic
suites (determinism, no repeats, snapshots, resume in a new process, bad input, numpy vs torch
code) run both through ``_sampler_util.NAMES``; two gloo ranks (with and without
``share="host"``) in ``tests/test_sampler_scale_dist.py``."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from _sampler_util import run, source, states_equal
from hypothesis import given, settings
from hypothesis import strategies as st

from sampler import Sampler
from sampler import strategies as S
from sampler.strategies.exp3 import exp3_probabilities, exploration


# -- EXP3 ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40),
    st.integers(0, 10**7),
)
def test_exp3_probabilities_sum_to_one_with_the_exploration_floor(rhat, t):
    r = np.asarray(rhat, dtype=np.float64)
    p = exp3_probabilities(r, t)
    K = r.size
    assert p.shape == (K,) and np.isfinite(p).all()
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p >= exploration(t, K) * (1 - 1e-12)).all()
    # higher estimated reward, higher probability (ties equal)
    o = np.argsort(r, kind="stable")
    assert (np.diff(p[o]) >= -1e-15).all()


def test_exp3_schedule_and_first_rounds_are_uniform():
    assert exploration(0, 8) == 1 / 8
    assert exploration(1, 8) == 1 / 8  # sqrt(ln 8 / 8) = 0.51 > 1/8
    t = 1000
    assert exploration(t, 8) == pytest.approx(math.sqrt(math.log(8) / (8 * t)))
    assert exploration(5, 1) == 0.0  # one group: no exploration, probability 1
    np.testing.assert_allclose(exp3_probabilities(np.array([5.0, 0.0, -3.0]), 0), 1 / 3)


def _groups(n: int = 400, K: int = 4) -> dict[str, np.ndarray]:
    return {"cluster": (np.arange(n) % K).astype(np.int32)}


def test_exp3_update_matches_the_formula_by_hand():
    src = _groups()
    g = src["cluster"]
    s = Sampler(src, S.EXP3(scale=0.1), 40, seed=1, device="cpu")
    strat = s.strategy
    rhat = np.zeros(4)
    for t in range(1, 11):
        p = strat.probs.numpy().copy()
        b = s.sample()
        ids = b.indices.numpy()
        loss = 1.0 + g[ids] + 0.01 * t  # group j has loss ~ 1 + j
        s.update(b.indices, loss=torch.as_tensor(loss))
        F = ids.size
        for j in range(4):
            S_j = 0.1 * loss[g[ids] == j].sum()
            if (g[ids] == j).any():
                rhat[j] += S_j / (F * p[j])
        np.testing.assert_allclose(strat.rhat.numpy(), rhat, rtol=1e-12)
        np.testing.assert_allclose(strat.probs.numpy(), exp3_probabilities(rhat, t), rtol=1e-12)
    # ODM's reward is the loss: the highest-loss group gets the most probability
    assert int(strat.probs.argmax()) == 3
    assert s.stats()["exploration"] == exploration(10, 4) < 0.25


def test_exp3_smoothing_is_a_moving_average_of_the_estimates():
    s = Sampler(_groups(), S.EXP3(smoothing=0.5, scale=1.0), 40, seed=2, device="cpu")
    strat = s.strategy
    b = s.sample()
    ug, est = strat.estimates(b.indices, {"loss": torch.ones(40, dtype=torch.float64)})
    s.update(b.indices, loss=torch.ones(40))
    np.testing.assert_allclose(strat.rhat.numpy()[ug], 0.5 * est)
    b = s.sample()
    ug2, est2 = strat.estimates(b.indices, {"loss": torch.ones(40, dtype=torch.float64)})
    before = strat.rhat.numpy().copy()
    s.update(b.indices, loss=torch.ones(40))
    np.testing.assert_allclose(strat.rhat.numpy()[ug2], 0.5 * before[ug2] + 0.5 * est2)


def test_exp3_importance_weighted_estimates_are_unbiased_for_skewed_probabilities():
    """r_hat_j = S_j / (F pi_j) averages to group j's mean reward whatever pi is: a group
    drawn rarely gets a large weight when it is drawn."""
    n, K = 4000, 4
    src = _groups(n, K)
    g = src["cluster"]
    means = np.array([0.2, 1.0, 3.0, 0.5])
    strat = S.EXP3(scale=1.0)
    s = Sampler(src, strat, 200, seed=3, device="cpu")
    strat.rhat = torch.tensor([0.0, 400.0, 800.0, 100.0], dtype=torch.float64)
    strat.t = torch.tensor(4000)
    strat._refresh()
    p = strat.probs.numpy()
    assert p.min() < 0.05 and p.max() > 0.5  # skewed on purpose
    rs = np.random.default_rng(0)
    total = np.zeros(K)
    steps = 600
    for _ in range(steps):
        b = s.sample()  # probabilities stay fixed: no update
        ids = b.indices.numpy()
        r = means[g[ids]] + rs.normal(0, 0.1, ids.size)
        ug, est = strat.estimates(b.indices, {"loss": torch.as_tensor(r)})
        total[ug] += est
    np.testing.assert_allclose(total / steps, means, rtol=0.04)


def test_exp3_rewards_kinds_and_bad_states():
    s = Sampler(_groups(), S.EXP3(reward="abs_advantage"), 16, device="cpu")
    with pytest.raises(ValueError, match="advantage"):
        s.update(torch.arange(4), loss=torch.ones(4))
    b = s.sample()
    s.update(b.indices, advantage=-torch.ones(16))
    assert (s.strategy.rhat >= 0).all() and s.strategy.rhat.sum() > 0  # |advantage|
    before = s.state_dict()
    for bad in (
        {"rhat": torch.zeros(3), "t": torch.tensor(1)},
        {"rhat": torch.zeros(4), "t": torch.tensor(-1)},
        {"rhat": torch.tensor([0.0, math.nan, 0.0, 0.0]), "t": torch.tensor(1)},
    ):
        state = copy.deepcopy(before)
        state["strategy_state"] = bad
        with pytest.raises(ValueError):
            s.load_state_dict(state)
        assert states_equal(before, s.state_dict())
    for kw in ({"reward": "x"}, {"scale": 0.0}, {"smoothing": 1.0}):
        with pytest.raises(ValueError):
            S.EXP3(**kw)


def test_exp3_extreme_rewards_stay_finite():
    s = Sampler(_groups(), S.EXP3(scale=1.0), 16, device="cpu")
    for _ in range(3):
        b = s.sample()
        s.update(b.indices, loss=torch.full((16,), 1e300, dtype=torch.float64))
    p = s.stats()["group_probabilities"]
    assert torch.isfinite(p).all() and float(p.sum()) == pytest.approx(1.0)
    assert s.sample().indices.unique().numel() == 16


# -- PassRateFilter ------------------------------------------------------------------------
def test_pass_rate_keeps_only_prompts_strictly_between_0_and_1():
    n, G, k = 64, 8, 4
    s = Sampler({"x": np.zeros(n)}, S.PassRateFilter(), G, seed=0, device="cpu")
    solved, hopeless, learnable = set(), set(), set()
    for _ in range(n // G):
        b = s.sample()
        ids = b.indices
        rew = torch.zeros(G, k)
        for r, i in enumerate(ids.tolist()):
            kind = i % 3  # 0 solved, 1 hopeless, 2 learnable (2 of 4 rollouts pass)
            rew[r] = 1.0 if kind == 0 else (0.0 if kind == 1 else torch.tensor([1, 0, 1, 0.0]))
            (solved, hopeless, learnable)[kind].add(i)
        s.update(ids.repeat_interleave(k), reward=rew.reshape(-1))
    st_ = s.stats()
    served = solved | hopeless | learnable
    assert st_["filtered_high"] == len(solved) and st_["filtered_low"] == len(hopeless)
    assert st_["eligible"] == n - len(served) + len(learnable)
    rate = s.strategy.rate
    assert float(rate[sorted(learnable)].max()) == 0.5 and float(rate[sorted(solved)].min()) == 1
    for _ in range(20):  # with ttl=None, filtered prompts never come back
        ids = set(s.sample().indices.tolist())
        assert not ids & (solved | hopeless)


def test_pass_rate_readmits_after_ttl_updates_and_ignores_stale_entries():
    n, G = 40, 4
    f = S.PassRateFilter(signal="correct", ttl=3)
    s = Sampler({"x": np.zeros(n)}, f, G, device="cpu")
    s.update(torch.tensor([5, 5, 6, 6]), correct=torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert f.tree.get(torch.tensor([5, 6])).tolist() == [0, 0]
    for step in range(2):
        s.update(torch.tensor([7]), correct=torch.tensor([1.0]))  # filters 7 at updates 2, 3
        assert f.tree.get(torch.tensor([5, 6])).tolist() == [0, 0], step
    s.update(torch.tensor([9, 9]), correct=torch.tensor([1.0, 0.0]))  # update 4 = 1 + ttl
    assert f.tree.get(torch.tensor([5, 6, 9])).tolist() == [1, 1, 1]
    # 7 was filtered again at update 3: its entry from update 2 is stale and must not readmit it
    s.update(torch.tensor([9]), correct=torch.tensor([0.0]))  # update 5 = 2 + ttl
    assert int(f.tree.get(torch.tensor([7]))) == 0
    s.update(torch.tensor([9]), correct=torch.tensor([0.0]))  # update 6 = 3 + ttl
    assert int(f.tree.get(torch.tensor([7]))) == 1


def _reference(n: int, ttl: int | None, updates: list[tuple[list[int], list[float]]]):
    """A plain-Python model of the rule: eligible = unseen, in band, or filtered >= ttl ago."""
    last_filter: dict[int, int] = {}
    eligible = [True] * n
    for t, (ids, vals) in enumerate(updates, start=1):
        per: dict[int, list[float]] = {}
        for i, v in zip(ids, vals, strict=True):
            per.setdefault(i, []).append(v >= 0.5)
        for i, passes in per.items():
            p = sum(passes) / len(passes)
            if 0 < p < 1:
                eligible[i] = True
                last_filter.pop(i, None)
            else:
                eligible[i] = False
                last_filter[i] = t
        if ttl is not None:
            for i, tf in list(last_filter.items()):
                if t >= tf + ttl:
                    eligible[i] = True
                    del last_filter[i]
    return eligible


@settings(max_examples=40, deadline=None)
@given(
    st.one_of(st.none(), st.integers(1, 4)),
    st.lists(
        st.lists(st.tuples(st.integers(0, 11), st.sampled_from([0.0, 1.0])), max_size=10),
        min_size=1,
        max_size=12,
    ),
)
def test_pass_rate_eligibility_matches_a_reference_model(ttl, rounds):
    n = 12
    f = S.PassRateFilter(ttl=ttl)
    s = Sampler({"x": np.zeros(n)}, f, 2, device="cpu")
    ups = []
    for r in rounds:
        if not r:
            continue
        ids, vals = [i for i, _ in r], [v for _, v in r]
        s.update(torch.tensor(ids), reward=torch.tensor(vals))
        ups.append((ids, vals))
    want = _reference(n, ttl, ups)
    assert f.tree.leaves().tolist() == [int(w) for w in want]
    assert s.stats()["eligible"] == sum(want)


def test_pass_rate_serves_everything_when_too_few_are_eligible():
    n, G = 20, 8
    s = Sampler({"x": np.zeros(n)}, S.PassRateFilter(), G, device="cpu")
    s.update(torch.arange(15), reward=torch.ones(15))  # 5 eligible left < G
    b = s.sample()
    assert b.indices.unique().numel() == G
    assert set(b.indices.tolist()) - set(range(15, 20))  # filtered ones are served again


def test_pass_rate_bad_arguments_and_states():
    for kw in ({"low": 0.5, "high": 0.5}, {"high": 1.5}, {"ttl": 0}, {"signal": "loss"}):
        with pytest.raises(ValueError):
            S.PassRateFilter(**kw)
    s = Sampler(source(), S.PassRateFilter(ttl=2), 16, device="cpu")
    run(s, 3)
    before = s.state_dict()
    bad = copy.deepcopy(before)
    bad["strategy_state"]["queue_item"] = torch.tensor([10**9])
    bad["strategy_state"]["queue_until"] = torch.tensor([5])
    with pytest.raises(ValueError):
        s.load_state_dict(bad)
    assert states_equal(before, s.state_dict())
    with pytest.raises(ValueError, match="reward"):
        s.update(torch.arange(3), loss=torch.ones(3))
