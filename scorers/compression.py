"""``compression_ratio``: how redundant a text is.

    ratio = len(utf8(text)) / len(compress(utf8(text), level))

with zlib level 6 by default (the form most copied in the curriculum literature, e.g.
"Curriculum learning for LLM pretraining: an analysis of learning dynamics",
arXiv:2506.11300, and compression-based data selection). Direction -1: more redundant
(higher ratio) is easier. Compressor (``zlib``, ``gzip``, ``bz2``, ``lzma``) and level are
parameters and are recorded.

Encoding: UTF-8 with ``errors="surrogatepass"``, so a lone surrogate is kept as its
3 bytes instead of failing. Short texts: the compressor's fixed overhead (zlib: 2-byte
header + 4-byte Adler-32 + block framing) dominates, so texts under ~100 bytes get
ratios below 1 and the signal is unreliable there; texts shorter than ``min_bytes``
(default 1, i.e. only the empty text) give NaN. Whitespace-only, emoji, control
characters and non-Latin text are compressed like any bytes.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from scorers.base import Scorer, ScoringError, check_texts, preview

_COMPRESSORS: dict[str, Callable[[bytes, int], bytes]] = {
    "zlib": zlib.compress,
    "gzip": lambda b, lv: gzip.compress(b, compresslevel=lv, mtime=0),
    "bz2": lambda b, lv: bz2.compress(b, compresslevel=lv),
    "lzma": lambda b, lv: lzma.compress(b, preset=lv),
}


class CompressionRatio(Scorer):
    name = "compression_ratio"
    version = "1"
    outputs = {"compression_ratio": -1}

    def __init__(self, compressor: str = "zlib", level: int = 6, min_bytes: int = 1) -> None:
        if compressor not in _COMPRESSORS:
            raise ValueError(f"unknown compressor {compressor!r}; one of {sorted(_COMPRESSORS)}")
        self.compressor = compressor
        self.level = int(level)
        self.min_bytes = int(min_bytes)
        self._compress = _COMPRESSORS[compressor]

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        compress, level, min_bytes = self._compress, self.level, max(1, self.min_bytes)
        nan = float("nan")
        try:  # fast path: one comprehension, no per-item bookkeeping
            vals = [
                len(b) / len(compress(b, level)) if len(b) >= min_bytes else nan
                for b in [t.encode("utf-8", "surrogatepass") for t in texts]
            ]
        except Exception:  # noqa: BLE001 - find the offending text
            texts = check_texts(texts)
            vals = []
            for i, t in enumerate(texts):
                try:
                    b = t.encode("utf-8", "surrogatepass")
                    vals.append(len(b) / len(compress(b, level)) if len(b) >= min_bytes else nan)
                except Exception as exc:  # noqa: BLE001
                    raise ScoringError(i, preview(t), exc) from exc
        return {"compression_ratio": np.array(vals, dtype=np.float32)}

    def params(self) -> dict[str, object]:
        return {
            "compressor": self.compressor,
            "level": self.level,
            "encoding": "utf-8/surrogatepass",
            "min_bytes": self.min_bytes,
            "formula": "utf8 bytes / compressed bytes",
        }
