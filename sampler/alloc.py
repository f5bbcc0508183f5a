"""Group allocation without repeats: how many of a batch's G slots each group gets when no group
may serve more items than it holds.

Target: group probabilities p_j = softmax(z)_j (z = score / tau). Capacity: group j holds s_j
items, sum_j s_j = N >= G. The real allocation is

    a_j = min(s_j, lam p_j),   lam chosen so that sum_j a_j = G

i.e. a group smaller than its share G p_j serves all its items and its remainder goes to the
other groups in proportion to their probabilities (water-filling). Of all allocations with
a_j <= s_j and sum a_j = G, this is the one closest to the softmax: q = a / G minimises
KL(q || p) over the capped simplex (the KKT conditions of that problem give q_j = min(s_j / G,
lam' p_j)).

lam is found exactly in the log domain (so tau -> 0 and reward spikes, where exp(z) underflows,
stay well defined: groups whose p_j is 0 in float64 still share a remainder in proportion to
exp(z_j)). Sort groups by k_j = log s_j - z_j (the log lam at which group j becomes full);
if the first m of that order are full, lam_m = R_m / sum_{i >= m} exp(z_i) with
R_m = G - sum_{i < m} s_i. The true lam is the largest lam_m over the m with R_m > 0 (for
m below the true cut lam_m <= lam because the extra groups take at most their cap; above it
lam_m < lam because they are forced to their cap), so one sort and one suffix log-sum-exp give
it: O(K log K), once per state change (not per batch). The maximising m fixes which groups are
full; the open groups then share R_m by a softmax among themselves, a_j = R_m exp(z_j - z_max)
/ sum_open exp(z_i - z_max), which avoids the cancellation in z_j + log lam when |z| ~ 1e30
(and any open group that round-off still puts over its size is closed and the rest shared
again).

Integer counts per batch: systematic rounding of the cumulative allocation with one uniform U
per step, c_j = #{i in [0, G): A_{j-1} <= i + U < A_j}, A_j = sum_{i <= j} a_i. Each c_j is
floor(a_j) or ceil(a_j) <= s_j, and sum c_j = G exactly; a float64 round-off that would give a
full group one item too many is repaired by moving that item to the group with the largest
unserved allocation that has room (never observed; kept so the no-repeat rule holds always).
All of this runs on the host in numpy float64: K values, the same bits for every device.
"""

from __future__ import annotations

import numpy as np


def allocate(z: np.ndarray, sizes: np.ndarray, G: int) -> np.ndarray:
    """Real allocation a (float64, sum G, a_j <= sizes_j) for logits ``z`` (finite float64)
    and integer group ``sizes`` (sum >= G)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    z = np.asarray(z, dtype=np.float64)
    N = int(sizes.sum())
    if G > N:
        raise ValueError(f"allocate: batch {G} is larger than the groups ({N} items)")
    if G == N:
        return sizes.astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    a = G * p
    if (a <= sizes).all():  # no cap binds: the softmax itself
        return a
    k = np.log(sizes.astype(np.float64)) - z
    order = np.argsort(k, kind="stable")
    zs, ss = z[order], sizes[order]
    R = G - (np.cumsum(ss) - ss)  # R_m: slots left when the first m groups are full
    lse = np.logaddexp.accumulate(zs[::-1])[::-1]  # log sum_{i >= m} exp(z_i)
    ok = R > 0
    loglam = np.where(ok, np.log(np.maximum(R, 1).astype(np.float64)) - lse, -np.inf)
    m = int(np.argmax(loglam))  # lam = max_m lam_m; its first m groups (in k order) are full
    full = np.zeros(z.size, dtype=bool)
    full[order[:m]] = True
    while True:
        # the full groups take their size; the open ones share the rest in proportion to
        # exp(z) among themselves (a softmax over the open groups: no cancellation in
        # z + log lam when |z| is huge)
        a = sizes.astype(np.float64)
        open_ = ~full
        zo = z[open_]
        w = np.exp(zo - zo.max())
        a[open_] = (G - sizes[full].sum()) * w / w.sum()
        over = open_ & (a > sizes)
        if not over.any():  # round-off at |z| ~ 1e30 can hide a full group: close it too
            return a
        full |= over


def cumulative(a: np.ndarray, G: int) -> np.ndarray:
    """A_j = sum_{i <= j} a_i scaled so that A_{K-1} = G exactly (float64)."""
    A = np.cumsum(a)
    A *= G / A[-1]
    A[-1] = G
    return A


def slot_groups(A: np.ndarray, sizes: np.ndarray, G: int, U: float) -> np.ndarray:
    """The group of each of the G slots (sorted, int64) by systematic rounding with offset
    U in [0, 1): slot i goes to the group j with A_{j-1} <= i + U < A_j. No group gets more
    slots than it has items."""
    x = np.arange(G, dtype=np.float64) + U
    g = np.searchsorted(A, x, side="right")
    np.minimum(g, A.size - 1, out=g)
    heads = np.flatnonzero(np.diff(g, prepend=-1))
    lens = np.diff(heads, append=G)
    if (lens <= sizes[g[heads]]).all():
        return g
    counts = np.bincount(g, minlength=A.size)
    return np.repeat(np.arange(A.size), repair(counts, A, sizes))


def repair(counts: np.ndarray, A: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Move the slots a round-off gave to full groups to the groups with the largest unserved
    allocation a_j - c_j that still have room (deterministic, stable order)."""
    counts = counts.astype(np.int64).copy()
    excess = int(np.maximum(counts - sizes, 0).sum())
    np.minimum(counts, sizes, out=counts)
    a = np.diff(A, prepend=0.0)
    room = sizes - counts
    order = np.argsort(-(a - counts), kind="stable")
    order = order[room[order] > 0]
    r = room[order]
    give = np.clip(excess - (np.cumsum(r) - r), 0, r)
    counts[order] += give
    return counts
