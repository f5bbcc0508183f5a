"""The CUDA code is the tested code: batches, weights and whole states bit-equal to the CPU run
for every strategy (NaN sources, oversized batches and 2 ranks included).

Targets:
- ``cuda``: the sampler on the GPU against the CPU sampler. Skipped, with the reason in the
  report header and the skip line, where CUDA is absent.
- ``cpu-torch``: the stand-in that runs everywhere: the torch code the GPU runs, on the CPU
  (``draw.NUMPY_ON_CPU = False``), against the CPU fast path.
"""

import copy
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from _sampler_util import NAMES, feedback, make, source, states_equal

import sampler.draw
from sampler import Sampler, pacing
from sampler import strategies as S

CUDA = torch.cuda.is_available()
NO_CUDA = "CUDA not available on this machine: the GPU half of tests/test_sampler_gpu.py is skipped"
TARGETS = [
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason=NO_CUDA)),
    "cpu-torch",
]

CASES = {
    **{name: (lambda name=name: make(name)) for name in NAMES},
    "curriculum_anti_nan": lambda: S.Curriculum(pacing.anti(pacing.linear(30, c0=0.1))),
    "angle_exclude_nan": lambda: S.AngleWindow(sigma=300.0, n=400.0, nan="exclude"),
    "ucb_tiny_tau": lambda: S.UCB(group="cluster", window=7, tau=1e-4),
}


def _source(case: str, n: int = 4096) -> dict:
    src = source(n=n)
    if case.endswith("nan"):
        rs = np.random.default_rng(9)
        for k in ("difficulty", "angle_concentration"):
            src[k][rs.random(n) < 0.1] = np.nan
    return src


def _stream(case: str, device: str, steps: int = 25, n: int = 4096, batch: int = 64):
    s = Sampler(_source(case, n), CASES[case](), batch, seed=5, device=device)
    out = []
    for _ in range(steps):
        b = s.sample()
        out.append((b.indices.cpu(), None if b.weights is None else b.weights.cpu()))
        fb = feedback(b.step, b.indices.cpu())
        s.update(b.indices, **{k: v.to(device) for k, v in fb.items()})
    return out, s.state_dict(), s.stats()


def _run_target(target: str, monkeypatch, case: str, **kw):
    if target == "cpu-torch":
        monkeypatch.setattr(sampler.draw, "NUMPY_ON_CPU", False)
        return _stream(case, "cpu", **kw)
    return _stream(case, "cuda", **kw)


def _assert_same(a, b) -> None:
    (ba, sa, ta), (bb, sb, tb) = a, b
    for (ia, wa), (ib, wb) in zip(ba, bb, strict=True):
        assert torch.equal(ia, ib)
        assert (wa is None) == (wb is None)
        if wa is not None:
            assert torch.equal(wa, wb)
    assert states_equal(sa, sb)
    for k, v in ta.items():
        v2 = tb[k]
        if isinstance(v, torch.Tensor):
            assert torch.equal(v.cpu(), v2.cpu()), k
        else:
            assert states_equal(v, v2), k


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CASES))
def test_batches_and_state_bit_equal_to_cpu(target, case, monkeypatch):
    ref = _stream(case, "cpu")
    _assert_same(_run_target(target, monkeypatch, case), ref)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", ["uniform", "ucb", "prioritized", "dropout", "angle"])
def test_source_smaller_than_batch_bit_equal(target, case, monkeypatch):
    ref = _stream(case, "cpu", steps=4, n=40, batch=100)
    _assert_same(_run_target(target, monkeypatch, case, steps=4, n=40, batch=100), ref)


@pytest.mark.parametrize("target", TARGETS)
def test_snapshot_on_device(target, monkeypatch):
    """Save, train 20 more steps, load the held state into a new sampler: the same stream."""
    dev = "cuda" if target == "cuda" else "cpu"
    if target == "cpu-torch":
        monkeypatch.setattr(sampler.draw, "NUMPY_ON_CPU", False)

    def steps(s: Sampler, k: int) -> list[torch.Tensor]:
        out = []
        for _ in range(k):
            b = s.sample()
            out.append(b.indices.cpu())
            s.update(b.indices, **{k: v.to(dev) for k, v in feedback(b.step, b.indices).items()})
        return out

    for case in NAMES:
        s = Sampler(_source(case), CASES[case](), 32, seed=2, device=dev)
        steps(s, 3)
        held = s.state_dict()
        frozen = copy.deepcopy(held)
        after = steps(s, 20)
        assert states_equal(held, frozen), case
        assert all(
            t.device.type == "cpu" for t in held["strategy_state"].values() if torch.is_tensor(t)
        )
        fresh = Sampler(_source(case), CASES[case](), 32, seed=2, device=dev)
        fresh.load_state_dict(held)
        for x, y in zip(after, steps(fresh, 20), strict=True):
            assert torch.equal(x, y), case


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str, device: str, numpy_on_cpu: bool) -> None:
    import torch.distributed as dist

    sampler.draw.NUMPY_ON_CPU = numpy_on_cpu
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    result = {}
    for case in CASES:
        # every rank holds the state (share="none") so the states can be compared across ranks
        s = Sampler(_source(case), CASES[case](), 16, seed=5, device=device, share="none")
        batches = []
        for _ in range(5):
            b = s.sample()
            batches.append(b.global_indices.cpu())
            fb = feedback(b.step, b.indices.cpu())
            fb["loss"] = fb["loss"] + rank  # ranks give different feedback
            s.update(b.indices, **{k: v.to(device) for k, v in fb.items()})
        result[case] = {"batches": torch.stack(batches), "state": s.state_dict()}
    torch.save(result, os.path.join(out, f"{device}-{int(numpy_on_cpu)}-rank{rank}.pt"))
    dist.destroy_process_group()


def _two_ranks(tmp_path, device: str, numpy_on_cpu: bool) -> list[dict]:
    port = _free_port()
    args = (2, port, str(tmp_path), device, numpy_on_cpu)
    mp.spawn(_worker, args=args, nprocs=2, join=True)
    tag = f"{device}-{int(numpy_on_cpu)}"
    return [torch.load(tmp_path / f"{tag}-rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", TARGETS)
def test_two_ranks_bit_equal_to_cpu(target, tmp_path):
    ref = _two_ranks(tmp_path, "cpu", True)
    dev = "cuda" if target == "cuda" else "cpu"
    got = _two_ranks(tmp_path, dev, False)
    for r in range(2):
        for case in CASES:
            assert torch.equal(got[r][case]["batches"], ref[r][case]["batches"]), case
            assert states_equal(got[r][case]["state"], ref[r][case]["state"]), case
            for step in got[r][case]["batches"]:
                assert step.unique().numel() == 32, case  # no id twice in a global batch
    for case in CASES:
        assert states_equal(got[0][case]["state"], got[1][case]["state"]), case
