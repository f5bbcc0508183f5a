"""``word_rarity``: mean unigram surprisal of a text's words.

    rarity = (1 / n) * sum_i -ln p(w_i)

over the text's lower-cased ``\\w+`` words, with add-k smoothed unigram probabilities

    p(w) = (c(w) + k) / (N + k * (V + 1))

where c are the table's counts (N their sum, V its size) and an out-of-vocabulary word
has c = 0. This is the "unigram log-probability" signal of peS2o / DataTrove
(``UnigramLogProbFilter``), in nats, with an explicit smoothing instead of a fixed OOV
floor. Direction +1.

The table is either given (``table=``: counts, or any non-negative weights), fitted on a
corpus with :func:`fit_table` / :meth:`WordRarity.fit` (what the pipeline does), or the
shipped default ``scorers/data/unigram_pydoc.json``: word counts of CPython 3.11's
``pydoc_data.topics`` (the Python reference manual), a small English technical corpus.
The source, size and a SHA-256 of the table are recorded in ``describe()``.

Edge cases: no words (empty, whitespace, emoji-only): NaN. Non-Latin words are mostly
OOV and get the OOV surprisal ln((N + k(V+1)) / k).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from scorers.base import RowScorer, words

DEFAULT_TABLE_PATH = Path(__file__).parent / "data" / "unigram_pydoc.json"


def fit_table(texts: Iterable[str], min_count: int = 1) -> dict[str, int]:
    """Word counts (lower-cased ``\\w+`` runs) of a corpus, dropping words below ``min_count``."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(words(t))
    return {w: c for w, c in counts.items() if c >= min_count}


def load_default_table() -> tuple[dict[str, int], str]:
    """The shipped table and its source description."""
    data = json.loads(DEFAULT_TABLE_PATH.read_text(encoding="utf-8"))
    return data["counts"], data["source"]


class WordRarity(RowScorer):
    name = "word_rarity"
    version = "1"
    outputs = {"word_rarity": +1}

    def __init__(
        self,
        table: Mapping[str, float] | None = None,
        *,
        smoothing: float = 1.0,
        source: str | None = None,
    ) -> None:
        if table is None:
            table, default_source = load_default_table()
            source = source or default_source
        if smoothing <= 0:
            raise ValueError("smoothing must be > 0 (it gives OOV words a finite surprisal)")
        self.source = source or "user table"
        self.smoothing = float(smoothing)
        total = float(sum(table.values()))
        denom = total + self.smoothing * (len(table) + 1)
        log_denom = math.log(denom)
        self._surprisal = {
            w: log_denom - math.log(float(c) + self.smoothing) for w, c in table.items()
        }
        self._oov = log_denom - math.log(self.smoothing)
        digest = hashlib.sha256()
        for w in sorted(table):
            digest.update(f"{w}\t{table[w]}\n".encode("utf-8", "surrogatepass"))
        self._sha = digest.hexdigest()
        self._size = len(table)
        self._total = total

    @classmethod
    def fit(
        cls, texts: Iterable[str], *, min_count: int = 1, smoothing: float = 1.0, source: str = ""
    ) -> WordRarity:
        """A scorer whose table is fitted on ``texts`` (see :func:`fit_table`)."""
        return cls(
            fit_table(texts, min_count),
            smoothing=smoothing,
            source=source or "fitted on corpus",
        )

    def score_one(self, text: str) -> tuple[float]:
        toks = words(text)
        if not toks:
            return (math.nan,)
        get, oov = self._surprisal.get, self._oov
        return (math.fsum(get(w, oov) for w in toks) / len(toks),)

    def params(self) -> dict[str, object]:
        return {
            "formula": "mean -ln p(w), p = (c + k) / (N + k (V + 1))",
            "unit": "nats",
            "words": r"lowercase \w+ runs",
            "source": self.source,
            "table_size": self._size,
            "table_total": self._total,
            "table_sha256": self._sha,
            "smoothing": self.smoothing,
        }
