"""``lexical_diversity``: MTLD, the Measure of Textual Lexical Diversity.

McCarthy & Jarvis (2010), "MTLD, vocd-D, and HD-D", Behavior Research Methods 42(2):381-392.

Words are lower-cased ``\\w+`` runs. Walking forward, the running type-token ratio
TTR = |types| / |tokens| of the current segment is updated word by word; when
TTR <= threshold (0.72) one *factor* is counted and the segment restarts. The last,
unfinished segment adds the partial factor (1 - TTR) / (1 - threshold). Then

    MTLD_forward = n_words / factors

and MTLD is the mean of the forward and the backward (reversed word order) values.
Direction +1.

Edge cases (documented, never a crash):
- fewer than ``min_words`` words (default 1; the empty, whitespace-only, emoji-only or
  punctuation-only text has 0): NaN;
- no factor at all (every word distinct, e.g. a one-word text): factors = 1, so
  MTLD = n_words (the convention of the ``lexicalrichness`` package);
- short texts: McCarthy & Jarvis recommend at least ~100 words; below ~50 words MTLD is
  noisy but still computed.
Non-Latin scripts work since ``\\w`` is Unicode-aware; lone surrogates are not word
characters and are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from scorers.base import RowScorer, words


def _mtld_pass(seq: Iterable[str], threshold: float) -> float:
    """Factor count of one directional pass (full factors + partial last factor)."""
    factors = 0.0
    terms: set[str] = set()
    add = terms.add
    count = 0
    ttr = 1.0
    for w in seq:
        count += 1
        add(w)
        ttr = len(terms) / count
        if ttr <= threshold:
            factors += 1.0
            terms = set()
            add = terms.add
            count = 0
    if count > 0:
        factors += (1.0 - ttr) / (1.0 - threshold)
    return factors


def mtld(tokens: list[str], threshold: float = 0.72) -> float:
    """MTLD of a token list (see module docstring); NaN for no tokens."""
    n = len(tokens)
    if n == 0:
        return math.nan
    fwd = _mtld_pass(tokens, threshold) or 1.0
    bwd = _mtld_pass(reversed(tokens), threshold) or 1.0
    return 0.5 * (n / fwd + n / bwd)


class LexicalDiversity(RowScorer):
    name = "lexical_diversity"
    version = "1"
    outputs = {"lexical_diversity": +1}

    def __init__(self, threshold: float = 0.72, min_words: int = 1) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        self.threshold = float(threshold)
        self.min_words = max(1, int(min_words))

    def score_one(self, text: str) -> tuple[float]:
        toks = words(text)
        if len(toks) < self.min_words:
            return (math.nan,)
        return (mtld(toks, self.threshold),)

    def params(self) -> dict[str, object]:
        return {
            "measure": "MTLD (McCarthy & Jarvis 2010), mean of forward and backward",
            "threshold": self.threshold,
            "words": r"lowercase \w+ runs",
            "min_words": self.min_words,
            "no_factor_rule": "factors=1 (MTLD = n_words)",
        }
