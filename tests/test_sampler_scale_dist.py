"""Cross-process resume, 2^25 items, two-rank gloo, DataLoader staleness."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from _sampler_util import NAMES, feedback, make, run, source, states_equal

from sampler import Sampler, pacing
from sampler import strategies as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_exact_resume_in_new_process(tmp_path):
    """State saved at step 6 in this process; a fresh interpreter loads it with
    torch.load(weights_only=True) and continues; its batches equal the uninterrupted run."""
    expected = {}
    for name in NAMES:
        a = Sampler(source(), make(name), 32, seed=11, device="cpu")
        full = run(a, 10)
        b = Sampler(source(), make(name), 32, seed=11, device="cpu")
        run(b, 6)
        torch.save(b.state_dict(), tmp_path / f"{name}.pt")
        expected[name] = (torch.stack(full[6:]), a.state_dict())
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, "tests")!r}]
        from _sampler_util import NAMES, make, run, source
        from sampler import Sampler
        for name in NAMES:
            s = Sampler(source(), make(name), 32, seed=11, device="cpu")
            s.load_state_dict(torch.load({str(tmp_path)!r} + f"/{{name}}.pt", weights_only=True))
            rest = torch.stack(run(s, 4))
            torch.save({{"batches": rest, "state": s.state_dict()}},
                       {str(tmp_path)!r} + f"/{{name}}.out.pt")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    for name in NAMES:
        got = torch.load(tmp_path / f"{name}.out.pt", weights_only=True)
        assert torch.equal(got["batches"], expected[name][0]), name
        assert states_equal(got["state"], expected[name][1]), name


@pytest.mark.timeout(120)
def test_two_to_the_25_items():
    n = 2**25
    rs = np.random.default_rng(0)
    diff = rs.random(n, dtype=np.float32)
    src = {"difficulty": diff}
    s = Sampler(src, S.Curriculum(pacing.linear(10, c0=0.5)), 1024, device="cpu")
    s.step = 20  # full data eligible
    hi = torch.cat([s.sample().indices for _ in range(4)])
    assert int(hi.max()) >= 2**24
    assert all(s.sample().indices.unique().numel() == 1024 for _ in range(2))
    early = Sampler(src, S.Curriculum(pacing.linear(10, c0=0.5)), 1024, device="cpu").sample()
    assert float(diff[early.indices.numpy()].max()) <= 0.5 + 1e-3
    del s, src, early

    groups = (np.arange(n, dtype=np.int64) % 1000).astype(np.int32)
    u = Sampler({"cluster": groups}, S.UCB(), 1024, device="cpu")
    del groups
    assert u.bytes_per_item <= 16
    b = u.sample()
    assert b.indices.unique().numel() == 1024 and int(b.indices.max()) >= 2**24
    u.update(b.indices, advantage=torch.ones(1024))
    assert float(u.stats()["group_probabilities"].sum()) == pytest.approx(1.0)
    del u

    p = Sampler({"x": np.zeros(n, dtype=np.uint8)}, S.Prioritized(alpha=1.0), 1024, device="cpu")
    top = torch.tensor([n - 1, n - 2, 3])
    p.update(torch.arange(n - 4096, n), loss=torch.full((4096,), 1e-6))
    p.update(top, loss=torch.full((3,), 1e6))
    b = p.sample()
    assert set(top.tolist()) <= set(b.indices.tolist())
    assert int(b.indices.max()) == n - 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    result = {}
    for share, name in [(sh, n) for sh in ("none", "host") for n in SPLIT]:
        s = Sampler(source(), make(name), 16, seed=5, device="cpu", share=share)
        batches = []
        for _ in range(6):
            b = s.sample()
            batches.append(torch.stack([b.indices, b.global_indices[rank * 16 : (rank + 1) * 16]]))
            fb = feedback(b.step, b.indices)
            fb["loss"] = fb["loss"] + rank  # ranks give different feedback
            fb["reward"] = (fb["reward"] + rank) % 2
            s.update(b.indices, **fb)
        gathered = [torch.empty(6, 2, 16, dtype=torch.int64) for _ in range(world)]
        dist.all_gather(gathered, torch.stack(batches))
        before = s.state_dict()
        try:
            bad = torch.tensor([float("nan")]) if rank == 1 else torch.ones(1)
            s.update(torch.tensor([0]), loss=bad, advantage=bad, correct=bad)
            raised = False
        except ValueError:
            raised = True
        result[f"{share}/{name}"] = {
            "batches": torch.stack(gathered),
            "state": s.state_dict(),
            "raised": raised,
            "unchanged": states_equal(before, s.state_dict()),
        }
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


SPLIT = ("curriculum", "ucb", "prioritized", "angle", "exp3", "passrate", "passrate_group")


@pytest.mark.timeout(120)
def test_two_ranks_gloo(tmp_path):
    """share="none": every rank holds the same state. share="host" (one copy per host): the
    same batches, the leader's state equal to it, the other rank's state partial (counters)."""
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    r = [torch.load(tmp_path / f"rank{k}.pt", weights_only=True) for k in range(world)]
    for name in SPLIT:
        full, host = r[0][f"none/{name}"], r[0][f"host/{name}"]
        assert torch.equal(full["batches"], host["batches"]), name
        assert states_equal(full["state"], host["state"]), name
        part = r[1][f"host/{name}"]["state"]
        assert part["seen"].numel() == 0 and part["strategy_state"] == {}, name
        for key in ("step", "updates", "served", "feedback", "difficulty_sum"):
            assert states_equal(part[key], full["state"][key]), (name, key)
        assert r[1][f"host/{name}"]["raised"] and r[1][f"host/{name}"]["unchanged"], name
    r = [{k[5:]: v for k, v in rk.items() if k.startswith("none/")} for rk in r]
    for name in r[0]:
        b = r[0][name]["batches"]  # [rank, step, 2, 16]
        for step in range(6):
            glob = torch.cat([b[k, step, 0] for k in range(world)])
            assert glob.unique().numel() == 32, (name, step)  # no id twice in a global batch
            for k in range(world):
                assert torch.equal(b[k, step, 0], b[k, step, 1])  # slice of the same global batch
        assert states_equal(r[0][name]["state"], r[1][name]["state"]), name
        assert r[0][name]["raised"] and r[1][name]["raised"], name  # bad input on rank 1 only
        assert r[0][name]["unchanged"] and r[1][name]["unchanged"], name
        assert r[0][name]["state"]["feedback"]["count"] == 6 * 32


class _Echo(torch.utils.data.Dataset):
    def __len__(self):
        return 4096

    def __getitem__(self, i):
        return i


@pytest.mark.timeout(120)
def test_dataloader_workers_staleness():
    from sampler.torch import BatchSampler

    s = Sampler(source(), make("ucb"), 16, seed=2, device="cpu")
    bs = BatchSampler(s, num_steps=12)
    loader = torch.utils.data.DataLoader(
        _Echo(), batch_sampler=bs, num_workers=2, prefetch_factor=2
    )
    stale = BatchSampler.staleness(loader)
    assert stale == 4
    for k, batch in enumerate(loader):
        step, updates_at_draw = bs.draw_log[k]
        assert step == k
        assert k - updates_at_draw <= stale  # every batch reflects all feedback up to k - S
        assert batch.unique().numel() == 16
        s.update(batch, advantage=torch.sin(batch.double()))
    assert s.updates == 12 and len(bs.draw_log) == 12
