"""sampler.select / sampler.reducible_loss: RHO-LOSS reducible-loss selection."""

from __future__ import annotations

import math

import pytest
import torch

import sampler
from sampler import Sampler, strategies
from sampler.selection import kept_count


def test_select_keeps_the_top_fraction_by_reducible_loss():
    cand = torch.tensor([10, 11, 12, 13, 14, 15, 16, 17])
    loss = torch.tensor([5.0, 1.0, 4.0, 9.0, 3.0, 2.0, 8.0, 0.5])
    irr = torch.tensor([1.0, 0.0, 3.9, 8.9, 0.0, 2.5, 1.0, 0.0])
    # reducible: 4, 1, .1, .1, 3, -.5, 7, .5 -> top 3: 16 (7), 10 (4), 14 (3)
    sel = sampler.select(cand, loss, irr, keep=3 / 8)
    assert sel.indices.tolist() == [16, 10, 14]
    assert sel.positions.tolist() == [6, 0, 4]
    assert sel.reducible.tolist() == pytest.approx([7.0, 4.0, 3.0])
    # the largest *loss* (13: 9.0) is skipped: its irreducible loss says it is noise
    assert 13 not in sel.indices.tolist()
    # a count instead of a fraction; keep=1.0 keeps everything, sorted
    assert sampler.select(cand, loss, irr, keep=2).indices.tolist() == [16, 10]
    assert sorted(sampler.select(cand, loss, irr, keep=1.0).indices.tolist()) == cand.tolist()


def test_select_is_deterministic_and_breaks_ties_by_position():
    cand = torch.arange(100, 110)
    loss = torch.ones(10)
    sel = sampler.select(cand, loss, torch.zeros(10), keep=0.3)
    assert sel.indices.tolist() == [100, 101, 102]
    g = torch.Generator().manual_seed(0)
    loss = torch.rand(1000, generator=g, dtype=torch.float64)
    irr = torch.rand(1000, generator=g, dtype=torch.float64)
    a = sampler.select(torch.arange(1000), loss, irr, keep=0.1)
    b = sampler.select(torch.arange(1000), loss, irr, keep=0.1)
    assert torch.equal(a.indices, b.indices) and len(a.indices) == 100
    red = loss - irr
    assert a.reducible.min() >= torch.topk(red, 100).values.min()


def test_kept_count_rounds_and_keeps_at_least_one():
    assert kept_count(128, 0.25) == 32
    assert kept_count(10, 0.01) == 1
    assert kept_count(10, 1.0) == 10
    assert kept_count(10, 10) == 10


@pytest.mark.parametrize(
    "cand, loss, irr, keep",
    [
        (torch.tensor([], dtype=torch.long), torch.tensor([]), torch.tensor([]), 0.5),  # empty
        (torch.arange(4), torch.ones(3), torch.zeros(4), 0.5),  # loss length
        (torch.arange(4), torch.ones(4), torch.zeros(3), 0.5),  # irreducible length
        (torch.arange(4).float(), torch.ones(4), torch.zeros(4), 0.5),  # float ids
        (torch.arange(4).view(2, 2), torch.ones(4), torch.zeros(4), 0.5),  # 2-D ids
        (torch.arange(4), torch.tensor([1.0, math.nan, 1, 1]), torch.zeros(4), 0.5),  # NaN
        (torch.arange(4), torch.ones(4), torch.tensor([0, math.inf, 0, 0]), 0.5),  # inf
        (torch.arange(4), torch.ones(4), torch.zeros(4), 0.0),  # keep 0
        (torch.arange(4), torch.ones(4), torch.zeros(4), 1.5),  # keep > 1
        (torch.arange(4), torch.ones(4), torch.zeros(4), 5),  # count > n
        (torch.arange(4), torch.ones(4), torch.zeros(4), 0),  # count 0
        (torch.arange(4), torch.ones(4), torch.zeros(4), True),  # bool
        (torch.arange(4), torch.ones(4, dtype=torch.bool), torch.zeros(4), 0.5),  # bool loss
    ],
)
def test_select_rejects_bad_input(cand, loss, irr, keep):
    with pytest.raises(ValueError):
        sampler.select(cand, loss, irr, keep=keep)


def test_reducible_loss_clamps_for_prioritized_and_checks_input():
    red = sampler.reducible_loss(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 2.0]))
    assert red.tolist() == [2.0, 0.0]
    assert red.dtype == torch.float64
    raw = sampler.reducible_loss([3.0, 1.0], [1.0, 2.0], floor=None)
    assert raw.tolist() == [2.0, -1.0]
    with pytest.raises(ValueError):
        sampler.reducible_loss(torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError):
        sampler.reducible_loss(torch.tensor([math.nan]), torch.ones(1))


def test_cheap_form_through_prioritized_prefers_learnable_items():
    # 60 items: 0-9 learnable (loss well above irreducible), 10-34 noise (loss == irreducible),
    # 35-59 learnt (loss near 0, irreducible 0); once fed back, draws go to 0-9
    n = 60
    s = Sampler(
        {"difficulty": torch.zeros(n).numpy()},
        strategies.Prioritized(signal="loss", alpha=1.0, beta=0.0),
        batch_size=6,
        seed=0,
        device="cpu",
    )
    loss = torch.cat([torch.full((10,), 4.0), torch.full((25,), 7.0), torch.full((25,), 0.01)])
    irr = torch.cat([torch.full((10,), 1.0), torch.full((25,), 7.2), torch.zeros(25)])
    s.update(torch.arange(n), loss=sampler.reducible_loss(loss, irr))
    served = torch.cat([next(s).indices for _ in range(20)])
    assert (served < 10).float().mean() > 0.95
