"""Does a curriculum pay? Sampling strategies against uniform order on real (small) training runs.

    .venv/bin/python benchmarks/efficacy.py [--tasks arithmetic,lm] [--seeds 3] [--jobs 2]
        [--work /tmp/gradum-efficacy] [--png-dir benchmarks] [--json FILE] [--quick]

For each task (``benchmarks/efficacy_tasks.py``) the training split is scored by the gradum
pipeline and every strategy trains the same tiny transformer with the same optimizer (AdamW,
warm-up + cosine), batch size, step budget and model seeds; only the order of the data differs.

Protocol (so nothing is tuned on the numbers reported):
1. Selection: each strategy's small grid (pacing length, UCB reward and temperature, priority
   exponent, revision step) runs once with seed 0; the setting with the best *validation* area
   under the curve (mean metric over the evaluations: rewards getting good early) is kept.
2. Report: the kept settings run with seeds 1..S; every figure is on the *test* split.
3. Steps to target: the target is uniform's final test quality for that seed (mean of its last
   three evaluations); a strategy's steps-to-target is the first evaluation at which its trailing
   3-point mean reaches it. The ratio is strategy steps / uniform steps; "> x" marks a run that
   never reached it within the budget (its ratio is at least budget / uniform steps).

``--replot FILE`` redraws the plots and the report from a ``--json`` file without training.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import pickle
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import efficacy_tasks as T  # noqa: E402
from sampler import Sampler, pacing  # noqa: E402
from sampler import strategies as S  # noqa: E402


# -- strategies ----------------------------------------------------------------------------
def grid(task: str) -> dict[str, list[dict]]:
    """Each strategy's candidate settings (fractions are of the step budget)."""
    g = {
        "uniform": [{}],
        "root": [{"T": f} for f in (0.3, 0.6)],
        "linear": [{"T": f} for f in (0.3, 0.6)],
        "interleaved": [{"sweeps": k} for k in (3, 6)],
        "ucb": [{"reward": r, "tau": t} for r in ("loss_decrease", "loss") for t in (0.1, 1.0)],
        "prioritized": [{"alpha": a} for a in (0.6, 1.0)],
    }
    if task == "arithmetic":
        g["dropout"] = [{"revision": f} for f in (0.5, 0.8)]
    return g


def build(name: str, p: dict, steps: int) -> S.Strategy:
    """A strategy object from its name and setting."""
    if name == "uniform":
        return S.Uniform()
    if name == "root":
        return S.Curriculum(pacing.root(p["T"] * steps, p=2, c0=0.1))
    if name == "linear":
        return S.Curriculum(pacing.linear(p["T"] * steps, c0=0.1))
    if name == "interleaved":
        return S.Curriculum(pacing.interleaved(steps / p["sweeps"], c0=0.1))
    if name == "ucb":
        return S.UCB(group="bucket", reward=p["reward"], tau=p["tau"])
    if name == "prioritized":
        return S.Prioritized(signal="loss", alpha=p["alpha"], beta=0.4)
    if name == "dropout":
        return S.ProgressiveDropout(revision_step=int(p["revision"] * steps))
    raise ValueError(f"unknown strategy {name!r}")


def describe(name: str, p: dict) -> str:
    pretty = {
        "uniform": "Uniform",
        "root": "Curriculum root(p=2, c0=0.1, T={T}·S)",
        "linear": "Curriculum linear(c0=0.1, T={T}·S)",
        "interleaved": "Curriculum interleaved({sweeps} sweeps, c0=0.1)",
        "ucb": "UCB(bucket, reward={reward}, tau={tau})",
        "prioritized": "Prioritized(loss, alpha={alpha}, beta=0.4)",
        "dropout": "ProgressiveDropout(correct, revision={revision}·S)",
    }[name]
    return pretty.format(**p)


# -- one training run (in a worker process) ------------------------------------------------
_TASKS: dict[str, T.Task] = {}


def _task(path: str) -> T.Task:
    if path not in _TASKS:
        with open(path, "rb") as fh:
            _TASKS[path] = pickle.load(fh)
    return _TASKS[path]


