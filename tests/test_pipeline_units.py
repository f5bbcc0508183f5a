"""Unit tests of the pipeline's pure parts: records, sketch, difficulty, isolation, readers."""

import gzip
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.io.records import make_record, record_id
from pipelines.model.inference import score_batch, score_one
from pipelines.stats.difficulty import buckets, combine, parse_weights
from pipelines.stats.sketch import QuantileSketch


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"body": "x"}, "missing text field"),
        ({"text": 3}, "is a int, not a string"),
        ({"text": "   \n"}, "empty text"),
        ({"text": "ok \ud800 no"}, "lone surrogate"),
        ({"text": "x" * 101}, "over the cap"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload, reason):
    record, why = make_record("f", 0, payload, max_text_bytes=100)
    assert record is None and reason in why


def test_good_payload_keeps_metadata_and_gets_a_stable_id():
    record, why = make_record("f.jsonl", 7, {"text": "hi", "level": 3, "tags": ["a"]})
    assert why is None
    assert (
        record["id"] == record_id("f.jsonl", 7) == make_record("f.jsonl", 7, {"text": "x"})[0]["id"]
    )
    assert record["meta"] == {"level": 3, "tags": ["a"]}  # JSON text only in the shard
    record, _ = make_record("f", 0, {"text": "hi", "key": 12}, id_field="key")
    assert record["id"] == "12"
    assert make_record("f", 0, {"text": "hi"}, id_field="key")[1] == "missing id field 'key'"


def test_a_records_own_id_is_its_id_by_default_and_none_hashes():
    """Like the curation tools: a field named ``id`` is the record id unless told otherwise;
    ``--id-field none`` hashes source and position and keeps ``id`` as metadata."""
    record, _ = make_record("f.jsonl", 3, {"text": "hi", "id": 42, "n": 1})
    assert record["id"] == "42" and record["meta"] == {"n": 1}
    record, _ = make_record("f.jsonl", 3, {"text": "hi", "id": 42}, id_field="none")
    assert record["id"] == record_id("f.jsonl", 3) and record["meta"] == {"id": 42}
    record, _ = make_record("f.jsonl", 3, {"text": "hi", "id": ""})
    assert record["id"] == record_id("f.jsonl", 3)  # an empty id is no id
    assert len(record_id("f", 0)) == 22  # r- and 80 bits: no collision among 1e9 records


class _Explode:
    name, version, outputs = "explode", "1", {"explode": 1}

    def score(self, texts):
        if any("BOOM" in t for t in texts):
            raise ValueError("cannot score BOOM")
        return {"explode": np.array([len(t) for t in texts], dtype=np.float32)}


def test_one_bad_text_is_isolated_and_the_rest_of_its_batch_is_scored():
    texts = [f"text {i}" for i in range(37)]
    texts[5] = texts[30] = "BOOM"
    columns, errors = score_one(_Explode(), texts)
    assert [i for i, err in enumerate(errors) if err] == [5, 30]
    assert "cannot score BOOM" in errors[5]
    ok = [i for i, err in enumerate(errors) if not err]
    assert np.array_equal(columns["explode"][ok], [len(texts[i]) for i in ok])
    assert np.isnan(columns["explode"][[5, 30]]).all()


class _Short:
    """A broken scorer: one value short of its batch."""

    name, version, outputs = "short", "1", {"short": 1}

    def score(self, texts):
        return {"short": np.ones(len(texts) - 1)}


def _batch(texts, errors=None):
    return {"records": [{"text": t} for t in texts], "errors": errors}


def test_a_batch_column_is_the_scorers_values_and_a_failed_record_stays_nan():
    texts = ["a", "bb", "BOOM", "dddd"]
    clean = score_batch([_Explode()], _batch(["a", "bb", "ccc"]))
    assert clean["columns"]["explode"].dtype == np.float64
    assert clean["columns"]["explode"].tolist() == [1.0, 2.0, 3.0]
    assert clean["errors"] == [None, None, None]
    scored = score_batch([_Explode()], _batch(texts))
    assert scored["columns"]["explode"][[0, 1, 3]].tolist() == [1.0, 2.0, 4.0]
    assert np.isnan(scored["columns"]["explode"][2]) and "BOOM" in scored["errors"][2]
    # a record that failed in an earlier step is not scored again and stays NaN
    earlier = score_batch([_Explode()], _batch(["a", "bb", "ccc"], [None, "lm failed", None]))
    assert earlier["errors"][1] == "lm failed"
    assert earlier["columns"]["explode"][[0, 2]].tolist() == [1.0, 3.0]
    assert np.isnan(earlier["columns"]["explode"][1])


