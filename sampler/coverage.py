"""Which items were served at least once, one bit per item (N / 8 bytes instead of N).

Bit i lives in byte i >> 3 at position i & 7 (little-endian bit order, as
``np.packbits(..., bitorder="little")``). The state keeps its former form, one uint8 per item
(``to_bytes`` / ``from_bytes``), so saved states and their checks are unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from . import draw

_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int64)


class Coverage:
    """A bitset over ``n`` items on ``device``."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.n = int(n)
        self.bits = torch.zeros((self.n + 7) // 8, dtype=torch.uint8, device=device)

    def mark(self, idx: torch.Tensor) -> None:
        """Set the bits of ``idx`` (repeats allowed)."""
        if idx.numel() == 0:
            return
        if draw.on_numpy(self.bits):
            i = idx.numpy() if idx.device.type == "cpu" else idx.cpu().numpy()
            np.bitwise_or.at(self.bits.numpy(), i >> 3, np.left_shift(1, i & 7).astype(np.uint8))
            return
        idx = idx.to(self.bits.device, torch.int64)
        byte, bit = idx >> 3, idx & 7
        for b in range(8):  # one position at a time: repeated bytes then write equal values
            sel = byte[bit == b]
            if sel.numel():
                self.bits[sel] = self.bits[sel] | (1 << b)

    def count(self) -> int:
        """Items marked."""
        if draw.on_numpy(self.bits):
            return int(np.bitwise_count(self.bits.numpy()).sum(dtype=np.int64))
        return int(_POPCOUNT.to(self.bits.device)[self.bits.long()].sum())

    def to_bytes(self) -> torch.Tensor:
        """One uint8 (0 / 1) per item, on the CPU (the state's form)."""
        packed = self.bits.cpu().numpy()
        return torch.from_numpy(np.unpackbits(packed, count=self.n, bitorder="little").copy())

    def load_bytes(self, seen: torch.Tensor) -> None:
        """Set from one uint8 (0 / nonzero) per item."""
        flags = seen.detach().cpu().numpy().astype(bool)
        packed = np.packbits(flags, bitorder="little")
        self.bits = torch.from_numpy(packed).to(self.bits.device)

    @property
    def nbytes(self) -> int:
        return int(self.bits.numel())
