"""Does it help? Sampling strategies against uniform order on real (small) training runs.

    .venv/bin/python benchmarks/efficacy.py [--tasks lm-words,arithmetic,lm] [--seeds 10]
        [--select-seeds 1] [--strategies a,b] [--select-only] [--selection FILE]
        [--work /tmp/gradum-efficacy] [--reuse-task] [--png-dir benchmarks] [--json FILE]
        [--quick] [--replot FILE[,FILE...]]

For each task (``benchmarks/efficacy_tasks.py``) every strategy trains the same tiny transformer
with the same optimizer (AdamW, warm-up + cosine), batch size and step budget; only the order
(or the selection) of the data differs. One process, one torch thread, runs one after another.

Protocol (so nothing is tuned on the numbers reported, and nothing rests on one lucky seed):
1. Selection: each strategy's small grid (pacing, UCB reward and temperature, priority exponent,
   revision step) runs with the selection seeds 1000, 1001, ... (never report seeds); the
   setting with the best *validation* area under the curve (mean metric over the evaluations)
   is kept. A strategy with one setting is not run here.
2. Report: the kept settings run with seeds 1..S (S = 10), paired: seed s fixes the model
   initialisation and the sampler seed for every strategy, and every strategy is evaluated on
   the same *test* set. Every figure is on the test split.
3. Steps to target: the target is uniform's final test metric for that seed (mean of its last
   three evaluations); a run's steps-to-target is the first evaluation at which its trailing
   3-point mean reaches it (inf if never). Per seed, ratio = strategy steps / uniform steps.
4. Statistics (``benchmarks/efficacy_stats.py``): median ratio over seeds with a 95 % percentile
   bootstrap interval (seeds resampled, pairs kept), fraction of seeds on which the strategy
   is faster than uniform, forward-pass FLOPs ratio (ratio x the strategy's cost per step over
   uniform's: online RHO-LOSS adds a forward pass over its candidates), final test metric
   (median, 95 % CI) and the paired difference to uniform's final (mean, 95 % CI). Verdict:
   "faster" only when the upper end of the ratio's interval is < 1, "slower" when the lower end
   is > 1, otherwise "no clear difference".

In pieces (each process short; the table is a pure function of the runs, so pieces merge):
``--select-only`` runs the selection alone; ``--selection FILE`` takes the settings chosen by
the selection runs saved in FILE instead of running them; ``--strategies`` and ``--seeds 4-6``
restrict a piece to some strategies and report seeds; ``--reuse-task`` loads the task built by
an earlier piece (``WORK/task-NAME.pkl``) instead of building it again.
``--replot FILE[,FILE...]`` merges saved ``--json`` files (runs pooled per task, a run made
twice kept once), redraws the plots and the report without training, and writes the merged
document to ``--json`` when given. ``--quick`` shrinks every task to a few seconds (the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import efficacy_protocol as P  # noqa: E402
from benchmarks import efficacy_tasks as T  # noqa: E402
from benchmarks import efficacy_words as W  # noqa: E402
from benchmarks.efficacy_report import load_average, machine, plot, render  # noqa: E402
from benchmarks.efficacy_stats import auc, final, steps_to  # noqa: E402
from benchmarks.efficacy_strategies import (  # noqa: E402
    build,
    cost_per_step,
    describe,
    grid,
    reducible_feedback,
)
from sampler import Sampler, reducible_loss, select  # noqa: E402

__all__ = [
    "auc", "build", "cost_per_step", "describe", "evaluate_task", "final", "grid", "machine",
    "main", "render", "steps_to", "train",
]  # fmt: skip
SELECT_SEED0 = P.SELECT_SEED0
_TASKS: dict[str, T.Task] = {}


def _task(path: str) -> T.Task:
    if path not in _TASKS:
        with open(path, "rb") as fh:
            _TASKS[path] = pickle.load(fh)
    return _TASKS[path]


# -- one training run ----------------------------------------------------------------------
def train(
    task_path: str, name: str, p: dict, seed: int, split: str = "test", steps: int | None = None
) -> dict:
    """Train once; return the ``split`` curve [(step, metric)], the wall time and what was
    served (noise share overall and per evaluation interval). ``seed`` sets the model
    initialisation and the sampler seed (paired runs)."""
    torch.set_num_threads(1)
    task = _task(task_path)
    steps = steps or task.steps
    torch.manual_seed(seed)  # model initialisation only; the sampler has its own seed
    model = task.model()
    opt = torch.optim.AdamW(model.parameters(), lr=task.lr, weight_decay=0.01)
    online = name == "rho-online"
    irr = None
    if online or reducible_feedback(name, p):
        if task.irreducible is None:
            raise ValueError(f"{name} needs the task's irreducible losses (a reference model)")
        irr = torch.as_tensor(task.irreducible, dtype=torch.float64)
    draw = int(round(task.batch_size / p["keep"])) if online else task.batch_size
    smp = Sampler(task.columns, build(name, p, steps), draw, seed=seed, device="cpu")
    xs, ys = task.x["train"], task.y["train"]
    noise = task.columns.get("noise_kind")
    noise_served, served, window = 0, 0, [0, 0]
    curve: list = []
    noise_curve: list = []
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step % task.eval_every == 0 or step == steps:
            curve.append((step, task.evaluate(model, split)))
            if noise is not None and step:
                noise_curve.append((step, window[0] / max(window[1], 1)))
                window = [0, 0]
        if step == steps:
            break
        b = next(smp)
        idx, weights = b.indices, b.weights
        if online:
            with torch.no_grad():
                cand_loss, _ = task.per_example(model, xs[idx].long(), ys[idx].long())
            sel = select(idx, cand_loss, irr[idx], keep=task.batch_size)
            idx, weights = sel.indices, None
        x, y = xs[idx].long(), ys[idx].long()
        per, right = task.per_example(model, x, y)
        loss = per.mean() if weights is None else (per * weights).mean()
        for g in opt.param_groups:
            g["lr"] = T.lr_at(step, steps, task.lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        served += len(idx)
        if noise is not None:
            k = int((noise[idx.numpy()] > 0).sum())
            noise_served += k
            window[0] += k
            window[1] += len(idx)
        if online:
            continue  # candidates are drawn uniformly: no feedback to give
        fb = {"loss": per.detach().double()}
        if irr is not None:
            fb["loss"] = reducible_loss(fb["loss"], irr[b.indices])
        if task.metric == "accuracy":
            fb["correct"] = right.double()
        smp.update(b.indices, **fb)
    st = smp.stats()
    return {
        "strategy": name,
        "params": p,
        "seed": seed,
        "split": split,
        "curve": curve,
        "seconds": time.perf_counter() - t0,
        "coverage": st["coverage"],
        "noise_served": noise_served / served if noise is not None else None,
        "noise_curve": noise_curve if noise is not None else None,
        "mean_difficulty_served": st["mean_difficulty_served"],
    }


# -- protocol ------------------------------------------------------------------------------
def task_meta(task: T.Task) -> dict:
    return {
        "task": task.name,
        "metric": task.metric,
        "info": task.info,
        "steps": task.steps,
        "eval_every": task.eval_every,
        "batch_size": task.batch_size,
        "model": f"TinyGPT d={task.d} layers={task.layers} heads={task.heads}",
        "flops_per_forward": task.flops_per_forward(),
        "reference_cost_forwards": task.reference_cost,
    }


def resummarize(meta: dict, sel: list[dict], rep: list[dict]) -> dict:
    """The task's table from its runs (``efficacy_protocol.summarize``)."""
    return P.summarize(meta, sel, rep, list(grid(meta["task"])), describe, cost_per_step)


