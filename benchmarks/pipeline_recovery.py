"""Failing fast and resuming, timed side by side with a clean run of the same corpus.

Usage: .venv/bin/python benchmarks/pipeline_recovery.py [--n 200000] [--resume-n 1000000]
       [--kill-at 0.6] [--workers 2] [--workdir DIR] [--out FILE.json]

(a) fail fast: ``n`` records of ``builtin:graded`` as JSONL, clean, against the same file with
    30 % of its lines unparseable (the default 1 % dead-letter budget): wall time of the
    failing job (it must stop with the budget in its error) / the clean job's.
(b) a broken scorer (it raises on every text): seconds until the job stops, and its error.
(c) resume: a clean run of ``resume-n`` records; the same job killed (SIGKILL to its process
    group) once ``kill-at`` of its parts are done; then ``--resume``: its wall time (start-up
    included) / the clean run's, the parts it reused, and whether its shards are byte-identical
    to the clean run's.
All jobs: five CPU signals, multi-process DirectRunner, ``workers`` workers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CPU_SIGNALS = "length,compression_ratio,lexical_diversity,readability,word_rarity"


def corpus(n: int, work: Path, bad_every: int = 0) -> Path:
    """``n`` graded records as JSONL; with ``bad_every`` = 10, lines 0-2 of every 10 are
    not JSON (30 %)."""
    from pipelines.corpora import load_builtin

    path = work / f"graded-{n}-{bad_every}.jsonl"
    if not path.exists():
        with open(path.with_suffix(".tmp"), "w") as fh:
            for i, r in enumerate(load_builtin(f"builtin:graded?n={n}&task=language")):
                bad = bad_every and i % bad_every < 3
                fh.write("{not json at all\n" if bad else json.dumps(r) + "\n")
        path.with_suffix(".tmp").rename(path)
    return path


def command(src: Path, out: Path, workers: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.score", str(src), "--output", str(out),
            f"--signals={CPU_SIGNALS}", "--no-progress", "--direct_running_mode=multi_processing",
            f"--direct_num_workers={workers}", *extra]  # fmt: skip


def timed(cmd: list[str], env: dict) -> tuple[float, int, str]:
    began = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - began, run.returncode, run.stderr.strip().splitlines()[-1]


def killed_at(cmd: list[str], env: dict, out: Path, parts: int, fraction: float) -> int:
    """Run ``cmd`` and SIGKILL it once ``fraction`` of ``parts`` have their summary."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    target = max(1, int(fraction * parts))
    while proc.poll() is None:
        done = len(list(out.glob("staging/*/done/*.pkl")))
        if done >= target:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return done
        time.sleep(0.2)
    raise RuntimeError("the job finished before it could be killed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--resume-n", type=int, default=1_000_000)
    ap.add_argument("--kill-at", type=float, default=0.6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip", default="", help="comma-separated: failfast,broken,resume")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gradum-recovery-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    skip = set(filter(None, args.skip.split(",")))
    results: dict = {"n": args.n, "resume_n": args.resume_n, "workers": args.workers}

    if "failfast" not in skip:
        clean_s, rc, _ = timed(command(corpus(args.n, work), work / "ff-clean", args.workers,
                                       "--overwrite"), env)  # fmt: skip
        assert rc == 0
        bad_s, rc, line = timed(command(corpus(args.n, work, 10), work / "ff-bad", args.workers,
                                        "--overwrite"), env)  # fmt: skip
        results["failfast"] = {"clean_s": round(clean_s, 1), "failing_s": round(bad_s, 1),
                               "ratio": round(bad_s / clean_s, 3), "exit": rc, "error": line}  # fmt: skip
        print(json.dumps(results["failfast"]), flush=True)

    if "broken" not in skip:
        scorer = work / "broken_scorer.py"
        scorer.write_text(
            "class Broken:\n    name, version, outputs = 'broken', '1', {'broken': 1}\n"
            "    def describe(self):\n        return {}\n"
            "    def score(self, texts):\n        raise OSError('model.safetensors: no such file')\n"
        )
        # registered in every process, the workers included (they import scorers afresh)
        (work / "sitecustomize.py").write_text(
            "import scorers\nscorers._REGISTRY['broken'] = 'broken_scorer:Broken'\n"
        )
        cmd = command(corpus(args.n, work), work / "broken", args.workers, "--overwrite")
        cmd[cmd.index(f"--signals={CPU_SIGNALS}")] = "--signals=length,broken"
        broken_s, rc, line = timed(cmd, dict(env, PYTHONPATH=f"{work}:{ROOT}"))
        results["broken_scorer"] = {"seconds_to_stop": round(broken_s, 1), "exit": rc,
                                    "error": line}  # fmt: skip
        print(json.dumps(results["broken_scorer"]), flush=True)

    if "resume" not in skip:
        src = corpus(args.resume_n, work)
        clean_s, rc, _ = timed(command(src, work / "r-clean", args.workers, "--overwrite"), env)
        assert rc == 0
        clean = json.loads((work / "r-clean" / "manifest.json").read_text())
        parts = len(clean["shards"])
        out = work / "r-killed"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        done = killed_at(command(src, out, args.workers), env, out, parts, args.kill_at)
        resume_s, rc, line = timed(command(src, out, args.workers, "--resume"), env)
        resumed = json.loads((out / "manifest.json").read_text())
        same = [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in clean["shards"]]
        results["resume"] = {
            "clean_s": round(clean_s, 1), "parts": parts, "killed_with_parts_done": done,
            "resume_s": round(resume_s, 1), "ratio": round(resume_s / clean_s, 3),
            "reused_parts": resumed["resume"]["reused_parts"], "identical_shards": same,
        }  # fmt: skip
        print(json.dumps(results["resume"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
