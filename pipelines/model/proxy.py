"""A learned proxy for an expensive signal: score a sample with it, predict it for every record.

The expensive scorer (a reference LM's perplexity by default) runs only on a deterministic
sample: the texts whose sha1(seed, text) falls in the lowest ``fraction`` of the hash range
(:class:`SampledScorer`; elsewhere its columns are NaN). The sampled rows' cheap signals (and
their embedding, when one is computed) are the features, and when the target is an LM signal
so are the texts' frequencies of that LM's tokens (:mod:`pipelines.model.proxy_tokens`); the target
is the percentile rank of the expensive signal within the sample. The candidate models are
small: ridge regression on standardised signed-log features (``sklearn.linear_model.RidgeCV``),
the same ridge on the scalar signals alone when an embedding is among the features, ridge on
the scalar signals beside the token frequencies, and a regularised gradient-boosted regressor
(``sklearn.ensemble.HistGradientBoostingRegressor``), all fitted single-threaded so any
machine fits the same model. The sample is capped at its first ``MAX_FIT_ROWS`` rows in hash
order. On 80 % of it (a hash split; at most 20,000 rows of that)
5-fold cross-validated Spearman picks one (ridge wins on small samples, boosting when there
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

    def runtime(self) -> dict[str, Any]:
        return self.scorer.runtime() if hasattr(self.scorer, "runtime") else {}

    def score(self, texts: list[str]) -> dict[str, np.ndarray]:
        mask = in_sample(texts, self.seed, self.fraction)
        out = {c: np.full(len(texts), np.nan) for c in self.outputs}
        if mask.any():
            scored = self.scorer.score([t for t, m in zip(texts, mask, strict=True) if m])
            for c in self.outputs:
                out[c][mask] = np.asarray(scored[c], dtype=np.float64)
        return out


def sample_key(seed: int, text: str) -> float:
    """The order of a text in the proxy's fit sample (a hash: any prefix is a uniform
    subsample)."""
    return _unit(seed, text, "split")


def sample_order(row: tuple) -> tuple:
    """The order of the sampled rows ``(key, id, features, text, target)``."""
    return row[0], row[1]


def feature_matrix(columns: dict, features: list[str]) -> np.ndarray:
    """The proxy's inputs: the cheap signals, then the embedding when there is one."""
    parts = [
        np.asarray(columns[f], dtype=np.float64).reshape(len(columns[f]), -1) for f in features
    ]
    return np.concatenate(parts, axis=1) if parts else np.empty((0, 0))


_FOLDS = 5
_CV_ROWS = 20_000  # model selection on at most this many rows (hash order: a random subset)
MAX_FIT_ROWS = 50_000  # the model is fitted on at most this many sampled rows (the first)
_ALPHAS = np.logspace(-4, 1, 6)  # token frequencies are small (a row sums to 1): small alphas


def _signed_log(x: np.ndarray) -> np.ndarray:
    """sign(x) * log1p(|x|), with non-finite values as NaN (the imputer fills them)."""
    x = np.where(np.isfinite(x), x, np.nan)
    return np.sign(x) * np.log1p(np.abs(x))


class _Params:
    """sklearn's estimator protocol for the small steps below (``clone`` needs it) without
    importing sklearn when this module is: the constructor's arguments are ``_params``."""

    _params: tuple[str, ...] = ()

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._params}

    def set_params(self, **params: Any) -> _Params:
        for k, v in params.items():
            setattr(self, k, v)
        return self


