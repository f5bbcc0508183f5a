"""The K-ary sum tree behind Prioritized and ProgressiveDropout: draw frequencies, duplicate ids
in updates, and that the tree stays a pure function of its leaves (exact resume)."""

import numpy as np
import pytest
import torch

from sampler import Sampler
from sampler import strategies as S
from sampler.sumtree import SumTree


def _chi2(counts: np.ndarray, expected: np.ndarray) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("n, fanout, top", [(700, 4, 4), (5000, 32, 64), (40000, 32, 16384)])
def test_sumtree_iid_frequencies_match_weights(n, fanout, top):
    g = torch.Generator().manual_seed(11)
    w = torch.rand(n, generator=g) ** 3
    w[::7] = 0.0  # zero-weight items are never drawn
    t = SumTree(w.clone(), fanout=fanout, top=top)
    assert len(t.levels) >= (3 if top < 100 else 2)
    draws = 200_000
    u = torch.rand(draws, generator=g, dtype=torch.float64) * t.total
    got = t.find(u)
    counts = np.bincount(got.numpy(), minlength=n).astype(np.float64)
    assert counts[::7].sum() == 0
    p = w.double().numpy() / float(w.double().sum())
    pos = p > 0
    # pool sparse cells so every expected count is >= 5 (chi-square validity)
    order = np.argsort(p[pos])
    e, c = draws * p[pos][order], counts[pos][order]
    cells = np.cumsum(e) // 5
    e = np.bincount(cells.astype(int), weights=e)
    c = np.bincount(cells.astype(int), weights=c)
    c, e = c[e > 0], e[e > 0]
    df = len(e) - 1
    assert _chi2(c, e) < df + 5 * np.sqrt(2 * df)


def test_prioritized_draw_frequencies_match_p_alpha():
    n, alpha, B, steps = 512, 0.7, 8, 2500
    s = Sampler({"x": np.zeros(n)}, S.Prioritized(alpha=alpha, eps=1e-6), B, seed=5, device="cpu")
    loss = torch.linspace(0.5, 3.0, n, dtype=torch.float64)
    s.update(torch.arange(n), loss=loss)
    counts = np.zeros(n)
    for _ in range(steps):
        counts += np.bincount(s.sample().indices.numpy(), minlength=n)
    p = ((loss + 1e-6) ** alpha).numpy()
    p /= p.sum()
    expected = B * steps * p
    df = n - 1
    assert _chi2(counts, expected) < df + 5 * np.sqrt(2 * df)
    # and the priorities really follow p^alpha: high-loss items are served more
    assert counts[-64:].sum() > 1.5 * counts[:64].sum()


def test_sumtree_duplicate_ids_last_wins():
    n = 3000
    t = SumTree(torch.ones(n), fanout=32, top=32)
    idx = torch.tensor([5, 2999, 5, 7, 5, 2999, 1000])
    val = torch.tensor([9.0, 1.0, 3.0, 4.0, 2.0, 0.0, 6.0])
    t.set(idx, val)
    want = torch.ones(n)
    for i, v in zip(idx.tolist(), val.tolist(), strict=True):
        want[i] = v  # sequential semantics: the last write wins
    assert torch.equal(t.leaves(), want)
    assert t.total == float(want.double().sum())
    ref = SumTree(want.clone(), fanout=32, top=32)
    for a, b in zip(t.levels, ref.levels, strict=True):
        assert torch.equal(a, b)  # every ancestor equals the sum of its children


def test_prioritized_update_duplicate_ids():
    n = 1000
    s = Sampler({"x": np.zeros(n)}, S.Prioritized(alpha=1.0, eps=1e-6, ema=0.5), 16, device="cpu")
    s.update(torch.tensor([3, 3, 9, 3]), loss=torch.tensor([10.0, 20.0, 30.0, 4.0]))
    leaves = s.strategy.tree.leaves()
    # ema from the initial priority 1: only the last feedback for id 3 counts, applied once
    assert float(leaves[3]) == pytest.approx(0.5 * 1.0 + 0.5 * (4.0 + 1e-6), rel=1e-6)
    assert float(leaves[9]) == pytest.approx(0.5 * 1.0 + 0.5 * (30.0 + 1e-6), rel=1e-6)
    assert s.strategy.tree.total == pytest.approx(float(leaves.double().sum()), rel=1e-12)


def test_sumtree_is_pure_function_of_leaves_after_updates():
    """Many random updates (with duplicates) leave every level bit-identical to a tree rebuilt
    from the leaves: the state needs only the leaves for an exact resume."""
    g = torch.Generator().manual_seed(3)
    n = 100_000
    t = SumTree(torch.rand(n, generator=g), fanout=32, top=64)
    assert len(t.levels) == 4
    for _ in range(50):
        idx = torch.randint(0, n, (300,), generator=g)
        t.set(idx, torch.rand(300, generator=g) * 5)
    ref = SumTree(t.leaves().clone(), fanout=32, top=64)
    for a, b in zip(t.levels, ref.levels, strict=True):
        assert torch.equal(a, b)
    u = torch.rand(4096, generator=g, dtype=torch.float64) * t.total
    assert torch.equal(t.find(u), ref.find(u))


def test_sumtree_int_counts_and_bad_args():
    t = SumTree(torch.ones(100, dtype=torch.int32), fanout=8, top=8)
    t.set(torch.arange(0, 100, 2), torch.zeros(50, dtype=torch.int32))
    assert t.total == 50 and isinstance(t.total, int)
    k = torch.arange(50)
    assert torch.equal(t.find(k), torch.arange(1, 100, 2))  # the k-th active item
    with pytest.raises(ValueError):
        SumTree(torch.ones(4), fanout=1)
    with pytest.raises(ValueError):
        SumTree(torch.ones(0))
