"""Lazy imports of the heavy optional libraries, with an error naming the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRA_HINT = "install the extra: pip install 'gradum[pipeline]'"


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ImportError telling which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module!r} is needed for this scorer; {EXTRA_HINT}") from exc
