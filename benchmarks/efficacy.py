"""Does it help? Sampling strategies against uniform order on real (small) training runs.

    .venv/bin/python benchmarks/efficacy.py [--tasks lm-words,arithmetic,lm] [--seeds 10]
        [--select-seeds 1] [--work /tmp/gradum-efficacy] [--png-dir benchmarks] [--json FILE]
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

``--replot FILE[,FILE...]`` redraws the plots and the report from saved ``--json`` files
without training (several files are merged, and written to ``--json`` when given).
``--quick`` shrinks every task to a few seconds (the test suite).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import efficacy_stats as E_stats  # noqa: E402
from benchmarks import efficacy_tasks as T  # noqa: E402
from benchmarks import efficacy_words as W  # noqa: E402
from sampler import Sampler, pacing, reducible_loss, select  # noqa: E402
from sampler import strategies as S  # noqa: E402

# -- strategies ----------------------------------------------------------------------------
LM_TASKS = ("lm", "lm-perplexity", "lm-words")


def grid(task: str) -> dict[str, list[dict]]:
    """Each strategy's candidate settings (fractions are of the step budget). Uniform has none
    and is not part of the selection runs."""
    if task in LM_TASKS:
        if task != "lm-words":  # CPU budget: one curriculum, the cheap RHO form
            return {
                "uniform": [{}],
                "curriculum": [{"pacing": "linear", "T": 0.6}],
                "rho-prioritized": [{"alpha": 1.0}],
            }
        return {
            "uniform": [{}],
            "curriculum": [{"pacing": "linear", "T": f} for f in (0.3, 0.6)]
            + [{"pacing": "root", "T": 0.6}],
            "prioritized": [{"alpha": 1.0}],
            "rho-prioritized": [{"alpha": a} for a in (1.0, 2.0)],
            "rho-online": [{"keep": 0.25}],
        }
    # UCB is left out (CPU budget): in the 3-seed run of 2026-11-23 it was a slow starter;
    # Prioritized and ProgressiveDropout keep the settings that run chose on validation
    return {
        "uniform": [{}],
        "curriculum": [
            {"pacing": "linear", "T": 0.3},
            {"pacing": "linear", "T": 0.6},
            {"pacing": "root", "T": 0.6},
        ],
        "prioritized": [{"alpha": 0.6}],
        "dropout": [{"revision": 0.8}],
    }


def build(name: str, p: dict, steps: int) -> S.Strategy:
    """A strategy object from its name and setting (``rho-online`` draws its candidates
    uniformly; the selection happens in the training loop)."""
    if name in ("uniform", "rho-online"):
        return S.Uniform()
    if name == "curriculum":
        by = p.get("by", "difficulty")
        if p["pacing"] == "root":
            return S.Curriculum(pacing.root(p["T"] * steps, p=2, c0=0.1), difficulty=by)
        if p["pacing"] == "linear":
            return S.Curriculum(pacing.linear(p["T"] * steps, c0=0.1), difficulty=by)
        raise ValueError(f"unknown pacing {p['pacing']!r}")
    if name == "ucb":
        return S.UCB(group="bucket", reward=p["reward"], tau=p["tau"])
    if name in ("prioritized", "rho-prioritized"):
        return S.Prioritized(signal="loss", alpha=p["alpha"], beta=0.4)
    if name == "dropout":
        return S.ProgressiveDropout(revision_step=int(p["revision"] * steps))
    raise ValueError(f"unknown strategy {name!r}")


def describe(name: str, p: dict) -> str:
    if name == "curriculum":
        by = {"difficulty": "", "ref_difficulty": ", by reference loss"}[p.get("by", "difficulty")]
        if p["pacing"] == "root":
            return f"Curriculum root(p=2, c0=0.1, T={p['T']}·S{by})"
        return f"Curriculum linear(c0=0.1, T={p['T']}·S{by})"
    pretty = {
        "uniform": "Uniform",
        "ucb": "UCB(bucket, reward={reward}, tau={tau})",
        "prioritized": "Prioritized(loss, alpha={alpha}, beta=0.4)",
        "rho-prioritized": "RHO Prioritized(loss − irreducible, alpha={alpha}, beta=0.4)",
        "rho-online": "RHO online select(keep={keep} of {batch_over_keep} candidates)",
        "dropout": "ProgressiveDropout(correct, revision={revision}·S)",
    }[name]
    return pretty.format(batch_over_keep="batch/keep", **p)


def cost_per_step(name: str, p: dict) -> float:
    """Forward-pass FLOPs of one training step relative to uniform's: a step is about three
    forward passes over the batch (forward + backward); online RHO-LOSS adds one forward pass
    over batch / keep candidates."""
    return (3.0 + 1.0 / p["keep"]) / 3.0 if name == "rho-online" else 1.0


# -- one training run ----------------------------------------------------------------------
_TASKS: dict[str, T.Task] = {}


def _task(path: str) -> T.Task:
    if path not in _TASKS:
        with open(path, "rb") as fh:
            _TASKS[path] = pickle.load(fh)
    return _TASKS[path]


def train(
    task_path: str, name: str, p: dict, seed: int, split: str = "test", steps: int | None = None
) -> dict:
    """Train once; return the ``split`` curve [(step, metric)], the wall time and what was
    served. ``seed`` sets the model initialisation and the sampler seed (paired runs)."""
    torch.set_num_threads(1)
    task = _task(task_path)
    steps = steps or task.steps
    torch.manual_seed(seed)  # model initialisation only; the sampler has its own seed
    model = task.model()
    opt = torch.optim.AdamW(model.parameters(), lr=task.lr, weight_decay=0.01)
    online = name == "rho-online"
    rho = name in ("rho-online", "rho-prioritized")
    irr = None
    if rho:
        if task.irreducible is None:
            raise ValueError(f"{name} needs the task's irreducible losses (a reference model)")
        irr = torch.as_tensor(task.irreducible, dtype=torch.float64)
    draw = int(round(task.batch_size / p["keep"])) if online else task.batch_size
    smp = Sampler(task.columns, build(name, p, steps), draw, seed=seed, device="cpu")
    xs, ys = task.x["train"], task.y["train"]
    noise = task.columns.get("noise_kind")
    noise_served, served = 0, 0
    curve: list = []
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step % task.eval_every == 0 or step == steps:
            curve.append((step, task.evaluate(model, split)))
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
            noise_served += int((noise[idx.numpy()] > 0).sum())
        if online:
            continue  # candidates are drawn uniformly: no feedback to give
        fb = {"loss": per.detach().double()}
        if name == "rho-prioritized":
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
    """Selection score: mean metric over the evaluations (rewards getting good early)."""
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


def run_all(jobs: list[tuple], log=print) -> list[dict]:
    """Run the training jobs one after the other in this process (one torch thread)."""
    done: list[dict] = []
    threads = torch.get_num_threads()
    try:
        for j in jobs:
            r = train(*j)
            done.append(r)
            log(
                f"  [{len(done)}/{len(jobs)}] {describe(r['strategy'], r['params'])} "
                f"seed {r['seed']} ({r['split']}): {r['seconds']:.1f}s"
            )
    finally:
        torch.set_num_threads(threads)
    return done


SELECT_SEED0 = 1000  # selection seeds 1000, 1001, ...: never a report seed


def evaluate_task(
    task: T.Task, task_path: str, seeds: int, select_seeds: int = 1, log=print
) -> dict:
    """Selection on validation (seeds 1000..), then report on test (seeds 1..``seeds``), and
    the per-strategy statistics (``efficacy_stats.summarize``)."""
    higher = task.higher_is_better
    g = grid(task.name)
    sel_seeds = [SELECT_SEED0 + i for i in range(select_seeds)]
    jobs = [
        (task_path, n, p, s, "val") for n, ps in g.items() if len(ps) > 1 for p in ps
        for s in sel_seeds
    ]  # fmt: skip
    log(f"{task.name}: selection on validation ({len(jobs)} runs, seeds {sel_seeds})")
    sel = run_all(jobs, log)
    chosen = {"uniform": {}}
    for n in g:
        if len(g[n]) == 1:
            chosen[n] = g[n][0]
            continue

        def score(p: dict, n: str = n) -> float:
            runs = [r for r in sel if r["strategy"] == n and r["params"] == p]
            return float(np.mean([auc(r["curve"], higher) for r in runs]))

        chosen[n] = max(g[n], key=score)  # first best on ties
    report_seeds = list(range(1, seeds + 1))
    jobs = [(task_path, n, chosen[n], s, "test") for s in report_seeds for n in g]
    log(f"{task.name}: report on test ({len(jobs)} runs, seeds 1..{seeds})")
    rep = run_all(jobs, log)
    by = {(r["strategy"], r["seed"]): r for r in rep}
    uni_target = {s: final(by["uniform", s]["curve"]) for s in report_seeds}

    def reach(r: dict) -> float:
        # steps are resolved to evaluations: reaching the target at step 0 counts as one
        st = steps_to(r["curve"], uni_target[r["seed"]], higher)
        return max(st, float(task.eval_every))

    uni_steps = [reach(by["uniform", s]) for s in report_seeds]
    uni_finals = [uni_target[s] for s in report_seeds]
    rows = []
    for n in g:
        runs = [by[n, s] for s in report_seeds]
        summary = E_stats.summarize(
            [reach(r) for r in runs], uni_steps, [final(r["curve"]) for r in runs], uni_finals,
            cost_per_step(n, chosen[n]),
        )  # fmt: skip
        noise = [r["noise_served"] for r in runs if r["noise_served"] is not None]
        rows.append(
            {
                "strategy": n,
                "params": chosen[n],
                "setting": describe(n, chosen[n]),
                "steps": [reach(r) for r in runs],
                "finals": [final(r["curve"]) for r in runs],
                "coverage": float(np.mean([r["coverage"] for r in runs])),
                "noise_served": float(np.mean(noise)) if noise else None,
                **summary,
            }
        )
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
        "seeds": report_seeds,
        "selection_seeds": sel_seeds,
        "rows": rows,
        "selection": sel,
        "report": rep,
    }


def _fmt(v: float, digits: int = 2) -> str:
    return "not reached" if math.isinf(v) else f"{v:.{digits}f}"


def _ci(lo: float, hi: float, digits: int = 2) -> str:
    return f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def render(results: list[dict], cmd: str, wall: float, load: str = "") -> str:
    lines = [
        f"Machine: {machine()}; no GPU. Command: `{cmd}` ({wall / 60:.0f} min"
        + (f"; load average {load}" if load else "")
        + ").",
        "",
    ]
    for res in results:
        info = res["info"]
        lm = res["metric"] == "loss"
        unit = (
            "exact-match accuracy"
            if not lm
            else ("loss (nats/word)" if res["task"] == "lm-words" else "loss (nats/byte)")
        )
        n = len(res["seeds"])
        lines += [
            f"**{res['task']}**: {info['corpus']}; difficulty from "
            f"`{info.get('scored_with', 'the given columns')}`"
            + (
                f" (Spearman with the true level {info['spearman_difficulty_level']:.2f})"
                if "spearman_difficulty_level" in info
                else ""
            )
            + f"; {info['train']:,} training records, {info['test']:,} test. {res['model']}, "
            f"{res['steps']} steps of {res['batch_size']}, evaluated every {res['eval_every']}; "
            f"test {unit}. {n} report seeds, paired; selection seeds {res['selection_seeds']}.",
            "",
            "| strategy (setting chosen on validation) | steps to uniform's final: median ratio "
            "[95% CI] | seeds faster | forward FLOPs ratio [95% CI] | final test, median "
            "[95% CI] | final − uniform, mean [95% CI] | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in res["rows"]:
            d = 3
            flops = (
                "="
                if row["cost_per_step"] == 1.0
                else f"{_fmt(row['flops_ratio_median'])} {_ci(*row['flops_ratio_ci'])}"
            )
            verdict = row["verdict_steps"]
            if row["strategy"] == "uniform":
                verdict = "baseline"
            elif row["cost_per_step"] != 1.0 and row["verdict_flops"] != verdict:
                verdict += f" in steps, {row['verdict_flops']} in FLOPs"
            lines.append(
                f"| {row['setting']} | {_fmt(row['ratio_median'])} {_ci(*row['ratio_ci'])} | "
                f"{round(row['wins'] * n)}/{n} | {flops} | "
                f"{row['final_median']:.{d}f} {_ci(*row['final_ci'], d)} | "
                f"{row['final_diff_mean']:+.{d}f} {_ci(*row['final_diff_ci'], d)} | {verdict} |"
            )
        extra = []
        if any(r.get("noise_served") is not None for r in res["rows"]):
            extra.append(
                "noise fraction of trained examples: "
                + ", ".join(
                    f"{r['strategy']} {r['noise_served']:.2f}"
                    for r in res["rows"]
                    if r.get("noise_served") is not None
                )
            )
        if res.get("reference_cost_forwards"):
            extra.append(
                f"reference model (one-off, shared by every run): "
                f"{res['reference_cost_forwards']:,.0f} example forward passes = "
                f"{res['reference_cost_forwards'] / (3 * res['batch_size']):.0f} uniform steps"
            )
        if extra:
            lines += ["", "; ".join(extra) + "."]
        lines.append("")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    """Every report seed as a thin line, the median over seeds thick, one colour per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, row in enumerate(res["rows"]):
        runs = [r for r in res["report"] if r["strategy"] == row["strategy"]]
        steps = [s for s, _ in runs[0]["curve"]]
        vals = np.array([[v for _, v in r["curve"]] for r in runs])
        c = colors[k % len(colors)]
        for v in vals:
            ax.plot(steps, v, color=c, lw=0.5, alpha=0.35)
        ax.plot(steps, np.median(vals, 0), color=c, lw=2.0, label=row["setting"])
    uni = [final(r["curve"]) for r in res["report"] if r["strategy"] == "uniform"]
    ax.axhline(float(np.median(uni)), color="k", ls="--", lw=0.8, label="uniform final (median)")
    ax.set_xlabel("training step")
    unit = "nats/word" if res["task"] == "lm-words" else "nats/byte"
    ax.set_ylabel("test accuracy" if res["metric"] == "accuracy" else f"test loss ({unit})")
    if res["metric"] == "loss":
        lo = min(float(np.min([v for _, v in r["curve"]])) for r in res["report"])
        ax.set_ylim(lo - 0.05, lo + 1.0)
    ax.set_title(f"{res['task']}: {len(uni)} seeds (thin), median (thick)")
    ax.legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


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
    else:
        raise SystemExit(f"unknown task {name!r}; have arithmetic, lm, lm-words, lm-perplexity")
    if quick:
        task.steps, task.eval_every = 60, 20
    return task


