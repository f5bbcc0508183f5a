"""benchmarks/efficacy.py: the protocol (selection on validation with separate seeds, paired
report seeds on test, steps to uniform's final quality) and its statistics
(benchmarks/efficacy_stats.py), on tiny tasks built without the pipeline."""

from __future__ import annotations

import json
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import efficacy as E  # noqa: E402
from benchmarks import efficacy_stats as ST  # noqa: E402
from benchmarks import efficacy_tasks as T  # noqa: E402
from benchmarks import efficacy_words as W  # noqa: E402
from pipelines.corpora.graded import graded_records  # noqa: E402


def _tiny_task(tmp_path: Path, name: str = "arithmetic") -> str:
    levels = 3
    recs = list(graded_records(n=600, seed=0, task="arithmetic", levels=levels))
    held = list(graded_records(n=100, seed=1, task="arithmetic", levels=levels))
    splits = {"train": recs, "val": held[:50], "test": held[50:]}
    x, y = T.encode_splits(
        {k: [r["text"] for r in rs] for k, rs in splits.items()},
        lambda t: T.encode_sum(t, levels),
        torch.uint8,
    )
    level = np.array([r["level"] for r in recs])
    columns = {
        "difficulty": (level / levels).astype(np.float32),
        "bucket": (level - 1).astype(np.int16),
        "ref_difficulty": (level / levels).astype(np.float32),
        "level": level,
        "cluster": (level - 1).astype(np.int32),
        "ref_bucket": (level - 1).astype(np.int16),
        "noise_kind": (level == levels).astype(np.int8),  # the hardest level plays the noise
    }
    task = T.Task(
        name, "accuracy" if name == "arithmetic" else "loss", x, y, columns, vocab=14, d=16,
        layers=1, heads=2, steps=16, batch_size=16, eval_every=8,
        info={"corpus": "test", "train": 600, "test": 50},
    )  # fmt: skip
    task.irreducible = (0.5 * level).astype(np.float32)  # a stand-in reference loss
    path = tmp_path / f"task-{name}.pkl"
    path.write_bytes(pickle.dumps(task))
    return str(path)


# -- statistics ----------------------------------------------------------------------------
def test_steps_to_target_uses_the_trailing_three_point_mean():
    curve = [(0, 0.0), (10, 0.9), (20, 0.0), (30, 0.6), (40, 0.6), (50, 0.6)]
    # 0.9 alone is a spike: trailing means are 0, .45, .3, .5, .4, .6
    assert E.steps_to(curve, 0.55, higher=True) == 50
    assert E.steps_to(curve, 0.5, higher=True) == 30
    assert E.steps_to(curve, 0.7, higher=True) == math.inf
    assert E.steps_to([(0, 3.0), (5, 2.0), (10, 1.0)], 2.0, higher=False) == 10
    assert E.final(curve) == pytest.approx(0.6)


def test_paired_ratios_are_per_seed_and_keep_never_reached_as_inf():
    r = ST.paired_ratios([50, 100, math.inf], [100, 100, 200])
    assert r.tolist() == [0.5, 1.0, math.inf]
    assert ST.win_fraction(r) == pytest.approx(1 / 3)  # a tie is not a win
    assert ST.median(r) == 1.0
    assert ST.median([0.5, math.inf]) == math.inf  # never NaN
    with pytest.raises(ValueError):
        ST.paired_ratios([1, 2], [1])
    with pytest.raises(ValueError):
        ST.paired_ratios([1], [0])
    with pytest.raises(ValueError):
        ST.paired_ratios([math.nan], [1])


