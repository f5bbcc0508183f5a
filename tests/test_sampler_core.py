import io
import math

import numpy as np
import pytest
import torch
from _sampler_util import NAMES, N, feedback, make, run, source, states_equal
from hypothesis import given, settings
from hypothesis import strategies as st

from sampler import Sampler, pacing
from sampler import strategies as S
from sampler.sumtree import SumTree


@pytest.mark.parametrize("name", NAMES)
def test_batches_distinct_in_range_deterministic(name):
    a = Sampler(source(), make(name), 64, seed=3, device="cpu")
    b = Sampler(source(), make(name), 64, seed=3, device="cpu")
    xa, xb = run(a, 12), run(b, 12)
    for x, y in zip(xa, xb, strict=True):
        assert x.dtype == torch.int64 and x.numel() == 64
        assert torch.equal(x, y)
        assert x.unique().numel() == 64
        assert int(x.min()) >= 0 and int(x.max()) < N
    c = Sampler(source(), make(name), 64, seed=4, device="cpu")
    assert not all(torch.equal(x, y) for x, y in zip(xa, run(c, 12), strict=True))
    st_ = a.stats()
    assert st_["step"] == 12 and 0 < st_["coverage"] <= 1 and "entropy" in st_
    assert 0 <= st_["mean_difficulty_served"] <= 1


def test_global_rng_untouched():
    torch.manual_seed(0)
    np.random.seed(0)
    before = (torch.get_rng_state().clone(), np.random.get_state()[1].copy())
    run(Sampler(source(), make("ucb"), 64, device="cpu"), 3)
    assert torch.equal(before[0], torch.get_rng_state())
    assert (before[1] == np.random.get_state()[1]).all()


def test_curriculum_serves_prefix_then_everything():
    src = source()
    d = src["difficulty"]
    s = Sampler(src, S.Curriculum(pacing.linear(100, c0=0.1)), 32, device="cpu")
    b = s.sample()
    assert d[b.indices.numpy()].max() <= np.quantile(d, 0.1) + 1e-6
    assert s.stats()["fraction"] == pytest.approx(0.1 + 0.9 / 100)
    s.step = 200
    late = torch.cat([s.sample().indices for _ in range(20)])
    assert d[late.numpy()].max() > 0.9
    anti = Sampler(src, S.Curriculum(pacing.anti(pacing.linear(100, c0=0.1))), 32, device="cpu")
    assert d[anti.sample().indices.numpy()].min() >= np.quantile(d, 0.9) - 1e-6


def test_curriculum_bad_callable_pacing_raises():
    s = Sampler(source(), S.Curriculum(lambda t: 1.5), 16, device="cpu")
    with pytest.raises(ValueError):
        s.sample()
    assert s.step == 0


def test_ucb_formula_and_preference():
    src = source(groups=4)
    strat = S.UCB(group="cluster", c=1.0, tau=0.1, window=300)
    s = Sampler(src, strat, 64, device="cpu")
    p0 = s.stats()["group_probabilities"]
    assert torch.allclose(p0, torch.full((4,), 0.25, dtype=torch.float64))
    g = src["cluster"]
    for _ in range(10):
        b = s.sample()
        adv = torch.where(torch.as_tensor(g[b.indices.numpy()] == 2), 1.0, 0.0)
        s.update(b.indices, advantage=adv)
    p = s.stats()["group_probabilities"]
    assert int(p.argmax()) == 2 and float(p.sum()) == pytest.approx(1.0)
    # recompute DUMP's formula by hand
    n = strat.count.to(torch.float64)
    mu = strat.wsum / strat.fill.clamp(min=1)
    score = mu + torch.sqrt(2 * math.log(n.sum() + 1) / (n + 1))
    assert torch.allclose(p, torch.softmax(score / 0.1, 0))
    served = torch.cat([s.sample().indices for _ in range(20)])
    share = float((torch.as_tensor(g[served.numpy()]) == 2).double().mean())
    assert share == pytest.approx(float(p[2]), abs=0.08)


def test_ucb_window_keeps_last_w():
    src = {"cluster": np.zeros(100, dtype=np.int64)}
    strat = S.UCB(window=5)
    s = Sampler(src, strat, 4, device="cpu")
    s.update(torch.arange(8), advantage=torch.arange(8.0))  # last 5: 3..7
    assert float(strat.wsum[0]) == pytest.approx(3 + 4 + 5 + 6 + 7)
    s.update(torch.arange(2), advantage=torch.tensor([10.0, 20.0]))  # window: 5, 6, 7, 10, 20
    assert float(strat.wsum[0]) == pytest.approx(48)
    assert int(strat.count[0]) == 10


