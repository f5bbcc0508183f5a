"""DeadLetterWriter: rejected inputs as JSON lines under OUT/dead_letter/."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .paths import DEAD_LETTER_DIR


def dead_letter_line(reason: str, payload: Any, stage: str | None = None) -> str:
    """One dead-letter record as a JSON line: ``{"reason", "stage", "payload"}``; a payload
    that is not JSON is stored as its repr."""
    line = {"reason": str(reason), "stage": stage, "payload": payload}
    try:
        text = json.dumps(line, ensure_ascii=False)
    except (TypeError, ValueError):
        line["payload"] = repr(payload)
        text = json.dumps(line, ensure_ascii=False)
    return text + "\n"


class DeadLetterWriter:
    """Append ``{"reason", "stage", "payload"}`` lines to ``OUT/dead_letter/NAME.jsonl``.

    The file is written to a temporary name and renamed on ``close`` (like shards); an empty
    writer leaves no file. ``count`` is the number of lines written.
    """

    def __init__(self, out_dir: str | os.PathLike, name: str = "part-00000") -> None:
        self.dir = Path(out_dir) / DEAD_LETTER_DIR
        self.path = self.dir / f"{name}.jsonl"
        self._tmp = self.dir / f".{name}.jsonl.tmp"
        self._fh = None
        self.count = 0

    def __enter__(self) -> DeadLetterWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def write(self, reason: str, payload: Any, stage: str | None = None) -> None:
        """Record one rejected input with its reason; non-JSON payloads are stored as repr."""
        if self._fh is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fh = open(self._tmp, "w", encoding="utf-8")
        self._fh.write(dead_letter_line(reason, payload, stage))
        self.count += 1

    def close(self) -> int:
        """Commit the file (rename) and return the number of lines."""
        if self._fh is not None:
            self._fh.close()
            os.replace(self._tmp, self.path)
            self._fh = None
        return self.count


def read_dead_letters(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All dead-letter records of a dataset (small datasets / tests)."""
    rows: list[dict[str, Any]] = []
    for p in sorted((Path(out_dir) / DEAD_LETTER_DIR).glob("*.jsonl")):
        with open(p, encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return rows
