"""Passthrough metadata that does not fit a simple column: stored losslessly, never a failed
job, never a silent change."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.io import metadata
from pipelines.score import JobConfig, run_job
from shards import ShardSet

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


@pytest.mark.parametrize(
    ("values", "column"),
    [
        ([True, False, None], "bool"),
        ([1, -5, 2**63 - 1], "int64"),
        ([1, 2**63, 2**64 - 1], "uint64"),
        ([1.5, 2, -3], "float64"),
        ([1.5, 2**53 + 1], "json"),  # that integer is not exact in a double
        ([1, 2**64], "json"),
        ([-1, 2**63], "json"),
        (["a", "b"], "string"),
        (["1", 1], "json"),
        ([True, 1], "json"),
        ([{"a": 1}, [1, 2]], "json"),
        ([None, None], "string"),
    ],
)
def test_each_field_gets_one_column_type_by_the_documented_rule(values, column):
    kinds = set().union(*(metadata.tags(metadata.clean(v)) for v in values))
    assert metadata.storage(kinds) == column


def test_renamed_fields_never_collide():
    names = metadata.column_names(["difficulty", "meta_difficulty", "x"], {"difficulty", "id"})
    assert names == {
        "difficulty": "meta_meta_difficulty",
        "meta_difficulty": "meta_difficulty",
        "x": "x",
    }
    assert len(set(names.values())) == 3


def test_awkward_metadata_is_stored_losslessly_end_to_end(tmp_path):
    rows = [
        {
            "text": f"record {i} speaks plainly",
            "hash": [12, 2**64 - 1, 2**63, 0][i % 4],  # a uint64 hash field
            "huge": [1, 10**30][i % 2],  # beyond 64 bits
            "mixed": ["7", 7, None, 7.5][i % 4],
            "nested": [{"a": [1, {"b": None}]}, [1, 2], None, {"k": "v"}][i % 4],
            "ratio": [1, 2.5, None, -3][i % 4],
            "difficulty": i,  # a shard column's name
            "meta_difficulty": f"m{i}",
        }
        for i in range(40)
    ]
    src = tmp_path / "meta.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = JobConfig(inputs=[str(src)], output=str(tmp_path / "out"), signals=["length"])
    cfg.progress = False
    manifest = run_job(cfg, IN_MEMORY)
    assert manifest["counts"] == {"input": 40, "written": 40, "dead_letter": 0}
    ds = ShardSet.open(tmp_path / "out")
    schema = ds.schema
    assert schema.field("hash").type == pa.uint64()
    assert schema.field("ratio").type == pa.float64()
    assert schema.field("meta_meta_difficulty").type == pa.int64()
    assert schema.field("meta_difficulty").type == pa.string()
    for name in ("huge", "mixed", "nested"):
        assert schema.field(name).type == pa.string()
    table = ds.table()
    by_text = {t: i for i, t in enumerate(table["text"].to_pylist())}
    for r in rows:
        i = by_text[r["text"]]
        assert table["hash"][i].as_py() == r["hash"]
        assert table["ratio"][i].as_py() == r["ratio"]
        assert table["meta_meta_difficulty"][i].as_py() == r["difficulty"]
        assert table["meta_difficulty"][i].as_py() == r["meta_difficulty"]
        for name in ("huge", "mixed", "nested"):
            cell = table[name][i].as_py()
            assert (None if cell is None else json.loads(cell)) == r[name], name


def test_parquet_values_without_a_json_form_become_documented_text(tmp_path):
    table = pa.table(
        {
            "text": ["one text here", "another text here"],
            "when": [dt.datetime(2024, 5, 1, 12, 30), dt.datetime(2025, 1, 2, 3, 4, 5)],
            "day": [dt.date(2024, 5, 1), None],
            "blob": [b"\x00\xffab", b""],
            "price": pa.array(
                [decimal.Decimal("1.10"), decimal.Decimal("-2.5")], pa.decimal128(5, 2)
            ),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    cfg = JobConfig(inputs=[str(tmp_path / "t.parquet")], output=str(tmp_path / "out"))
    cfg.signals, cfg.progress = ["length"], False
    run_job(cfg, IN_MEMORY)
    out = ShardSet.open(tmp_path / "out").table()
    got = {t: i for i, t in enumerate(out["text"].to_pylist())}
    i = got["one text here"]
    assert out["when"][i].as_py() == "2024-05-01T12:30:00"
    assert (
        out["day"][i].as_py() == "2024-05-01"
        and out["day"][got["another text here"]].as_py() is None
    )
    assert out["blob"][i].as_py() == "AP9hYg=="
    assert out["price"][i].as_py() == "1.10"