def test_bootstrap_ci_is_deterministic_brackets_the_statistic_and_narrows_with_seeds():
    rng = np.random.default_rng(1)
    x = rng.normal(0.7, 0.1, size=10)
    lo, hi = ST.bootstrap_ci(x, "median")
    assert (lo, hi) == ST.bootstrap_ci(x, "median")  # same seed, same interval
    assert lo <= np.median(x) <= hi and lo >= x.min() and hi <= x.max()
    wide = ST.bootstrap_ci(rng.normal(0.7, 0.1, size=5), "mean")
    narrow = ST.bootstrap_ci(rng.normal(0.7, 0.1, size=400), "mean")
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 3
    # mean of a constant: a point interval
    assert ST.bootstrap_ci([2.0] * 10, "mean") == (2.0, 2.0)
    # a custom statistic along the last axis
    assert ST.bootstrap_ci([1.0, 3.0], lambda a: a.max(axis=-1))[1] == 3.0
    # inf (never reached) pushes the upper end to inf, never NaN
    lo, hi = ST.bootstrap_ci([0.5] * 7 + [math.inf] * 3, "median")
    assert lo == 0.5 and hi == math.inf
    with pytest.raises(ValueError):
        ST.bootstrap_ci([], "median")
    with pytest.raises(ValueError):
        ST.bootstrap_ci([1.0, math.nan], "median")


def test_bootstrap_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    hits = 0
    for k in range(200):
        x = rng.lognormal(0.0, 0.5, size=15)  # true median 1.0
        lo, hi = ST.bootstrap_ci(x, "median", n_boot=500, seed=k)
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / 200 <= 1.0


def test_verdict_needs_the_whole_interval_on_one_side():
    assert ST.verdict((0.5, 0.95)) == "faster"
    assert ST.verdict((0.5, 1.0)) == "no clear difference"
    assert ST.verdict((0.9, 1.3)) == "no clear difference"
    assert ST.verdict((1.05, math.inf)) == "slower"


def test_summarize_pairs_seeds_and_scales_flops_by_cost_per_step():
    uni_steps = [100, 200, 100, 100]
    row = ST.summarize(
        [50, 100, 60, 40], uni_steps, [0.8, 0.9, 0.7, 0.8], [0.7, 0.8, 0.7, 0.6], cost_per_step=2
    )
    assert row["ratios"] == [0.5, 0.5, 0.6, 0.4]
    assert row["ratio_median"] == 0.5 and row["wins"] == 1.0
    assert row["verdict_steps"] == "faster"
    assert row["flops_ratio_median"] == 1.0
    assert row["flops_ratio_ci"] == [2 * row["ratio_ci"][0], 2 * row["ratio_ci"][1]]
    assert row["verdict_flops"] in ("faster", "no clear difference", "slower")
    assert row["final_diff_mean"] == pytest.approx(0.1)


def test_cost_per_step_counts_online_candidates():
    assert E.cost_per_step("uniform", {}) == 1.0
    assert E.cost_per_step("rho-prioritized", {"alpha": 1.0}) == 1.0
    assert E.cost_per_step("rho-online", {"keep": 0.25}) == pytest.approx(7 / 3)


# -- training and protocol -----------------------------------------------------------------
def test_every_strategy_trains_and_rho_online_trains_on_the_kept_fraction(tmp_path):
    path = _tiny_task(tmp_path)
    for name, settings in E.grid("arithmetic").items():
        r = E.train(path, name, settings[0], seed=0)
        assert [s for s, _ in r["curve"]] == [0, 8, 16]
        assert all(0.0 <= v <= 1.0 for _, v in r["curve"])
        assert 0 < r["coverage"] <= 1
    lm_path = _tiny_task(tmp_path, "lm")
    for name, settings in E.grid("lm").items():
        r = E.train(lm_path, name, settings[0], seed=0, split="val")
        assert r["split"] == "val" and all(math.isfinite(v) for _, v in r["curve"])
    # a curriculum serves easier items than uniform over the same budget
    cur = E.train(path, "curriculum", {"pacing": "root", "T": 0.6}, seed=0)
    uni = E.train(path, "uniform", {}, seed=0)
    assert cur["mean_difficulty_served"] < uni["mean_difficulty_served"] - 0.05
    # same seed, same run: paired runs are deterministic
    assert E.train(path, "uniform", {}, seed=0)["curve"] == uni["curve"]


