"""The protocol shared by the efficacy benchmarks (``benchmarks/efficacy.py`` for supervised
tasks, ``benchmarks/efficacy_rl.py`` for the RL task): run records, selection on validation,
the paired report table, and merging runs made in several pieces.

A run record is a dict with ``strategy``, ``params``, ``seed``, ``split`` ("val" for selection,
"test" for the report), ``curve`` [(step, metric)] and optionally ``cost`` (cumulative
forward-pass equivalents at each point of the curve, when a step's cost varies, e.g. extra
rollouts). Runs of one task made by separate invocations (a few seeds or strategies each, to
keep every process short) are merged by ``merge`` and summarised again: the table is a pure
function of the runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import torch

from benchmarks import efficacy_stats as E_stats
from benchmarks.efficacy_stats import auc, final, steps_to

SELECT_SEED0 = 1000  # selection seeds 1000, 1001, ...: never a report seed


def parse_seeds(spec: str) -> list[int]:
    """Report seeds: "10" -> 1..10, "4-6" -> 4, 5, 6, "1,3" -> 1, 3."""
    out: list[int] = []
    for part in str(spec).split(","):
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-"))
            out += list(range(lo, hi + 1))
        elif len(str(spec).split(",")) == 1:
            out += list(range(1, int(part) + 1))
        else:
            out.append(int(part))
    if not out or min(out) < 1 or min(out) >= SELECT_SEED0:
        raise SystemExit(f"report seeds must be in 1..{SELECT_SEED0 - 1}, got {spec!r}")
    return out


def run_all(
    jobs: list[tuple], train: Callable, describe: Callable, log: Callable[[str], None] = print
) -> list[dict]:
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


def selection_jobs(grid: dict[str, list[dict]], seeds: list[int]) -> list[tuple[str, dict, int]]:
    """(strategy, setting, seed) of every selection run: strategies with more than one setting."""
    return [(n, p, s) for n, ps in grid.items() if len(ps) > 1 for p in ps for s in seeds]


def choose(grid: dict[str, list[dict]], sel: list[dict], higher: bool) -> dict[str, dict]:
    """Each strategy's setting: its only one, or the best mean validation AUC over the
    selection seeds (first best on ties)."""
    chosen: dict[str, dict] = {}
    for n, ps in grid.items():
        if len(ps) == 1:
            chosen[n] = ps[0]
            continue

        def score(p: dict, n: str = n) -> float:
            runs = [r for r in sel if r["strategy"] == n and r["params"] == p]
            if not runs:
                raise SystemExit(f"no selection run of {n} {p}: run the selection first")
            return float(np.mean([auc(r["curve"], higher) for r in runs]))

        chosen[n] = max(ps, key=score)
    return chosen


def _cost_at(r: dict, step: float) -> float:
    """Cumulative cost of run ``r`` at ``step`` (inf if never)."""
    if math.isinf(step):
        return math.inf
    for (s, _), c in zip(r["curve"], r["cost"], strict=True):
        if s >= step:
            return float(c)
    return float(r["cost"][-1])


def summarize(
    meta: dict,
    sel: list[dict],
    rep: list[dict],
    order: list[str],
    describe: Callable[[str, dict], str],
    cost_per_step: Callable[[str, dict], float] | None = None,
    extra: Callable[[list[dict]], dict] | None = None,
) -> dict:
    """The task's result: its ``meta`` plus the rows of the report table from the runs.

    Per seed, target = uniform's final test metric; steps to target (resolved to evaluations:
    reaching it at step 0 counts as one evaluation); per strategy ``efficacy_stats.summarize``.
    FLOPs: ``cost_per_step`` x the step ratio, or, when the runs carry a ``cost`` curve, the
    per-seed ratio of cumulative costs at the steps each reached the target."""
    higher = meta["metric"] != "loss"
    seeds = sorted({r["seed"] for r in rep})
    by = {(r["strategy"], r["seed"]): r for r in rep}
    res = {**meta, "seeds": seeds, "selection": sel, "report": rep, "rows": []}
    res["selection_seeds"] = sorted({r["seed"] for r in sel})
    if not seeds or any(("uniform", s) not in by for s in seeds):
        return res  # a piece without uniform's runs: summarised when merged
    target = {s: final(by["uniform", s]["curve"]) for s in seeds}

    def reach(r: dict) -> float:
        st = steps_to(r["curve"], target[r["seed"]], higher)
        return max(st, float(meta["eval_every"]))

    uni = [by["uniform", s] for s in seeds]
    uni_steps = [reach(r) for r in uni]
    for n in order:
        runs = [by[n, s] for s in seeds if (n, s) in by]
        if len(runs) != len(seeds):
            continue
        params = {json.dumps(r["params"], sort_keys=True) for r in runs}
        if len(params) != 1:
            raise SystemExit(f"{n}: report runs with different settings {sorted(params)}")
        p = runs[0]["params"]
        steps = [reach(r) for r in runs]
        flops = None
        if all("cost" in r for r in runs + uni):
            flops = [
                _cost_at(r, st) / _cost_at(u, su)
                for r, st, u, su in zip(runs, steps, uni, uni_steps, strict=True)
            ]
        cps = cost_per_step(n, p) if cost_per_step else 1.0
        row = E_stats.summarize(
            steps, uni_steps, [final(r["curve"]) for r in runs],
            [target[s] for s in seeds], cps, flops=flops,
        )  # fmt: skip
        noise = [r["noise_served"] for r in runs if r.get("noise_served") is not None]
        res["rows"].append(
            {
                "strategy": n,
                "params": p,
                "setting": describe(n, p),
                "steps": steps,
                "finals": [final(r["curve"]) for r in runs],
                "coverage": float(np.mean([r["coverage"] for r in runs])),
                "noise_served": float(np.mean(noise)) if noise else None,
                "noise_served_by_seed": noise or None,
                **row,
                **(extra(runs) if extra else {}),
            }
        )
    return res


def _key(r: dict) -> tuple:
    return (r["strategy"], json.dumps(r["params"], sort_keys=True), r["seed"], r["split"])


def merge(docs: list[dict], resummarize: Callable[[dict, list[dict], list[dict]], dict]) -> dict:
    """One results document from several ``--json`` files: the runs of each task are pooled
    (a run made twice is kept once, the first) and summarised again with ``resummarize(meta,
    sel, rep)``; commands joined, wall times added."""
    tasks: dict[str, dict] = {}
    for d in docs:
        for res in d["results"]:
            t = tasks.setdefault(res["task"], {"res": res, "runs": {}})
            for r in res["selection"] + res["report"]:
                t["runs"].setdefault(_key(r), r)
    results = []
    for t in tasks.values():
        runs = list(t["runs"].values())
        meta = {k: v for k, v in t["res"].items() if k not in _DERIVED}
        results.append(
            resummarize(
                meta,
                [r for r in runs if r["split"] == "val"],
                [r for r in runs if r["split"] == "test"],
            )
        )
    return {
        "command": " && ".join(d["command"] for d in docs),
        "seconds": sum(d["seconds"] for d in docs),
        "load": " / ".join(d.get("load", "") for d in docs),
        "results": results,
    }


_DERIVED = ("rows", "selection", "report", "seeds", "selection_seeds")
