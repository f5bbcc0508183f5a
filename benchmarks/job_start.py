"""Workers started early (pipelines/job/warm_workers.py) against Beam's own start, side by side:
the same small job run through ``python -m pipelines.score`` with ``GRADUM_WARM_WORKERS=1``
and ``=0`` in turn, where start-up is most of the wall time.

Usage: .venv/bin/python benchmarks/job_start.py [--n 10000] [--workers 2] [--rounds 8]

Each round runs both sides once, alternating which goes first; prints each wall time and the
medians, and the median of the per-round differences.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline as P  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--workdir", default="/tmp/gradum-job-start")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    P.corpus_file(args.n, work)
    walls: dict[str, list[float]] = {"early": [], "beam": []}
    extra = [f"--signals={P.CPU_SIGNALS}", "--no-progress"]
    for r in range(args.rounds):
        sides = ["early", "beam"] if r % 2 == 0 else ["beam", "early"]
        for side in sides:
            os.environ["GRADUM_WARM_WORKERS"] = "1" if side == "early" else "0"
            walls[side].append(P.job(args.n, args.workers, work, extra)["wall"])
        print(f"round {r + 1}: early {walls['early'][-1]:.2f} s, beam {walls['beam'][-1]:.2f} s")
    diffs = [b - e for e, b in zip(walls["early"], walls["beam"], strict=True)]
    print(
        f"median wall: workers started early {statistics.median(walls['early']):.2f} s, "
        f"by Beam {statistics.median(walls['beam']):.2f} s; median saving "
        f"{statistics.median(diffs):.2f} s ({', '.join(f'{d:.2f}' for d in diffs)})"
    )


if __name__ == "__main__":
    main()
