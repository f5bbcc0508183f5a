"""Does it help in RL? Prompt sampling strategies against uniform on GRPO post-training of a tiny
policy (``benchmarks/efficacy_rl_task.py``), with the protocol of ``benchmarks/efficacy.py``.

    .venv/bin/python benchmarks/efficacy_rl.py [--seeds 10] [--select-seeds 1]
        [--strategies a,b] [--select-only] [--selection FILE] [--work DIR] [--reuse-task]
        [--png-dir benchmarks] [--json FILE] [--quick] [--replot FILE[,FILE...]]

Strategies (``grid``):
- ``uniform``: prompts uniformly at random;
- ``ucb``: UCB over the prompt levels with the mean |advantage| of each level's recent rollouts
  as the reward (DUMP, arXiv 2504.09710: window W = 300 rollouts, c = 1, tau = 0.1);
- ``angle``: GAIN-RL's Gaussian window over the prompts ranked by angle concentration under the
  base policy's own hidden states (``efficacy_rl_angle``: the ``scorers.lm`` scorer), moving
  forward as the batch accuracy passes beta = 0.5 (``AngleWindow``; sigma and the step n chosen
  on validation, in rank units, GAIN-RL's 1000 / 500 scaled to the pool);
- ``filter``: balanced pass-rate filtering (arXiv 2504.03380) as a sampler strategy: prompts
  whose most recent pass rate was 0 or 1 are not drawn again for ``ttl`` steps
  (``PassRateFilter``), no extra rollouts;
- ``filter-prior``: the same filter with a group prior for the prompts it has not seen yet: a
  never-served prompt is drawn with the weight (1 + D) / (2 + D + A) of its level, D and A the
  level's prompts whose first rollouts disagreed and agreed (``PassRateFilter(group="level")``),
  a prompt known to be informative with weight 1; no extra rollouts; ``power`` (the prior's
  exponent: 1 when absent, or 4) and ``ttl`` chosen on validation;
- ``filter-prior-zv``: the same with the setting of ``filter-prior``'s validation runs that had
  the fewest zero-variance groups (ttl=None, power 4) instead of the best reward AUC (ttl=50,
  power 4, AUC 0.512 against 0.511 on the one selection seed): the issue's target is the
  zero-variance share;
- ``filter-online``: the same strategy with the paper's online filter in the trainer: 2B
  candidate prompts are rolled out, and the first B whose G rollouts disagree are trained on;
  every rollout counts in the FLOPs.

Protocol: as ``benchmarks/efficacy.py`` (selection on validation with seeds 1000.., 10 paired
report seeds on test, steps to uniform's final test reward, bootstrap 95 % CIs, "faster" only
when the interval's upper end is < 1). Paired: seed s fixes the rollout generator and the
sampler seed for every strategy; every run starts from the same base policy (trained once by
SFT, like a pretrained model). FLOPs: per seed, the tokens through the model (rollouts x 1,
trained sequences x 3) until the target, over uniform's. Reported besides: the share of
zero-variance groups (all G rollouts agree, so no gradient) among the groups rolled out and
among those trained on, per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import efficacy_protocol as P  # noqa: E402
from benchmarks import efficacy_rl_task as R  # noqa: E402
from benchmarks import efficacy_stats as E_stats  # noqa: E402
from benchmarks.efficacy_report import load_average  # noqa: E402
from benchmarks.efficacy_rl_report import plot, render  # noqa: E402
from sampler import Sampler  # noqa: E402
from sampler import strategies as S  # noqa: E402

_TASKS: dict[str, R.RLTask] = {}


def grid(n_pool: int) -> dict[str, list[dict]]:
    """Each strategy's candidate settings; ``n_pool`` scales GAIN-RL's rank-unit window."""
    return {
        "uniform": [{}],
        "ucb": [{"c": 1.0, "tau": 0.1, "window": 300}],
        "angle": [{"sigma": round(n_pool * f), "n": round(n_pool * f / 2)} for f in (0.125, 0.25)],
        "filter": [{"ttl": t} for t in (50, None)],
        "filter-prior": [
            {"ttl": t, "prior": "level", **({"power": a} if a != 1 else {})}
            for a in (1, 4)
            for t in (50, None)
        ],
        "filter-prior-zv": [{"ttl": None, "prior": "level", "power": 4}],
        "filter-online": [{"ttl": t, "oversample": 2} for t in (50, None)],
    }


def build(name: str, p: dict) -> S.Strategy:
    if name == "uniform":
        return S.Uniform()
    if name == "ucb":
        return S.UCB(
            group="level", reward="abs_advantage", c=p["c"], tau=p["tau"], window=p["window"]
        )
    if name == "angle":
        return S.AngleWindow(sigma=p["sigma"], n=p["n"], adj_max=2 * p["n"])
    if name in ("filter", "filter-online"):
        return S.PassRateFilter(signal="reward", ttl=p["ttl"])
    if name in ("filter-prior", "filter-prior-zv"):
        return S.PassRateFilter(
            signal="reward", ttl=p["ttl"], group=p["prior"], power=p.get("power", 1)
        )
    raise ValueError(f"unknown strategy {name!r}")


def describe(name: str, p: dict) -> str:
    if name == "uniform":
        return "Uniform"
    if name == "ucb":
        return f"UCB(level, abs advantage, W={p['window']}, c={p['c']}, tau={p['tau']})"
    if name == "angle":
        return f"AngleWindow(angle under the policy, sigma={p['sigma']}, n={p['n']})"
    if name == "filter":
        return f"PassRateFilter(0 < p < 1, ttl={p['ttl']})"
    if name in ("filter-prior", "filter-prior-zv"):
        power = f"^{p['power']}" if "power" in p else ""
        how = ", chosen for the fewest zero-variance groups" if name == "filter-prior-zv" else ""
        return (
            f"PassRateFilter(0 < p < 1, ttl={p['ttl']}, unseen by {p['prior']} prior{power}{how})"
        )
    return f"PassRateFilter(ttl={p['ttl']}) + online filter of {p['oversample']}x candidates"


def _task(path: str) -> R.RLTask:
    if path not in _TASKS:
        with open(path, "rb") as fh:
            _TASKS[path] = pickle.load(fh)
    return _TASKS[path]


# -- one run -------------------------------------------------------------------------------
def train(
    task_path: str, name: str, p: dict, seed: int, split: str = "test", steps: int | None = None
) -> dict:
    """One GRPO run from the base policy; the ``split`` expected-reward curve (sampled answers;
    the greedy accuracy beside it), the cumulative cost (tokens x passes) at each evaluation,
    and the zero-variance shares."""
    torch.set_num_threads(1)
    task = _task(task_path)
    steps = steps or task.steps
    torch.manual_seed(seed)
    model = task.policy()
    opt = torch.optim.AdamW(model.parameters(), lr=task.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    B, G, k = task.batch_size, task.group, int(p.get("oversample", 1))
    smp = Sampler(task.columns, build(name, p), B * k, seed=seed, device="cpu")
    cost, curve, costs, greedy = 0.0, [], [], []
    zero = {"rolled": [0, 0], "trained": [0, 0]}
    n_rollouts = 0
    zv_curve, window = [], [0, 0]
    levels_served = np.zeros(task.levels, dtype=np.int64)
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step % task.eval_every == 0 or step == steps:
            curve.append((step, task.evaluate(model, split)))
            greedy.append((step, task.greedy(model, split)))
            costs.append(cost * task.flops_per_token())
            if step:
                zv_curve.append((step, window[0] / max(window[1], 1)))
                window = [0, 0]
        if step == steps:
            break
        b = next(smp)
        ids = b.indices.numpy()
        recs = [task.pool[i] for i in ids]
        rewards, rolled, tokens = rollouts(model, recs, G, gen)
        cost += tokens
        n_rollouts += rewards.numel()
        adv = R.grpo_advantages(rewards)
        flat = rewards.std(1, unbiased=False) == 0
        keep = np.arange(len(ids))
        if k > 1:  # the paper's online filter: the first B groups whose rollouts disagree
            keep = np.flatnonzero(~flat.numpy())[:B]
        loss, tokens = policy_loss(model, rolled, adv, keep, len(keep) * G)
        cost += 3 * tokens
        if len(keep):
            for g in opt.param_groups:
                g["lr"] = task.lr * min(1.0, (step + 1) / 10)  # short warm-up, then constant
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        nz = int(flat.sum())
        zero["rolled"][0] += nz
        zero["rolled"][1] += len(ids)
        zero["trained"][0] += int(flat[keep].sum())
        zero["trained"][1] += len(keep)
        window[0] += int(flat[keep].sum())
        window[1] += len(keep)
        np.add.at(levels_served, task.columns["level"][ids[keep]] - 1, 1)
        smp.update(
            b.indices.repeat_interleave(G), reward=rewards.reshape(-1), advantage=adv.reshape(-1)
        )
    st = smp.stats()
    return {
        "strategy": name,
        "params": p,
        "seed": seed,
        "split": split,
        "curve": curve,
        "greedy_curve": greedy,
        "cost": costs,
        "seconds": time.perf_counter() - t0,
        "coverage": st["coverage"],
        "zero_variance_rolled": zero["rolled"][0] / max(zero["rolled"][1], 1),
        "zero_variance_trained": zero["trained"][0] / max(zero["trained"][1], 1),
        "zero_variance_curve": zv_curve,
        "groups_trained_per_step": zero["trained"][1] / steps,
        "rollouts_per_step": n_rollouts / steps,
        "levels_trained": (levels_served / max(levels_served.sum(), 1)).tolist(),
    }


def rollouts(
    model: torch.nn.Module, recs: list[dict], G: int, gen: torch.Generator
) -> tuple[torch.Tensor, dict, int]:
    """G sampled answers per prompt: rewards [prompts, G], the rollouts per level (positions,
    repeated prompts, answers) and the tokens they went through."""
    rewards = torch.zeros(len(recs), G)
    rolled, tokens = {}, 0
    with torch.no_grad():
        for lv, pos in R.by_level(recs).items():
            prompts = torch.tensor([R.prompt_tokens(recs[i]["prompt"]) for i in pos])
            rep = prompts.repeat_interleave(G, 0)
            out = R.generate(model, rep, lv + 2, gen)
            ans = [R.answer_tokens(recs[i]["answer"]) for i in pos for _ in range(G)]
            rewards[pos] = R.exact_match(out, ans).view(len(pos), G)
            rolled[lv] = (pos, rep, out)
            tokens += rep.numel() + int(R.answer_mask(out).sum())
    return rewards, rolled, tokens


def policy_loss(
    model: torch.nn.Module, rolled: dict, adv: torch.Tensor, keep: np.ndarray, n_seq: int
) -> tuple[torch.Tensor, int]:
    """-sum(A log pi) / n_seq over the kept groups' rollouts, and the tokens trained on."""
    keep_set = set(keep.tolist())
    total = torch.zeros(())
    tokens = 0
    G = adv.shape[1]
    for pos, rep, out in rolled.values():
        rows = [r for r, i in enumerate(pos) if i in keep_set]
        if not rows:
            continue
        sel = torch.tensor([r * G + g for r in rows for g in range(G)])
        a = adv[[pos[r] for r in rows]].reshape(-1)
        logp = R.sequence_logp(model, rep[sel], out[sel])
        total = total - (a * logp).sum()
        tokens += rep[sel].numel() + int(R.answer_mask(out[sel]).sum())
    return total / max(n_seq, 1), tokens


