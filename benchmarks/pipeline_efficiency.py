"""The job against the bare single-process loop at one corpus size, and 1 vs 2 workers: the
efficiency figures of issue 21 (2 workers >= 1.5x the bare loop; 1 -> 2 workers >= 1.8x).

Usage: .venv/bin/python benchmarks/pipeline_efficiency.py [--n 1000000] [--workers 2,1]
       [--rounds 1] [--no-ceiling] [--workdir DIR]

The bare loop and the job are those of ``benchmarks/pipeline.py`` (same JSONL, same five CPU
scorers), run one after the other; prints one JSON line per run and the ratios. Each round
runs every side once, in the same order, so a slow spell of a shared machine falls on all of
them; with ``--rounds`` above 1 the median of each ratio is printed too. Before each side the
corpus is read once, untimed, so every side starts with it in the page cache (a job writes
about twice the corpus, which can push it out; a cold read cost the bare loop 15 s once).

*Scorer CPU*: the seconds the scoring thread spent inside the scorers, summed over the
processes (the bare loop's thread, the ceiling's shares, the job's workers from their
per-part log lines): a ratio above 1 means the same scorers ran slower per record there (the
machine's spell, or something sharing the worker); *wall less its busiest worker's scorer
CPU* is the job's own time (reading, staging, finishing, start-up).

The *ceiling* (on unless ``--no-ceiling``): the bare loop split over as many concurrent
processes as the job has workers, each on its share of the lines (line i goes to process
i mod w), started together once their scorers are built; its wall is the slowest process's
loop. It is what w processes of this machine can do with no framework at all (cores that
share caches or a host core run each process slower than one alone), so job / ceiling is the
part of the gap that is the job's own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline as P  # noqa: E402


def warm(path: Path) -> None:
    """Read ``path`` once (untimed) so the next side finds it in the page cache."""
    with open(path, "rb") as fh:
        while fh.read(16 << 20):
            pass


def bare_share(n: int, work: Path, k: int, of: int) -> dict:
    """One process's share of the bare loop (lines k, k + of, ...), timed from a start signal
    on stdin (so every share starts together once its scorers are built)."""

    def ready() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    run = P.bare_loop(n, P.CPU_SIGNALS.split(","), work, share=(k, of), ready=ready)
    return {"share": k, "rows": run["rows"], "wall": run["wall"], "score_cpu": run["score_cpu"]}


def ceiling(n: int, work: Path, procs: int) -> dict:
    """The bare loop over ``procs`` concurrent processes (see the module docstring)."""
    cmd = [sys.executable, __file__, "--n", str(n), "--workdir", str(work), "--share"]
    children = [
        subprocess.Popen(
            [*cmd, f"{k}/{procs}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for k in range(procs)
    ]
    for c in children:
        if c.stdout.readline().strip() != "ready":
            raise SystemExit("a share of the bare loop failed to start")
    for c in children:
        c.stdin.write("go\n")
        c.stdin.flush()
    shares = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
    wall = max(s["wall"] for s in shares)
    return {
        "procs": procs,
        "wall": wall,
        "shares": [round(s["wall"], 2) for s in shares],
        "score_cpu": sum(s["score_cpu"] for s in shares),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--workers", default="2,1")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument("--workdir", default="/tmp/gradum-efficiency")
    ap.add_argument("--share", default=None, help=argparse.SUPPRESS)  # K/OF: one ceiling share
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.share:
        k, of = (int(x) for x in args.share.split("/"))
        print(json.dumps(bare_share(args.n, work, k, of)), flush=True)
        return
    workers = [int(x) for x in args.workers.split(",") if x]
    ratios: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        ratios.setdefault(name, []).append(value)
        print(f"  {name}: {value:.3f}", flush=True)

    for r in range(args.rounds):
        print(f"round {r + 1}", flush=True)
        src = P.corpus_file(args.n, work)
        warm(src)
        bare = P.bare_loop(args.n, P.CPU_SIGNALS.split(","), work)
        print("bare", json.dumps(bare), flush=True)
        top = None
        if not args.no_ceiling and max(workers, default=1) > 1:
            warm(src)
            top = ceiling(args.n, work, max(workers))
            print("ceiling", json.dumps(top), flush=True)
            note(f"ceiling ({top['procs']} processes) x bare", bare["wall"] / top["wall"])
            note("scorer CPU, ceiling / bare", top["score_cpu"] / bare["score_cpu"])
        walls = {}
        for w in workers:
            warm(src)
            run = P.job(args.n, w, work, [f"--signals={P.CPU_SIGNALS}", "--no-progress"])
            walls[w] = run["wall"]
            shown = {k: run[k] for k in ("wall", "inner", "cpu", "docs_s", "load", "score_cpu")}
            print("job", w, json.dumps(shown), flush=True)
            note(f"job {w} worker(s) x bare", bare["wall"] / run["wall"])
            if run["score_cpu"]:
                spent = run["score_cpu"].values()
                note(f"scorer CPU, job {w} / bare", sum(spent) / bare["score_cpu"])
                note(
                    f"job {w}: wall less its busiest worker's scorer CPU s",
                    run["inner"] - max(spent),
                )
            if top is not None and w == top["procs"]:
                note(f"job {w} workers / ceiling", top["wall"] / run["wall"])
        if 1 in walls and 2 in walls:
            note("2 workers / 1 worker", walls[1] / walls[2])
    if args.rounds > 1:
        print("medians over", args.rounds, "rounds:")
        for name, values in ratios.items():
            print(
                f"  {name}: {statistics.median(values):.3f}  ({', '.join(f'{v:.3f}' for v in values)})"
            )


if __name__ == "__main__":
    main()