def evaluate_task(
    task: T.Task,
    task_path: str,
    seeds: int | list[int],
    select_seeds: int = 1,
    log=print,
    strategies: list[str] | None = None,
    selection: list[dict] | None = None,
    select_only: bool = False,
) -> dict:
    """Selection on validation (seeds 1000..; or the saved ``selection`` runs), then report on
    test (seeds 1..``seeds``, or the given list), and the per-strategy statistics. With
    ``strategies``, only those run (a piece, merged later)."""
    g = grid(task.name)
    if strategies:
        g = {n: ps for n, ps in g.items() if n in strategies}
    sel_seeds = [SELECT_SEED0 + i for i in range(select_seeds)]
    if selection is None:
        jobs = [(task_path, n, p, s, "val") for n, p, s in P.selection_jobs(g, sel_seeds)]
        log(f"{task.name}: selection on validation ({len(jobs)} runs, seeds {sel_seeds})")
        sel = P.run_all(jobs, train, describe, log)
    else:
        sel = [r for r in selection if r["strategy"] in g]
    rep: list[dict] = []
    if not select_only:
        chosen = P.choose(g, sel, task.higher_is_better)
        report_seeds = list(range(1, seeds + 1)) if isinstance(seeds, int) else list(seeds)
        jobs = [(task_path, n, chosen[n], s, "test") for s in report_seeds for n in g]
        log(f"{task.name}: report on test ({len(jobs)} runs, seeds {report_seeds})")
        rep = P.run_all(jobs, train, describe, log)
    return resummarize(task_meta(task), sel, rep)