def test_bandits_over_clusters_train_and_report_the_noise_they_serve(tmp_path):
    lm_path = _tiny_task(tmp_path, "lm")
    for name, settings in E.grid("lm-words-clusters").items():
        for p in settings:  # every setting builds and has a name
            assert E.build(name, p, 16).name in name and E.describe(name, p)
        r = E.train(lm_path, name, settings[-1], seed=0, split="val")
        assert all(math.isfinite(v) for _, v in r["curve"]), name
        assert 0 <= r["noise_served"] <= 1 and len(r["noise_curve"]) == 2
    assert E.describe("exp3", {"group": "cluster", "reward": "loss"}).startswith("EXP3(cluster")
    # the learnability rewards are the reducible loss (loss - reference loss) or the progress
    assert E.build("ucb", {"group": "g", "reward": "progress", "c": 1.0}, 10).reward == (
        "loss_decrease"
    )
    assert E.grid("lm-words-clusters")["ucb"][0]["group"] == "ref_bucket"


def test_protocol_selects_on_validation_seeds_and_reports_paired_test_seeds(tmp_path):
    path = _tiny_task(tmp_path)
    with open(path, "rb") as fh:
        task = pickle.load(fh)
    res = E.evaluate_task(task, path, seeds=2, log=lambda m: None)
    g = E.grid("arithmetic")
    assert [row["strategy"] for row in res["rows"]] == list(g)
    assert len(res["selection"]) == sum(len(v) for v in g.values() if len(v) > 1)
    assert {r["seed"] for r in res["selection"]} == {1000}
    assert {r["split"] for r in res["selection"]} == {"val"}
    assert {(r["seed"], r["split"]) for r in res["report"]} == {(1, "test"), (2, "test")}
    for row in res["rows"]:
        assert len(row["ratios"]) == 2 and len(row["finals"]) == 2
        assert all(not math.isnan(x) for x in row["ratios"])
        lo, hi = row["ratio_ci"]
        assert lo <= row["ratio_median"] <= hi
        # the chosen setting of each strategy is the best on validation
        runs = [r for r in res["selection"] if r["strategy"] == row["strategy"]]
        if runs:
            best = max(runs, key=lambda r: E.auc(r["curve"], True))
            assert row["params"] == best["params"]
    assert res["rows"][0]["ratios"] == [1.0, 1.0]  # uniform against itself
    text = E.render([res], "cmd", 60.0, "1.0 1.0 1.0")
    assert "| Uniform |" in text and "seeds faster" in text and "baseline" in text
    # --replot from the saved curves gives the same table
    doc = {"command": "cmd", "seconds": 60.0, "load": "1.0 1.0 1.0", "results": [res]}
    saved = tmp_path / "r.json"
    saved.write_text(json.dumps(doc))
    again = E.main(["--replot", f"{saved},{saved}", "--png-dir", str(tmp_path)])
    assert len(again) == 1 and (tmp_path / "efficacy-arithmetic.png").stat().st_size > 0
    assert again[0]["rows"] == res["rows"]  # the same runs pooled: the same table


def test_lm_words_noise_is_mixed_at_the_stated_rate():
    rng = np.random.default_rng(0)
    clean = [["the", "cat", "sat", "on", "the", "mat"]] * 30
    noisy, kinds = W.make_noise(clean, ["a", "b", "c"], 0.25, rng)
    assert len(noisy) == 10  # 10 / (30 + 10) = 25 %
    assert kinds.count("boilerplate") == 4 and kinds.count("random") == 3
    for toks, kind in zip(noisy, kinds, strict=True):
        if kind == "shuffled":
            assert sorted(toks) == sorted(clean[0])
        if kind == "random":
            assert set(toks) <= {"a", "b", "c"}
