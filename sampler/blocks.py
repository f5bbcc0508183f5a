"""Block draws: serve a few blocks of consecutive positions at a time, so that on a dataset laid
out in the serving order (``gradum shards reorder --by difficulty``, blocks = shards) a batch
touches ``w`` shards and each shard fetched is read whole before the next ones are needed.

Positions [0, m) of the serving order (the eligible prefix) are cut into blocks of B
positions (the last one may be shorter). Time is cut into rounds of

    L = ceil(w B / G) steps,   round r = floor(t / L),   s = t - r L  (step in the round)

and in round r (m frozen at its first step, so a pacing that grows m is followed with a lag of
at most L steps):

- w' = min(nb, max(w, ceil(G / B) + 1)) blocks are chosen, nb = ceil(m / B), one uniformly
  in each of w' equal strata of [0, nb) (so a batch still spans the eligible range);
- block k (size b_k) gets c_k of the G slots, the systematic rounding of G b_k / sum b, so
  c_k <= b_k and sum c_k = G;
- at step s block k serves offsets (s c_k + i) mod b_k, i < c_k, through a permutation of
  the block, x -> (a_k x + d_k) mod b_k with gcd(a_k, b_k) = 1.

So a batch holds no position twice (blocks are disjoint; c_k <= b_k consecutive offsets of a
bijection), every block chosen is served about once through per round (L c_k ~ b_k), and each
eligible position has the same chance per round up to the rounding of strata. All of it is a
pure function of (seed, step, m): resume needs nothing more.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import rng

BLOCK_STREAM = 7  # rng stream ids for block choices and permutations


def round_length(w: int, B: int, G: int) -> int:
    """Steps per round, L = ceil(w B / G) (at least 1)."""
    return max(1, -(-w * B // G))


def block_positions(seed: int, r: int, s: int, m: int, B: int, w: int, G: int) -> np.ndarray:
    """The G distinct positions (int64, in [0, m)) served at step ``s`` of round ``r``."""
    base, size, a, d, c, i = round_blocks(seed, r, m, B, w, G)
    x = (s * c + i) % size
    return base + (a * x + d) % size


@functools.lru_cache(maxsize=8)
def round_blocks(seed: int, r: int, m: int, B: int, w: int, G: int) -> tuple[np.ndarray, ...]:
    """What round ``r`` serves, per slot of the batch (G entries, read-only): the first
    position of the slot's block, the block's size, its permutation's multiplier and offset
    (mod size), the slots its block gets per step and the slot's rank among them. A pure
    function of its arguments, kept for the last few rounds: the steps of a round (and the
    prefetch planner's peeks into the next ones) compute it once."""
    nb = -(-m // B)
    wn = min(nb, max(w, -(-G // B) + 1))
    k = np.arange(wn, dtype=np.int64)
    lo, hi = (k * nb) // wn, ((k + 1) * nb) // wn
    bits = rng.bits_np(seed, BLOCK_STREAM, r, k)
    blk = lo + ((bits * (hi - lo)) >> 32)
    size = np.minimum(B, m - blk * B)
    total = int(size.sum())
    u = float(rng.uniform_np(rng.bits_np(seed, BLOCK_STREAM + 1, r, np.zeros(1, np.int64)))[0])
    A = np.floor(np.cumsum(size * (G / total)) + u)
    A[-1] = math.floor(G + u)
    c = np.diff(A, prepend=math.floor(u)).astype(np.int64)
    c = np.minimum(c, size)  # round-off guard; the deficit (never observed) is given below
    short = G - int(c.sum())
    if short:
        room = np.flatnonzero(size > c)
        c[room[:short]] += 1
    a_bits = rng.bits_np(seed, BLOCK_STREAM + 2, r, k)
    d_bits = rng.bits_np(seed, BLOCK_STREAM + 3, r, k)
    a = np.array(
        [_coprime(int(a_bits[q]) % int(size[q]) or 1, int(size[q])) for q in range(wn)],
        dtype=np.int64,
    )
    d = d_bits % size
    out = tuple(np.repeat(v, c) for v in (blk * B, size, a, d, c))  # blocks with c = 0 vanish
    out += (np.arange(G, dtype=np.int64) - np.repeat(np.cumsum(c) - c, c),)
    for v in out:
        v.flags.writeable = False
    return out


def _coprime(a: int, b: int) -> int:
    """The first a' >= a (mod b, >= 1) with gcd(a', b) = 1."""
    if b <= 1:
        return 1
    while math.gcd(a, b) != 1:
        a = a % b + 1
    return a
