"""state_dict() is a snapshot for every strategy; mismatching states and feedback are refused
with a clear ValueError and leave the sampler unchanged."""

import copy

import numpy as np
import pytest
import torch
from _sampler_util import NAMES, N, feedback, make, run, source, states_equal

from sampler import Sampler


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_is_a_snapshot(name):
    s = Sampler(source(), make(name), 32, seed=4, device="cpu")
    run(s, 5)
    held = s.state_dict()
    frozen = copy.deepcopy(held)
    after = run(s, 20)  # train on: must not change the state already returned
    assert states_equal(held, frozen)
    fresh = Sampler(source(), make(name), 32, seed=4, device="cpu")
    fresh.load_state_dict(held)
    for x, y in zip(after, run(fresh, 20), strict=True):
        assert torch.equal(x, y)
    assert states_equal(fresh.state_dict(), s.state_dict())
    # and loading does not alias the dict it was given
    assert states_equal(held, frozen)


def _other_strategy(name: str) -> str:
    return "prioritized" if name != "prioritized" else "uniform"


@pytest.mark.parametrize("name", NAMES)
def test_foreign_states_refused_unchanged(name):
    s = Sampler(source(), make(name), 32, seed=1, device="cpu")
    run(s, 3)
    before = s.state_dict()
    smaller = Sampler(source(n=N // 2), make(name), 32, seed=1, device="cpu")
    run(smaller, 2)
    other = Sampler(source(), make(_other_strategy(name)), 32, seed=1, device="cpu")
    missing = copy.deepcopy(before)
    missing["seen"] = torch.zeros(N - 1, dtype=torch.uint8)
    cases = [smaller.state_dict(), other.state_dict(), missing, {"format": "x"}, None]
    if before["strategy_state"]:
        gutted = copy.deepcopy(before)
        key = next(iter(gutted["strategy_state"]))
        gutted["strategy_state"][key] = torch.zeros(3)
        cases.append(gutted)
    for bad in cases:
        with pytest.raises(ValueError):
            s.load_state_dict(bad)
        assert states_equal(before, s.state_dict())
    run(s, 1)  # still works


@pytest.mark.parametrize("name", NAMES)
def test_feedback_mismatch_and_foreign_indices(name):
    s = Sampler(source(), make(name), 32, device="cpu")
    run(s, 2)
    before = s.state_dict()
    idx = torch.arange(8)
    fb = feedback(0, idx)
    cases = [
        {"indices": idx, **{k: v[:5] for k, v in fb.items()}},  # shorter feedback
        {"indices": idx, **{k: torch.cat([v, v]) for k, v in fb.items()}},  # longer
        {"indices": torch.arange(N, N + 8), **fb},  # ids of a larger source
        {"indices": idx, "loss": fb["loss"].view(2, 4)},  # 2-D feedback
    ]
    for case in cases:
        with pytest.raises(ValueError):
            s.update(**case)
        assert states_equal(before, s.state_dict())


def test_ucb_state_with_other_window_refused():
    from sampler import strategies as S

    a = Sampler(source(), S.UCB(window=20), 16, device="cpu")
    b = Sampler(source(), S.UCB(window=21), 16, device="cpu")
    run(b, 2)
    before = a.state_dict()
    with pytest.raises(ValueError, match="window"):
        a.load_state_dict(b.state_dict())
    assert states_equal(before, a.state_dict())
    bad = copy.deepcopy(before)
    bad["strategy_state"]["ptr"] = torch.full_like(bad["strategy_state"]["ptr"], 99)
    with pytest.raises(ValueError):
        a.load_state_dict(bad)
    assert states_equal(before, a.state_dict())
    assert np.isfinite(a.stats()["entropy"])
