"""Batch-drawing primitives shared by the strategies; all O(G) or O(G log G) for a global batch
of G items, never O(N).

Stratified draws: the unit interval (or the integer range [0, m)) is cut into G equal strata and
one uniform point is drawn in each (low-variance / systematic sampling, as in Megatron's blended
index or particle-filter resampling). Integer strata of a range with m >= G are disjoint, so the
G positions are distinct and already sorted: a batch never holds an item twice, and the served
difficulty mix of a batch matches the eligible set with minimal variance. Every marginal is
uniform up to the rounding of stratum sizes (floor(m/G) vs ceil(m/G)).
"""

from __future__ import annotations

import numpy as np
import torch

from . import rng

# CPU tensors take numpy fast paths that give the same values as the torch code (which runs on
# CUDA); tests set this to False to run the torch code on CPU and compare.
NUMPY_ON_CPU = True


def on_numpy(t: torch.Tensor) -> bool:
    """Whether work on ``t``'s device takes the numpy fast path."""
    return NUMPY_ON_CPU and t.device.type == "cpu"


def positions(seed: int, step: int, j: torch.Tensor, m: int) -> torch.Tensor:
    """G distinct sorted positions in [0, m), one uniform draw per integer stratum
    [j m // G, (j + 1) m // G). Needs m >= G. On CPU computed in numpy (same values)."""
    if on_numpy(j):
        return torch.from_numpy(positions_np(seed, step, j.numpy(), m))
    G = j.numel()
    start = (j * m) // G
    size = ((j + 1) * m) // G - start
    return start + rng.below(rng.bits(seed, rng.DRAW, step, j), size)


def positions_np(seed: int, step: int, j: np.ndarray, m: int) -> np.ndarray:
    """``positions`` on a numpy int64 array (torch's per-op dispatch dominates at G = 1024)."""
    G = j.size
    start = (j * m) // G
    size = ((j + 1) * m) // G - start
    return start + ((rng.bits_np(seed, rng.DRAW, step, j) * size) >> 32)


def strat_uniform(seed: int, step: int, j: torch.Tensor) -> torch.Tensor:
    """G sorted float64 points, u_j = (j + U_j) / G with U_j uniform in (0, 1)."""
    return (j.to(torch.float64) + rng.uniform(rng.bits(seed, rng.DRAW, step, j))) / j.numel()


def make_distinct(r: torch.Tensor, n: int, j: torch.Tensor) -> torch.Tensor:
    """Turn sorted (non-decreasing) integers in [0, n) into strictly increasing ones in [0, n)
    with the smallest moves: s = cummax(r - j) clipped to n - G, result s + j. Needs n >= G.
    Only collisions are moved (to the next free rank), so the bias is confined to items whose
    probability exceeds one stratum (1/G)."""
    s = torch.cummax(r - j, 0).values.clamp_(max=n - j.numel())
    return s + j