@settings(max_examples=25, deadline=None)
@given(
    vals=st.lists(st.floats(-5, 5), min_size=1, max_size=200),
    groups=st.integers(1, 6),
    tau=st.floats(0.01, 5),
)
def test_ucb_probabilities_sum_to_one(vals, groups, tau):
    src = {"cluster": np.arange(60) % groups}
    s = Sampler(src, S.UCB(tau=tau, window=7), 8, device="cpu")
    idx = torch.arange(len(vals)) % 60
    s.update(idx, advantage=torch.tensor(vals))
    p = s.stats()["group_probabilities"]
    assert p.numel() == groups and float(p.sum()) == pytest.approx(1.0)
    assert bool((p >= 0).all())


def test_unknown_group_column_and_bad_construction():
    with pytest.raises(ValueError, match="nope"):
        Sampler(source(), S.UCB(group="nope"), 8, device="cpu")
    with pytest.raises(ValueError):
        Sampler(source(), S.Curriculum(pacing.linear(10), difficulty="missing"), 8, device="cpu")
    with pytest.raises(ValueError):
        Sampler({"a": np.zeros(3), "b": np.zeros(4)}, S.Uniform(), 1, device="cpu")
    with pytest.raises(ValueError):
        S.UCB(reward="nonsense")
    with pytest.raises(ValueError):
        S.UCB(tau=0)
    with pytest.raises(ValueError):
        S.Prioritized(alpha=-1)


def test_angle_window_moves_with_accuracy():
    src = source()
    strat = S.AngleWindow(sigma=100.0, n=500.0)
    s = Sampler(src, strat, 32, device="cpu")
    first = s.sample().indices
    order = np.argsort(-src["angle_concentration"], kind="stable")
    rank = np.empty(N, dtype=np.int64)
    rank[order] = np.arange(N)
    assert rank[first.numpy()].mean() < 200
    s.update(first, correct=torch.ones(32))
    assert strat.mu == pytest.approx(500 * math.tanh(2 * 0.5))
    s.update(first, correct=torch.zeros(32))  # clamped at adj_min = 0: never moves back
    assert strat.mu == pytest.approx(500 * math.tanh(1.0))
    later = s.sample().indices
    assert abs(rank[later.numpy()].mean() - strat.mu) < 100


def test_prioritized_prefers_high_priority_and_weights():
    s = Sampler({"x": np.zeros(1000)}, S.Prioritized(alpha=1.0, beta=1.0), 50, device="cpu")
    hot = torch.arange(10)
    s.update(torch.arange(1000), loss=torch.full((1000,), 0.01))
    s.update(hot, loss=torch.full((10,), 100.0))
    b = s.sample()
    assert set(hot.tolist()) <= set(b.indices.tolist())
    assert b.weights is not None and float(b.weights.max()) == pytest.approx(1.0)
    assert float(b.weights[torch.isin(b.indices, hot)].max()) < 0.01


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 300),
    ups=st.lists(st.tuples(st.integers(0, 299), st.floats(0, 10)), max_size=50),
    us=st.lists(st.floats(0, 0.999999), min_size=1, max_size=20),
)
def test_sumtree_matches_cumsum(n, ups, us):
    leaves = torch.ones(n, dtype=torch.float32)
    t = SumTree(leaves.clone())
    for i, v in ups:
        if i < n:
            leaves[i] = v
            t.set(torch.tensor([i]), torch.tensor([v]))
    assert t.total == pytest.approx(float(leaves.sum()), rel=1e-5)
    if float(leaves.sum()) <= 0:
        return
    cdf = torch.cumsum(leaves.double(), 0)
    u = torch.tensor(us, dtype=torch.float64) * float(cdf[-1])
    got = t.find(u)
    want = torch.searchsorted(cdf, u, right=True).clamp(max=n - 1)
    # equal except for float32 round-off exactly at a boundary
    for g, w, x in zip(got.tolist(), want.tolist(), u.tolist(), strict=True):
        assert g == w or abs(float(cdf[min(g, w)]) - x) < 1e-3
        assert float(leaves[g]) > 0


def test_dropout_drops_mastered_until_revision():
    s = Sampler({"x": np.zeros(200)}, S.ProgressiveDropout(revision_step=10), 20, device="cpu")
    s.update(torch.arange(100), correct=torch.ones(100))
    assert s.stats()["active"] == 100
    for _ in range(9):
        assert int(s.sample().indices.min()) >= 100
    late = torch.cat([s.sample().indices for _ in range(5)])
    assert int(late.min()) < 100 and s.stats()["revision"]


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises_and_leaves_state(name):
    s = Sampler(source(), make(name), 32, device="cpu")
    run(s, 3)
    before = s.state_dict()
    idx = torch.arange(8)
    good = feedback(0, idx)
    bad_cases = [
        dict(indices=idx, loss=torch.tensor([float("nan")] * 8)),
        dict(indices=idx, advantage=torch.tensor([float("inf")] * 8), loss=good["loss"]),
        dict(indices=idx, **{**good, "reward": torch.ones(7)}),
        dict(indices=torch.tensor([0, 1, N]), loss=torch.ones(3)),
        dict(indices=torch.tensor([-1]), loss=torch.ones(1)),
        dict(indices=torch.tensor([0.5]), loss=torch.ones(1)),
        dict(indices=torch.zeros(2, 2, dtype=torch.int64), loss=torch.ones(4)),
        dict(indices=idx),
    ]
    for case in bad_cases:
        with pytest.raises(ValueError):
            s.update(**case)
        assert states_equal(before, s.state_dict())
    s.update(idx, **good)  # a good update still works afterwards


