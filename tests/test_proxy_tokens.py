"""Token features for the proxy of an LM signal: the LM tokenizer's token frequencies."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.stats import spearmanr

from pipelines.model import proxy
from pipelines.model.proxy_tokens import TokenFeatures
from scorers.reference_lm import train_tokenizer

EASY = "the cat sat on a mat and the dog ran to the sun".split()
HARD = "zygote quixotic syzygy xylophone jackdaw sphinx fjord glyph".split()


@pytest.fixture(scope="module")
def tokens() -> TokenFeatures:
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(EASY + HARD, size=12)) for _ in range(300)]
    return TokenFeatures(train_tokenizer(corpus, 300), name="tiny", max_tokens=64)


def test_token_frequencies_sum_to_one_per_text_and_survive_awkward_text(tokens):
    texts = ["the cat sat", "", "zygote " * 500, "lone \ud800 surrogate", "the the the"]
    stats, freq = tokens.matrices(texts)
    assert freq.shape == (5, tokens.vocab) and stats.shape == (5, 2)
    sums = np.asarray(freq.sum(axis=1)).ravel()
    assert np.allclose(sums[[0, 2, 3, 4]], 1.0) and sums[1] == 0.0  # no tokens: a zero row
    assert stats[1, 0] == 0.0 and np.isclose(stats[2, 0], np.log1p(64))  # cut at max_tokens
    ids = tokens.encode(texts[4:])[0]  # a repeated token's share is its count over the length
    assert {v: freq[4, v] for v in set(ids)} == {v: ids.count(v) / len(ids) for v in set(ids)}
    assert len(set(ids)) < len(ids)
    again = pickle.loads(pickle.dumps(tokens)).matrices(texts)  # travels with the model
    assert np.array_equal(again[0], stats) and (again[1] != freq).nnz == 0


def _rows(texts, x, target, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.random(), f"id{i}", x[i], texts[i], target[i]) for i in range(len(target))]


def _corpus(n: int, seed: int):
    """Texts whose target is the share of hard words (a unigram property of the tokens), and a
    scalar feature that only knows the length."""
    rng = np.random.default_rng(seed)
    share = rng.random(n)
    texts, length = [], rng.integers(8, 30, size=n)
    for i in range(n):
        hard = rng.random(length[i]) < share[i]
        texts.append(" ".join(rng.choice(HARD) if h else rng.choice(EASY) for h in hard))
    target = share + 0.05 * rng.normal(size=n)
    return texts, length.astype(np.float64).reshape(-1, 1), target


def test_the_proxy_learns_a_unigram_target_from_tokens_where_the_signals_cannot(tokens):
    texts, x, target = _corpus(400, seed=1)
    fitted = proxy.fit(_rows(texts, x, target), "t", ["length"], seed=0, tokens=tokens)
    info = fitted["info"]
    assert info["model"].startswith("ridge-tokens"), info
    assert info["cv_spearman"]["ridge-tokens"] > max(0.9, info["cv_spearman"]["ridge"])
    blind = proxy.fit(_rows(texts, x, target), "t", ["length"], seed=0)  # no token features
    assert max(blind["info"]["cv_spearman"].values()) < 0.3
    assert info["features"] == ["length", "tokens"] and "tiny" in info["tokens"]
    new_texts, new_x, new_target = _corpus(300, seed=2)
    pred = proxy.predict(fitted, {"length": new_x[:, 0]}, ["length"], new_texts)
    assert spearmanr(pred, new_target).statistic > 0.8
    part = proxy.predict(fitted, {"length": new_x[5:9, 0]}, ["length"], new_texts[5:9])
    assert np.array_equal(pred[5:9], part)  # row by row
    with pytest.raises(ValueError, match="pass texts"):
        proxy.predict(fitted, {"length": new_x[:, 0]}, ["length"])


def test_token_features_are_a_candidate_the_sample_can_turn_down(tokens):
    # The target follows the scalar feature; tokens are noise for it: CV picks a model
    # without them.
    texts, x, _ = _corpus(300, seed=3)
    target = np.log(x[:, 0]) + 0.01 * np.random.default_rng(4).normal(size=300)
    fitted = proxy.fit(_rows(texts, x, target), "t", ["length"], seed=0, tokens=tokens)
    assert not fitted["info"]["model"].startswith("ridge-tokens"), fitted["info"]
    assert (
        spearmanr(proxy.predict(fitted, {"length": x[:, 0]}, ["length"], texts), target)[0] > 0.95
    )


def test_the_fit_uses_a_capped_prefix_of_the_sample_in_hash_order(tokens, monkeypatch):
    texts, x, target = _corpus(300, seed=5)
    rows = _rows(texts, x, target)
    monkeypatch.setattr(proxy, "MAX_FIT_ROWS", 100)
    fitted = proxy.fit(rows[::-1], "t", ["length"], seed=0, tokens=tokens, sampled=300)
    assert fitted["info"]["sample_size"] == 300 and fitted["info"]["fit_size"] == 100
    first = sorted(rows, key=proxy.sample_order)[:100]
    same = proxy.fit(first, "t", ["length"], seed=0, tokens=tokens, sampled=300)
    assert same["info"] == fitted["info"]  # any order in, the same prefix used
