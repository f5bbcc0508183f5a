"""The strategy interface: one small class per policy.

A strategy is bound once to a ``Context`` (N items, device, columns of the source), then
``draw(step, j)`` returns the G item ids of the global batch for that step, as a pure function of
(seed, step, strategy state); ``check(idx, fb)`` raises ``ValueError`` for feedback it cannot use
and mutates nothing; ``update(idx, fb)`` then applies it and must not raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Feedback = dict[str, torch.Tensor]  # signal name -> float64 tensor, same length as idx


@dataclass
class Context:
    n: int
    device: torch.device
    seed: int
    has: Callable[[str], bool]
    column: Callable[[str], np.ndarray]
    batch: int = 0  # the global batch G the Sampler draws (0: unknown)
    release: Callable[[str], None] = lambda name: None  # the source may drop a read column
    layout: dict[str, Any] | None = None  # the dataset's layout (``gradum shards reorder``)

    def require(self, name: str, who: str) -> np.ndarray:
        if not self.has(name):
            raise ValueError(f"{who}: the source has no column {name!r}")
        col = np.asarray(self.column(name))
        if col.shape[0] != self.n:
            raise ValueError(f"{who}: column {name!r} has {col.shape[0]} rows, expected {self.n}")
        return col


NAN_RULES = ("last", "exclude")
NAN_DOC = """NaN rule (one rule for every order: Curriculum in both directions, AngleWindow): a record
without a score (NaN) has no rank, so it is placed after every scored record in the serving
order, whatever the direction. ``nan="last"`` (default): NaN records are served last, only once
the pacing / window has reached past every scored record; ``nan="exclude"``: they are never
served."""


def check_nan_rule(nan: str, who: str) -> str:
    if nan not in NAN_RULES:
        raise ValueError(f"{who}: nan must be one of {NAN_RULES}, got {nan!r}")
    return nan


def scored_count(values: np.ndarray) -> int:
    """Number of records with a score (not NaN)."""
    v = np.asarray(values)
    return int(v.size - np.count_nonzero(np.isnan(v))) if v.dtype.kind == "f" else int(v.size)


def index_dtype(n: int) -> torch.dtype:
    """int32 ids while they fit (4 bytes per item), else int64."""
    return torch.int32 if n < 2**31 else torch.int64


def rank_order(values: np.ndarray, device: torch.device, descending: bool = False) -> torch.Tensor:
    """Item ids sorted by ``values`` compared as float32 (stable, NaN always last), computed
    once at bind time by :func:`sampler.sort.argsort_floats`: a two-pass counting sort that
    writes the int32 order directly (peak: the column, the order and short-lived buffers;
    ``torch.sort`` also held int64 indices and a sorted key copy, 12 B/item more)."""
    from ..sort import argsort_floats

    return torch.from_numpy(argsort_floats(values, descending)).to(device)


def stable_argsort(key: torch.Tensor, n: int) -> torch.Tensor:
    """Stable argsort of an integer key tensor as int32 ids (int64 past 2^31 items)."""
    order = torch.sort(key, stable=True).indices
    return order.to(index_dtype(n))


def radix_argsort(key: np.ndarray) -> np.ndarray:
    """Stable argsort of uint32 keys in two LSD passes of 16 bits (numpy's stable sort is a
    radix sort for 16-bit types): O(N). The previous build sort, kept for the benchmark's
    baseline and for keys torch cannot sort (uint32)."""
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    hi = (key >> 16).astype(np.uint16)[order]
    return order[np.argsort(hi, kind="stable")]


def np_index_dtype(n: int) -> type:
    return np.int32 if n < 2**31 else np.int64


def group_ids(col: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, inverse, counts) of a group column. Integer labels with a range below 2^24:
    O(N) chunked bincount and remap, ``inverse`` int16 when there are at most 32768 groups
    (else int32), no N-sized temporary; other columns: ``np.unique``."""
    chunk = 1 << 20
    if col.dtype.kind in "biu" and col.size:
        lo, hi = int(col.min()), int(col.max())
        if hi - lo < 2**24:
            counts = np.zeros(hi - lo + 1, dtype=np.int64)
            for a in range(0, col.size, chunk):
                part = col[a : a + chunk].astype(np.int64) - lo
                counts += np.bincount(part, minlength=hi - lo + 1)
            present = counts > 0
            K = int(present.sum())
            dtype = np.int16 if K <= 2**15 else np.int32
            remap = (np.cumsum(present) - 1).astype(dtype)
            inverse = np.empty(col.size, dtype=dtype)
            for a in range(0, col.size, chunk):
                inverse[a : a + chunk] = remap[col[a : a + chunk].astype(np.int64) - lo]
            return np.nonzero(present)[0] + lo, inverse, counts[present]
    labels, inverse, counts = np.unique(col, return_inverse=True, return_counts=True)
    if col.dtype.kind not in "biuf":
        labels = np.arange(labels.size)
    return labels, inverse.astype(np.int32), counts


class Strategy:
    """Base class; subclasses set ``name`` and document ``bytes_per_item``."""

    name = "strategy"
    bytes_per_item = 0  # per-item state held by the strategy (the Sampler adds 1 bit coverage)
    group_based = False
    # draw() returns importance weights (the Sampler broadcasts them with the batch)
    weighted = False
    # feedback changes the draws (a prefetch plan made before an update must be redone)
    adaptive = False
    # True: draw() itself serves a batch larger than its servable set with even repeats
    # (each servable id floor(G / S) or ceil(G / S) times); else the Sampler does it
    any_batch = False

    def bind(self, ctx: Context) -> None:
        """Build the per-item state for ``ctx``. Subclasses call this first."""
        if "_config" not in self.__dict__:
            self._config = dict(self.__dict__)  # the constructor's attributes
        self.ctx = ctx

    @property
    def bound(self) -> bool:
        return "ctx" in self.__dict__

    def unbind(self) -> None:
        """Drop every per-item tensor (back to the constructor's state): a rank that does not
        hold the state keeps the strategy only for its configuration and ``check``."""
        config = self.__dict__.get("_config")
        if config is not None:
            self.__dict__.clear()
            self.__dict__.update(config)

    def draw(self, step: int, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """G = len(j) distinct ids (int64, on the device) and optional unnormalised importance
        weights (the Sampler divides them by the batch maximum)."""
        raise NotImplementedError

    def importance(self, ids: torch.Tensor) -> torch.Tensor | None:
        """Unnormalised importance weights of ``ids`` (None: the strategy has none)."""
        return None

    def check(self, idx: torch.Tensor, fb: Feedback) -> None:
        """Raise ``ValueError`` for feedback the strategy cannot use; never reads the bound
        state (ranks without the state call it too)."""
        return None

    def update(self, idx: torch.Tensor, fb: Feedback) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def stats(self, step: int) -> dict[str, Any]:
        return {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name}
