"""Sampler benchmark: batches of 1024 per second and updates per second at N = 1e6, 1e7, 1e8,
side by side with torch.multinomial / WeightedRandomSampler (N <= 2^24) and numpy choice(p=).

    .venv/bin/python benchmarks/sampler.py [--sizes 1e6,1e7,1e8] [--threads 1] [--out FILE]
        [--only Prioritized,UCB(K=1000)] [--all-big]

Times are medians over ``--repeats`` calls after a warm-up, with the fastest call in parentheses
(the min is what the code costs when the machine does not preempt it). At 1e8 only the strategies that need
no O(N log N) build sort (Uniform, Prioritized) run by default (the sort of 1e8 keys takes minutes
on a small shared CPU); ``--all-big`` runs all of them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sampler import Sampler, pacing  # noqa: E402
from sampler import strategies as S  # noqa: E402


def timeit(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    MINS.append(min(ts))
    return statistics.median(ts)


MINS: list[float] = []  # the fastest call of each timeit (robust to a busy machine)


def fmt(median: float) -> str:
    """'median (min)' in ms for the timeit call just made."""
    return f"{median * 1e3:.3f} ({MINS[-1] * 1e3:.3f})"


def machine() -> str:
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"- nproc: {nproc}; CPU: {cpu}; GPU: {gpu}\n"
        f"- Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}\n"
        f"- torch threads: {torch.get_num_threads()}; load average at start: {os.getloadavg()}"
    )


STRATS = {
    "Uniform": lambda: S.Uniform(),
    "Curriculum(root)": lambda: S.Curriculum(pacing.root(1000)),
    "UCB(K=1000)": lambda: S.UCB(),
    "AngleWindow": lambda: S.AngleWindow(),
    "Prioritized": lambda: S.Prioritized(),
}
NO_SORT = {"Uniform", "Prioritized"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1e6,1e7,1e8")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--all-big", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated strategy names to run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    B = args.batch
    rows = []
    info = machine()  # load average taken at the start
    print(info, flush=True)
    for n in [int(float(x)) for x in args.sizes.split(",")]:
        rs = np.random.default_rng(0)
        src = {"x": np.zeros(n, dtype=np.uint8)}
        for name, make in STRATS.items():
            if args.only and name not in args.only.split(","):
                continue
            if n >= 10**8 and name not in NO_SORT and not args.all_big:
                rows.append((n, name, "skipped (build sort too slow here)", "", "", ""))
                continue
            if name.startswith("Curriculum"):
                src = {"difficulty": rs.random(n, dtype=np.float32)}
            elif name.startswith("UCB"):
                src = {"cluster": rs.integers(0, 1000, n, dtype=np.int32)}
            elif name.startswith("Angle"):
                src = {"angle_concentration": rs.random(n, dtype=np.float32)}
            else:
                src = {"x": np.zeros(1, dtype=np.uint8).repeat(n)}
            t0 = time.perf_counter()
            s = Sampler(src, make(), B, device=dev)
            build = time.perf_counter() - t0
            if name.startswith("Curriculum"):
                s.step = 500  # half-way through the schedule
            draw = fmt(timeit(s.sample, args.repeats))
            idx = s.sample().indices
            fb = {"loss": torch.rand(B, device=dev), "advantage": torch.randn(B, device=dev)}
            fb["correct"] = (fb["loss"] > 0.5).float()
            upd = fmt(timeit(lambda s=s, idx=idx, fb=fb: s.update(idx, **fb), args.repeats))
            both = fmt(timeit(lambda s=s, fb=fb: s.update(s.sample().indices, **fb), args.repeats))
            rows.append((n, name, draw, upd, both, f"{build:.1f} s, {s.bytes_per_item} B/item"))
            print(rows[-1], flush=True)
            del s, src
        # baselines
        if n <= 2**24:
            w = torch.rand(n, dtype=torch.float32, device=dev)
            mt = fmt(timeit(lambda w=w: torch.multinomial(w, B, replacement=True), 10))
            upd_idx = torch.randint(0, n, (B,), device=dev)

            def reweighted(w=w, upd_idx=upd_idx):
                w[upd_idx] = torch.rand(B, device=dev)
                torch.multinomial(w, B, replacement=True)

            rw = fmt(timeit(reweighted, 10))
            wrs = torch.utils.data.WeightedRandomSampler(w, B, replacement=True)
            wt = fmt(timeit(lambda wrs=wrs: list(iter(wrs)), 10))
            rows.append((n, "torch.multinomial", mt, "", rw, "re-weighted"))
            rows.append((n, "WeightedRandomSampler", wt, "", "", ""))
            del w
        else:
            rows.append((n, "torch.multinomial", "refuses > 2^24 categories", "", "", ""))
        if n <= 10**7:
            p = np.random.default_rng(1).random(n)
            p /= p.sum()
            g = np.random.default_rng(2)
            nt = fmt(timeit(lambda p=p, g=g, n=n: g.choice(n, B, p=p), 3, warmup=1))
            rows.append((n, "numpy choice(p=)", nt, "", "", ""))
            del p
        else:
            rows.append((n, "numpy choice(p=)", "skipped (O(N) per call)", "", "", ""))
        print(rows[-1], flush=True)
    head = "| N | method | draw 1024, ms: median (min) | update 1024 | draw+update | notes |\n"
    head += "|---|---|---|---|---|---|\n"
    table = head + "\n".join(
        "| " + " | ".join(f"{r[0]:.0e}" if i == 0 else str(r[i]) for i in range(6)) + " |"
        for r in rows
    )
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(info + "\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
