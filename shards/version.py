"""Format and package versions recorded in the manifest."""

from __future__ import annotations

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})


def gradum_version() -> str:
    """The installed gradum distribution version, or ``0+unknown`` when not installed."""
    try:
        from importlib.metadata import version

        return version("gradum")
    except Exception:  # noqa: BLE001 - any metadata failure means "unknown"
        return "0+unknown"
