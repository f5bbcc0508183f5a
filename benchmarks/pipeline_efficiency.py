"""The job against the bare single-process loop at one corpus size, and 1 vs 2 workers: the
efficiency figures of issue 21 (2 workers >= 1.5x the bare loop; 1 -> 2 workers >= 1.8x).

Usage: .venv/bin/python benchmarks/pipeline_efficiency.py [--n 1000000] [--workers 2,1]
       [--workdir DIR]

The bare loop and the job are those of ``benchmarks/pipeline.py`` (same JSONL, same five CPU
scorers), run one after the other; prints one JSON line per run and the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline as P  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--workers", default="2,1")
    ap.add_argument("--workdir", default="/tmp/gradum-efficiency")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    bare = P.bare_loop(args.n, P.CPU_SIGNALS.split(","), work)
    print("bare", json.dumps(bare), flush=True)
    walls = {}
    for w in (int(x) for x in args.workers.split(",") if x):
        r = P.job(args.n, w, work, [f"--signals={P.CPU_SIGNALS}", "--no-progress"])
        walls[w] = r["wall"]
        shown = {k: r[k] for k in ("wall", "inner", "cpu", "docs_s", "load")}
        print("job", w, json.dumps(shown), "x bare", round(r["docs_s"] / bare["docs_s"], 3))
    if 1 in walls and 2 in walls:
        print("2 workers / 1 worker:", round(walls[1] / walls[2], 3))


if __name__ == "__main__":
    main()