# -- protocol ------------------------------------------------------------------------------
def task_meta(task: R.RLTask) -> dict:
    return {
        "task": task.name,
        "metric": task.metric,
        "info": task.info,
        "steps": task.steps,
        "eval_every": task.eval_every,
        "batch_size": task.batch_size,
        "group": task.group,
        "lr": task.lr,
        "pool": len(task.pool),
        "model": f"TinyGPT d={task.d} layers={task.layers} heads={task.heads}",
        "flops_per_token": task.flops_per_token(),
        "base_cost_flops": task.base_cost_tokens * task.flops_per_token(),
    }


def _late(r: dict) -> float:
    """Zero-variance share of the groups trained on in the last third of the run (the
    evaluation intervals ending after 2/3 of the steps)."""
    end = r["zero_variance_curve"][-1][0]
    return float(np.mean([v for s, v in r["zero_variance_curve"] if s > 2 * end / 3]))


def _extra(runs: list[dict]) -> dict:
    """The zero-variance shares per batch (mean over seeds, with a bootstrap 95 % interval of
    the mean), the groups trained per step and the levels trained on."""
    keys = ("zero_variance_rolled", "zero_variance_trained", "groups_trained_per_step")
    out = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    out["zero_variance_rolled_by_seed"] = [r["zero_variance_rolled"] for r in runs]
    late = [_late(r) for r in runs]
    out["zero_variance_trained_late"] = float(np.mean(late))
    for k, v in (
        ("zero_variance_rolled", [r["zero_variance_rolled"] for r in runs]),
        ("zero_variance_trained", [r["zero_variance_trained"] for r in runs]),
        ("zero_variance_trained_late", late),
    ):
        out[k + "_ci"] = list(E_stats.bootstrap_ci(v, "mean"))
    out["levels_trained"] = np.mean([r["levels_trained"] for r in runs], 0).tolist()
    return out


