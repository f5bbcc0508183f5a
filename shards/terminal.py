"""Terminal formatting: shorten texts, align plain-text tables, human-readable byte counts."""

from __future__ import annotations

from typing import Any


def shorten(value: Any, width: int = 60) -> str:
    """One-line, at most ``width`` characters; newlines/tabs shown as spaces, cut with '…'."""
    if value is None:
        return "null"
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    text = " ".join(text.split())
    if width >= 2 and len(text) > width:
        text = text[: width - 1].rstrip() + "…"
    return text


def table(headers: list[str], rows: list[list[Any]], width: int = 60) -> str:
    """Left-aligned plain-text table with a dashed header rule."""
    cells = [[shorten(v, width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
