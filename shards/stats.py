"""Per-column statistics recorded in the manifest."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.types as pat

N_QUANTILES = 101


def is_numeric(dtype: pa.DataType) -> bool:
    """True for integer and floating-point Arrow types (not bool)."""
    return pat.is_integer(dtype) or pat.is_floating(dtype)


def array_stats(values: np.ndarray) -> dict[str, Any]:
    """Statistics of one numeric column.

    ``count`` is the number of values (nulls already removed), ``nan_count`` the NaNs among
    them; mean, std (population), min, max and the 101 quantiles (0 %, 1 %, ... 100 %,
    linear interpolation) are over the finite values, and ``None`` when there are none.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    nan_count = int(np.isnan(v).sum())
    finite = v[np.isfinite(v)]
    out: dict[str, Any] = {"count": int(v.size), "nan_count": nan_count}
    if finite.size == 0:
        out.update(mean=None, std=None, min=None, max=None, quantiles=None)
        return out
    q = np.quantile(finite, np.linspace(0.0, 1.0, N_QUANTILES))
    out.update(
        mean=float(finite.mean()),
        std=float(finite.std()),
        min=float(finite.min()),
        max=float(finite.max()),
        quantiles=[float(x) for x in q],
    )
    return out


def column_stats(
    table: pa.Table | Any, columns: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Statistics for every numeric column of a Table or ShardSet (or only ``columns``).

    Nulls are dropped before counting; NaNs are counted in ``nan_count``.
    """
    schema: pa.Schema = table.schema
    names = columns if columns is not None else [f.name for f in schema if is_numeric(f.type)]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        col = table.column(name)
        if isinstance(col, (pa.ChunkedArray, pa.Array)):
            col = col.drop_null().to_numpy()
        out[name] = array_stats(col)
    return out