def merge(docs: list[dict]) -> dict:
    """One results document from several ``--json`` files (one task each, run one after the
    other): commands joined, wall times added."""
    return {
        "command": " && ".join(d["command"] for d in docs),
        "seconds": sum(d["seconds"] for d in docs),
        "load": " / ".join(d.get("load", "") for d in docs),
        "results": [r for d in docs for r in d["results"]],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--tasks", default="lm-words,arithmetic,lm", help="lm-words, arithmetic, lm, lm-perplexity"
    )
    ap.add_argument("--seeds", type=int, default=10, help="report seeds 1..N (paired)")
    ap.add_argument("--select-seeds", type=int, default=1, help="selection seeds 1000..")
    ap.add_argument("--work", default="/tmp/gradum-efficacy")
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
        docs = [json.loads(Path(f).read_text()) for f in a.replot.split(",")]
        saved = docs[0] if len(docs) == 1 else merge(docs)
        for res in saved["results"]:
            if a.png_dir:
                plot(res, Path(a.png_dir) / f"efficacy-{res['task']}.png")
        if a.json:
            Path(a.json).write_text(json.dumps(saved))
        print(render(saved["results"], saved["command"], saved["seconds"], saved.get("load", "")))
        return saved["results"]
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cmd = "python benchmarks/efficacy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results: list[dict] = []
    loads = [load_average()]

    def log(msg: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        print(f"{stamp} {msg}", flush=True)

    for name in a.tasks.split(","):
        t1 = time.perf_counter()
        task = build_task(name, work, a.quick)
        log(f"{name}: task built in {time.perf_counter() - t1:.0f}s")
        path = work / f"task-{name}{'-quick' if a.quick else ''}.pkl"
        with open(path, "wb") as fh:
            pickle.dump(task, fh)
        _TASKS.pop(str(path), None)
        res = evaluate_task(task, str(path), a.seeds, a.select_seeds, log)
        res["seconds"] = time.perf_counter() - t1
        results.append(res)
        loads.append(load_average())
        if a.png_dir:
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
