"""Benchmark the Beam scoring job against a bare single-process loop, side by side.

Usage: .venv/bin/python benchmarks/pipeline.py [--sizes 10000,100000] [--workers 1,2]
       [--embedding-n 2000] [--budget 660] [--workdir DIR] [--out results.md]

Measures on ``builtin:graded`` (task=language) records:
  (a) the five CPU signals through ``python -m pipelines.score`` (DirectRunner,
      multi_processing, --direct_num_workers=2) vs a bare loop calling
      ``scorers.get(name).score(texts)`` in batches of 256 on the same records;
  (b) docs/s with ``--embedding default`` (and the bare embedding loop) on a smaller n;
  (c) docs/s against worker count and corpus size.

Job figures are wall time of the whole subprocess (interpreter start, imports, pipeline
construction, scoring, shard writing, manifest): what a user waits for. "Steady state" is the
marginal rate between two corpus sizes at the same worker count, (n2 - n1) / (t2 - t1), which
cancels the fixed start-up cost. The bare loop times scoring only (records generated first).

A run whose estimated time (fixed cost + n / marginal rate, from the runs already done) would
push the total past --budget seconds is skipped and reported with its estimate.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CPU_SIGNALS = "length,compression_ratio,lexical_diversity,readability,word_rarity"
BATCH = 256


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import apache_beam

    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "beam": apache_beam.__version__,
        "platform": platform.platform(),
    }


def spec(n: int) -> str:
    return f"builtin:graded?n={n}&task=language"


def corpus_file(n: int, work: Path) -> Path:
    """The n graded records as JSONL (written once, untimed): both sides read this file."""
    import json

    from pipelines.corpora import load_builtin

    path = work / f"graded-{n}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            for r in load_builtin(spec(n)):
                fh.write(json.dumps(r) + "\n")
        tmp.rename(path)
    return path


def bare_loop(
    n: int, names: list, work: Path, share: tuple[int, int] = (0, 1), ready=None
) -> dict[str, float]:
    """Read the JSONL and score it in one process, batches of 256 (scorers built untimed).
    ``names``: scorer names, or ``(name, params)`` pairs. ``share=(k, of)``: only lines k,
    k + of, ...; ``ready``: called once the scorers are built, before the clock starts (a
    start signal for shares run side by side)."""
    import json

    import scorers

    path = corpus_file(n, work)
    specs = [(x, {}) if isinstance(x, str) else x for x in names]
    instances = [scorers.get(name, **params) for name, params in specs]
    for s in instances:  # load models / tables outside the timed loop
        s.score(["warm up", "the scorers"])
    if ready is not None:
        ready()
    k, of = share
    c0 = time.process_time()
    t0 = time.perf_counter()
    with open(path, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for i, line in enumerate(fh) if i % of == k]
    gen = time.perf_counter() - t0
    scoring = time.thread_time()
    for i in range(0, len(texts), BATCH):
        batch = texts[i : i + BATCH]
        for s in instances:
            s.score(batch)
    wall = time.perf_counter() - t0
    scoring = time.thread_time() - scoring
    return {
        "n": n,
        "rows": len(texts),
        "wall": wall,
        "cpu": time.process_time() - c0,
        "gen": gen,
        "score_cpu": scoring,
        "docs_s": len(texts) / wall,
    }


def job(n: int, workers: int, work: Path, extra: list[str]) -> dict[str, float]:
    out = work / f"out-{n}-{workers}-{len(extra)}"
    shutil.rmtree(out, ignore_errors=True)
    log = work / f"{out.name}.log"
    cmd = [
        sys.executable,
        "-m",
        "pipelines.score",
        str(corpus_file(n, work)),
        "--output",
        str(out),
        "--runner=DirectRunner",
        "--direct_running_mode=multi_processing",
        f"--direct_num_workers={workers}",
        *extra,
    ]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = log.read_text(errors="replace")
    if rc != 0:
        raise SystemExit(f"job failed (rc={rc}): {' '.join(cmd)}\n{text[-3000:]}")
    m = re.search(r"gradum: ([\d,]+) records read.* in ([\d.]+)s", text)
    inner = float(m.group(2)) if m else float("nan")
    score_cpu = worker_scorer_cpu(out / "gradum.log")
    shutil.rmtree(out, ignore_errors=True)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "n": n,
        "workers": workers,
        "wall": wall,
        "inner": inner,
        "cpu": cpu,
        "docs_s": n / wall,
        "load": load,
        "score_cpu": score_cpu,
        "cmd": " ".join(cmd),
    }


def worker_scorer_cpu(log: Path) -> dict[str, float]:
    """Each worker's scorer thread CPU seconds, from the last per-part line it logged
    (``gradum worker PID: scorer CPU seconds so far: name s, ...``)."""
    last: dict[str, float] = {}
    if not log.exists():
        return last
    pattern = re.compile(r"gradum worker (\d+): scorer CPU seconds so far: ([^\"\n]*)")
    for pid, spent in pattern.findall(log.read_text(errors="replace")):
        last[pid] = sum(float(x.rsplit(" ", 1)[1]) for x in spent.split(", ") if " " in x)
    return last


class Budget:
    """Skip a run whose estimate would push the total past the budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()
        self.fits: dict[int, tuple[float, float]] = {}  # workers -> (fixed s, s per doc)
        self.skipped: list[str] = []

    def used(self) -> float:
        return time.perf_counter() - self.start

    def learn(self, runs: list[dict]) -> None:
        by_w: dict[int, list[dict]] = {}
        for r in runs:
            by_w.setdefault(r["workers"], []).append(r)
        for w, rs in by_w.items():
            rs = sorted(rs, key=lambda r: r["n"])
            if len(rs) >= 2:
                a, b = rs[0], rs[-1]
                per = max((b["wall"] - a["wall"]) / (b["n"] - a["n"]), 1e-6)
                self.fits[w] = (max(a["wall"] - per * a["n"], 0.0), per)
            elif w not in self.fits:
                self.fits[w] = (0.5 * rs[0]["wall"], 0.5 * rs[0]["wall"] / rs[0]["n"])

    def estimate(self, n: int, workers: int) -> float:
        fit = self.fits.get(workers) or next(iter(self.fits.values()), (30.0, 3e-3))
        return fit[0] + fit[1] * n

    def allow(self, label: str, estimate: float) -> bool:
        if self.used() + estimate > self.seconds:
            self.skipped.append(
                f"{label}: skipped, estimated {estimate:,.0f} s with {self.used():,.0f} s "
                f"of the {self.seconds:,.0f} s budget used"
            )
            print(self.skipped[-1], flush=True)
            return False
        return True


