"""A learned proxy for an expensive signal: score a sample with it, predict it for every record.

The expensive scorer (a reference LM's perplexity by default) runs only on a deterministic
sample: the texts whose sha1(seed, text) falls in the lowest ``fraction`` of the hash range
(:class:`SampledScorer`; elsewhere its columns are NaN). The sampled rows' cheap signals (and
their embedding, when one is computed) are the features; the target is the percentile rank of
the expensive signal within the sample. A gradient-boosted regressor
(``sklearn.ensemble.HistGradientBoostingRegressor``, fitted single-threaded so any machine fits
the same model) learns it on 80 % of the sample (a hash split), is scored on the other 20 %
(Spearman's rho, recorded in the manifest), then refitted on the whole sample and applied to
every record: ``<target>_proxy``, with the target's direction, enters difficulty like any
signal. The cost is one expensive pass over ``fraction`` of the corpus.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

DEFAULT_FRACTION = 0.02
MIN_SAMPLE = 40  # fewer finite targets than this: the job fails with a clear message
_HELD_OUT = 0.2


def _unit(seed: int, text: str, salt: str) -> float:
    digest = hashlib.sha1(f"{salt}\0{seed}\0{text}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48)


def in_sample(texts: list[str], seed: int, fraction: float) -> np.ndarray:
    """Which texts the expensive scorer sees: a uniform, deterministic ``fraction``."""
    return np.array([_unit(seed, t, "proxy") < fraction for t in texts], dtype=bool)


class SampledScorer:
    """A scorer that runs only on the sampled texts of each batch; NaN for the rest."""

    def __init__(self, scorer: Any, seed: int, fraction: float) -> None:
        self.scorer, self.seed, self.fraction = scorer, seed, fraction
        self.name, self.version, self.outputs = scorer.name, scorer.version, scorer.outputs

    def describe(self) -> dict[str, Any]:
        return dict(self.scorer.describe(), sample_fraction=self.fraction)

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        mask = in_sample(texts, self.seed, self.fraction)
        out = {c: np.full(len(texts), np.nan) for c in self.outputs}
        if mask.any():
            scored = self.scorer.score([t for t, m in zip(texts, mask, strict=True) if m])
            for c in self.outputs:
                out[c][mask] = np.asarray(scored[c], dtype=np.float64)
        return out


def sample_rows(batch: dict, target: str, features: list[str], seed: int):
    """``(text key, feature vector, target)`` of a scored batch's rows with a finite target."""
    cols = batch["columns"]
    values = np.asarray(cols[target], dtype=np.float64)
    matrix = feature_matrix(cols, features)
    for i in np.flatnonzero(np.isfinite(values)).tolist():
        key = _unit(seed, batch["records"][i]["text"], "split")
        yield (key, batch["records"][i]["id"], matrix[i], float(values[i]))


def feature_matrix(columns: dict, features: list[str]) -> np.ndarray:
    """The proxy's inputs: the cheap signals, then the embedding when there is one."""
    parts = [
        np.asarray(columns[f], dtype=np.float64).reshape(len(columns[f]), -1) for f in features
    ]
    return np.concatenate(parts, axis=1) if parts else np.empty((0, 0))


def _model(seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        max_iter=300, learning_rate=0.05, max_leaf_nodes=31, early_stopping=False, random_state=seed
    )


def fit(sample: list, target: str, features: list[str], seed: int) -> dict[str, Any]:
    """The proxy model and its manifest record from the sampled rows (any order)."""
    from scipy.stats import rankdata, spearmanr
    from threadpoolctl import threadpool_limits

    rows = sorted(sample, key=lambda r: (r[0], r[1]))
    if len(rows) < MIN_SAMPLE:
        raise ValueError(
            f"the proxy for {target!r} has {len(rows)} sampled records with a value, fewer than "
            f"{MIN_SAMPLE}: raise --proxy-fraction"
        )
    x = np.stack([r[2] for r in rows])
    y = rankdata([r[3] for r in rows]) / len(rows)
    held = np.array([r[0] < _HELD_OUT for r in rows])
    with threadpool_limits(1):
        model = _model(seed).fit(x[~held], y[~held])
        rho = (
            float(spearmanr(model.predict(x[held]), y[held]).statistic) if held.sum() > 2 else None
        )
        model = _model(seed).fit(x, y)
    info = {
        "target": target,
        "features": list(features),
        "sample_size": len(rows),
        "held_out_size": int(held.sum()),
        "held_out_spearman": rho,
        "model": "sklearn HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, "
        "max_leaf_nodes=31) on the target's percentile rank",
    }
    return {"model": model, "info": info}


def predict(proxy: dict, columns: dict, features: list[str]) -> np.ndarray:
    """The predicted percentile rank of the target for each row (row by row: a row's value
    does not depend on the rows beside it)."""
    from threadpoolctl import threadpool_limits

    x = feature_matrix(columns, features)
    if not len(x):
        return np.empty(0)
    with threadpool_limits(1):
        return np.clip(proxy["model"].predict(x), 0.0, 1.0)
