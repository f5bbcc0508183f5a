"""The index beside each shard: written by write_dataset, checked by validate, read by
ShardSet.column; a Sampler over a bucket dataset builds from it alone."""

import json
import logging

import numpy as np
import pyarrow as pa
import pytest
from _serving_util import cached_files, dataset, shard_bytes, upload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stores import s3_server

from sampler import Sampler, pacing
from sampler.strategies import UCB, Curriculum
from shards import ShardSet, validate, write_dataset
from shards.index import index_name


@pytest.fixture(scope="module")
def s3():
    with s3_server("gradum-index") as store:
        yield store


def test_write_dataset_writes_an_index_part_per_shard(tmp_path):
    out = dataset(tmp_path / "d", n=1000, rows=300)
    m = json.loads((out / "manifest.json").read_text())
    for s in m["shards"]:
        ix = s["index"]
        assert ix["path"] == index_name(s["path"]) and ix["rows"] == s["rows"]
        assert (out / ix["path"]).stat().st_size == ix["bytes"]
        part = pa.parquet.read_table(out / ix["path"])
        assert part.column_names == [
            "id",
            "difficulty",
            "bucket",
            "cluster",
            "readability",
            "compression_ratio",
        ]
    assert validate(out) == []


def test_validate_finds_a_stale_a_corrupt_and_a_missing_index(tmp_path):
    out = dataset(tmp_path / "d", n=600, rows=200)
    m = json.loads((out / "manifest.json").read_text())
    other = dataset(tmp_path / "o", n=600, rows=200, seed=1)
    stale = m["shards"][0]["index"]["path"]
    (out / stale).write_bytes((other / stale).read_bytes())  # another dataset's index
    problems = validate(out)
    assert any("sha256" in p for p in problems) and any("stale" in p for p in problems)
    (out / m["shards"][1]["index"]["path"]).unlink()
    assert any("missing" in p for p in validate(out))
    del m["shards"][2]["index"]
    (out / "manifest.json").write_text(json.dumps(m))
    assert any("either all or none" in p for p in validate(out))


def test_an_old_dataset_without_an_index_opens_with_one_warning_line(tmp_path, caplog):
    out = dataset(tmp_path / "old", n=500, rows=100, index=False)
    assert not (out / "index").exists()
    with caplog.at_level(logging.WARNING, logger="gradum.shards"):
        ss = ShardSet.open(out)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no index" in lines[0] and "\n" not in lines[0]
    assert not ss.has_index and ss.column("difficulty").size == 500
    assert validate(out) == []


_COLS = {
    "f32": (pa.float32(), st.floats(width=32, allow_nan=True)),
    "i32": (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "str": (pa.string(), st.text(max_size=5)),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(_COLS)),
    data=st.data(),
    rows=st.integers(1, 7),
)
def test_column_from_the_index_equals_the_column_from_the_shards(
    tmp_path_factory, kind, data, rows
):
    typ, elem = _COLS[kind]
    n = data.draw(st.integers(1, 30))
    values = data.draw(st.lists(st.one_of(st.none(), elem), min_size=n, max_size=n))
    t = pa.table({"id": [str(i) for i in range(n)], "difficulty": pa.array(values, typ)})
    out = tmp_path_factory.mktemp("c")
    write_dataset(out, t, max_rows=rows, signals=[])
    with_index = ShardSet.open(out)
    assert with_index.has_index and "difficulty" in with_index.index_columns
    got = with_index.column("difficulty")
    old = ShardSet.open(out)
    old.has_index = False  # the shard path, as for a dataset without an index
    want = old.column("difficulty")
    assert got.dtype == want.dtype
    if got.dtype.kind == "f":
        assert np.array_equal(got, want, equal_nan=True)
    else:
        assert got.tolist() == want.tolist()


