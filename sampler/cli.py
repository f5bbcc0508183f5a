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

from .preview import PACINGS, STRATEGIES, mean_sparkline, sparkline


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "preview",
        help="simulate the sampler's schedule over a dataset (no training)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "out", metavar="OUT", help="scored dataset: a directory, or a gs:// / s3:// prefix"
    )
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
    from shards.cli import add_cache_arguments  # light: argparse only

    add_cache_arguments(p)
    p.set_defaults(func=run)


def simulate(args: argparse.Namespace) -> list[dict[str, float]]:
    """The preview rows for the parsed command line (see :func:`sampler.preview.simulate`)."""
    from .preview import make_strategy
    from .preview import simulate as run_simulation

    strategy = make_strategy(
        args.strategy,
        steps=args.steps,
        pacing=args.pacing,
        pacing_steps=args.pacing_steps,
        c0=args.c0,
        group=args.group,
    )
    from shards import ShardSet
    from shards.storage_options import StorageOptions

    source = ShardSet.open(
        args.out,
        cache_dir=getattr(args, "cache_dir", None),
        cache_limit=getattr(args, "cache_limit", None),
        storage=StorageOptions.from_args(args),
    )
    return run_simulation(
        source, strategy, steps=args.steps, batch_size=args.batch_size, seed=args.seed
    )


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
    print("mean difficulty served: " + mean_sparkline(rows))
    if args.png:
        from .preview import preview_figure

        try:
            fig = preview_figure(rows, f"gradum preview: {args.strategy} ({args.pacing})")
        except ImportError:
            print(
                "gradum preview: --png needs matplotlib (pip install 'gradum[plot]')",
                file=sys.stderr,
            )
            return 2
        fig.savefig(args.png)
        print(f"plot written to {args.png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradum")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


__all__ = ["register", "run", "main", "simulate", "sparkline", "STRATEGIES", "PACINGS"]
