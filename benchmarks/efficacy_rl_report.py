"""Table and plot of the RL efficacy benchmark (``benchmarks/efficacy_rl.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.efficacy_report import _ci, _fmt, header
from benchmarks.efficacy_stats import final


def render(results: list[dict], cmd: str, wall: float, load: str = "") -> str:
    lines = header(cmd, wall, load)
    for res in results:
        info, n = res["info"], len(res["seeds"])
        base = ", ".join(
            f"L{k} {v:.2f}" for k, v in info.get("base_test_accuracy_by_level", {}).items()
        )
        sampled = ", ".join(
            f"L{k} {v:.2f}" for k, v in info.get("base_test_reward_by_level", {}).items()
        )
        lines += [
            f"**{res['task']}**: {info.get('corpus', '')}, pool of {res['pool']:,} prompts, "
            f"{info.get('test', 0):,} test prompts. {res['model']}; base policy: "
            f"{info.get('base', '')}; greedy test accuracy by level {base}, expected test "
            f"reward by level {sampled}. GRPO, {res['steps']} steps of {res['batch_size']} "
            f"prompts x {res['group']} rollouts, Adam lr {res['lr']}, evaluated every "
            f"{res['eval_every']}; test reward = the expected exact match (answers sampled at "
            f"temperature 1, the same draws for every run). {n} report seeds, paired; "
            f"selection seeds {res['selection_seeds']}.",
            "",
            "| strategy (setting chosen on validation) | steps to uniform's final reward: median "
            "ratio [95% CI] | seeds faster | FLOPs to that reward vs uniform [95% CI] | "
            "zero-variance groups per batch, mean [95% CI]: rolled out / trained / trained in "
            "the last third | final test reward, median "
            "[95% CI] | final − uniform, mean [95% CI] | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in res["rows"]:
            verdict = row["verdict_steps"]
            if row["strategy"] == "uniform":
                verdict = "baseline"
            elif row["verdict_flops"] != verdict:
                verdict += f" in steps, {row['verdict_flops']} in FLOPs"
            lines.append(
                f"| {row['setting']} | {_fmt(row['ratio_median'])} {_ci(*row['ratio_ci'])} | "
                f"{round(row['wins'] * n)}/{n} | {_fmt(row['flops_ratio_median'])} "
                f"{_ci(*row['flops_ratio_ci'])} | {_pct(row, 'zero_variance_rolled')} / "
                f"{_pct(row, 'zero_variance_trained')} / {_pct(row, 'zero_variance_trained_late')} "
                f"| {row['final_median']:.3f} "
                f"{_ci(*row['final_ci'], 3)} | {row['final_diff_mean']:+.3f} "
                f"{_ci(*row['final_diff_ci'], 3)} | {verdict} |"
            )
        lines += [
            "",
            "Levels trained on (share of groups, L1..L"
            + str(len(res["rows"][0]["levels_trained"]) if res["rows"] else "")
            + "): "
            + "; ".join(
                f"{r['strategy']} "
                + " ".join(f"{x:.2f}" for x in r["levels_trained"])
                + f" ({r['groups_trained_per_step']:.1f} groups/step)"
                for r in res["rows"]
            )
            + f". Base policy (one-off SFT, shared by every run): {res['base_cost_flops']:.2e} "
            "FLOPs.",
            "",
        ]
    return "\n".join(lines)


def _pct(row: dict, key: str) -> str:
    """A share in per cent with its interval, when the row has one."""
    if key not in row:
        return "?"
    ci = row.get(key + "_ci")
    return f"{row[key]:.1%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")


def plot(res: dict, path: Path) -> None:
    """Test reward against step (every seed thin, median thick) and the zero-variance share of
    the groups trained on per evaluation interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, az) = plt.subplots(1, 2, figsize=(12.5, 5.5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, row in enumerate(res["rows"]):
        runs = [r for r in res["report"] if r["strategy"] == row["strategy"]]
        c = colors[k % len(colors)]
        for a, key in ((ax, "curve"), (az, "zero_variance_curve")):
            steps = [s for s, _ in runs[0][key]]
            vals = np.array([[v for _, v in r[key]] for r in runs])
            for v in vals:
                a.plot(steps, v, color=c, lw=0.5, alpha=0.35)
            a.plot(steps, np.median(vals, 0), color=c, lw=2.0, label=row["setting"])
    uni = [final(r["curve"]) for r in res["report"] if r["strategy"] == "uniform"]
    ax.axhline(float(np.median(uni)), color="k", ls="--", lw=0.8, label="uniform final (median)")
    ax.set_xlabel("RL step")
    ax.set_ylabel("test reward (expected exact match, sampled)")
    ax.set_title(f"{res['task']}: {len(uni)} seeds (thin), median (thick)")
    az.set_xlabel("RL step")
    az.set_ylabel("zero-variance share of the groups trained on")
    az.set_title("groups with no gradient (all G rollouts agree)")
    # one legend under both panels (inside a panel it hid the curves)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7.5, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.025 * ((len(labels) + 1) // 2), 1, 1))
    fig.savefig(path)
    plt.close(fig)
