"""The learned proxy: an expensive signal scored on a deterministic sample and predicted for
every record from the cheap ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from pipelines.model import proxy
from pipelines.score import JobConfig, JobError, run_job
from shards import ShardSet

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


class _Counting:
    name, version, outputs = "toy", "1", {"toy": 1}

    def __init__(self) -> None:
        self.seen = 0

    def describe(self) -> dict:
        return {"name": "toy"}

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        self.seen += len(texts)
        return {"toy": np.array([len(t) for t in texts], dtype=np.float64)}


def test_the_sampled_scorer_sees_a_deterministic_fraction_and_leaves_nan_elsewhere():
    texts = [f"text number {i}" for i in range(20_000)]
    inner = _Counting()
    scorer = proxy.SampledScorer(inner, seed=3, fraction=0.05)
    out = scorer.score(texts)["toy"]
    assert inner.seen == np.isfinite(out).sum()
    assert 0.04 < inner.seen / len(texts) < 0.06
    again = proxy.SampledScorer(_Counting(), seed=3, fraction=0.05).score(texts[::-1])["toy"]
    assert np.array_equal(np.isfinite(again[::-1]), np.isfinite(out))  # per text, not per batch
    assert np.array_equal(out[np.isfinite(out)], [len(t) for t, o in zip(texts, out, strict=True)
                                                  if np.isfinite(o)])  # fmt: skip


def test_the_fitted_proxy_ranks_like_its_target_and_predicts_row_by_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3))
    target = np.exp(x[:, 0]) + 0.3 * x[:, 1] ** 2 + 0.05 * rng.normal(size=3000)
    rows = [(rng.random(), f"id{i}", x[i], f"text {i}", target[i]) for i in range(3000)]
    fitted = proxy.fit(rows, "t", ["a", "b", "c"], seed=0)
    assert fitted["info"]["sample_size"] == 3000 and fitted["info"]["held_out_spearman"] > 0.9
    cols = {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}
    whole = proxy.predict(fitted, cols, ["a", "b", "c"])
    part = proxy.predict(fitted, {k: v[1000:1010] for k, v in cols.items()}, ["a", "b", "c"])
    assert np.array_equal(whole[1000:1010], part)
    assert spearmanr(whole, target).statistic > 0.9
    with pytest.raises(ValueError, match="raise --proxy-fraction"):
        proxy.fit(rows[:10], "t", ["a"], seed=0)


def _rows(x: np.ndarray, target: np.ndarray, rng) -> list:
    return [(rng.random(), f"id{i}", x[i], f"text {i}", target[i]) for i in range(len(target))]


def test_the_sample_picks_ridge_for_a_small_noisy_monotone_target_and_boosting_for_a_product():
    rng = np.random.default_rng(1)
    x = rng.lognormal(size=(120, 4))  # skewed, like lengths: the log transform matters
    noisy = np.log(x[:, 0]) + 0.5 * np.log(x[:, 1]) + 0.4 * rng.normal(size=120)
    small = proxy.fit(_rows(x, noisy, rng), "t", list("abcd"), seed=0)
    assert small["info"]["model"].startswith("ridge"), small["info"]
    assert set(small["info"]["cv_spearman"]) == {"ridge", "boosting"}

    # An embedding of 300 noise dimensions beside the signals: ridge on everything overfits it.
    emb = rng.normal(size=(120, 300))
    with_emb = proxy.fit(
        _rows(np.concatenate([x, emb], 1), noisy, rng), "t", [*"abcd", "embedding"], seed=0
    )
    assert with_emb["info"]["model"].startswith("ridge-signals"), with_emb["info"]
    cv = with_emb["info"]["cv_spearman"]
    assert cv["ridge-signals"] > cv["ridge"] + 0.1
    cols = {k: x[:, i] for i, k in enumerate("abcd")} | {"embedding": emb}
    pred = proxy.predict(with_emb, cols, [*"abcd", "embedding"])
    assert spearmanr(pred, noisy).statistic > 0.7

    x = rng.normal(size=(4000, 3))
    product = x[:, 0] * x[:, 1]  # no monotone trend in any one feature: ridge ranks at ~0
    big = proxy.fit(_rows(x, product, rng), "t", list("abc"), seed=0)
    assert big["info"]["model"].startswith("boosting"), big["info"]
    assert big["info"]["cv_spearman"]["ridge"] < 0.2 < 0.8 < big["info"]["held_out_spearman"]


def test_the_proxy_takes_nan_and_inf_features():
    rng = np.random.default_rng(2)
    x = rng.lognormal(size=(200, 2))
    target = x[:, 0] + 0.1 * rng.normal(size=200)
    x[::7, 1] = np.nan
    x[::11, 1] = np.inf
    fitted = proxy.fit(_rows(x, target, rng), "t", ["a", "b"], seed=0)
    pred = proxy.predict(fitted, {"a": x[:, 0], "b": x[:, 1]}, ["a", "b"])
    assert np.isfinite(pred).all() and spearmanr(pred, target).statistic > 0.8


def test_a_feature_without_values_in_the_sample_is_left_out_and_none_at_all_is_an_error():
    rng = np.random.default_rng(3)
    x = rng.lognormal(size=(80, 2))
    target = x[:, 0] + 0.1 * rng.normal(size=80)
    x[:, 1] = np.nan  # e.g. a signal that is NaN on every sampled record
    fitted = proxy.fit(_rows(x, target, rng), "t", ["a", "b"], seed=0)
    pred = proxy.predict(fitted, {"a": x[:, 0], "b": x[:, 1]}, ["a", "b"])
    assert np.isfinite(pred).all() and spearmanr(pred, target).statistic > 0.8
    with pytest.raises(ValueError, match="no feature"):
        proxy.fit(_rows(x[:, 1:], target, rng), "t", ["b"], seed=0)


def _job(tmp_path, name: str, **kw) -> dict:
    cfg = JobConfig(
        inputs=["builtin:graded?n=800"], output=str(tmp_path / name), progress=False, **kw
    )
    return run_job(cfg, IN_MEMORY)


def test_a_proxy_difficulty_is_recorded_and_reproducible(tmp_path):
    a = _job(tmp_path, "a", difficulty="proxy:readability", proxy_fraction=0.25)
    b = _job(tmp_path, "b", difficulty="proxy:readability", proxy_fraction=0.25)
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    info = a["proxy"]
    assert info["target"] == "readability" and "readability" not in info["features"]
    assert 150 < info["sample_size"] < 250 and info["held_out_spearman"] > 0.8
    assert a["options"]["difficulty_weights"] == {"readability_proxy": 1.0}
    ds = ShardSet.open(tmp_path / "a")
    true, pred = ds.column("readability"), ds.column("readability_proxy")
    sampled = np.isfinite(true)
    assert sampled.sum() == info["sample_size"] and np.isfinite(pred).all()
    unseen = ~sampled
    assert spearmanr(pred[unseen], _readability(ds, unseen)).statistic > 0.8
    signals = {s["name"]: s for s in a["signals"]}
    assert signals["readability_proxy"]["params"]["target"] == "readability"


def _readability(ds: ShardSet, mask: np.ndarray) -> np.ndarray:
    import scorers

    texts = ds.take(np.flatnonzero(mask), columns=["text"])["text"].to_pylist()
    return scorers.get("readability").score(texts)["readability"]


def test_a_perplexity_proxy_trains_the_reference_lm_and_tracks_the_level(tmp_path):
    m = _job(
        tmp_path,
        "lm",
        difficulty="proxy:perplexity",
        proxy_fraction=0.25,
        reference_lm_steps=40,
        reference_lm_samples=300,
    )
    assert m["proxy"]["target"] == "perplexity" and m["proxy"]["features"][-1] == "tokens"
    assert "reference_lm" in m["proxy"]["tokens"]  # the token features of the LM's tokenizer
    ds = ShardSet.open(tmp_path / "lm")
    lm = {s["name"]: s for s in m["signals"]}["perplexity"]
    assert lm["params"]["sample_fraction"] == 0.25
    assert spearmanr(ds.column("difficulty"), ds.column("level")).statistic > 0.5


def test_a_proxy_of_an_unknown_signal_is_a_user_error(tmp_path):
    with pytest.raises(JobError, match="not a scored signal"):
        _job(tmp_path, "x", proxy="nope")