class _ObservedColumns(_Params):
    """Drops the columns without a finite value in the rows it is fitted on (a signal that is
    NaN on every sampled record; boosting cannot bin one); a column of zeros if none is left."""

    def fit(self, x: np.ndarray, y: Any = None) -> _ObservedColumns:
        self.keep_ = np.flatnonzero(np.isfinite(x).any(axis=0))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.keep_] if len(self.keep_) else np.zeros((len(x), 1))

    def fit_transform(self, x: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(x).transform(x)


class _Leading(_Params):
    """The first ``k`` columns, as a dense array (the design matrix is sparse when it holds
    token frequencies after the dense columns)."""

    _params = ("k",)

    def __init__(self, k: int) -> None:
        self.k = k

    def fit(self, x: Any, y: Any = None) -> _Leading:
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = x[:, : self.k]
        return x.toarray() if hasattr(x, "toarray") else np.asarray(x)

    def fit_transform(self, x: Any, y: Any = None) -> np.ndarray:
        return self.transform(x)


def _scaled(columns: int) -> Any:
    """The first ``columns`` as standardised signed-log features (NaN and inf: the median)."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(
        _Leading(columns),
        _ObservedColumns(),
        FunctionTransformer(_signed_log),
        SimpleImputer(strategy="median"),
        StandardScaler(),
    )


def _ridge(columns: int):
    """Ridge on the first ``columns`` as standardised signed-log features."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline

    return make_pipeline(_scaled(columns), RidgeCV(alphas=np.logspace(-3, 3, 13)))


class _TokenRidge(_Params):
    """Ridge on the standardised scalar features (the first ``scalars`` columns) beside the
    token frequencies (the columns from ``dense`` on), alpha by 3-fold CV (Spearman) inside
    the rows it is fitted on; sparse conjugate gradients, so memory follows the non-zeros."""

    _params = ("scalars", "dense")

    def __init__(self, scalars: int = 0, dense: int = 0) -> None:
        self.scalars, self.dense = scalars, dense

    def _inputs(self, prep: Any, x: Any) -> Any:
        from scipy import sparse

        return sparse.hstack([sparse.csr_matrix(prep.transform(x)), x[:, self.dense :]], "csr")

    def _fit_at(self, alpha: float, x: Any, y: np.ndarray) -> tuple[Any, Any]:
        from sklearn.linear_model import Ridge

        prep = _scaled(self.scalars).fit(x)
        return prep, Ridge(alpha=alpha, solver="sparse_cg").fit(self._inputs(prep, x), y)

    def fit(self, x: Any, y: np.ndarray) -> _TokenRidge:
        from scipy.stats import spearmanr

        folds = np.array_split(np.arange(len(y)), 3)
        score = {}
        for alpha in _ALPHAS:
            rhos = []
            for test in folds:
                train = np.setdiff1d(np.arange(len(y)), test)
                prep, model = self._fit_at(alpha, x[train], y[train])
                rho = spearmanr(model.predict(self._inputs(prep, x[test])), y[test]).statistic
                rhos.append(float(rho) if np.isfinite(rho) else 0.0)
            score[float(alpha)] = float(np.mean(rhos))
        self.alpha_ = max(score, key=lambda a: (score[a], a))
        self.prep_, self.ridge_ = self._fit_at(self.alpha_, x, y)
        return self

    def predict(self, x: Any) -> np.ndarray:
        return self.ridge_.predict(self._inputs(self.prep_, x))


def _candidates(n: int, seed: int, scalars: int, dense: int, tokens: bool) -> dict[str, Any]:
    """The models the sample chooses between, by name (the name goes in the manifest).
    The design's columns: ``scalars`` scalar features, then the embedding (if any) up to
    ``dense``, then the token frequencies when ``tokens``."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline

    leaf = max(5, n // 50)
    out = {"ridge": _ridge(dense)}
    if dense > scalars:
        # Hundreds of embedding dimensions against a sample of ~100 rows: ridge overfits them.
        out["ridge-signals"] = _ridge(scalars)
    if tokens:
        out["ridge-tokens"] = _TokenRidge(scalars, dense)
    out["boosting"] = make_pipeline(
        _Leading(dense),
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
    "ridge-tokens": "sklearn Ridge (alpha 1e-4..10 by 3-fold CV, sparse_cg) on the standardised "
    "scalar features beside the token frequencies",
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


def _design(x: np.ndarray, features: list[str], texts: list[str] | None, tokens: Any):
    """``(matrix, scalars, dense)``: the scalar signals and the token statistics, then the
    embedding when there is one (``dense`` columns in all), then the token frequencies (the
    matrix is sparse then)."""
    scalars = len(features) - 1 if features[-1:] == ["embedding"] else len(features)
    if tokens is None:
        return x, scalars, x.shape[1]
    from scipy import sparse

    if texts is None:
        raise ValueError("this proxy reads the texts too (token features): pass texts")
    stats, freq = tokens.matrices(texts)
    dense = np.hstack([x[:, :scalars], stats, x[:, scalars:]])
    matrix = sparse.hstack([sparse.csr_matrix(dense), freq], format="csr")
    return matrix, scalars + stats.shape[1], dense.shape[1]


def fit(
    sample: list,
    target: str,
    features: list[str],
    seed: int,
    tokens: Any = None,
    sampled: int | None = None,
) -> dict[str, Any]:
    """The proxy model and its manifest record from the sampled rows (any order; the first
    ``MAX_FIT_ROWS`` in hash order are used). ``tokens``: a
    :class:`pipelines.model.proxy_tokens.TokenFeatures` for token features, or None;
    ``sampled``: how many rows the sample had before it was capped (for the manifest)."""
    from scipy.stats import rankdata, spearmanr
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    rows = sorted(sample, key=sample_order)[:MAX_FIT_ROWS]
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
    texts = [r[3] for r in rows]
    y = rankdata([r[4] for r in rows]) / len(rows)
    held = np.array([_unit(seed, t, "held") < _HELD_OUT for t in texts])
    with threadpool_limits(1):
        m, scalars, dense = _design(x, features, texts, tokens)
        candidates = _candidates(len(rows), seed, scalars, dense, tokens is not None)
        train = np.flatnonzero(~held)
        xs, ys = m[train[:_CV_ROWS]], y[train[:_CV_ROWS]]
        cv = {name: _cv_spearman(c, xs, ys) for name, c in candidates.items()}
        chosen = max(cv, key=lambda name: (cv[name], name.startswith("ridge")))
        model = clone(candidates[chosen]).fit(m[train], y[train])
        rho = (
            float(spearmanr(model.predict(m[held]), y[held]).statistic) if held.sum() > 2 else None
        )
        model = clone(candidates[chosen]).fit(m, y)
    info = {
        "target": target,
        "features": list(features) + (["tokens"] if tokens is not None else []),
        "sample_size": len(rows) if sampled is None else int(sampled),
        "fit_size": len(rows),
        "held_out_size": int(held.sum()),
        "held_out_spearman": rho,
        "model": f"{chosen}: {_DESCRIPTIONS[chosen]}, on the target's percentile rank",
        "cv_spearman": {name: round(v, 4) for name, v in cv.items()},
    }
    if tokens is not None:
        info["tokens"] = tokens.describe()
    return {"model": model, "info": info, "features": list(features), "tokens": tokens}


def fit_job_sample(
    sample: list,
    target: str,
    features: list[str],
    seed: int,
    tokens: str | None,
    job_token: str,
    sampled: int,
) -> dict[str, Any]:
    """:func:`fit` inside the job: token features from the tokenizer of the LM ``tokens``."""
    if tokens is not None:
        from pipelines.model.proxy_tokens import TokenFeatures

        tokens = TokenFeatures.load(tokens, job_token=job_token)
    return fit(sample, target, features, seed, tokens, sampled=sampled)


_PREDICT_ROWS = 8192  # rows per step: bounds the token-frequency matrix of a large shard


def predict(
    proxy: dict, columns: dict, features: list[str], texts: list[str] | None = None
) -> np.ndarray:
    """The predicted percentile rank of the target for each row (row by row: a row's value
    does not depend on the rows beside it). ``texts`` are needed when the proxy has token
    features."""
    from threadpoolctl import threadpool_limits

    x = feature_matrix(columns, features)
    if not len(x):
        return np.empty(0)
    tokens = proxy.get("tokens")
    out = []
    with threadpool_limits(1):
        for lo in range(0, len(x), _PREDICT_ROWS):
            part = None if texts is None else texts[lo : lo + _PREDICT_ROWS]
            m, _, _ = _design(x[lo : lo + _PREDICT_ROWS], features, part, tokens)
            out.append(proxy["model"].predict(m))
    return np.clip(np.concatenate(out), 0.0, 1.0)