def test_a_scorer_that_returns_the_wrong_number_of_values_is_not_taken_as_scores():
    with pytest.raises(ValueError):
        score_batch([_Short()], _batch(["a", "bb", "ccc"]))


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=300), st.integers(1, 5))
def test_sketch_merge_is_order_free(values, parts):
    whole = QuantileSketch().add(np.array(values))
    chunks = np.array_split(np.array(values), parts)
    forward, backward = QuantileSketch(), QuantileSketch()
    for c in chunks:
        forward.merge(QuantileSketch().add(c))
    for c in reversed(chunks):
        backward.merge(QuantileSketch().add(c))
    for s in (forward, backward):
        assert s.counts == whole.counts and s.n == whole.n
    probe = np.array(values[:20])
    assert np.array_equal(forward.rank(probe), whole.rank(probe))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-3, 1e6), min_size=5, max_size=400))
def test_sketch_quantiles_within_relative_error(values):
    alpha = 0.01
    sketch = QuantileSketch(alpha).add(np.array(values))
    ordered = np.sort(values)
    for q, got in zip(
        [0.0, 0.25, 0.5, 0.9, 1.0], sketch.quantiles([0.0, 0.25, 0.5, 0.9, 1.0]), strict=True
    ):
        true = ordered[int(math.floor(q * (len(values) - 1)))]
        assert abs(got - true) <= alpha * true * 1.0001 + 1e-12


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=300))
def test_sketch_rank_is_monotone_and_in_unit_interval(values):
    sketch = QuantileSketch().add(np.array(values))
    probe = np.sort(np.array(values))
    ranks = sketch.rank(probe)
    assert np.all((ranks >= 0) & (ranks <= 1))
    assert np.all(np.diff(ranks) >= 0)
    assert math.isnan(sketch.rank(np.array([np.nan]))[0])


def test_difficulty_flips_easy_direction_and_skips_nan():
    ranks = {"ppl": np.array([0.9, 0.1, np.nan]), "flesch": np.array([0.2, np.nan, np.nan])}
    d = combine(ranks, {"ppl": 1, "flesch": -1}, {"ppl": 1.0, "flesch": 3.0})
    assert d[0] == pytest.approx((0.9 + 3 * 0.8) / 4)
    assert d[1] == pytest.approx(0.1)
    assert math.isnan(d[2])
    assert buckets(d, 10).tolist() == [8, 1, -1]
    assert buckets(np.array([1.0], dtype=np.float32), 10).tolist() == [9]


def test_difficulty_weights_parse_and_refuse_unknown():
    avail = {"perplexity": 1, "readability": -1, "embedding": 0}
    assert parse_weights(None, avail) == {"perplexity": 1.0, "readability": 1.0}
    assert parse_weights("perplexity:2", avail) == {"perplexity": 2.0}
    for bad in ("nope", "perplexity:-1", "perplexity:x", "embedding"):
        with pytest.raises(ValueError):
            parse_weights(bad, avail)