def resummarize(meta: dict, sel: list[dict], rep: list[dict]) -> dict:
    order = list(grid(meta["pool"]))
    return P.summarize(meta, sel, rep, order, describe, extra=_extra)


def evaluate(
    task: R.RLTask, path: str, seeds: list[int], select_seeds: int = 1, log: Callable = print,
    strategies: list[str] | None = None, selection: list[dict] | None = None,
    select_only: bool = False,
) -> dict:  # fmt: skip
    """Selection on validation, report on test, statistics (as ``efficacy.evaluate_task``)."""
    g = grid(len(task.pool))
    if strategies:
        g = {n: ps for n, ps in g.items() if n in strategies}
    sel_seeds = [P.SELECT_SEED0 + i for i in range(select_seeds)]
    if selection is None:
        jobs = [(path, n, p, s, "val") for n, p, s in P.selection_jobs(g, sel_seeds)]
        log(f"{task.name}: selection on validation ({len(jobs)} runs, seeds {sel_seeds})")
        sel = P.run_all(jobs, train, describe, log)
    else:
        sel = [r for r in selection if r["strategy"] in g]
    rep: list[dict] = []
    if not select_only:
        chosen = P.choose(g, sel, True)
        jobs = [(path, n, chosen[n], s, "test") for s in seeds for n in g]
        log(f"{task.name}: report on test ({len(jobs)} runs, seeds {seeds})")
        rep = P.run_all(jobs, train, describe, log)
    return resummarize(task_meta(task), sel, rep)


