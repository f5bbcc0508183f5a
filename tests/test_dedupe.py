"""pipelines.job.dedupe: a part's ids travel as packed bytes and come back the same; each
bucket's losers are exactly the repeats of an id after its first (smallest part key, then
row), whatever the pieces."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.job.dedupe import losers, pack_ids, unpack_ids

ids_lists = st.lists(st.text(max_size=12), max_size=40)


@settings(max_examples=60, deadline=None)
@given(ids_lists, st.integers(0, 5))
def test_packed_ids_come_back_the_same(values, start):
    arr = pa.array(values, pa.string()).slice(min(start, len(values)))  # a slice: offset > 0
    rows = np.arange(len(arr), dtype=np.int64) * 3
    offsets, data, packed_rows = pack_ids(arr, rows)
    assert unpack_ids(offsets, data).to_pylist() == arr.to_pylist()
    assert np.frombuffer(packed_rows, np.int32).tolist() == rows.tolist()
    # the packed piece costs its ids' bytes and 8 bytes per id, nothing per piece beyond that
    utf8 = sum(len(v.encode()) for v in arr.to_pylist())
    assert len(offsets) + len(data) + len(packed_rows) == utf8 + 8 * len(arr) + 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefg"), max_size=12), min_size=1, max_size=5))
def test_losers_are_every_repeat_after_the_first(parts):
    pieces, seen, expected = [], set(), {}
    for i, ids in enumerate(parts):
        key = f"{i:04d}"
        rows = np.arange(len(ids), dtype=np.int64)
        pieces.append((key, *pack_ids(pa.array(ids, pa.string()), rows)))
        for row, v in enumerate(ids):
            if v in seen:
                expected.setdefault(key, []).append(row)
            seen.add(v)
    got = {k: r.tolist() for k, r in losers((0, pieces[::-1]))}  # piece order does not matter
    assert got == expected


def test_a_missing_id_is_refused():
    import pytest

    with pytest.raises(ValueError, match="missing"):
        pack_ids(pa.array(["a", None]), np.arange(2))