def gather(table: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``table[pos]`` as int64 (item ids from an order table); a numpy gather on CPU."""
    if on_numpy(pos):
        return torch.from_numpy(table.numpy()[pos.numpy()].astype(np.int64))
    return table[pos].long()


def shuffle_order(seed: int, step: int, j: torch.Tensor) -> torch.Tensor:
    """Deterministic permutation of the batch positions (stable argsort of counter-based keys)
    so that rank slices are not difficulty-ordered. On CPU computed in numpy (a stable sort of
    the same keys gives the same permutation)."""
    if on_numpy(j):
        keys = rng.bits_np(seed, rng.SHUFFLE, step, j.numpy())
        return torch.from_numpy(np.argsort(keys, kind="stable"))
    return torch.argsort(rng.bits(seed, rng.SHUFFLE, step, j), stable=True)


def last_occurrence(idx: torch.Tensor) -> torch.Tensor:
    """Positions of the last occurrence of each distinct value of ``idx`` (for updates with
    repeated indices: the latest feedback wins, deterministically)."""
    order = torch.argsort(idx, stable=True)
    s = idx[order]
    keep = torch.ones_like(s, dtype=torch.bool)
    keep[:-1] = s[1:] != s[:-1]
    return order[keep]


def searchsorted(seq: torch.Tensor, values: torch.Tensor, right: bool = False) -> torch.Tensor:
    """``torch.searchsorted`` (what CUDA runs, and CPU with ``NUMPY_ON_CPU = False``); numpy's
    single-threaded one on the CPU fast path (torch's CPU kernel goes through an OpenMP
    parallel-for that can stall for milliseconds on a busy machine). Same result: a search has
    no rounding."""
    if not on_numpy(seq):
        return torch.searchsorted(seq, values, right=right)
    side = "right" if right else "left"
    out = np.searchsorted(seq.numpy(), values.numpy(), side=side)
    return torch.from_numpy(out.astype(np.int64, copy=False))


def pairwise_sum(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sum along ``dim`` by a fixed binary tree: pad the length to a power of two with zeros,
    then s <- s[..., 0::2] + s[..., 1::2] until one term is left.

        sum(x_0..x_{2m-1}) = sum(x_0 + x_1, x_2 + x_3, ...)

    Every step is an elementwise IEEE addition, so the rounding (and the result, bit for bit)
    is the same on CPU, on CUDA and in numpy (``pairwise_sum_np``), unlike ``torch.sum`` /
    ``index_add_`` whose association order depends on the device, the thread count or atomics."""
    if not (x.dtype.is_floating_point or x.dtype.is_complex):
        return x.sum(dim)  # integer sums are exact in any order
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    if n == 0:
        return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    width = 1 << (n - 1).bit_length()
    if width != n:
        x = torch.nn.functional.pad(x, (0, width - n))
    while x.shape[-1] > 1:
        x = x[..., 0::2] + x[..., 1::2]
    return x[..., 0]


def pairwise_sum_np(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``pairwise_sum`` on a numpy array: the same tree, the same bits."""
    x = np.moveaxis(np.asarray(x), axis, -1)
    n = x.shape[-1]
    if n == 0:
        return np.zeros(x.shape[:-1], dtype=x.dtype)
    width = 1 << (n - 1).bit_length()
    if width != n:
        pad = np.zeros(x.shape[:-1] + (width - n,), dtype=x.dtype)
        x = np.concatenate([x, pad], axis=-1)
    while x.shape[-1] > 1:
        x = x[..., 0::2] + x[..., 1::2]
    return x[..., 0]


def prefix_sum(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inclusive prefix sum along ``dim`` by a Hillis-Steele scan:

        s^(0) = x,  s^(k+1)_i = s^(k)_i + s^(k)_{i - 2^k}  (i >= 2^k),  log2(n) steps

    Each step is one elementwise addition, so the result is bit-identical on every device
    (``torch.cumsum`` is sequential on CPU and a parallel scan on CUDA: different rounding)."""
    if not x.dtype.is_floating_point:
        return torch.cumsum(x, dim)  # integer prefix sums are exact in any order
    x = x.movedim(dim, -1).clone()
    n = x.shape[-1]
    d = 1
    while d < n:
        x[..., d:] = x[..., d:] + x[..., :-d]  # the right side is a new tensor
        d *= 2
    return x.movedim(-1, dim)


def run_bounds(g: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a sorted tensor g and j = arange(len(g)): (first position of g[i]'s run, run length),
    via cummax / cummin instead of a search. O(G)."""
    G = g.numel()
    start = torch.ones(G, dtype=torch.bool, device=g.device)
    start[1:] = g[1:] != g[:-1]
    first = torch.cummax(torch.where(start, j, torch.zeros_like(j)), 0).values
    end = torch.ones(G, dtype=torch.bool, device=g.device)
    end[:-1] = start[1:]
    last = torch.where(end, j, torch.full_like(j, G)).flip(0)
    last = torch.cummin(last, 0).values.flip(0)
    return first, last - first + 1


def run_bounds_np(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``run_bounds`` on a sorted numpy array (CPU fast path): (first position of g[i]'s run, run
    length) for every i. O(G)."""
    G = g.size
    start = np.empty(G, dtype=bool)
    start[:1] = True
    np.not_equal(g[1:], g[:-1], out=start[1:])
    heads = np.flatnonzero(start)
    lens = np.diff(heads, append=G)
    return np.repeat(heads, lens), np.repeat(lens, lens)
