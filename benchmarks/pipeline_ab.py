"""The same job from two checkouts, side by side: how much a change moves the job's wall and
its own time (wall less its busiest worker's scorer CPU), alternating which runs first.

Usage: .venv/bin/python benchmarks/pipeline_ab.py --before DIR [--after .] [--n 1000000]
       [--workers 2] [--rounds 3]

``--before`` is another checkout of gradum (``git worktree add /tmp/before COMMIT``); each
side runs ``python -m pipelines.score`` from its own directory (so its own ``pipelines``),
on the corpus of ``benchmarks/pipeline.py`` with the five CPU signals, after one untimed read
of the corpus (page cache). Prints each run and the medians.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline as P  # noqa: E402
import pipeline_efficiency as E  # noqa: E402


def run(root: Path, n: int, workers: int, work: Path, tag: str) -> tuple[float, float]:
    """``(wall, busiest worker's scorer CPU)`` of one job run from checkout ``root``."""
    out = work / f"ab-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    corpus = P.corpus_file(n, work)
    cmd = [
        sys.executable, "-m", "pipelines.score", str(corpus), "--output", str(out),
        "--runner=DirectRunner", "--direct_running_mode=multi_processing",
        f"--direct_num_workers={workers}", f"--signals={P.CPU_SIGNALS}", "--no-progress",
    ]  # fmt: skip
    E.warm(corpus)
    began = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{tag}: the job failed:\n{done.stderr[-2000:]}")
    if not re.search(r"records read", done.stderr):
        raise SystemExit(f"{tag}: no summary line:\n{done.stderr[-2000:]}")
    busiest = max(P.worker_scorer_cpu(out / "gradum.log").values(), default=0.0)
    shutil.rmtree(out, ignore_errors=True)
    return wall, busiest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default=str(P.ROOT))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/gradum-efficiency")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sides = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    for r in range(args.rounds):
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for tag in order:
            wall, busiest = run(sides[tag], args.n, args.workers, work, tag)
            runs[tag].append((wall, busiest))
            print(
                f"{tag}: wall {wall:.1f} s, busiest worker's scorer CPU {busiest:.1f} s, "
                f"own {wall - busiest:.1f} s",
                flush=True,
            )
    for tag, rs in runs.items():
        print(
            f"{tag} ({sides[tag]}): median wall {statistics.median(w for w, _ in rs):.1f} s, "
            f"own {statistics.median(w - b for w, b in rs):.1f} s"
        )


if __name__ == "__main__":
    main()
