"""The public Beam transforms: the README's example runs as written; bad elements are dead
letters with their reason; WriteShards keeps gradum's ownership rules."""

from __future__ import annotations

import re
from pathlib import Path

import apache_beam as beam
import pytest

from pipelines import ScoreTexts, WriteShards
from shards import ShardSet, read_dead_letters, validate

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(
        r"<!-- public-transforms-example -->\s*```python\n(.*?)```\s*<!-- /public-transforms-example -->",
        text,
        re.S,
    )
    assert m, "the README's public-transforms example is missing"
    return m.group(1)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "__example__"})
    assert validate(tmp_path / "example-out") == []
    ds = ShardSet.open(tmp_path / "example-out")
    assert len(ds.manifest["shards"]) == 4 and ds.has_index
    reasons = [d["reason"] for d in read_dead_letters(tmp_path / "example-out")]
    assert reasons == ["missing text field 'text'"]


def test_score_texts_outputs_scores_and_tagged_dead_letters(tmp_path):
    texts = [{"text": "A plain sentence."}, {"text": ""}, 7, {"text": "Another one here.", "n": 3}]
    found = tmp_path / "found.txt"

    def keep(rows, dead):
        found.write_text(repr((sorted(rows, key=str), sorted(d["reason"] for d in dead))))

    with beam.Pipeline() as p:
        out = p | beam.Create(texts) | ScoreTexts(signals=["length"])
        _ = (
            p
            | "Go" >> beam.Create([None])
            | beam.Map(
                lambda _, rows, dead: keep(rows, dead),
                beam.pvalue.AsList(out.scored),
                beam.pvalue.AsList(out.dead_letter),
            )
        )
    rows, reasons = eval(found.read_text())  # noqa: S307 - our own repr
    assert [r["chars"] for r in rows] == [17.0, 17.0] and {r.get("n") for r in rows} == {None, 3}
    assert all(r["id"].startswith("h-") for r in rows)  # no id: a hash of the content
    assert reasons == ["element is a int, not a dict", "empty text"]


def test_write_shards_refuses_a_foreign_output_when_it_runs(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(Exception, match="gradum did not write"):  # noqa: B017
        with beam.Pipeline() as p:
            scored = p | beam.Create([{"text": "x y z"}]) | ScoreTexts(signals=["length"])
            scored | WriteShards(str(tmp_path / "mine"))
    assert sorted(x.name for x in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_write_shards_needs_a_signal_set():
    with pytest.raises(ValueError, match="signal set"):
        with beam.Pipeline() as p:
            p | beam.Create([{"text": "x", "chars": 1.0}]) | WriteShards("unused")
