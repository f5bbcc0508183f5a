"""shards: writer/reader round trips, manifest, validate cases, HF load."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shards
from shards import ShardSet, ShardWriter, validate


def make_table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": pa.array([f"text {i} " * (i % 5 + 1) for i in range(n)], pa.large_string()),
            "score": rng.random(n).astype(np.float32),
            "cluster": rng.integers(0, 3, n).astype(np.int32),
            "difficulty": rng.random(n).astype(np.float32),
        }
    )


@pytest.fixture
def ds(tmp_path):
    out = tmp_path / "ds"
    shards.write_dataset(out, make_table(50), max_rows=16)
    return out


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _set_manifest(out, m):
    shards.write_manifest(out, m)


# ---------------------------------------------------------------- writer / reader
def test_writer_rotates_by_rows_and_records(tmp_path):
    with ShardWriter(tmp_path, max_rows=16) as w:
        w.write(make_table(50))
    assert [s["rows"] for s in w.shards] == [16, 16, 16, 2]
    assert [s["path"] for s in w.shards][0] == "shards/part-00000.arrow"
    for s in w.shards:
        f = tmp_path / s["path"]
        assert f.stat().st_size == s["bytes"] and len(s["sha256"]) == 64
    assert not list((tmp_path / "shards").glob(".*tmp")), "no temporary files remain"


def test_writer_rotates_by_bytes(tmp_path):
    with ShardWriter(tmp_path, max_bytes=1) as w:
        for i in range(3):
            w.write(make_table(5, seed=i))
    assert [s["rows"] for s in w.shards] == [5, 5, 5]


def test_writer_abort_leaves_no_shard(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path) as w:
        w.write(make_table(3))
        raise RuntimeError("boom")
    assert list((tmp_path / "shards").iterdir()) == []


def test_writer_rejects_schema_change(tmp_path):
    with ShardWriter(tmp_path) as w:
        w.write(make_table(3))
        with pytest.raises(ValueError, match="schema"):
            w.write(pa.table({"other": [1]}))


def test_shards_are_ipc_streams_loadable_by_hf(ds):
    import datasets

    files = sorted((ds / "shards").glob("part-*.arrow"))
    t = pa.ipc.open_stream(pa.memory_map(str(files[0]))).read_all()
    assert t.num_rows == 16
    hf = datasets.Dataset.from_file(str(files[0]))
    assert hf.num_rows == 16 and hf[0]["id"] == "r0"
    full = ShardSet.open(ds).to_hf_dataset()
    assert full.num_rows == 50 and full[49]["id"] == "r49"


def test_shardset_api(ds):
    ss = ShardSet.open(ds)
    ref = make_table(50)
    assert ss.num_rows == 50 and ss.num_shards == 4 and len(ss) == 50
    col = ss.column("score")
    assert col.dtype == np.float32
    np.testing.assert_array_equal(col, ref.column("score").to_numpy())
    idx = [49, 0, 17, 17, 3, 32]
    assert ss.take(idx).equals(ref.take(idx))
    assert ss.take(idx, columns=["id"]).column("id").to_pylist() == [f"r{i}" for i in idx]
    assert ss.take([]).num_rows == 0
    with pytest.raises(IndexError):
        ss.take([50])
    with pytest.raises(IndexError):
        ss.take([-1])
    with pytest.raises(KeyError, match="unknown column"):
        ss.column("nope")
    assert sum(b.num_rows for b in ss.iter_batches()) == 50
    assert [b.num_rows for b in ss.iter_batches(batch_size=20)] == [20, 20, 10]
    assert pa.Table.from_batches(list(ss.iter_batches(7))).equals(ref)
    assert ss.manifest["counts"] == {"input": 50, "written": 50, "dead_letter": 0}
    m = ss.manifest
    for key in ("format_version", "gradum_version", "created", "options", "signals", "clusters"):
        assert key in m
    st_ = m["stats"]["score"]
    assert st_["count"] == 50 and st_["nan_count"] == 0 and len(st_["quantiles"]) == 101
    assert st_["min"] == pytest.approx(float(col.min()))


def test_zero_row_dataset(tmp_path):
    shards.write_dataset(tmp_path, make_table(0))
    ss = ShardSet.open(tmp_path)
    assert ss.num_rows == 0 and ss.num_shards == 1
    assert ss.column("score").shape == (0,) and ss.column("score").dtype == np.float32
    assert ss.take([]).schema.names == make_table(0).schema.names
    assert list(ss.iter_batches(4)) == []
    assert validate(tmp_path) == []
    assert ss.manifest["stats"]["score"]["mean"] is None


def test_stats_nan_and_null():
    s = shards.array_stats(np.array([1.0, np.nan, 3.0]))
    assert s["count"] == 3 and s["nan_count"] == 1 and s["mean"] == 2.0
    assert s["quantiles"][0] == 1.0 and s["quantiles"][100] == 3.0
    t = pa.table({"x": pa.array([1.0, None, 2.0]), "s": ["a", "b", "c"]})
    cs = shards.column_stats(t)
    assert list(cs) == ["x"] and cs["x"]["count"] == 2


# Hypothesis: random schemas, random shard boundaries (including empty shards).
_TYPES = {
    "f32": (pa.float32(), st.floats(width=32, allow_nan=True)),
    "i64": (pa.int64(), st.integers(-(2**40), 2**40)),
    "str": (pa.large_string(), st.text(max_size=8)),
    "i16": (pa.int16(), st.integers(-(2**15), 2**15 - 1)),
    "bool": (pa.bool_(), st.booleans()),
}


def same(a: pa.Table, b: pa.Table) -> bool:
    """Table equality where NaN equals NaN."""

    def norm(t):
        return {k: [("nan" if v != v else v) for v in c] for k, c in t.to_pydict().items()}

    return a.schema.equals(b.schema) and norm(a) == norm(b)


@st.composite
def tables_and_cuts(draw):
    kinds = draw(st.lists(st.sampled_from(sorted(_TYPES)), min_size=1, max_size=4))
    n = draw(st.integers(0, 40))
    cols = {}
    for i, k in enumerate(kinds):
        typ, elem = _TYPES[k]
        cols[f"c{i}_{k}"] = pa.array(
            draw(st.lists(st.one_of(st.none(), elem), min_size=n, max_size=n)), typ
        )
    table = pa.table(cols)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    return table, cuts


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=tables_and_cuts(), idx_seed=st.integers(0, 2**16))
def test_roundtrip_hypothesis(tmp_path_factory, data, idx_seed):
    table, cuts = data
    out = tmp_path_factory.mktemp("h")
    with ShardWriter(out, table.schema) as w:
        prev = 0
        for c in [*cuts, table.num_rows]:
            w.write(table.slice(prev, c - prev))  # zero-length pieces make empty shards
            w.rotate()
            prev = c
    shards.write_manifest(out, shards.build_manifest(w.shards, stats=shards.column_stats(table)))
    assert validate(out) == []
    ss = ShardSet.open(out)
    assert ss.num_rows == table.num_rows
    assert same(ss.table(), table)
    rng = np.random.default_rng(idx_seed)
    if table.num_rows:
        idx = rng.integers(0, table.num_rows, size=int(rng.integers(0, 30)))
        assert same(ss.take(idx), table.take(pa.array(idx, pa.int64())))
    for name in table.column_names:
        np.testing.assert_array_equal(ss.column(name), table.column(name).to_numpy(), strict=False)


# ---------------------------------------------------------------- incomplete / not a dataset
def test_open_errors(tmp_path, ds):
    with pytest.raises(shards.DatasetNotFoundError, match="no such file"):
        ShardSet.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(shards.NotADatasetError, match="not a gradum dataset"):
        ShardSet.open(tmp_path / "empty")
    os.remove(ds / "manifest.json")
    with pytest.raises(shards.IncompleteDatasetError, match="incomplete dataset.*manifest.json"):
        ShardSet.open(ds)
    assert "incomplete dataset" in validate(ds)[0]


# ---------------------------------------------------------------- validate cases
def test_validate_sound(ds):
    assert validate(ds) == []


def _one(problems, *needles):
    assert problems, "expected a problem"
    text = "\n".join(problems)
    for n in needles:
        assert n in text, text
    return text


def test_validate_missing_shard(ds):
    os.remove(ds / "shards/part-00001.arrow")
    _one(validate(ds), "part-00001.arrow", "missing")


def test_validate_truncated_shard(ds):
    f = ds / "shards/part-00002.arrow"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    _one(validate(ds), "part-00002.arrow", "truncated")


def test_validate_flipped_byte(ds):
    f = ds / "shards/part-00000.arrow"
    data = bytearray(f.read_bytes())
    data[len(data) - 40] ^= 0x01
    f.write_bytes(bytes(data))
    text = _one(validate(ds), "part-00000.arrow", "sha256")
    assert "truncated" not in text


def test_validate_row_count(ds):
    m = _manifest(ds)
    m["shards"][1]["rows"] += 1
    m["counts"] = {"input": 51, "written": 51, "dead_letter": 0}
    _set_manifest(ds, m)
    _one(validate(ds), "part-00001.arrow", "17", "16 rows")
    with pytest.raises(shards.ShardMismatchError, match="part-00001"):
        ShardSet.open(ds)


def test_validate_schema_differs(ds):
    # replace shard 3 with a valid shard of another schema, keeping the manifest consistent
    rel = "shards/part-00003.arrow"
    other = make_table(2).cast(make_table(2).schema.set(2, pa.field("score", pa.float64())))
    with pa.OSFile(str(ds / rel), "wb") as sink, pa.ipc.new_stream(sink, other.schema) as w:
        w.write_table(other)
    m = _manifest(ds)
    m["shards"][3].update(
        bytes=(ds / rel).stat().st_size, sha256=shards.hashing.sha256_file(ds / rel)
    )
    _set_manifest(ds, m)
    _one(validate(ds), "part-00003.arrow", "schema differs")
    with pytest.raises(shards.ShardMismatchError, match="schema"):
        ShardSet.open(ds)


def test_validate_repeated_column_name(tmp_path):
    table = pa.table([pa.array([1, 2]), pa.array([0.5, 0.7])], names=["x", "x"])
    with shards.ShardWriter(tmp_path, table.schema) as w:
        w.write(table)
    shards.write_manifest(tmp_path, shards.build_manifest(w.shards))
    _one(validate(tmp_path), "part-00000.arrow", "column names repeated", "x")


def test_validate_counts_unbalanced(ds):
    m = _manifest(ds)
    m["counts"] = {"input": 60, "written": 50, "dead_letter": 3}
    _set_manifest(ds, m)
    _one(validate(ds), "manifest.json", "do not balance", "60")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.arrow", "shards/../../x.arrow"])
def test_validate_unsafe_path(ds, bad):
    m = _manifest(ds)
    m["shards"][0]["path"] = bad
    _set_manifest(ds, m)
    _one(validate(ds), "manifest.json", bad)
    with pytest.raises(shards.UnsafePathError):
        ShardSet.open(ds)


def test_validate_symlink_escape(ds, tmp_path):
    target = tmp_path / "elsewhere.arrow"
    os.replace(ds / "shards/part-00000.arrow", target)
    os.symlink(target, ds / "shards/part-00000.arrow")
    _one(validate(ds), "leaves the dataset directory")


def test_validate_unknown_format_version(ds):
    m = _manifest(ds)
    m["format_version"] = 99
    _set_manifest(ds, m)
    _one(validate(ds), "manifest.json", "unknown format_version 99")
    with pytest.raises(shards.ManifestError, match="format_version"):
        ShardSet.open(ds)


def test_validate_corrupt_manifest(ds):
    (ds / "manifest.json").write_text("{not json")
    _one(validate(ds), "manifest.json", "unreadable")


def test_manifest_written_atomically(tmp_path):
    shards.write_manifest(tmp_path, {"counts": {}, "shards": []})
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    with pytest.raises(shards.ManifestError):
        shards.write_manifest(tmp_path, {"shards": []})


def test_dead_letter_writer(tmp_path):
    with shards.DeadLetterWriter(tmp_path) as dl:
        dl.write("empty text", {"id": "a", "text": ""}, stage="read")
        dl.write("bad", object())
    rows = shards.read_dead_letters(tmp_path)
    assert dl.count == 2 and rows[0]["reason"] == "empty text" and rows[0]["payload"]["id"] == "a"
    assert isinstance(rows[1]["payload"], str)
    assert (tmp_path / "dead_letter/part-00000.jsonl").is_file()


def test_import_rules():
    import subprocess
    import sys

    code = (
        "import sys, shards, shards.cli; s = shards.ShardSet; "
        "bad = [m for m in ('pipelines','scorers','sampler','apache_beam','transformers',"
        "'sentence_transformers','datasets','torch') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_take_across_many_shards(tmp_path):
    table = make_table(200)
    shards.write_dataset(tmp_path, table, max_rows=3)
    ss = ShardSet.open(tmp_path)
    idx = np.random.default_rng(3).integers(0, 200, 500)
    assert ss.num_shards == 67
    assert ss.take(idx).equals(table.take(pa.array(idx)))
    assert ss.take(idx, columns=["id"]).column("id").to_pylist() == [f"r{i}" for i in idx]