def build_task(name: str, work: Path, quick: bool) -> T.Task:
    if name == "arithmetic":
        task = T.arithmetic(work, n=2000, eval_n=200, test_n=200) if quick else T.arithmetic(work)
    elif name in ("lm", "lm-perplexity"):
        kw = {"eval_n": 100, "ref_steps": 20} if quick else {}
        # "lm": curriculum by the reference loss, no pipeline run (CPU budget);
        # "lm-perplexity": ordered by the pipeline's --lm reference perplexity
        task = T.language_model(
            work, lm=name == "lm-perplexity", pipeline=name == "lm-perplexity", **kw
        )
    elif name == "lm-words":
        task = W.lm_words(limit=400, eval_n=100, ref_steps=20) if quick else W.lm_words()
    elif name == "lm-words-clusters":
        # the same task with the pipeline's embedding clusters (k = 16) for bandits
        kw = {"limit": 400, "eval_n": 100, "ref_steps": 20, "clusters": 4} if quick else {}
        task = W.lm_words(work, **{"clusters": 16, **kw})
        task.name = name
    else:
        raise SystemExit(
            f"unknown task {name!r}; have arithmetic, lm, lm-words, lm-words-clusters, "
            "lm-perplexity"
        )
    if quick:
        task.steps, task.eval_every = 60, 20
    return task


def load_task(name: str, work: Path, quick: bool, reuse: bool, log=print) -> tuple[T.Task, str]:
    """The task and its pickle (what the training runs load): built, or with ``reuse`` the
    one an earlier piece built."""
    path = work / f"task-{name}{'-quick' if quick else ''}.pkl"
    if reuse and path.exists():
        log(f"{name}: reusing {path}")
    else:
        t1 = time.perf_counter()
        task = build_task(name, work, quick)
        log(f"{name}: task built in {time.perf_counter() - t1:.0f}s")
        with open(path, "wb") as fh:
            pickle.dump(task, fh)
    _TASKS.pop(str(path), None)
    return _task(str(path)), str(path)


def merge(docs: list[dict]) -> dict:
    return P.merge(docs, resummarize)


def _replot(a: argparse.Namespace) -> list[dict]:
    docs = [json.loads(Path(f).read_text()) for f in a.replot.split(",")]
    saved = merge(docs)
    for res in saved["results"]:
        if a.png_dir and res["rows"]:
            plot(res, Path(a.png_dir) / f"efficacy-{res['task']}.png")
    if a.json:
        Path(a.json).write_text(json.dumps(saved))
    print(render(saved["results"], saved["command"], saved["seconds"], saved.get("load", "")))
    return saved["results"]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--tasks",
        default="lm-words,arithmetic,lm",
        help="lm-words, lm-words-clusters, arithmetic, lm, lm-perplexity",
    )
    ap.add_argument("--seeds", default="10", help="report seeds: N (1..N), A-B or a list")
    ap.add_argument("--select-seeds", type=int, default=1, help="selection seeds 1000..")
    ap.add_argument("--strategies", default=None, help="only these (comma-separated)")
    ap.add_argument("--select-only", action="store_true", help="run the selection only")
    ap.add_argument("--selection", default=None, help="--json file holding the selection runs")
    ap.add_argument("--work", default="/tmp/gradum-efficacy")
    ap.add_argument("--reuse-task", action="store_true", help="load WORK/task-NAME.pkl if there")
    ap.add_argument("--png-dir", default=str(Path(__file__).parent))
    ap.add_argument("--json", default=None, help="write every curve here (after each task)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets (for the test suite)")
    ap.add_argument(
        "--replot",
        default=None,
        help="redraw plots and report from --json file(s), comma-separated (merged; written to "
        "--json when given)",
    )
    a = ap.parse_args(argv)
    if a.replot:
        return _replot(a)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cmd = "python benchmarks/efficacy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results: list[dict] = []
    loads = [load_average()]
    saved_sel: dict[str, list[dict]] = {}
    if a.selection:
        for res in json.loads(Path(a.selection).read_text())["results"]:
            saved_sel[res["task"]] = res["selection"]

    def log(msg: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        print(f"{stamp} {msg}", flush=True)

    for name in a.tasks.split(","):
        t1 = time.perf_counter()
        task, path = load_task(name, work, a.quick, a.reuse_task, log)
        res = evaluate_task(
            task, path, P.parse_seeds(a.seeds), a.select_seeds, log,
            strategies=a.strategies.split(",") if a.strategies else None,
            selection=saved_sel.get(name) if a.selection else None,
            select_only=a.select_only,
        )  # fmt: skip
        res["seconds"] = time.perf_counter() - t1
        results.append(res)
        loads.append(load_average())
        if a.png_dir and res["rows"]:
            png = Path(a.png_dir) / f"efficacy-{name}.png"
            plot(res, png)
            log(f"wrote {png}")
        if a.json:
            doc = {
                "command": cmd.strip(),
                "seconds": time.perf_counter() - t0,
                "load": " / ".join(loads),
                "results": results,
            }
            Path(a.json).write_text(json.dumps(doc))
    wall = time.perf_counter() - t0
    print()
    print(render(results, cmd.strip(), wall, " / ".join(loads)))
    return results


if __name__ == "__main__":
    main()