def load_task(
    work: Path, quick: bool, reuse: bool, log: Callable[[str], None] = print
) -> tuple[R.RLTask, str]:
    path = work / f"task-rl{'-quick' if quick else ''}.pkl"
    if reuse and path.exists():
        log(f"reusing {path}")
    else:
        t1 = time.perf_counter()
        kw = {"pool_n": 32, "eval_n": 24, "test_n": 24, "sft_steps": 20, "steps": 6,
              "sft_n": 300, "d": 16, "layers": 1, "heads": 2}  # fmt: skip
        task = R.build_rl_task(**(kw if quick else {}))
        if quick:
            task.eval_every, task.batch_size, task.group = 3, 4, 4
        log(f"task built in {time.perf_counter() - t1:.0f}s: {json.dumps(task.info)}")
        with open(path, "wb") as fh:
            pickle.dump(task, fh)
    _TASKS.pop(str(path), None)
    return _task(str(path)), str(path)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="10", help="report seeds: N (1..N), A-B or a list")
    ap.add_argument("--select-seeds", type=int, default=1, help="selection seeds 1000..")
    ap.add_argument("--strategies", default=None, help="only these (comma-separated)")
    ap.add_argument("--select-only", action="store_true")
    ap.add_argument("--selection", default=None, help="--json file holding the selection runs")
    ap.add_argument("--work", default="/tmp/gradum-efficacy")
    ap.add_argument("--reuse-task", action="store_true")
    ap.add_argument("--png-dir", default=str(Path(__file__).parent))
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny budgets (for the test suite)")
    ap.add_argument("--replot", default=None, help="merge --json files, redraw, report")
    a = ap.parse_args(argv)
    cmd = "python benchmarks/efficacy_rl.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.replot:
        docs = [json.loads(Path(f).read_text()) for f in a.replot.split(",")]
        doc = P.merge(docs, resummarize)
    else:
        work = Path(a.work)
        work.mkdir(parents=True, exist_ok=True)
        t0, loads = time.perf_counter(), [load_average()]

        def log(msg: str) -> None:
            print(f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}", flush=True)

        task, path = load_task(work, a.quick, a.reuse_task, log)
        sel = None
        if a.selection:
            sel = json.loads(Path(a.selection).read_text())["results"][0]["selection"]
        res = evaluate(
            task, path, P.parse_seeds(a.seeds), a.select_seeds, log,
            a.strategies.split(",") if a.strategies else None, sel, a.select_only,
        )  # fmt: skip
        loads.append(load_average())
        doc = {
            "command": cmd.strip(),
            "seconds": time.perf_counter() - t0,
            "load": " / ".join(loads),
            "results": [res],
        }
    if a.json:
        Path(a.json).write_text(json.dumps(doc))
    for res in doc["results"]:
        if a.png_dir and res["rows"]:
            plot(res, Path(a.png_dir) / f"efficacy-{res['task']}.png")
    print(render(doc["results"], doc["command"], doc["seconds"], doc.get("load", "")))
    return doc["results"]


if __name__ == "__main__":
    main()
