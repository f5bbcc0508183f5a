"""The scorer contract: a named, versioned, pure function of a batch of texts.

Every scorer returns ``dict[column, numpy.ndarray]`` with one row per input text, in
input order (float32 for scalar signals). ``outputs`` maps each column to its
direction: ``+1`` larger is harder, ``-1`` larger is easier, ``0`` not a difficulty
(embeddings). ``describe()`` returns the pinned parameters the pipeline copies into
the manifest.

Bad input never crashes a batch: each signal documents the value (a number or NaN)
it gives to empty, whitespace-only, one-word, huge, non-Latin, emoji, control-character
and lone-surrogate texts. A text that truly cannot be scored raises
:class:`ScoringError`, which names the text's position so a caller can isolate it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

#: Words are runs of Unicode word characters (``\w+``), lower-cased (DESIGN §3).
WORD_RE = re.compile(r"\w+")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def words(text: str) -> list[str]:
    """Lower-case ``\\w+`` runs of ``text`` (the pinned word definition)."""
    return WORD_RE.findall(text.lower())


def replace_surrogates(text: str) -> str:
    """Replace lone UTF-16 surrogates (invalid in UTF-8) with U+FFFD.

    Tokenizers written in Rust refuse such strings; the model scorers call this first.
    """
    return _SURROGATE_RE.sub("\ufffd", text)


def preview(text: object, n: int = 60) -> str:
    """A short, printable preview of a text for error messages."""
    s = text if isinstance(text, str) else repr(text)
    s = s[:n].encode("unicode_escape", "backslashreplace").decode("ascii")
    return s


class ScoringError(Exception):
    """A single text could not be scored.

    Attributes: ``position`` (index of the text in the batch given to ``score``),
    ``text_preview`` (its first characters, escaped) and ``cause`` (the original error).
    """

    def __init__(self, position: int, text_preview: str, cause: BaseException) -> None:
        self.position = position
        self.text_preview = text_preview
        self.cause = cause
        super().__init__(
            f"text at position {position} ({text_preview!r}) could not be scored: "
            f"{type(cause).__name__}: {cause}"
        )


class Scorer(ABC):
    """Base class of every signal."""

    name: ClassVar[str]
    version: ClassVar[str]
    outputs: ClassVar[dict[str, int]]

    @abstractmethod
    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Score a batch; one row per text, input order."""

    def describe(self) -> dict[str, Any]:
        """Name, version, outputs with directions, and the pinned parameters."""
        return {
            "name": self.name,
            "version": self.version,
            "outputs": dict(self.outputs),
            "params": self.params(),
        }

    def params(self) -> dict[str, Any]:
        """Parameters that define the signal (recorded in the manifest)."""
        return {}

    def runtime(self) -> dict[str, Any]:
        """How this instance runs where it was loaded (a model's backend, device, dtype): the
        job records what every worker used, which may differ from the launcher's machine."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params()!r})"


class RowScorer(Scorer):
    """A CPU scorer that computes one row of floats per text, independently.

    Subclasses implement :meth:`score_one`; a non-string input or an unexpected error
    becomes a :class:`ScoringError` naming the position.
    """

    @abstractmethod
    def score_one(self, text: str) -> tuple[float, ...]:
        """The output values of one text, in the order of ``outputs``."""

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        cols = list(self.outputs)
        out = np.empty((len(texts), len(cols)), dtype=np.float32)
        for i, text in enumerate(texts):
            try:
                if not isinstance(text, str):
                    raise TypeError(f"expected str, got {type(text).__name__}")
                out[i] = self.score_one(text)
            except Exception as exc:  # noqa: BLE001 - isolate the one bad text
                raise ScoringError(i, preview(text), exc) from exc
        return {c: np.ascontiguousarray(out[:, j]) for j, c in enumerate(cols)}


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, raising :class:`ScoringError` on a non-string."""
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ScoringError(i, preview(t), TypeError(f"expected str, got {type(t).__name__}"))
    return out
