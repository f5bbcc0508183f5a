"""Ranks that cannot collide, and one copy of the per-item state per host: gloo processes
simulating two hosts of two ranks each (``GRADUM_HOST_ID``)."""

import os
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from _sampler_util import feedback, make, source, states_equal

from sampler import Sampler
from sampler.hf import check_world_size
from sampler.torch import BatchSampler

WORLD = 4
NAMES = ("curriculum", "ucb", "prioritized")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ["GRADUM_HOST_ID"] = "host-a" if rank < 2 else "host-b"
    # built before the process group exists, as examples/hf_trainer.py used to do
    early = {name: Sampler(source(), make(name), 8, seed=4, device="cpu") for name in NAMES}
    drew = Sampler(source(), make("uniform"), 8, device="cpu")
    drew.sample()  # drew at world size 1: must not silently go on at world size 4
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    result = {}
    for name, s in early.items():
        batches = []
        for _ in range(4):
            b = s.sample()
            batches.append(b.global_indices.clone())
            assert torch.equal(b.indices, b.global_indices[rank * 8 : (rank + 1) * 8])
            s.update(b.indices, **{k: v + rank for k, v in feedback(b.step, b.indices).items()})
        result[name] = {
            "batches": torch.stack(batches),
            "state": s.state_dict(),
            "holds": s.holds_state,
            "device_bytes": s.device_bytes(),
            "world": s.world_size,
        }
    try:
        drew.sample()
        result["error"] = ""
    except RuntimeError as e:
        result["error"] = str(e)
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_ranks_rebind_share_one_state_per_host_and_never_collide(tmp_path):
    mp.spawn(_worker, args=(_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r = [torch.load(tmp_path / f"rank{k}.pt", weights_only=True) for k in range(WORLD)]
    for k in range(WORLD):
        assert "built for world size 1 rank 0" in r[k]["error"], r[k]["error"]
        assert "init_process_group" in r[k]["error"]
    for name in NAMES:
        ref = r[0][name]
        assert all(r[k][name]["world"] == WORLD for k in range(WORLD))  # rebound at draw 1
        for k in range(WORLD):  # every rank saw the same global batches
            assert torch.equal(r[k][name]["batches"], ref["batches"]), (name, k)
        for step in ref["batches"]:
            assert step.unique().numel() == 8 * WORLD, name  # no id twice: no collision
        # one copy of the state per host: the host leaders (ranks 0 and 2) hold it
        assert [r[k][name]["holds"] for k in range(WORLD)] == [True, False, True, False]
        assert r[1][name]["device_bytes"] == r[3][name]["device_bytes"] == 0
        assert ref["device_bytes"] > 4096  # at least one byte per item
        assert states_equal(r[0][name]["state"], r[2][name]["state"]), name
        assert ref["state"]["feedback"]["count"] == 4 * 8 * WORLD
        assert r[1][name]["state"]["seen"].numel() == 0


def test_make_trainer_checks_the_trainers_world_size():
    s = Sampler(source(), make("uniform"), 8, device="cpu")
    check_world_size(s, SimpleNamespace(world_size=1))
    with pytest.raises(ValueError, match="build the Sampler after TrainingArguments"):
        check_world_size(s, SimpleNamespace(world_size=2))


def test_draw_log_is_bounded():
    s = Sampler(source(), make("uniform"), 4, device="cpu")
    bs = BatchSampler(s, num_steps=300, log_window=50)
    for k, _ in enumerate(bs):
        s.update(torch.tensor([k % 4096]), loss=torch.ones(1))
    assert len(bs.draw_log) == 50 and bs.draw_log[-1][0] == 299 and bs.draw_log[0][0] == 250
    with pytest.raises(ValueError):
        BatchSampler(s, num_steps=3, log_window=0)
