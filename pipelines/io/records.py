"""Validate a parsed payload into a record, or say why it is rejected."""

from __future__ import annotations

import hashlib
from typing import Any

from pipelines.io.metadata import clean

Record = dict[str, Any]


def stable_hash(text: str) -> int:
    """48 bits of sha1(text): shard keys and staging file names."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)


def record_id(source: str, position: int) -> str:
    """Stable id when the input has none: ``r-`` + 20 hex digits (80 bits) of
    sha1(source NUL position); among 1e9 records a collision has probability about 4e-7."""
    return "r-" + hashlib.sha1(f"{source}\0{position}".encode()).hexdigest()[:20]


def _valid_unicode(value: Any) -> bool:
    """Whether a cleaned value (keys included) encodes to UTF-8: no lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_valid_unicode(k) and _valid_unicode(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_valid_unicode(v) for v in value)
    return True


def make_record(
    source: str,
    position: int,
    payload: dict[str, Any],
    *,
    text_field: str = "text",
    id_field: str | None = None,
    max_text_bytes: int = 1_000_000,
) -> tuple[Record | None, str | None]:
    """``(record, None)`` for a good payload, ``(None, reason)`` for a bad one.

    A record is ``{"id", "text", "meta", "source", "position"}``; ``meta`` holds every other
    top-level field, made plain by :func:`pipelines.io.metadata.clean`, and is written through to
    the shards (typed by the rule of :mod:`pipelines.io.metadata`). The id is the field
    ``id_field``; by default (None) the record's own ``id`` when it has one, else a hash of
    source and position; ``"none"``: always the hash (``id`` then stays metadata). Rejected:
    missing / non-string / empty text, text that is not valid Unicode (lone surrogates), text
    over ``max_text_bytes`` UTF-8 bytes, a missing ``id_field`` when one is named.
    """
    if text_field not in payload:
        return None, f"missing text field {text_field!r}"
    text = payload[text_field]
    if not isinstance(text, str):
        return None, f"text field {text_field!r} is a {type(text).__name__}, not a string"
    if not text.strip():
        return None, "empty text"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None, "text is not valid Unicode (lone surrogate)"
    if size > max_text_bytes:
        return None, f"text is {size} bytes, over the cap of {max_text_bytes}"
    if id_field == "none":  # always hashed; a field named "id" stays metadata
        rid, id_field = record_id(source, position), None
    elif id_field is None:  # the record's own "id" when it has one, as curation tools do
        own = payload.get("id")
        if own is None or (isinstance(own, str) and not own):
            rid = record_id(source, position)
        else:
            rid, id_field = str(own), "id"
    else:
        own = payload.get(id_field)
        if own is None or (isinstance(own, str) and not own):
            return None, f"missing id field {id_field!r}"
        rid = str(own)
    meta = {}
    for k, v in payload.items():
        if k != text_field and k != id_field and type(k) is str:
            meta[k] = v if type(v) in _PLAIN else clean(v)
    return {"id": rid, "text": text, "meta": meta, "source": source, "position": position}, None


_PLAIN = frozenset({str, int, float, bool, type(None)})


def unicode_problem(record: Record) -> str | None:
    """Why a record cannot be stored (a lone surrogate in its id, source or metadata), or
    None. Readers already refuse such records (JSON ``\\u`` escapes; Arrow-backed inputs cannot
    hold them), so the job calls this only when staging a part fails."""
    for name in ("id", "source"):
        if not _valid_unicode(record[name]):
            return f"record {name} is not valid Unicode (lone surrogate)"
    for k, v in record["meta"].items():
        if not (_valid_unicode(k) and _valid_unicode(v)):
            return f"metadata field {k!r} is not valid Unicode (lone surrogate)"
    return None