def fmt(x: float, spec_: str = ",.0f") -> str:
    return "n/a" if x != x else format(x, spec_)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--embedding-n", type=int, default=2000)
    ap.add_argument("--lm-n", type=int, default=2000, help="records for the lm scorer runs")
    ap.add_argument("--budget", type=float, default=660.0, help="seconds for the whole run")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None, help="also write the markdown tables here")
    a = ap.parse_args()
    sizes = [int(float(s)) for s in a.sizes.split(",")]
    workers = [int(w) for w in a.workers.split(",")]
    work = Path(a.workdir or tempfile.mkdtemp(prefix="gradum-bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"machine: {info}", flush=True)
    budget = Budget(a.budget)
    names = CPU_SIGNALS.split(",")
    quiet = ["--no-progress"]

    # (a) bare loop vs 2 workers, smallest size first (gives the budget its first fit).
    bare: dict[int, dict] = {}
    runs: list[dict] = []
    n0 = sizes[0]
    bare[n0] = bare_loop(n0, names, work)
    print(f"bare n={n0}: {bare[n0]['docs_s']:,.0f} docs/s", flush=True)
    order = [(n0, 2)] + [(n0, w) for w in workers if w != 2]
    order += [(n, w) for n in sizes[1:] for w in sorted(workers, reverse=True)]
    for n, w in order:
        est = budget.estimate(n, w) if budget.fits else 90.0
        if not budget.allow(f"job n={n:,} workers={w}", est):
            continue
        r = job(n, w, work, [f"--signals={CPU_SIGNALS}", *quiet])
        runs.append(r)
        budget.learn(runs)
        print(f"job n={n} w={w}: {r['wall']:.1f}s, {r['docs_s']:,.0f} docs/s", flush=True)
        if n not in bare:
            est_bare = n * bare[n0]["wall"] / n0 * 1.5
            if budget.allow(f"bare n={n:,}", est_bare):
                bare[n] = bare_loop(n, names, work)
                print(f"bare n={n}: {bare[n]['docs_s']:,.0f} docs/s", flush=True)

    # (b) embedding, small n: job with the embedding scorer only, and the bare loop.
    emb_job = emb_bare = None
    ne = a.embedding_n
    if budget.allow(f"embedding bare n={ne:,}", 60.0):
        emb_bare = bare_loop(ne, ["embedding"], work)
        print(f"embedding bare n={ne}: {emb_bare['docs_s']:,.0f} docs/s", flush=True)
    est = budget.estimate(0, 2) + (ne / emb_bare["docs_s"] if emb_bare else 60.0) * 1.2
    if budget.allow(f"embedding job n={ne:,}", est):
        emb_job = job(ne, 2, work, ["--signals=length", "--embedding=default", *quiet])
        print(f"embedding job n={ne}: {emb_job['docs_s']:,.0f} docs/s", flush=True)

    # (b2) the lm scorer with a reference LM trained here (no download), bare loop and job.
    lm_bare = lm_job = None
    nl = a.lm_n
    if budget.allow(f"lm n={nl:,}", 120.0):
        import json

        from scorers.reference_lm import train_reference_lm

        with open(corpus_file(nl, work), encoding="utf-8") as fh:
            texts = [json.loads(line)["text"] for line in fh][:2000]
        model = str(
            train_reference_lm(texts, work / "reference_lm", steps=300, seed=0, progress=False)
        )
        lm_bare = bare_loop(nl, [("lm", {"model": model})], work)
        print(f"lm bare n={nl}: {lm_bare['docs_s']:,.0f} docs/s", flush=True)
        lm_job = job(nl, 2, work, ["--signals=length", f"--lm={model}", *quiet])
        print(f"lm job n={nl}: {lm_job['docs_s']:,.0f} docs/s", flush=True)

    report = render(info, bare, runs, emb_bare, emb_job, budget, a, lm_bare, lm_job)
    print(report)
    if a.out:
        Path(a.out).write_text(report)
    shutil.rmtree(work, ignore_errors=True)


def render(info, bare, runs, emb_bare, emb_job, budget: Budget, a, lm_bare=None, lm_job=None):
    lines = [
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['platform']}",
        f"- python {info['python']}, apache-beam {info['beam']}",
        f"- total benchmark time: {budget.used():,.0f} s (budget {a.budget:,.0f} s)",
        "",
        "### (a) CPU signals: job vs bare single-process loop",
        "",
        "| n | bare loop docs/s | job workers | job wall s | job docs/s (wall) "
        "| job / bare | job CPU s | load avg at start |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        b = bare.get(r["n"])
        ratio = r["docs_s"] / b["docs_s"] if b else float("nan")
        lines.append(
            f"| {r['n']:,} | {fmt(b['docs_s']) if b else 'n/a'} | {r['workers']} "
            f"| {r['wall']:.1f} | {r['docs_s']:,.0f} | {fmt(ratio, '.3f')}x "
            f"| {r['cpu']:.0f} | {r['load']:.1f} |"
        )
    lines += ["", "Bare loop (read the same JSONL + score, one process, batches of 256):", ""]
    for n, b in sorted(bare.items()):
        lines.append(
            f"- n={n:,}: {b['wall']:.1f} s, {b['docs_s']:,.0f} docs/s "
            f"(of which reading + json.loads: {b['gen']:.1f} s)"
        )
    lines += ["", "### (c) steady state: marginal rate between corpus sizes", ""]
    by_w: dict[int, list[dict]] = {}
    for r in runs:
        by_w.setdefault(r["workers"], []).append(r)
    for w, rs in sorted(by_w.items()):
        rs = sorted(rs, key=lambda r: r["n"])
        if len(rs) < 2:
            lines.append(f"- workers={w}: one size only, no marginal rate")
            continue
        x, y = rs[0], rs[-1]
        per = (y["wall"] - x["wall"]) / (y["n"] - x["n"])
        fixed = x["wall"] - per * x["n"]
        lines.append(
            f"- workers={w}: {1 / per:,.0f} docs/s marginal between n={x['n']:,} and "
            f"n={y['n']:,}; fixed cost ~{fixed:,.0f} s"
        )
    if budget.fits:
        lines.append("")
        for w, (fixed, per) in sorted(budget.fits.items()):
            lines.append(
                f"- estimate, workers={w}, n=1,000,000: {fixed + per * 1e6:,.0f} s "
                f"({1e6 / (fixed + per * 1e6):,.0f} docs/s)"
            )
    model_runs = (
        (
            "(b) embedding scorer (all-MiniLM-L6-v2 on CPU)",
            "--embedding=default",
            emb_bare,
            emb_job,
        ),
        ("(b2) lm scorer (reference LM trained on the corpus, CPU)", "--lm=PATH", lm_bare, lm_job),
    )
    for title, flag, bare_run, job_run in model_runs:
        lines += ["", f"### {title}", ""]
        if bare_run:
            lines.append(
                f"- bare loop, n={bare_run['n']:,}: {bare_run['wall']:.1f} s, "
                f"{bare_run['docs_s']:,.0f} docs/s"
            )
        if job_run:
            lines.append(
                f"- job `--signals=length {flag}`, workers=2, n={job_run['n']:,}: "
                f"{job_run['wall']:.1f} s wall, {job_run['docs_s']:,.0f} docs/s"
            )
    if budget.skipped:
        lines += ["", "### skipped", ""] + [f"- {s}" for s in budget.skipped]
    lines += ["", "### commands", ""]
    for r in runs + [x for x in (emb_job, lm_job) if x]:
        lines.append(f"- `{r['cmd']}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