def test_readers_handle_every_file_format(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.io.formats import read_unit, read_whole
    from pipelines.plan.inputs import plan_inputs
    from pipelines.plan.units import plan_units

    with gzip.open(tmp_path / "a.jsonl.gz", "wb") as fh:
        fh.write(b'{"text": "one"}\n\n{"text": "two"}\n\xff\xfe bad\n[1, 2]\n')
    pq.write_table(pa.table({"text": ["p1", "p2", "p3"], "n": [1, 2, 3]}), tmp_path / "b.parquet")
    (tmp_path / "c.txt").write_text("line one\n\nline two\n")
    units = plan_units(plan_inputs([str(tmp_path / "*")]))
    items = [it for u in units for it in (read_whole(*u[2:]) if u[0] == "whole" else read_unit(u))]
    ok = [it for it in items if it[0] == "ok"]
    dead = [it for it in items if it[0] == "dead"]
    assert [it[3]["text"] for it in ok] == ["one", "two", "p1", "p2", "p3", "line one", "line two"]
    assert sorted(d[3].split(":")[0] for d in dead) == [
        "JSON line is a list, not an object",
        "invalid UTF-8",
    ]
    assert [it[2] for it in ok if it[1].endswith(".txt")] == [0, 10]  # byte offsets
    with pytest.raises(FileNotFoundError):
        plan_inputs([str(tmp_path / "nothing-*.jsonl")])
    (tmp_path / "d.csv").write_text("x")
    with pytest.raises(ValueError, match="cannot tell the format"):
        plan_inputs([str(tmp_path / "d.csv")])


def test_readers_load_a_saved_hf_dataset(tmp_path):
    from datasets import Dataset

    from pipelines.io.formats import read_unit
    from pipelines.plan.inputs import plan_inputs
    from pipelines.plan.units import plan_units

    Dataset.from_dict({"text": ["a b", "c d"], "label": [0, 1]}).save_to_disk(tmp_path / "hf")
    plan = plan_inputs([str(tmp_path / "hf")])
    units = plan_units(plan)
    assert units == [("hf_disk", "00000000-000000", str(tmp_path / "hf"), "", 0, 2)]
    assert plan.rows == 2 and plan.exact
    rows = [it[3] for u in units for it in read_unit(u)]
    assert rows == [{"text": "a b", "label": 0}, {"text": "c d", "label": 1}]


def test_graded_builtin_is_chunked_for_parallel_reading():
    from pipelines.io.formats import read_unit
    from pipelines.plan.inputs import plan_inputs
    from pipelines.plan.units import Sizing, plan_units

    plan = plan_inputs(["builtin:graded?n=45000&seed=2"])
    units = plan_units(plan, Sizing(part_rows=10_000))
    assert len(units) == 32 and plan.rows == 45000  # spread over 32 parts at least
    assert len(plan_units(plan, Sizing(part_rows=1_000))) == 45  # and at most part_rows each
    assert [u[1] for u in units] == sorted(u[1] for u in units)
    ids = [it[3]["id"] for u in units for it in read_unit(u)]
    assert len(ids) == len(set(ids)) == 45000
    assert json.dumps(ids[:2]) == json.dumps(
        ["graded-language-2-000000000", "graded-language-2-000000001"]
    )


def test_hub_datasets_are_streamed_by_name(monkeypatch):
    """``hf:NAME:SPLIT:CONFIG`` asks ``datasets`` for a stream (no download of the whole
    dataset) and reads it in order; the Hub itself is replaced by a local iterable dataset."""
    import datasets

    from pipelines.io.formats import read_unit
    from pipelines.plan.inputs import plan_inputs
    from pipelines.plan.units import Sizing, chunk_whole, plan_units

    calls = []

    def fake_load_dataset(repo, config=None, split=None, streaming=False):
        calls.append((repo, config, split, streaming))
        ds = datasets.Dataset.from_dict({"text": ["first", "second", "third"], "n": [1, 2, 3]})
        return ds.to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    units = plan_units(plan_inputs(["hf:org/corpus:validation:en"]))
    assert units == [("whole", 0, "hf_hub", "org/corpus:validation:en")]
    chunks = list(chunk_whole(units[0], Sizing(part_rows=2)))
    assert [c[1] for c in chunks] == ["00000000-000000", "00000000-000001"]
    items = [it for u in chunks for it in read_unit(u)]
    assert calls == [("org/corpus", "en", "validation", True)]
    assert [(it[1], it[2], it[3]["text"], it[3]["n"]) for it in items] == [
        ("hf:org/corpus:validation:en", 0, "first", 1),
        ("hf:org/corpus:validation:en", 1, "second", 2),
        ("hf:org/corpus:validation:en", 2, "third", 3),
    ]


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.just(""),
            st.just(" \t\r "),  # blank: not a record
            st.text(alphabet='ab é\\"{}:,', min_size=1, max_size=30).map(
                lambda t: json.dumps({"text": t})
            ),
            st.just("{broken"),
        ),
        max_size=60,
    ),
    unit=st.integers(min_value=1, max_value=200),
    crlf=st.booleans(),
    trailing_newline=st.booleans(),
)
def test_line_files_cut_into_units_read_every_line_once(
    tmp_path_factory, lines, unit, crlf, trailing_newline
):
    """Byte-range units of a JSONL file, cut from its size alone, yield exactly the items of
    reading it whole, positions being the byte offsets of the lines, wherever the cuts fall
    (blank lines, CRLF, no final newline, a cut inside a line or right after a newline)."""
    import pipelines.io.formats as R
    import pipelines.plan.inputs as P
    import pipelines.plan.units as U

    path = tmp_path_factory.mktemp("split") / "x.jsonl"
    sep = "\r\n" if crlf else "\n"
    data = (sep.join(lines) + (sep if trailing_newline and lines else "")).encode()
    path.write_bytes(data)
    whole = list(R._read_file(str(path)))
    old = U.MIN_UNIT_BYTES
    U.MIN_UNIT_BYTES = unit
    try:
        units = U.plan_units(P.plan_inputs([str(path)]), U.Sizing(part_bytes=unit))
    finally:
        U.MIN_UNIT_BYTES = old
    assert all(u[0] == "lines" for u in units)
    if len(data) > 2 * unit:
        assert len(units) >= 2
    assert [u[3] for u in units] == sorted(u[3] for u in units)
    pieces = [it for u in units for it in R.read_unit(u)]
    assert pieces == whole
    starts = [sum(len((x + sep).encode()) for x in lines[:i]) for i in range(len(lines))]
    assert [it[2] for it in whole] == [
        o for o, line in zip(starts, lines, strict=True) if line.strip()
    ]


