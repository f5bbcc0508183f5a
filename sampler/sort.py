"""Stable argsorts that build an int32 order with little more memory than the order itself.

The orders behind Curriculum, AngleWindow and UCB are one-time sorts of N items. ``torch.sort``
returns int64 indices (8 B/item) beside its sorted copy of the keys (4 B/item), on top of the
key array (4 B/item) and the column (4 B/item): 20 B/item at the peak. Here:

1. keys are computed chunk by chunk from the column (never a full key array);
2. pass 1 is a counting sort of the item ids by the top 16 key bits, chunk by chunk, straight
   into the int32 order (4 B/item): within a chunk the ids are grouped by a stable radix
   argsort of their uint16 digit, then written at the running cursor of each digit;
3. pass 2 sorts each run of equal top bits by the low bits (one stable argsort per run, or
   the same counting scatter through a buffer of the run's size for a long run).

The result is the stable argsort of the keys (ties in id order). Peak: the column, the order
and the longest run's buffer (4 B per item of that run) plus O(chunk) temporaries; for a
difficulty in [0, 1] the longest run holds about N / 128 items.

Float keys (order-preserving, NaN last whatever its sign):

    key(x) = bits(x) | 0x80000000   if the sign bit of x is 0
    key(x) = ~bits(x)               otherwise;        key(NaN) = 0xFFFFFFFF

which orders values exactly as ``sampler.strategies.base.rank_order``'s int32 key did
(-0.0 before +0.0, NaN last), so the orders are identical.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shards.heap import trim_heap

CHUNK = 1 << 18
_DIGIT = 1 << 16


def float_keys(v: np.ndarray, descending: bool = False) -> np.ndarray:
    """uint32 order-preserving keys of float32 values (see the module docstring)."""
    v = np.asarray(v, dtype=np.float32)
    if descending:
        v = -v
    bits = v.view(np.uint32)
    key = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    key[np.isnan(v)] = np.uint32(0xFFFFFFFF)
    return key


def order_dtype(n: int) -> type:
    """int32 ids while they fit, else int64."""
    return np.int32 if n < 2**31 else np.int64


def argsort_floats(values: np.ndarray, descending: bool = False) -> np.ndarray:
    """Stable argsort of float values (NaN last, ``descending`` keeps NaN last), int32."""
    v = np.asarray(values, dtype=np.float32)
    return _argsort(
        v.size,
        lambda a, b: float_keys(v[a:b], descending),
        lambda ids: float_keys(v[ids], descending),
        32,
    )


def argsort_labels(labels: np.ndarray, bits: int) -> np.ndarray:
    """Stable argsort of non-negative integer labels below 2^bits (<= 32), int32."""
    lab = np.asarray(labels)
    return _argsort(
        lab.size,
        lambda a, b: lab[a:b].astype(np.uint32),
        lambda ids: lab[ids].astype(np.uint32),
        max(1, int(bits)),
    )


def _argsort(
    n: int,
    keys_range: Callable[[int, int], np.ndarray],
    keys_ids: Callable[[np.ndarray], np.ndarray],
    bits: int,
) -> np.ndarray:
    order = _sort(n, keys_range, keys_ids, bits)
    release_heap()
    return order


def release_heap() -> None:
    """Give the pages freed by the chunk temporaries back to the system
    (:func:`shards.heap.trim_heap`)."""
    trim_heap()


def _sort(
    n: int,
    keys_range: Callable[[int, int], np.ndarray],
    keys_ids: Callable[[np.ndarray], np.ndarray],
    bits: int,
) -> np.ndarray:
    order = np.empty(n, dtype=order_dtype(n))
    if n == 0:
        return order
    shift = max(0, bits - 16)
    # pass 1: counting sort by the top (up to 16) bits, straight into the order
    counts = np.zeros(_DIGIT, dtype=np.int64)
    for a in range(0, n, CHUNK):
        counts += np.bincount(keys_range(a, min(n, a + CHUNK)) >> shift, minlength=_DIGIT)
    cursor = np.cumsum(counts) - counts
    starts = cursor.copy()
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        digit = (keys_range(a, b) >> shift).astype(np.uint16)
        _scatter(order, cursor, digit, np.arange(a, b, dtype=order.dtype))
    if shift == 0:
        return order
    # pass 2: each run of equal top bits, by the low bits; short runs in blocks of up to
    # CHUNK items (two uint16 radix argsorts: low bits, then the run), long runs alone
    low_mask = np.uint32((1 << shift) - 1)
    nz = np.flatnonzero(counts)
    rs, rc = starts[nz], counts[nz]
    big = np.flatnonzero(rc > CHUNK)
    i = 0
    while i < nz.size:
        if rc[i] > CHUNK:
            s, e = int(rs[i]), int(rs[i] + rc[i])
            order[s:e] = _sort_run(order[s:e], keys_ids, low_mask, shift)
            i += 1
            continue
        j = int(np.searchsorted(rs + rc, rs[i] + CHUNK, side="right"))
        nxt = big[big > i]
        j = min(max(j, i + 1), i + _DIGIT - 1, int(nxt[0]) if nxt.size else nz.size)
        s, e = int(rs[i]), int(rs[j - 1] + rc[j - 1])
        if e - s > 1:
            block = order[s:e]
            low = (keys_ids(block) & low_mask).astype(np.uint16)
            run = np.repeat(np.arange(j - i, dtype=np.uint16), rc[i:j])
            o1 = np.argsort(low, kind="stable")
            order[s:e] = block[o1[np.argsort(run[o1], kind="stable")]]
        i = j
    return order


def _sort_run(
    run: np.ndarray, keys_ids: Callable[[np.ndarray], np.ndarray], mask: np.uint32, bits: int
) -> np.ndarray:
    """A long run sorted by its low ``bits`` bits: counting sorts of 16 bits, least
    significant first, through one buffer of the run's size."""
    buf = np.empty_like(run)
    src, dst = run.copy(), buf
    for shift in range(0, bits, 16):
        counts = np.zeros(_DIGIT, dtype=np.int64)
        for a in range(0, src.size, CHUNK):
            d = (keys_ids(src[a : a + CHUNK]) & mask) >> np.uint32(shift)
            counts += np.bincount(d & np.uint32(0xFFFF), minlength=_DIGIT)
        cursor = np.cumsum(counts) - counts
        for a in range(0, src.size, CHUNK):
            ids = src[a : a + CHUNK]
            d = (((keys_ids(ids) & mask) >> np.uint32(shift)) & np.uint32(0xFFFF)).astype(np.uint16)
            _scatter(dst, cursor, d, ids)
        src, dst = dst, src
    return src


def _scatter(out: np.ndarray, cursor: np.ndarray, digit: np.ndarray, ids: np.ndarray) -> None:
    """Write ``ids`` into ``out`` grouped by ``digit`` (stable), each group at its running
    ``cursor``; advance the cursors."""
    o = np.argsort(digit, kind="stable")  # a radix sort for uint16
    sd = digit[o].astype(np.int64)
    c = np.bincount(sd, minlength=_DIGIT)
    first = np.cumsum(c) - c  # where each digit's group starts inside the chunk
    pos = cursor[sd] + (np.arange(sd.size) - first[sd])
    out[pos] = ids[o]
    cursor += c