def train(task_path: str, name: str, p: dict, seed: int, steps: int | None = None) -> dict:
    """Train once; return validation and test curves [(step, metric)] and the wall time."""
    torch.set_num_threads(1)
    task = _task(task_path)
    steps = steps or task.steps
    torch.manual_seed(seed)  # model initialisation only; the sampler has its own seed
    model = task.model()
    opt = torch.optim.AdamW(model.parameters(), lr=task.lr, weight_decay=0.01)
    smp = Sampler(task.columns, build(name, p, steps), task.batch_size, seed=seed, device="cpu")
    xs, ys = task.x["train"], task.y["train"]
    curves: dict[str, list] = {"val": [], "test": []}
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step % task.eval_every == 0 or step == steps:
            for split in curves:
                curves[split].append((step, task.evaluate(model, split)))
        if step == steps:
            break
        b = next(smp)
        x, y = xs[b.indices].long(), ys[b.indices].long()
        per, right = task.per_example(model, x, y)
        loss = per.mean() if b.weights is None else (per * b.weights).mean()
        for g in opt.param_groups:
            g["lr"] = T.lr_at(step, steps, task.lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        fb = {"loss": per.detach().double()}
        if task.metric == "accuracy":
            fb["correct"] = right.double()
        smp.update(b.indices, **fb)
    st = smp.stats()
    return {
        "strategy": name,
        "params": p,
        "seed": seed,
        "curves": curves,
        "seconds": time.perf_counter() - t0,
        "coverage": st["coverage"],
        "mean_difficulty_served": st["mean_difficulty_served"],
    }


# -- metrics -------------------------------------------------------------------------------
def _smooth(curve: list) -> list[tuple[int, float]]:
    vals = [v for _, v in curve]
    return [(s, float(np.mean(vals[max(0, i - 2) : i + 1]))) for i, (s, _) in enumerate(curve)]


def final(curve: list) -> float:
    return float(np.mean([v for _, v in curve[-3:]]))


def steps_to(curve: list, target: float, higher: bool) -> float:
    """First step whose trailing 3-point mean reaches ``target`` (inf if never)."""
    for s, v in _smooth(curve):
        if (v >= target) if higher else (v <= target):
            return float(s)
    return math.inf


def auc(curve: list, higher: bool) -> float:
    m = float(np.mean([v for _, v in curve]))
    return m if higher else -m


# -- driver --------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def run_all(jobs: list[tuple], n_jobs: int) -> list[dict]:
    """Run the training jobs, in ``n_jobs`` worker processes (one torch thread each), or in this
    process when ``n_jobs`` <= 1."""
    done: list[dict] = []

    def report(r: dict) -> None:
        done.append(r)
        print(
            f"  [{len(done)}/{len(jobs)}] {describe(r['strategy'], r['params'])} "
            f"seed {r['seed']}: {r['seconds']:.1f}s",
            flush=True,
        )

    if n_jobs <= 1:
        threads = torch.get_num_threads()
        try:
            for j in jobs:
                report(train(*j))
        finally:
            torch.set_num_threads(threads)
        return done
    with cf.ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn")) as ex:
        for f in cf.as_completed([ex.submit(train, *j) for j in jobs]):
            report(f.result())
    return done


def evaluate_task(task: T.Task, task_path: str, seeds: int, n_jobs: int) -> dict:
    higher = task.higher_is_better
    g = grid(task.name)
    print(f"{task.name}: selection on validation ({sum(map(len, g.values()))} runs, seed 0)")
    sel = run_all([(task_path, n, p, 0) for n, ps in g.items() for p in ps], n_jobs)
    chosen = {}
    for n in g:
        runs = [r for r in sel if r["strategy"] == n]
        best = max(runs, key=lambda r: auc(r["curves"]["val"], higher))
        chosen[n] = best["params"]
    print(f"{task.name}: report on test ({len(g) * seeds} runs, seeds 1..{seeds})")
    rep = run_all([(task_path, n, chosen[n], s) for n in g for s in range(1, seeds + 1)], n_jobs)
    rows = []
    for n in g:
        ratios, finals, steps_s = [], [], []
        for s in range(1, seeds + 1):
            u = next(r for r in rep if r["strategy"] == "uniform" and r["seed"] == s)
            me = next(r for r in rep if r["strategy"] == n and r["seed"] == s)
            target = final(u["curves"]["test"])
            # steps are resolved to evaluations: reaching the target at step 0 counts as one
            su = max(steps_to(u["curves"]["test"], target, higher), task.eval_every)
            sm = max(steps_to(me["curves"]["test"], target, higher), task.eval_every)
            ratios.append(sm / su if math.isfinite(sm) else -task.steps / su)
            steps_s.append(sm)
            finals.append(final(me["curves"]["test"]))
        rows.append(
            {
                "strategy": n,
                "setting": describe(n, chosen[n]),
                "ratios": ratios,
                "steps": steps_s,
                "finals": finals,
                "coverage": float(np.mean([r["coverage"] for r in rep if r["strategy"] == n])),
            }
        )
    return {
        "task": task.name,
        "metric": task.metric,
        "info": task.info,
        "steps": task.steps,
        "batch_size": task.batch_size,
        "model": f"TinyGPT d={task.d} layers={task.layers} heads={task.heads}",
        "rows": rows,
        "selection": sel,
        "report": rep,
    }


def fmt_ratio(ratios: list[float]) -> str:
    """Median ratio with min..max over seeds; a negative entry encodes '> budget ratio'."""
    shown = [f"{r:.2f}" if r >= 0 else f">{-r:.2f}" for r in ratios]
    finite = [r for r in ratios if r >= 0]
    if len(finite) == len(ratios):
        return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
    return ", ".join(shown)


def render(results: list[dict], cmd: str, wall: float) -> str:
    lines = [
        f"Machine: {machine()}. Command: `{cmd}` ({wall / 60:.0f} min).",
        "",
    ]
    for res in results:
        info = res["info"]
        metric = "exact-match accuracy" if res["metric"] == "accuracy" else "loss (nats/byte)"
        lines += [
            f"**{res['task']}**: {info['corpus']}; difficulty from `{info.get('scored_with', 'the given columns')}`"
            + (
                f" (Spearman with the true level {info['spearman_difficulty_level']:.2f})"
                if "spearman_difficulty_level" in info
                else ""
            )
            + f"; {info['train']:,} training records, {info['test']:,} test. {res['model']}, "
            f"{res['steps']} steps of {res['batch_size']}; test {metric}.",
            "",
            "| strategy (setting chosen on validation) | steps to uniform's final, ratio: "
            "median (min–max) | final test metric, mean ± sd | coverage |",
            "|---|---|---|---|",
        ]
        for row in res["rows"]:
            f = row["finals"]
            sd = statistics.stdev(f) if len(f) > 1 else 0.0
            lines.append(
                f"| {row['setting']} | {fmt_ratio(row['ratios'])} | "
                f"{statistics.mean(f):.3f} ± {sd:.3f} | {row['coverage']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for row in res["rows"]:
        runs = [r for r in res["report"] if r["strategy"] == row["strategy"]]
        steps = [s for s, _ in runs[0]["curves"]["test"]]
        vals = np.array([[v for _, v in r["curves"]["test"]] for r in runs])
        (line,) = ax.plot(steps, vals.mean(0), label=row["setting"], lw=1.4)
        ax.fill_between(steps, vals.min(0), vals.max(0), color=line.get_color(), alpha=0.12)
    uni = [final(r["curves"]["test"]) for r in res["report"] if r["strategy"] == "uniform"]
    ax.axhline(float(np.mean(uni)), color="k", ls="--", lw=0.8, label="uniform final")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy" if res["metric"] == "accuracy" else "test loss (nats/byte)")
    if res["metric"] == "loss":
        lo = min(float(np.min([v for _, v in r["curves"]["test"]])) for r in res["report"])
        ax.set_ylim(lo - 0.05, lo + 1.0)
    ax.set_title(f"{res['task']}: mean of {len(uni)} seeds (band: min–max)")
    ax.legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="arithmetic,lm", help="arithmetic, lm, lm-perplexity")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", default="/tmp/gradum-efficacy")
    ap.add_argument("--png-dir", default=str(Path(__file__).parent))
    ap.add_argument("--json", default=None, help="write every curve here")
    ap.add_argument("--quick", action="store_true", help="tiny budgets (for the test suite)")
    ap.add_argument("--replot", default=None, help="redraw plots and report from a --json file")
    a = ap.parse_args(argv)
    if a.replot:
        saved = json.loads(Path(a.replot).read_text())
        for res in saved["results"]:
            plot(res, Path(a.png_dir) / f"efficacy-{res['task']}.png")
        print(render(saved["results"], saved["command"], saved["seconds"]))
        return saved["results"]
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = []
    for name in a.tasks.split(","):
        if name == "arithmetic":
            task = T.arithmetic(
                work, n=2000 if a.quick else 20_000, eval_n=200 if a.quick else 1000
            )
        elif name in ("lm", "lm-perplexity"):
            task = T.language_model(
                work, eval_n=100 if a.quick else 500, lm=name == "lm-perplexity"
            )
        else:
            raise SystemExit(f"unknown task {name!r}; have arithmetic, lm, lm-perplexity")
        if a.quick:
            task.steps, task.eval_every = 60, 20
        path = work / f"task-{name}{'-quick' if a.quick else ''}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(task, fh)
        results.append(evaluate_task(task, str(path), a.seeds, a.jobs))
        if a.png_dir:
            png = Path(a.png_dir) / f"efficacy-{name}.png"
            plot(results[-1], png)
            print(f"wrote {png}")
    cmd = "python benchmarks/efficacy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    wall = time.perf_counter() - t0
    print()
    print(render(results, cmd.strip(), wall))
    if a.json:
        doc = {"command": cmd.strip(), "seconds": wall, "results": results}
        Path(a.json).write_text(json.dumps(doc))
    return results


if __name__ == "__main__":
    main()
