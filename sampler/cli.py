"""``gradum preview OUT --strategy ...``: simulate N steps of the sampler over a scored dataset,
without training, and show the difficulty served over time (terminal table + sparkline, and a
matplotlib plot with ``--png``), so the schedule is visible before any GPU hour is spent.

Feedback for adaptive strategies is simulated from the difficulty column (a model that gets
easy items right: loss = difficulty, correct = difficulty < progress), and is labelled so.
Registering the command imports nothing heavy; torch / shards / matplotlib load on use.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

STRATEGIES = ("uniform", "curriculum", "ucb", "angle", "prioritized", "dropout")
PACINGS = ("linear", "root", "geometric", "step", "anti", "cyclical", "interleaved")
SPARK = "▁▂▃▄▅▆▇█"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "preview",
        help="simulate the sampler's schedule over a dataset (no training)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("out", metavar="OUT", help="scored dataset directory (shards + manifest)")
    p.add_argument("--strategy", choices=STRATEGIES, default="curriculum")
    p.add_argument("--pacing", choices=PACINGS, default="root")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--pacing-steps", type=int, default=None, help="T of the pacing (default: steps)"
    )
    p.add_argument("--c0", type=float, default=0.05)
    p.add_argument("--group", default="cluster")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, default=20, help="rows of the terminal table")
    p.add_argument("--png", default=None, help="write a plot of difficulty served to FILE")
    p.set_defaults(func=run)


def _pacing(name: str, T: int, c0: float):
    from . import pacing as P

    if name == "linear":
        return P.linear(T, c0)
    if name == "root":
        return P.root(T, 2.0, c0)
    if name == "geometric":
        return P.geometric(T, c0)
    if name == "step":
        return P.step([T // 4, T // 2, 3 * T // 4], [0.25, 0.5, 0.75, 1.0])
    if name == "anti":
        return P.anti(P.root(T, 2.0, c0))
    if name == "cyclical":
        return P.cyclical(max(T // 2, 1), low=0.25)
    return P.interleaved(max(T // 4, 1), c0)


def _strategy(args: argparse.Namespace):
    from . import strategies as S

    T = args.pacing_steps or args.steps
    if args.strategy == "uniform":
        return S.Uniform()
    if args.strategy == "curriculum":
        return S.Curriculum(_pacing(args.pacing, T, args.c0))
    if args.strategy == "ucb":
        return S.UCB(group=args.group, reward="loss")
    if args.strategy == "angle":
        return S.AngleWindow()
    if args.strategy == "prioritized":
        return S.Prioritized()
    return S.ProgressiveDropout(revision_step=int(0.8 * args.steps))


def sparkline(values: list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    out = []
    for v in values:
        if v != v:
            out.append(" ")
            continue
        x = 0.0 if hi <= lo else (min(max(v, lo), hi) - lo) / (hi - lo)
        out.append(SPARK[min(len(SPARK) - 1, int(x * len(SPARK)))])
    return "".join(out)


def simulate(args: argparse.Namespace) -> list[dict[str, float]]:
    import numpy as np
    import torch

    from .core import Sampler

    s = Sampler(args.out, _strategy(args), args.batch_size, seed=args.seed)
    if s.difficulty is None:
        raise ValueError(f"{args.out}: the dataset has no 'difficulty' column")
    d = s.difficulty
    rows = []
    for t in range(args.steps):
        b = s.sample()
        served = d[b.indices].to(torch.float64)
        progress = (t + 1) / args.steps
        if args.strategy in ("ucb", "angle", "prioritized", "dropout"):
            s.update(
                b.indices,
                loss=served,
                reward=(served < progress).double(),
                correct=(served < progress).double(),
                advantage=served - progress,
            )
        st = s.stats()
        rows.append(
            {
                "step": t,
                "mean": float(served.mean()),
                "p10": float(torch.quantile(served, 0.1)),
                "p90": float(torch.quantile(served, 0.9)),
                "coverage": st["coverage"],
                "entropy": float(st.get("entropy", float("nan"))),
            }
        )
    del np
    return rows


def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.batch_size < 1:
        print("gradum preview: --steps and --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        rows = simulate(args)
    except (ValueError, OSError) as e:
        print(f"gradum preview: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # shards errors (missing / incomplete dataset) and the like
        print(f"gradum preview: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    k = max(1, math.ceil(len(rows) / max(1, args.rows)))
    print(
        f"strategy={args.strategy} pacing={args.pacing} steps={args.steps} batch={args.batch_size}"
    )
    print(f"{'step':>8} {'mean diff':>10} {'p10':>7} {'p90':>7} {'coverage':>9} {'entropy':>8}")
    for i in range(0, len(rows), k):
        r = rows[i]
        print(
            f"{r['step']:>8d} {r['mean']:>10.3f} {r['p10']:>7.3f} {r['p90']:>7.3f} "
            f"{r['coverage']:>9.3f} {r['entropy']:>8.2f}"
        )
    means = [r["mean"] for r in rows]
    width = 60
    buckets = [
        means[int(i * len(means) / width) : int((i + 1) * len(means) / width) or None]
        for i in range(min(width, len(means)))
    ]
    print("mean difficulty served: " + sparkline([sum(b) / len(b) for b in buckets if b]))
    if args.png:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print(
                "gradum preview: --png needs matplotlib (pip install 'gradum[plot]')",
                file=sys.stderr,
            )
            return 2
        steps = [r["step"] for r in rows]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.fill_between(
            steps, [r["p10"] for r in rows], [r["p90"] for r in rows], alpha=0.3, label="p10-p90"
        )
        ax.plot(steps, means, label="mean difficulty served")
        ax.plot(steps, [r["coverage"] for r in rows], label="coverage", linestyle="--")
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
        ax.set_title(f"gradum preview: {args.strategy} ({args.pacing})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png)
        plt.close(fig)
        print(f"plot written to {args.png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradum")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))
