"""benchmarks/efficacy.py: the protocol (selection on validation, report on test, steps to
uniform's final quality) on a tiny arithmetic task built without the pipeline."""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import efficacy as E  # noqa: E402
from benchmarks import efficacy_tasks as T  # noqa: E402
from pipelines.corpora.graded import graded_records  # noqa: E402


def _tiny_task(tmp_path: Path) -> str:
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
        "level": level,
    }
    task = T.Task(
        "arithmetic", "accuracy", x, y, columns, vocab=14, d=16, layers=1, heads=2,
        steps=24, batch_size=16, eval_every=8, info={"corpus": "test", "train": 600, "test": 50},
    )  # fmt: skip
    path = tmp_path / "task.pkl"
    path.write_bytes(pickle.dumps(task))
    return str(path)


def test_steps_to_target_uses_the_trailing_three_point_mean():
    curve = [(0, 0.0), (10, 0.9), (20, 0.0), (30, 0.6), (40, 0.6), (50, 0.6)]
    # 0.9 alone is a spike: trailing means are 0, .45, .3, .5, .4, .6
    assert E.steps_to(curve, 0.55, higher=True) == 50
    assert E.steps_to(curve, 0.5, higher=True) == 30
    assert E.steps_to(curve, 0.7, higher=True) == math.inf
    assert E.steps_to([(0, 3.0), (5, 2.0), (10, 1.0)], 2.0, higher=False) == 10
    assert E.final(curve) == pytest.approx(0.6)
    assert E.fmt_ratio([0.5, 0.25, 1.0]) == "0.50 (0.25–1.00)"
    assert E.fmt_ratio([0.5, -1.5]) == "0.50, >1.50"


def test_every_strategy_trains_and_feeds_back(tmp_path):
    path = _tiny_task(tmp_path)
    for name, settings in E.grid("arithmetic").items():
        r = E.train(path, name, settings[0], seed=0)
        steps = [s for s, _ in r["curves"]["test"]]
        assert steps == [0, 8, 16, 24]
        assert all(0.0 <= v <= 1.0 for _, v in r["curves"]["val"])
        assert 0 < r["coverage"] <= 1
    # a curriculum serves easier items than uniform over the same budget
    cur = E.train(path, "root", {"T": 0.6}, seed=0)
    uni = E.train(path, "uniform", {}, seed=0)
    assert cur["mean_difficulty_served"] < uni["mean_difficulty_served"] - 0.05


def test_protocol_selects_on_validation_and_reports_on_test(tmp_path):
    path = _tiny_task(tmp_path)
    with open(path, "rb") as fh:
        task = pickle.load(fh)
    res = E.evaluate_task(task, path, seeds=2, n_jobs=1)
    names = [row["strategy"] for row in res["rows"]]
    assert names == list(E.grid("arithmetic"))
    assert len(res["selection"]) == sum(map(len, E.grid("arithmetic").values()))
    assert {r["seed"] for r in res["selection"]} == {0}
    assert {r["seed"] for r in res["report"]} == {1, 2}
    uniform = res["rows"][0]
    assert uniform["strategy"] == "uniform"
    for row in res["rows"]:
        assert len(row["ratios"]) == 2 and len(row["finals"]) == 2
        # a ratio is a finite step ratio or a negative "> budget" marker, never NaN
        assert all(not math.isnan(x) for x in row["ratios"])
    # the chosen setting of each strategy is the best on validation
    for row in res["rows"]:
        runs = [r for r in res["selection"] if r["strategy"] == row["strategy"]]
        best = max(runs, key=lambda r: E.auc(r["curves"]["val"], True))
        assert row["setting"] == E.describe(row["strategy"], best["params"])
    text = E.render([res], "cmd", 1.0)
    assert "| Uniform |" in text and "steps to uniform's final" in text
