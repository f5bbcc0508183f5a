"""``builtin:python-docs``: paragraph-sized English records from the CPython install.

Sources, in this fixed order:
1. ``pydoc_data.topics.topics``: the language-reference topics that ``help()`` shows;
2. docstrings of the pure-Python standard library, read with :mod:`ast` (nothing is
   imported or executed), modules in sorted path order, then classes and functions in
   source order.

Each text is split on blank lines into paragraphs; consecutive short paragraphs are
joined until they reach ``min_chars``, and paragraphs longer than ``max_chars`` are
cut at a line boundary. The output is deterministic for a given Python version. Ids are
``pydocs-`` + the first 16 hex digits of sha1(source + NUL + paragraph number), so they are
stable and unique; ``source`` says where the text came from (``topics:NAME`` or
``stdlib:module.qualname``).
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "__pycache__"}


def _paragraphs(text: str, min_chars: int, max_chars: int) -> Iterator[str]:
    buf: list[str] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        block = block.strip("\n")
        if not block.strip():
            continue
        buf.append(block)
        joined = "\n\n".join(buf)
        if len(joined) >= min_chars:
            yield from _cut(joined, max_chars)
            buf = []
    if buf:
        joined = "\n\n".join(buf)
        if len(joined.strip()) >= min_chars // 2:
            yield from _cut(joined, max_chars)


def _cut(text: str, max_chars: int) -> Iterator[str]:
    while len(text) > max_chars:
        split = text.rfind("\n", 0, max_chars)
        if split <= 0:
            split = max_chars
        yield text[:split].strip("\n")
        text = text[split:].lstrip("\n")
    if text.strip():
        yield text


def _topic_texts() -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"topics:{name}", topics[name]


def _docstrings(path: Path, module: str) -> Iterator[tuple[str, str]]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield f"stdlib:{module}", doc

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                qual = f"{prefix}.{child.name}"
                child_doc = ast.get_docstring(child)
                if child_doc:
                    yield f"stdlib:{qual}", child_doc
                yield from walk(child, qual)

    yield from walk(tree, module)


def _stdlib_texts() -> Iterator[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in root.rglob("*.py") if not _SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])
    )
    for path in files:
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield from _docstrings(path, ".".join(parts) or "stdlib")


def python_docs_records(
    limit: int | None = None, min_chars: int = 200, max_chars: int = 4000
) -> Iterator[dict[str, Any]]:
    """Yield ``{"id", "text", "source"}`` records; ``limit`` stops after that many."""
    if min_chars < 1 or max_chars < min_chars:
        raise ValueError("need 1 <= min_chars <= max_chars")
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    count = 0
    for sources in (_topic_texts(), _stdlib_texts()):
        for source, text in sources:
            for number, paragraph in enumerate(_paragraphs(text, min_chars, max_chars)):
                if limit is not None and count >= limit:
                    return
                digest = hashlib.sha1(f"{source}\0{number}".encode()).hexdigest()[:16]
                yield {"id": f"pydocs-{digest}", "text": paragraph, "source": source}
                count += 1
