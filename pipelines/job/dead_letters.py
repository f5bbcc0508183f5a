"""Dead letters: a record per rejected input, with its reason and payload, written per part.

Each part writes its own files ``dead_letter/part-<key>.jsonl`` (read, validation and scoring
failures) and ``dead_letter/part-<key>-dup.jsonl`` (repeated ids, found at the shard step),
sorted by source and position, cut into files of at most ``MAX_FILE_BYTES``: spread over the
workers that read the parts, bounded in size, never gathered on one worker.
"""

from __future__ import annotations

from typing import Any

from pipelines.io import storage as fs
from pipelines.io.formats import jsonable

MAX_FILE_BYTES = 64 << 20


def dead_letter(stage: str, reason: str, source: str, position: int, payload: Any) -> dict:
    return {
        "stage": stage,
        "reason": reason,
        "source": source,
        "position": position,
        "payload": jsonable(payload),
    }


def record_dead_letter(stage: str, reason: str, record: dict) -> dict:
    """The dead letter of a validated record: its fields, text and id as the payload."""
    payload = dict(record["meta"], text=record["text"], id=record["id"])
    return dead_letter(stage, reason, record["source"], record["position"], payload)


def write_part_dead_letters(out_dir: str, name: str, items: list[dict]) -> list[dict[str, Any]]:
    """Write one part's dead letters as ``dead_letter/<name>.jsonl`` (``<name>-1.jsonl``, ...
    past ``MAX_FILE_BYTES``); return ``{"path", "rows", "bytes"}`` per file written."""
    from shards.dead_letter import dead_letter_line
    from shards.paths import DEAD_LETTER_DIR

    items = sorted(items, key=lambda d: (d["source"], d["position"], d["stage"]))
    files: list[dict[str, Any]] = []
    chunk: list[bytes] = []
    size = 0

    def flush() -> None:
        suffix = f"-{len(files)}" if files else ""
        rel = f"{DEAD_LETTER_DIR}/{name}{suffix}.jsonl"
        data = b"".join(chunk)
        fs.write_bytes(fs.join(out_dir, *rel.split("/")), data)
        files.append({"path": rel, "rows": len(chunk), "bytes": len(data)})

    for d in items:
        line = dead_letter_line(
            d["reason"],
            {"source": d["source"], "position": d["position"], "record": d["payload"]},
            stage=d["stage"],
        ).encode("utf-8", "backslashreplace")  # a lone surrogate stays a JSON \\u escape
        if chunk and size + len(line) > MAX_FILE_BYTES:
            flush()
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        flush()
    return files