def test_missing_signal_for_strategy():
    s = Sampler(source(), S.UCB(reward="abs_advantage"), 8, device="cpu")
    before = s.state_dict()
    with pytest.raises(ValueError, match="advantage"):
        s.update(torch.arange(4), loss=torch.ones(4))
    assert states_equal(before, s.state_dict())


def test_validation_feedback_never_reaches_strategy():
    s = Sampler(source(), make("ucb"), 16, device="cpu")
    before = s.strategy.state_dict()
    s.update(torch.arange(16), advantage=torch.ones(16), validation=True)
    assert states_equal(before, s.strategy.state_dict())
    st_ = s.stats()
    assert st_["validation"]["count"] == 16 and st_["feedback"]["count"] == 0


@pytest.mark.parametrize("name", NAMES)
def test_exact_resume_fresh_object(name):
    ref = Sampler(source(), make(name), 32, seed=7, device="cpu")
    full = run(ref, 20)
    a = Sampler(source(), make(name), 32, seed=7, device="cpu")
    run(a, 9)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    b = Sampler(source(), make(name), 32, seed=7, device="cpu")
    b.load_state_dict(state)
    rest = run(b, 11)
    for x, y in zip(full[9:], rest, strict=True):
        assert torch.equal(x, y)
    assert states_equal(ref.state_dict(), b.state_dict())
    sa, sb = ref.stats(), b.stats()
    for k, v in sa.items():
        assert states_equal(v, sb[k]), k


def test_load_state_mismatch_raises_unchanged():
    a = Sampler(source(), make("ucb"), 32, seed=1, device="cpu")
    run(a, 2)
    before = a.state_dict()
    other = Sampler(source(), make("ucb"), 32, seed=2, device="cpu").state_dict()
    with pytest.raises(ValueError):
        a.load_state_dict(other)
    broken = dict(before)
    broken["strategy_state"] = {**before["strategy_state"], "buf": torch.zeros(3, 3)}
    with pytest.raises(ValueError):
        a.load_state_dict(broken)
    with pytest.raises(ValueError):
        a.load_state_dict({"format": "x"})
    assert states_equal(before, a.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_numpy_fast_path_matches_the_torch_code(name, monkeypatch):
    """On CPU the hot paths run in numpy; the torch code (what CUDA runs) must give the same
    batches and the same state, so it is run here on CPU for comparison."""
    import sampler.draw

    fast = Sampler(source(), make(name), batch_size=64, seed=5, device="cpu")
    fast_batches = run(fast, 25)
    monkeypatch.setattr(sampler.draw, "NUMPY_ON_CPU", False)
    slow = Sampler(source(), make(name), batch_size=64, seed=5, device="cpu")
    slow_batches = run(slow, 25)
    for a, b in zip(fast_batches, slow_batches, strict=True):
        assert torch.equal(a, b)
    # bit-equal states: every sum has a fixed association (draw.pairwise_sum)
    assert states_equal(fast.state_dict(), slow.state_dict())


@pytest.mark.parametrize("descending", [False, True])
def test_build_sort_matches_the_numpy_radix_order(descending):
    """The torch build sort gives exactly the order of the previous two-pass numpy radix sort
    (stable, NaN last, -0.0 before +0.0, infinities in place)."""
    from sampler.strategies.base import radix_argsort, rank_order

    rs = np.random.default_rng(3)
    v = rs.standard_normal(200_000).astype(np.float32)
    v[rs.random(v.size) < 0.1] = np.nan
    v[:500], v[500:700], v[700:720], v[720:740] = 0.0, -0.0, np.inf, -np.inf
    v[1000:3000] = v[3000:5000]  # ties: stability matters
    got = rank_order(v, torch.device("cpu"), descending).numpy()
    x = -v if descending else v
    i = x.view(np.int32)
    key = np.where(i < 0, i ^ np.int32(0x7FFFFFFF), i)
    key[np.isnan(x)] = np.iinfo(np.int32).max
    want = radix_argsort(key.view(np.uint32) ^ np.uint32(0x80000000))
    assert np.array_equal(got, want)
    finite = v[got][: int((~np.isnan(v)).sum())]
    assert not np.isnan(finite).any() and np.isnan(v[got][finite.size :]).all()
