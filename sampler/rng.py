"""Counter-based random numbers: pure functions of (seed, stream, step, position).

No generator object is kept anywhere: the random bits for position ``j`` of the batch drawn at
step ``t`` are ``mix32((j + key(seed, stream, t)) mod 2^32)``, where ``mix32`` is the
``lowbias32`` integer hash (C. Wellons, "Prospecting for hash functions", 2018) and ``key`` is
the same hash chained over the seed, the stream id and the step in Python integers. Resume
therefore needs only the step counter (O(1) state), and the global numpy / torch RNGs are never
touched (the DeepSpeed #8405 bug: saving the global numpy state instead of the sampler's own).
"""

from __future__ import annotations

import numpy as np
import torch

M32 = 0xFFFFFFFF

# stream ids: one independent stream per use
DRAW = 1
SHUFFLE = 2


def mix32_int(x: int) -> int:
    """lowbias32 on a Python int (x in [0, 2^32))."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on an int64 tensor with values in [0, 2^32); int64 products wrap mod 2^64,
    so masking to 32 bits gives the exact unsigned result."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def key(seed: int, stream: int, step: int) -> int:
    """32-bit key for (seed, stream, step); seeds and steps of any size are folded 32 bits at a
    time."""
    k = mix32_int(0x9E3779B9 ^ stream)
    for word in (seed, step):
        word = int(word)
        if word < 0:
            raise ValueError(f"seed and step must be >= 0, got {word}")
        while True:
            k = mix32_int(k ^ (word & M32))
            word >>= 32
            if word == 0:
                break
    return k


def bits(seed: int, stream: int, step: int, j: torch.Tensor) -> torch.Tensor:
    """32 random bits (int64 in [0, 2^32)) for each position in ``j`` (int64 tensor)."""
    return mix32((j + key(seed, stream, step)) & M32)


def bits_np(seed: int, stream: int, step: int, j: np.ndarray) -> np.ndarray:
    """``bits`` on a numpy int64 array (same values; CPU fast path, lower per-call overhead)."""
    x = (j + key(seed, stream, step)) & M32
    x ^= x >> 16
    x *= 0x7FEB352D
    x &= M32
    x ^= x >> 15
    x *= 0x846CA68B
    x &= M32
    x ^= x >> 16
    return x


def below(b: torch.Tensor, n: torch.Tensor | int) -> torch.Tensor:
    """Map 32-bit values ``b`` to integers in [0, n) by multiply-shift (Lemire); exact for
    n < 2^31, bias <= n / 2^32."""
    return (b * n) >> 32


def uniform(b: torch.Tensor) -> torch.Tensor:
    """Map 32-bit values to float64 in (0, 1)."""
    return (b.to(torch.float64) + 0.5) * (1.0 / 4294967296.0)


def uniform_np(b: np.ndarray) -> np.ndarray:
    """``uniform`` on a numpy array."""
    return (b.astype(np.float64) + 0.5) * (1.0 / 4294967296.0)
