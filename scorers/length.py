"""``length``: characters and words of a text.

- ``chars``: number of Unicode code points, ``len(text)`` (a lone surrogate counts as one).
- ``words``: number of ``\\w+`` runs (the pinned word definition of DESIGN §3).

Both are defined for every string: the empty string gives 0 and 0. Direction +1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scorers.base import WORD_RE, Scorer, check_texts


class Length(Scorer):
    name = "length"
    version = "1"
    outputs = {"chars": +1, "words": +1}

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts = check_texts(texts)
        chars = np.fromiter((len(t) for t in texts), dtype=np.float32, count=len(texts))
        nwords = np.fromiter(
            (sum(1 for _ in WORD_RE.finditer(t)) for t in texts), dtype=np.float32, count=len(texts)
        )
        return {"chars": chars, "words": nwords}

    def params(self) -> dict[str, object]:
        return {"chars": "unicode code points", "words": r"count of \w+ runs"}
