"""Tables and plots of the efficacy benchmarks (``benchmarks/efficacy.py``): the machine line,
the per-task markdown table (steps ratio, seeds faster, FLOPs, final metric, verdict) and the
plot of every report seed."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import numpy as np
import torch

from benchmarks.efficacy_stats import final


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


def _fmt(v: float, digits: int = 2) -> str:
    return "not reached" if math.isinf(v) else f"{v:.{digits}f}"


def _ci(lo: float, hi: float, digits: int = 2) -> str:
    return f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def header(cmd: str, wall: float, load: str = "") -> list[str]:
    """The machine / command / wall-time line every efficacy table starts with."""
    shown = f"; load average {load}" if load else ""
    return [f"Machine: {machine()}; no GPU. Command: `{cmd}` ({wall / 60:.0f} min{shown}).", ""]


def render(results: list[dict], cmd: str, wall: float, load: str = "") -> str:
    lines = header(cmd, wall, load)
    for res in results:
        info = res["info"]
        lm = res["metric"] == "loss"
        unit = (
            "exact-match accuracy"
            if not lm
            else ("loss (nats/word)" if res["task"].startswith("lm-words") else "loss (nats/byte)")
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
    """Every report seed as a thin line, the median over seeds thick, one colour per strategy;
    with a second panel of the noise share served per evaluation interval when the task has
    noise (``noise_curve``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noisy = all(r.get("noise_curve") for r in res["report"])
    fig, axes = plt.subplots(
        1, 2 if noisy else 1, figsize=(12.5 if noisy else 7.5, 4.5), dpi=110, squeeze=False
    )
    ax = axes[0, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, row in enumerate(res["rows"]):
        runs = [r for r in res["report"] if r["strategy"] == row["strategy"]]
        c = colors[k % len(colors)]
        keys = ("curve", "noise_curve") if noisy else ("curve",)
        for a, key in zip(axes[0], keys, strict=False):
            steps = [s for s, _ in runs[0][key]]
            vals = np.array([[v for _, v in r[key]] for r in runs])
            for v in vals:
                a.plot(steps, v, color=c, lw=0.5, alpha=0.35)
            a.plot(steps, np.median(vals, 0), color=c, lw=2.0, label=row["setting"])
    uni = [final(r["curve"]) for r in res["report"] if r["strategy"] == "uniform"]
    ax.axhline(float(np.median(uni)), color="k", ls="--", lw=0.8, label="uniform final (median)")
    ax.set_xlabel("training step")
    unit = "nats/word" if res["task"].startswith("lm-words") else "nats/byte"
    ax.set_ylabel("test accuracy" if res["metric"] == "accuracy" else f"test loss ({unit})")
    if res["metric"] == "loss":
        lo = min(float(np.min([v for _, v in r["curve"]])) for r in res["report"])
        ax.set_ylim(lo - 0.05, lo + 1.0)
    ax.set_title(f"{res['task']}: {len(uni)} seeds (thin), median (thick)")
    ax.legend(fontsize=6.5, loc="best")
    if noisy:
        a = axes[0, 1]
        a.set_xlabel("training step")
        a.set_ylabel("noise share of the records trained on (per evaluation interval)")
        a.set_title("noise served: every seed (thin), median (thick)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""
