"""A learned proxy for an expensive signal: score a sample with it, predict it for every record.

The expensive scorer (a reference LM's perplexity by default) runs only on a deterministic
sample: the texts whose sha1(seed, text) falls in the lowest ``fraction`` of the hash range
(:class:`SampledScorer`; elsewhere its columns are NaN). The sampled rows' cheap signals (and
their embedding, when one is computed) are the features; the target is the percentile rank of
the expensive signal within the sample. The candidate models are small: ridge regression on
standardised signed-log features (``sklearn.linear_model.RidgeCV``), the same ridge on the
scalar signals alone when an embedding is among the features, and a regularised gradient-boosted
regressor (``sklearn.ensemble.HistGradientBoostingRegressor``), all fitted single-threaded so
any machine fits the same model. On 80 % of the sample (a hash split; at most 20,000 rows of
it) 5-fold cross-validated Spearman picks one (ridge wins on small samples, boosting when there
are enough rows for its interactions and the embedding's); the pick is scored on the other 20 %
(Spearman's rho, recorded in the manifest with the cross-validated rho of each candidate), then
refitted on the whole sample and applied to every record: ``<target>_proxy``, with the target's
direction, enters difficulty like any signal. The cost is one expensive pass over ``fraction``
of the corpus.
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


_FOLDS = 5
_CV_ROWS = 20_000  # model selection on at most this many rows (hash order: a random subset)


def _signed_log(x: np.ndarray) -> np.ndarray:
    """sign(x) * log1p(|x|), with non-finite values as NaN (the imputer fills them)."""
    x = np.where(np.isfinite(x), x, np.nan)
    return np.sign(x) * np.log1p(np.abs(x))


class _ObservedColumns:
    """Drops the columns without a finite value in the rows it is fitted on (a signal that is
    NaN on every sampled record; boosting cannot bin one); a column of zeros if none is left."""

    def get_params(self, deep: bool = True) -> dict:
        return {}

    def set_params(self, **params: Any) -> _ObservedColumns:
        return self

    def fit(self, x: np.ndarray, y: Any = None) -> _ObservedColumns:
        self.keep_ = np.flatnonzero(np.isfinite(x).any(axis=0))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.keep_] if len(self.keep_) else np.zeros((len(x), 1))

    def fit_transform(self, x: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(x).transform(x)


def _ridge(columns: int | None = None):
    """Ridge on standardised signed-log features (the first ``columns`` only, if given)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    steps = (
        [] if columns is None else [ColumnTransformer([("s", "passthrough", list(range(columns)))])]
    )
    return make_pipeline(
        *steps,
        _ObservedColumns(),
        FunctionTransformer(_signed_log),
        SimpleImputer(strategy="median"),
        StandardScaler(),
        RidgeCV(alphas=np.logspace(-3, 3, 13)),
    )


def _candidates(n: int, seed: int, scalars: int | None) -> dict[str, Any]:
    """The models the sample chooses between, by name (the name goes in the manifest).
    ``scalars``: how many leading columns are scalar signals when an embedding follows them."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline

    leaf = max(5, n // 50)
    out = {"ridge": _ridge()}
    if scalars:
        # Hundreds of embedding dimensions against a sample of ~100 rows: ridge overfits them.
        out["ridge-signals"] = _ridge(scalars)
    out["boosting"] = make_pipeline(
        _ObservedColumns(),
        HistGradientBoostingRegressor(
            max_iter=200,
            learning_rate=0.05,
            max_leaf_nodes=15,
            min_samples_leaf=leaf,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        ),
    )
    return out


_DESCRIPTIONS = {
    "ridge": "sklearn RidgeCV(alphas=1e-3..1e3) on standardised sign(x)*log1p(|x|) features "
    "(NaN and inf: the median)",
    "ridge-signals": "the same ridge on the scalar signals only (not the embedding)",
    "boosting": "sklearn HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, "
    "max_leaf_nodes=15, min_samples_leaf=max(5, n/50), l2_regularization=1)",
}


def _cv_spearman(make, x: np.ndarray, y: np.ndarray) -> float:
    """Mean Spearman over ``_FOLDS`` contiguous folds (rows are in hash order: random folds)."""
    from scipy.stats import spearmanr
    from sklearn.base import clone

    folds = np.array_split(np.arange(len(y)), _FOLDS)
    rhos = []
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        pred = clone(make).fit(x[train], y[train]).predict(x[test])
        rho = spearmanr(pred, y[test]).statistic
        rhos.append(0.0 if not np.isfinite(rho) else float(rho))
    return float(np.mean(rhos))


def fit(sample: list, target: str, features: list[str], seed: int) -> dict[str, Any]:
    """The proxy model and its manifest record from the sampled rows (any order)."""
    from scipy.stats import rankdata, spearmanr
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    rows = sorted(sample, key=lambda r: (r[0], r[1]))
    if len(rows) < MIN_SAMPLE:
        raise ValueError(
            f"the proxy for {target!r} has {len(rows)} sampled records with a value, fewer than "
            f"{MIN_SAMPLE}: raise --proxy-fraction"
        )
    x = np.stack([r[2] for r in rows])
    if not np.isfinite(x).any():
        raise ValueError(
            f"the proxy for {target!r}: no feature ({', '.join(features)}) has a value on any of "
            f"the {len(rows)} sampled records"
        )
    y = rankdata([r[3] for r in rows]) / len(rows)
    held = np.array([r[0] < _HELD_OUT for r in rows])
    with threadpool_limits(1):
        scalars = len(features) - 1 if "embedding" in features[-1:] else None
        candidates = _candidates(len(rows), seed, scalars)
        xs, ys = x[~held][:_CV_ROWS], y[~held][:_CV_ROWS]
        cv = {name: _cv_spearman(m, xs, ys) for name, m in candidates.items()}
        chosen = max(cv, key=lambda name: (cv[name], name.startswith("ridge")))
        model = clone(candidates[chosen]).fit(x[~held], y[~held])
        rho = (
            float(spearmanr(model.predict(x[held]), y[held]).statistic) if held.sum() > 2 else None
        )
        model = clone(candidates[chosen]).fit(x, y)
    info = {
        "target": target,
        "features": list(features),
        "sample_size": len(rows),
        "held_out_size": int(held.sum()),
        "held_out_spearman": rho,
        "model": f"{chosen}: {_DESCRIPTIONS[chosen]}, on the target's percentile rank",
        "cv_spearman": {name: round(v, 4) for name, v in cv.items()},
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