def _whole_part_column(path, name):
    """The former reader: each part read whole, then pyarrow's conversion to numpy."""
    import pyarrow.parquet as pq

    parts = []
    for f in sorted((path / "index").glob("*.parquet")):
        col = pq.read_table(f, columns=[name]).column(name)
        values = col.to_numpy()
        if col.null_count and values.dtype.kind in "iub":
            values = np.asarray(values, dtype=np.float64)
        parts.append(values)
    return np.concatenate(parts) if any(p.dtype.kind == "f" for p in parts) else parts


@pytest.mark.parametrize("batch", [1, 3, 8192])
def test_a_column_read_batch_by_batch_equals_each_part_read_whole(tmp_path, monkeypatch, batch):
    from shards import columns

    monkeypatch.setattr(columns, "BATCH", batch)
    monkeypatch.setattr(columns, "BUFFER", 64)  # local parts read in tiny pieces too
    n = 45
    rs = np.random.default_rng(3)
    f32 = rs.random(n).astype(np.float32)
    i32 = rs.integers(-5, 5, n).astype(np.int32)
    late = pa.array([None if i in (13, 40) else int(v) for i, v in enumerate(i32)], pa.int32())
    t = pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "difficulty": pa.array(f32, mask=rs.random(n) < 0.2),  # float nulls: NaN
            "cluster": i32,  # no nulls: int32 stays int32
            "bucket": late,  # integer nulls in a later batch of a part: float64 with NaN
            "score": pa.array(f32.astype(np.float64)),
        }
    )
    out = tmp_path / "d"
    write_dataset(out, t, max_rows=20, signals=[{"name": "score"}])  # parts of 20, 20 and 5 rows
    ss = ShardSet.open(out)
    assert ss.num_shards == 3 and "score" in ss.index_columns
    for name in ("difficulty", "cluster", "bucket", "score"):
        got = ss.column(name)
        want = _whole_part_column(out, name)
        if isinstance(want, list):
            want = np.concatenate(want)
        assert got.dtype == want.dtype, name
        assert np.array_equal(got, want, equal_nan=True), name
    assert ss.column("cluster").dtype == np.int32
    assert ss.column("bucket").dtype == np.float64 and np.isnan(ss.column("bucket")[[13, 40]]).all()
    assert ss.column("id").tolist() == t.column("id").to_pylist()


def test_a_sampler_build_never_imports_pandas(tmp_path):
    """pyarrow's numpy conversion imports pandas on first use (about 45 MB resident): the
    index read and the build go around it."""
    import subprocess
    import sys

    out = dataset(tmp_path / "d", n=600, rows=200)
    code = (
        "import sys\n"
        "from sampler import Sampler, pacing\n"
        "from sampler.strategies import UCB, Curriculum\n"
        "from shards import ShardSet\n"
        f"ss = ShardSet.open({str(out)!r})\n"
        "Sampler(ss, Curriculum(pacing.root(10)), 8, device='cpu', prefetch=0)\n"
        "Sampler(ss, UCB(group='cluster', reward='loss'), 8, device='cpu', prefetch=0)\n"
        "print('pandas' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


def test_a_sampler_over_a_bucket_builds_from_the_index_alone(s3, tmp_path):
    local = dataset(tmp_path / "d", n=8000, rows=500)
    url = upload(s3, local, "built")
    ss = ShardSet.open(url, cache_dir=tmp_path / "cache")
    s = Sampler(ss, Curriculum(pacing.root(100, c0=0.1)), 32, seed=1, device="cpu", prefetch=0)
    u = Sampler(ss, UCB(group="cluster", reward="loss"), 32, device="cpu", prefetch=0)
    stats = ss.stats()
    total = shard_bytes(ss.manifest)
    assert stats["read"]["shards"] == 0 and stats["downloads"] == 0
    assert cached_files(tmp_path / "cache") == []
    built = stats["read"]["manifest"] + stats["read"]["index"]
    assert built <= 0.05 * total, (built, total)
    local_s = Sampler(ShardSet.open(local), Curriculum(pacing.root(100, c0=0.1)), 32, seed=1)
    assert np.array_equal(s.sample().indices.numpy(), local_s.sample().indices.numpy())
    assert u.sample().indices.numel() == 32