def test_parquet_is_cut_into_row_group_units(tmp_path):
    """A Parquet file becomes units of whole row groups (footer only); together they yield the
    rows of the whole file in order, positions being row numbers, and are scored where read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import pipelines.io.formats as R
    import pipelines.plan.inputs as P
    import pipelines.plan.units as U

    n = 5000
    texts = [f"row {i} " + "x" * (i % 50) for i in range(n)]
    pq.write_table(pa.table({"text": texts, "n": list(range(n))}), tmp_path / "p.parquet",
                   row_group_size=300)  # fmt: skip
    old = U.MIN_UNIT_BYTES
    U.MIN_UNIT_BYTES = 1
    try:
        plan = P.plan_inputs([str(tmp_path / "p.parquet")])
        units = U.plan_units(plan)
    finally:
        U.MIN_UNIT_BYTES = old
    assert plan.rows == n and plan.exact
    assert len(units) > 3 and all(u[0] == "parquet" for u in units)
    assert sum(u[4] for u in units) == pq.ParquetFile(tmp_path / "p.parquet").num_row_groups
    assert len(U.plan_units(plan, U.Sizing(part_rows=600))) == n // 600 + 1  # 2 groups each
    items = [it for u in units for it in R.read_unit(u)]
    assert [(it[2], it[3]["n"], it[3]["text"]) for it in items] == [
        (i, i, t) for i, t in enumerate(texts)
    ]


def test_the_launcher_plans_a_large_line_file_from_its_size_and_64_kib(tmp_path):
    """No pass over the data before the job: a 20 MB JSONL is cut into units from its size,
    and only the first 64 KiB are read (to estimate bytes per record for the shard count)."""
    from pipelines.io import storage as fs
    from pipelines.plan.inputs import SAMPLE_BYTES, plan_inputs
    from pipelines.plan.units import Sizing, plan_units

    line = json.dumps({"text": "x" * 190}) + "\n"  # 204 bytes
    path = tmp_path / "big.jsonl"
    with open(path, "w") as fh:
        fh.write(line * 100_000)
    before = fs.BYTES_READ[0]
    plan = plan_inputs([str(path)])
    assert fs.BYTES_READ[0] - before <= SAMPLE_BYTES
    units = plan_units(plan)
    assert len(units) == 32 and units[-1][4] == path.stat().st_size
    assert abs(plan.rows - 100_000) <= 1000 and not plan.exact
    sizing = Sizing.plan(
        rows=plan.rows,
        nbytes=plan.bytes,
        rows_per_shard=1_000,
        shard_bytes=1 << 40,
        bytes_per_record=plan.bytes_per_record,
    )
    assert len(plan_units(plan, sizing)) == 100  # parts of about 1,000 rows (not 32 of 3,000)


def test_the_launcher_reads_parquet_footers_in_parallel(tmp_path, monkeypatch):
    """Footers (and line-file heads) are read by a thread pool: 40 files whose footer takes
    0.2 s each are planned in far less than 40 x 0.2 s."""
    import threading
    import time

    import pipelines.plan.inputs as P

    files = [(f"{tmp_path}/f-{i:03d}.parquet", 1000) for i in range(40)]
    monkeypatch.setattr(P, "_files_of", lambda spec: files)
    active, peak = [0], [0]
    lock = threading.Lock()

    def slow_footer(path):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return 100, 1000

    monkeypatch.setattr(P, "_parquet_rows", slow_footer)
    began = time.monotonic()
    plan = P.plan_inputs([f"{tmp_path}/*.parquet"])
    assert plan.rows == 4000 and plan.exact and len(plan.files) == 40
    assert peak[0] >= 8 and time.monotonic() - began < 3
