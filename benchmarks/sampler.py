"""Sampler benchmark: batches of 1024 per second and updates per second at N = 1e6, 1e7, 1e8,
every strategy with its one-time build, side by side with torch.multinomial /
WeightedRandomSampler (N <= 2^24) and numpy choice(p=), and with a previous implementation.

    .venv/bin/python benchmarks/sampler.py [--sizes 1e6,1e7,1e8] [--threads 1] [--out FILE]
        [--only Prioritized,UCB(K=1000)] [--baseline DIR]

``--baseline DIR``: DIR holds a previous ``sampler`` package (e.g. ``git archive REV sampler |
tar -x -C DIR``); it is imported as ``sampler_base`` and every strategy row gets the previous
implementation's build / draw / update times on the same source and the ratio new / previous.

Times are medians over ``--repeats`` calls after a warm-up, with the fastest call in parentheses
(the min is what the code costs when the machine does not preempt it). The load average is
printed at the start and at the end (the cores may be shared).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sampler as new_pkg  # noqa: E402


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
    "Uniform": lambda st, pc: st.Uniform(),
    "Curriculum(root)": lambda st, pc: st.Curriculum(pc.root(1000)),
    "UCB(K=1000)": lambda st, pc: st.UCB(),
    "AngleWindow": lambda st, pc: st.AngleWindow(),
    "Prioritized": lambda st, pc: st.Prioritized(),
    "ProgressiveDropout": lambda st, pc: st.ProgressiveDropout(revision_step=10**9),
}


def load_baseline(folder: str):
    """The ``sampler`` package under ``folder``, imported as ``sampler_base``."""
    init = os.path.join(folder, "sampler", "__init__.py")
    spec = importlib.util.spec_from_file_location(
        "sampler_base", init, submodule_search_locations=[os.path.dirname(init)]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sampler_base"] = mod
    spec.loader.exec_module(mod)
    return mod


def measure(pkg, name: str, src: dict, B: int, dev: str, repeats: int) -> dict:
    """Build, draw, update and draw+update times of strategy ``name`` from package ``pkg``."""
    t0 = time.perf_counter()
    s = pkg.Sampler(src, STRATS[name](pkg.strategies, pkg.pacing), B, device=dev)
    out = {"build": time.perf_counter() - t0, "bytes": s.bytes_per_item}
    if name.startswith("Curriculum"):
        s.step = 500  # half-way through the schedule
    out["draw"] = timeit(s.sample, repeats)
    out["draw_min"] = MINS[-1]
    idx = s.sample().indices
    g = torch.Generator().manual_seed(0)
    fb = {"loss": torch.rand(B, generator=g), "advantage": torch.randn(B, generator=g)}
    fb["correct"] = (fb["loss"] > 2.0).float()  # nothing dropped: dropout keeps its set
    fb = {k: v.to(dev) for k, v in fb.items()}
    out["update"] = timeit(lambda s=s: s.update(idx, **fb), repeats)
    out["update_min"] = MINS[-1]
    out["both"] = timeit(lambda s=s: s.update(s.sample().indices, **fb), repeats)
    out["both_min"] = MINS[-1]
    return out


def source_for(name: str, n: int) -> dict:
    rs = np.random.default_rng(0)
    if name.startswith("Curriculum"):
        return {"difficulty": rs.random(n, dtype=np.float32)}
    if name.startswith("UCB"):
        return {"cluster": rs.integers(0, 1000, n, dtype=np.int32)}
    if name.startswith("Angle"):
        return {"angle_concentration": rs.random(n, dtype=np.float32)}
    return {"x": np.zeros(n, dtype=np.uint8)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1e6,1e7,1e8")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default=None, help="comma-separated strategy names to run")
    ap.add_argument("--baseline", default=None, help="folder holding a previous sampler/")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    base = load_baseline(args.baseline) if args.baseline else None
    B = args.batch
    rows = []
    info = machine()  # load average taken at the start
    print(info, flush=True)
    for n in [int(float(x)) for x in args.sizes.split(",")]:
        for name in STRATS:
            if args.only and name not in args.only.split(","):
                continue
            src = source_for(name, n)
            m = measure(new_pkg, name, src, B, dev, args.repeats)
            cmp = ""
            if base is not None:
                b = measure(base, name, src, B, dev, args.repeats)
                cmp = (
                    f"build {m['build']:.2f} / {b['build']:.2f} s = {m['build'] / b['build']:.2f}x; "
                    f"draw {m['draw'] * 1e3:.3f} / {b['draw'] * 1e3:.3f} ms = "
                    f"{m['draw'] / b['draw']:.2f}x; update {m['update'] * 1e3:.3f} / "
                    f"{b['update'] * 1e3:.3f} ms = {m['update'] / b['update']:.2f}x"
                )
            rows.append(
                (
                    n,
                    name,
                    f"{m['draw'] * 1e3:.3f} ({m['draw_min'] * 1e3:.3f})",
                    f"{m['update'] * 1e3:.3f} ({m['update_min'] * 1e3:.3f})",
                    f"{m['both'] * 1e3:.3f} ({m['both_min'] * 1e3:.3f})",
                    f"{m['build']:.2f} s, {m['bytes']} B/item",
                    cmp,
                )
            )
            print(rows[-1], flush=True)
            del src
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
            rows.append((n, "torch.multinomial", mt, "", rw, "re-weighted", ""))
            rows.append((n, "WeightedRandomSampler", wt, "", "", "", ""))
            del w
        else:
            rows.append((n, "torch.multinomial", "refuses > 2^24 categories", "", "", "", ""))
        if n <= 10**7:
            p = np.random.default_rng(1).random(n)
            p /= p.sum()
            g = np.random.default_rng(2)
            nt = fmt(timeit(lambda p=p, g=g, n=n: g.choice(n, B, p=p), 3, warmup=1))
            rows.append((n, "numpy choice(p=)", nt, "", "", "", ""))
            del p
        else:
            rows.append((n, "numpy choice(p=)", "skipped (O(N) per call)", "", "", "", ""))
        print(rows[-1], flush=True)
    head = (
        "| N | method | draw 1024, ms: median (min) | update 1024 | draw+update | "
        "build, bytes | new / previous (medians) |\n|---|---|---|---|---|---|---|\n"
    )
    table = head + "\n".join(
        "| " + " | ".join(f"{r[0]:.0e}" if i == 0 else str(r[i]) for i in range(7)) + " |"
        for r in rows
    )
    end = f"- load average at the end: {os.getloadavg()}"
    print(table + "\n" + end)
    if args.out:
        with open(args.out, "w") as f:
            f.write(info + "\n" + end + "\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
