"""Parse ``builtin:NAME?key=value&...`` specs and dispatch to the generators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

BUILTIN_PREFIX = "builtin:"

_INT_PARAMS = {"n", "seed", "levels", "limit", "min_chars", "max_chars", "start"}


def is_builtin(spec: str) -> bool:
    """True when ``spec`` names a built-in corpus rather than a path."""
    return spec.startswith(BUILTIN_PREFIX)


def parse_builtin(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``builtin:graded?n=10&task=arithmetic`` into ``("graded", {"n": 10, ...})``."""
    if not is_builtin(spec):
        raise ValueError(f"not a built-in corpus spec: {spec!r} (expected 'builtin:NAME')")
    body = spec[len(BUILTIN_PREFIX) :]
    name, _, query = body.partition("?")
    params: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key in _INT_PARAMS:
            try:
                params[key] = int(value)
            except ValueError:
                raise ValueError(f"{spec!r}: parameter {key!r} must be an integer") from None
        else:
            params[key] = value
    return name, params


def load_builtin(spec: str) -> Iterator[dict[str, Any]]:
    """Iterate the records of a built-in corpus: dicts with ``id``, ``text``, ``source``, ...."""
    from pipelines.corpora.graded import graded_records
    from pipelines.corpora.python_docs import python_docs_records

    name, params = parse_builtin(spec)
    generators = {"graded": graded_records, "python-docs": python_docs_records}
    if name not in generators:
        raise ValueError(
            f"unknown built-in corpus {name!r}; available: "
            + ", ".join(BUILTIN_PREFIX + k for k in sorted(generators))
        )
    try:
        return generators[name](**params)
    except TypeError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None
