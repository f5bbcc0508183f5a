"""``builtin:graded``: synthetic records whose difficulty ``level`` is known.

Two tasks, chosen with ``task=``:

``language`` (default)
    Sentences from a small recursive grammar over a fixed pseudo-word lexicon, added until
    the record has at least 300 characters, so length varies little with level (length-sensitive
    signals such as compression ratio would otherwise measure length, not difficulty).
    Level L (1..levels) sets three things together, so every text signal should see it:
    each noun phrase nests ``L - 1`` relative clauses (syntactic depth), words have up to
    ``L`` syllables (Flesch falls), and the lexicon grows as ``12 * 3**(L-1)`` words per
    part of speech (rarer words, higher perplexity and MTLD).

``arithmetic``
    ``"a + b = c"`` where ``a`` and ``b`` have exactly L digits; ``prompt`` is ``"a + b ="``
    and ``answer`` is ``c``. Longer carries make higher levels harder to learn.

Record ``i`` has ``level = 1 + i % levels`` (exactly balanced in every window of
``levels`` records) and its content comes from ``random.Random((seed << 40) ^ (i << 8)
^ task_code)``: a pure function of (seed, task, i), so any slice is generated without the
ones before it and the corpus scales to millions of records. Ids are
``graded-{task}-{seed}-{i:09d}``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

_TASKS = {"language": 1, "arithmetic": 2}
_SYLLABLES = [
    c + v
    for c in ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
    for v in ("a", "e", "i", "o", "u")
]
_DETERMINERS = ("the", "a", "every", "some", "this", "that")
_TARGET_CHARS = 300


@lru_cache(maxsize=64)
def _lexicon(part: str, level: int) -> tuple[str, ...]:
    """Fixed pseudo-words for a part of speech; level L adds words of L syllables."""
    rng = random.Random(f"gradum-lexicon-{part}")
    words: list[str] = []
    seen: set[str] = set()
    for lv in range(1, level + 1):
        target = 12 * 3 ** (lv - 1)
        while len(words) < target:
            w = "".join(rng.choice(_SYLLABLES) for _ in range(lv))
            if part == "verb":
                w += "s"
            if w not in seen:
                seen.add(w)
                words.append(w)
    return tuple(words)


def _noun_phrase(rng: random.Random, level: int, depth: int) -> str:
    nouns, adjs = _lexicon("noun", level), _lexicon("adj", level)
    words = [rng.choice(_DETERMINERS)]
    if rng.random() < 0.5:
        words.append(rng.choice(adjs))
    words.append(rng.choice(nouns))
    if depth > 0:
        words.append("that " + _verb_phrase(rng, level, depth - 1))
    return " ".join(words)


def _verb_phrase(rng: random.Random, level: int, depth: int) -> str:
    return rng.choice(_lexicon("verb", level)) + " " + _noun_phrase(rng, level, depth)


def _language(rng: random.Random, level: int) -> dict[str, Any]:
    sentences: list[str] = []
    chars = 0
    while chars < _TARGET_CHARS:
        s = _noun_phrase(rng, level, level - 1) + " " + _verb_phrase(rng, level, 0)
        sentences.append(s[0].upper() + s[1:] + ".")
        chars += len(s) + 2
    return {"text": " ".join(sentences)}


def _arithmetic(rng: random.Random, level: int) -> dict[str, Any]:
    lo, hi = (0 if level == 1 else 10 ** (level - 1)), 10**level - 1
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    prompt = f"{a} + {b} ="
    return {"text": f"{prompt} {a + b}", "prompt": prompt, "answer": str(a + b)}


def graded_records(
    n: int = 10_000,
    seed: int = 0,
    task: str = "language",
    levels: int = 5,
    start: int = 0,
) -> Iterator[dict[str, Any]]:
    """Yield records ``start .. start + n - 1``: ``id, text, source, task, level`` (+ prompt, answer)."""
    if task not in _TASKS:
        raise ValueError(f"unknown graded task {task!r}; choose one of {sorted(_TASKS)}")
    if n < 0 or start < 0:
        raise ValueError("n and start must be >= 0")
    if not 1 <= levels <= (8 if task == "language" else 18):
        raise ValueError(f"levels must be in 1..{8 if task == 'language' else 18} for {task!r}")
    make = _language if task == "language" else _arithmetic
    code = _TASKS[task]
    for i in range(start, start + n):
        level = 1 + i % levels
        rng = random.Random((seed << 40) ^ (i << 8) ^ code)
        record = {
            "id": f"graded-{task}-{seed}-{i:09d}",
            "source": f"graded:{task}",
            "task": task,
            "level": level,
        }
        record.update(make(rng, level))
        yield record
