"""The manifest's statistics and the difficulty ranks count each written record once:
records dead-lettered as repeated ids take no part, wherever they are."""

from __future__ import annotations

import json

import numpy as np

from pipelines.score import JobConfig, run_job
from shards import ShardSet, read_dead_letters

TWO_WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _midranks(v: np.ndarray) -> np.ndarray:
    s = np.sort(v)
    return (np.searchsorted(s, v, "left") + np.searchsorted(s, v, "right")) / 2 / len(s)


def test_repeated_ids_are_not_counted_in_stats_or_ranks(tmp_path):
    rng = np.random.default_rng(3)
    n = 3000
    lengths = rng.integers(20, 400, n)
    rows = [{"id": f"doc-{i}", "text": "w" * int(lengths[i])} for i in range(n)]
    # Repeats of existing ids carrying extreme texts: counted, they would shift every rank.
    repeats = [0, 1, 2] + list(range(1500, 1520)) + [2999]
    for k, i in enumerate(repeats):
        extreme = {"id": f"doc-{i}", "text": "z" * (5000 + k)}
        where = 0 if k < 3 else (1500 if k < 23 else n)  # the start, the middle, the end
        rows.insert(where + k, extreme)
    src = tmp_path / "dups.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))  # ~600 KB: several units
    cfg = JobConfig(
        inputs=[str(src)],
        output=str(tmp_path / "out"),
        signals=["length"],
        id_field="id",
        difficulty="chars",
        max_dead_letter_fraction=0.05,
        progress=False,
    )
    manifest = run_job(cfg, TWO_WORKERS)
    dupes = len(repeats)
    assert manifest["counts"] == {"input": n + dupes, "written": n, "dead_letter": dupes}
    assert len([d for d in read_dead_letters(tmp_path / "out") if d["stage"] == "write"]) == dupes
    kept: dict[str, int] = {}
    for r in rows:  # the first occurrence in the file (smallest byte offset) is kept
        kept.setdefault(r["id"], len(r["text"]))
    want = np.array(sorted(kept.values()), dtype=np.float64)
    stats = manifest["stats"]["chars"]
    assert stats["count"] == n and stats["nan_count"] == 0
    ds = ShardSet.open(tmp_path / "out")
    chars = ds.column("chars").astype(np.float64)
    assert np.array_equal(np.sort(chars), want)
    assert stats["max"] == want.max() and stats["min"] == want.min()
    assert np.isclose(stats["mean"], want.mean())
    assert stats["ranks"]["max_rank_error"] == 0.001
    # difficulty = the percentile rank of chars among the written records, within 0.001
    assert np.abs(ds.column("difficulty") - _midranks(chars)).max() <= 0.001 + 1e-6
