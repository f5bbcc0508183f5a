"""Sampler memory across ranks: gloo processes on CPU, each building a Sampler over the same
local indexed dataset of ``--items`` rows, for 1, 2, 4 and 8 ranks, with ``share="host"`` (one
copy of the per-item state per host) and ``share="none"`` (one per rank).

Per rank (after opening the dataset and reading one index footer, which loads
pyarrow.parquet once): the host memory the build added (RSS after the build minus RSS before, all from
/proc/self/status), its peak while building (VmHWM after a reset through /proc/self/clear_refs,
minus RSS before), and the tensors it holds for the sampler (``Sampler.device_bytes``: what a
GPU rank would hold on its device). Totals are summed over the ranks.

    .venv/bin/python benchmarks/serving_memory.py --items 10000000 --ranks 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sampler import Sampler, pacing  # noqa: E402
from sampler.strategies import UCB, Curriculum  # noqa: E402
from shards import ShardSet, ShardWriter, build_manifest, write_manifest  # noqa: E402

MAKE = {
    "Curriculum": lambda: Curriculum(pacing.root(1000, c0=0.1)),
    "UCB": lambda: UCB(group="cluster", reward="loss"),
}


def status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def write(path: Path, n: int, chunk: int = 1_000_000) -> None:
    rs = np.random.default_rng(0)
    with ShardWriter(path, max_rows=chunk) as w:
        for a in range(0, n, chunk):
            m = min(chunk, n - a)
            ids = pc.binary_join_element_wise(
                "d", pa.array(np.arange(a, a + m)).cast(pa.string()), ""
            )
            w.write(
                pa.table(
                    {
                        "id": ids,
                        "text": pa.array(np.zeros(m, np.int8)).cast(pa.large_string()),
                        "cluster": rs.integers(0, 1000, m).astype(np.int32),
                        "difficulty": rs.random(m).astype(np.float32),
                    }
                )
            )
    write_manifest(path, build_manifest(w.shards))


def _worker(rank: int, world: int, port: int, path: str, case: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    strategy, share = case.split("/")
    ss = ShardSet.open(path)
    _ = ss.index_columns  # one-time: import pyarrow.parquet, read one footer (not per item)
    dist.barrier()
    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    s = Sampler(ss, MAKE[strategy](), 64, device="cpu", share=share, prefetch=0)
    peak = status("VmHWM") - before
    after = status("VmRSS") - before
    b = s.sample()
    s.update(b.indices, loss=torch.ones(b.indices.numel(), dtype=torch.float64))
    row = torch.tensor([after, peak, s.device_bytes()], dtype=torch.int64)
    rows = [torch.empty_like(row) for _ in range(world)]
    dist.all_gather(rows, row)
    if rank == 0:
        Path(out).write_text(json.dumps([r.tolist() for r in rows]))
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=10_000_000)
    ap.add_argument("--ranks", default="1,2,4,8")
    ap.add_argument("--cases", default="Curriculum/host,UCB/host,Curriculum/none,UCB/none")
    ap.add_argument("--data", default=None, help="dataset directory (written if absent)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    n = args.items
    data = Path(args.data or Path(tempfile.gettempdir()) / f"gradum-mem-{n}")
    if not (data / "manifest.json").exists():
        write(data, n)
    lines = [
        "| strategy | share | ranks | host total, B/item (sum of ranks) | vs 1 rank "
        "| build peak, B/item (max rank) | held tensors per rank, B/item (leader / other) |",
        "|---|---|---|---|---|---|---|",
    ]
    first: dict[str, float] = {}
    for case in args.cases.split(","):
        for world in [int(x) for x in args.ranks.split(",")]:
            with socket.socket() as sk:
                sk.bind(("127.0.0.1", 0))
                port = sk.getsockname()[1]
            out = Path(tempfile.mkstemp(suffix=".json")[1])
            mp.spawn(_worker, args=(world, port, str(data), case, str(out)), nprocs=world)
            rows = json.loads(out.read_text())
            total = sum(r[0] for r in rows) / n
            first.setdefault(case, total)
            peak = max(r[1] for r in rows) / n
            held = [r[2] / n for r in rows]
            other = f"{held[1]:.2f}" if world > 1 else "-"
            strategy, share = case.split("/")
            lines.append(
                f"| {strategy} | {share} | {world} | {total:.2f} | {total / first[case]:.2f} | "
                f"{peak:.2f} | {held[0]:.2f} / {other} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
