"""``readability``: Flesch Reading Ease.

Flesch (1948), "A new readability yardstick", Journal of Applied Psychology 32(3):221-233:

    FRE = 206.835 - 1.015 * (words / sentences) - 84.6 * (syllables / words)

Direction -1 (higher = easier to read).

- words: ``\\w+`` runs (lower-cased), the pinned word definition;
- sentences: pieces of the text split at runs of ``.``, ``!`` or ``?`` followed by
  whitespace or the end of the text, counting only pieces that contain a word (so a
  trailing unterminated sentence counts, and "3.14" does not end a sentence); at least 1;
- syllables (``vowel-groups`` rule): per word, the number of maximal runs of the ASCII
  vowels ``aeiouy``; minus one for a final silent ``e`` (word ends in ``e`` but not ``le``,
  and has more than one group); at least 1 per word. Words without an ASCII vowel (numbers,
  non-Latin scripts) count as 1 syllable. This differs from dictionary hyphenation
  (``textstat`` uses pyphen) by a fraction of a syllable per word on English text.

Edge cases: no words (empty, whitespace-only, emoji/punctuation-only): NaN. One word:
defined by the formula with one sentence (e.g. "cat" -> 121.22). FRE is unbounded below
for very long sentences (a 10 MB text with no full stop gives a large negative number).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from scorers.base import WORD_RE, RowScorer

_SENT_SPLIT = re.compile(r"[.!?]+(?:\s+|$)")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


@lru_cache(maxsize=1 << 17)
def syllables(word: str) -> int:
    """Syllables of a lower-case word by the vowel-groups rule (see module docstring)."""
    n = len(_VOWEL_GROUPS.findall(word))
    if n > 1 and word.endswith("e") and not word.endswith("le"):
        n -= 1
    return n if n > 0 else 1


def count_sentences(text: str) -> int:
    """Sentences of ``text`` (pieces with a word, split at terminal punctuation); >= 1."""
    search = WORD_RE.search
    n = sum(1 for piece in _SENT_SPLIT.split(text) if search(piece))
    return n if n > 0 else 1


def flesch_reading_ease(text: str) -> float:
    """Flesch Reading Ease of ``text``; NaN when it has no word."""
    toks = WORD_RE.findall(text.lower())
    nw = len(toks)
    if nw == 0:
        return math.nan
    syl = sum(map(syllables, toks))
    return 206.835 - 1.015 * (nw / count_sentences(text)) - 84.6 * (syl / nw)


class Readability(RowScorer):
    name = "readability"
    version = "1"
    outputs = {"readability": -1}

    def score_one(self, text: str) -> tuple[float]:
        return (flesch_reading_ease(text),)

    def params(self) -> dict[str, object]:
        return {
            "formula": "Flesch Reading Ease: 206.835 - 1.015 W/S - 84.6 Syl/W",
            "words": r"lowercase \w+ runs",
            "sentences": r"pieces split at [.!?]+(\s+|$) containing a word, min 1",
            "syllable_rule": "vowel-groups [aeiouy]+, silent final e (not -le), min 1 per word",
        }
