"""Passthrough metadata: every field of a record besides its text and id, stored losslessly.

Values are first made plain (:func:`clean`): JSON scalars, lists and objects stay as they are;
dates and times become ISO 8601 text, ``Decimal`` its digits, bytes base64 text, numpy
scalars Python numbers, anything else its ``repr``.

Each field then gets one column type from the kinds of all its non-null values over the
whole input (:func:`storage`; nulls stay null):

============================================  ================================
values of the field                           column
============================================  ================================
booleans                                      ``bool``
integers within int64                         ``int64``
integers >= 0, some at or above 2**63         ``uint64`` (e.g. 64-bit hashes)
floats, or floats and integers up to 2**53    ``float64`` (exact)
strings                                       ``string``
anything else: nested lists / objects, wider  ``string`` holding each value's
integers, or a mix of kinds                   JSON text (``json.loads`` gives
                                              the value back; a string is quoted)
============================================  ================================

so no value changes silently and no record fails for its metadata. A field named like a
shard column (``id``, ``difficulty``, a signal, ...) is stored as ``meta_NAME`` (with more
``meta_`` prefixes if that name is taken too).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from typing import Any

import pyarrow as pa

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
EXACT_IN_DOUBLE = 2**53
ARROW = {
    "bool": pa.bool_(),
    "int64": pa.int64(),
    "uint64": pa.uint64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "json": pa.string(),
}


def clean(value: Any) -> Any:
    """A value made of JSON types only (see the module docstring)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return clean(item())
        except (TypeError, ValueError):
            pass
    return repr(value)


def tags(value: Any) -> set[str]:
    """The kinds of one cleaned value that decide its field's column type."""
    if value is None:
        return set()
    if isinstance(value, bool):
        return {"bool"}
    if isinstance(value, int):
        found = {"wide"} if abs(value) > EXACT_IN_DOUBLE else set()
        if 0 <= value <= INT64_MAX:
            return found | {"int"}
        if -INT64_MAX - 1 <= value < 0:
            return found | {"negint"}
        if INT64_MAX < value <= UINT64_MAX:
            return found | {"uint"}
        return found | {"bigint"}
    if isinstance(value, float):
        return {"float"}
    if isinstance(value, str):
        return {"str"}
    return {"nested"}


def storage(kinds: set[str]) -> str:
    """The column type of a field from the union of its values' :func:`tags`."""
    if not kinds or kinds == {"str"}:
        return "string"
    if kinds == {"bool"}:
        return "bool"
    numbers = kinds - {"wide"}
    if numbers <= {"int", "negint"}:
        return "int64"
    if numbers <= {"int", "uint"}:
        return "uint64"
    if numbers <= {"int", "negint", "float"} and "wide" not in kinds:
        return "float64"
    if numbers == {"float"}:
        return "float64"
    return "json"


def encode(value: Any, kind: str) -> Any:
    """A cleaned value as its column stores it."""
    if value is None:
        return None
    if kind == "json":
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if kind == "float64":
        return float(value)
    return value


def column_names(keys: list[str], taken: set[str]) -> dict[str, str]:
    """Field -> column name, renamed ``meta_FIELD`` (again if need be) where it would collide
    with ``taken`` or with another field; a pure function of the sorted field names."""
    used = set(taken) | set(keys)
    names: dict[str, str] = {}
    for key in sorted(keys):
        if key not in taken:
            names[key] = key
            continue
        name = f"meta_{key}"
        while name in used:
            name = f"meta_{name}"
        used.add(name)
        names[key] = name
    return names
