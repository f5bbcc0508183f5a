"""The scoring job end to end, on small corpora, on the local runners."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import add_score_arguments
from shards import IncompleteDatasetError, ShardSet, read_dead_letters, validate

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def score(*argv: str) -> int:
    import argparse

    from pipelines.score import run_from_args

    parser = argparse.ArgumentParser()
    add_score_arguments(parser)
    args, beam_args = parser.parse_known_args(list(argv))
    return run_from_args(args, beam_args)


def _mixed_input(tmp_path: Path) -> Path:
    good = [
        {"text": f"Record number {i} says something plain and clear.", "n": i} for i in range(40)
    ]
    lines = [json.dumps(g).encode() for g in good]
    lines += [
        b"{not json",  # malformed JSON
        b'{"text": "caf\xe9 in latin-1"}',  # invalid UTF-8
        b'{"body": "no text field"}',  # missing text
        b'{"text": ""}',  # empty text
        b'{"text": 42}',  # non-string text
        json.dumps({"text": "x" * 5000}).encode(),  # over the size cap below
        b'{"text": "lone \\ud800 surrogate"}',  # not valid Unicode
        b"[1, 2, 3]",  # JSON but not an object
        json.dumps({"text": "BOOM this one breaks the scorer"}).encode(),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture
def exploding_scorer(monkeypatch, tmp_path):
    """A scorer that raises on texts containing BOOM, registered for this test only."""
    (tmp_path / "explode_scorer.py").write_text(
        "import numpy as np\n"
        "class Explode:\n"
        "    name, version, outputs = 'explode', '1', {'explode': 1}\n"
        "    def describe(self):\n"
        "        return {'name': 'explode'}\n"
        "    def score(self, texts):\n"
        "        if any('BOOM' in t for t in texts):\n"
        "            raise ValueError('cannot score BOOM')\n"
        "        return {'explode': np.array([len(t) for t in texts], dtype=np.float32)}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import scorers

    monkeypatch.setitem(scorers._REGISTRY, "explode", "explode_scorer:Explode")


def test_every_bad_input_kind_is_dead_lettered_and_counts_balance(tmp_path, exploding_scorer):
    src = _mixed_input(tmp_path)
    out = tmp_path / "out"
    rc = score(
        str(src),
        "--output",
        str(out),
        "--signals",
        "compression_ratio,explode",
        "--max-text-bytes",
        "1000",
        "--batch-size",
        "16",
        "--max-dead-letter-fraction",
        "0.5",
        "--no-progress",
        *IN_MEMORY,
    )
    assert rc == 0
    ds = ShardSet.open(out)
    counts = ds.manifest["counts"]
    assert counts == {"input": 49, "written": 40, "dead_letter": 9}
    assert ds.num_rows == 40
    assert sorted(ds.column("n").tolist()) == list(range(40))
    reasons = sorted(d["reason"].split(":")[0].split(" (")[0] for d in read_dead_letters(out))
    assert len(reasons) == 9
    for expected in (
        "malformed JSON",
        "invalid UTF-8",
        "missing text field 'text'",
        "empty text",
        "record is not valid Unicode",
        "JSON line is a list, not an object",
        "scorer failed",
    ):
        assert any(r.startswith(expected) for r in reasons), (expected, reasons)
    boom = [d for d in read_dead_letters(out) if d["stage"] == "score"]
    assert boom and "BOOM" in boom[0]["payload"]["record"]["text"]
    assert validate(out) == []
    difficulty = ds.column("difficulty")
    assert ((difficulty >= 0) & (difficulty <= 1)).all()
    signals = {s["name"]: s for s in ds.manifest["signals"]}
    assert signals["compression_ratio"]["params"]["params"]["level"] == 6
    stats = ds.manifest["stats"]["compression_ratio"]
    assert stats["count"] == 40 and len(stats["quantiles"]) == 101


def test_too_many_dead_letters_fail_loudly_without_a_manifest(tmp_path, capsys):
    src = _mixed_input(tmp_path)
    out = tmp_path / "out"
    rc = score(
        str(src),
        "--output",
        str(out),
        "--signals",
        "compression_ratio",
        "--no-progress",
        *IN_MEMORY,
    )
    assert rc == 1
    assert "over --max-dead-letter-fraction=0.01" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()
    with pytest.raises(IncompleteDatasetError):
        ShardSet.open(out)


@pytest.mark.parametrize("task", ["language", "arithmetic"])
def test_the_default_difficulty_follows_the_known_level(tmp_path, task):
    """No --difficulty, no LM: the default CPU signals rank both graded tasks by level."""
    from scipy.stats import spearmanr

    out = tmp_path / "out"
    assert score(f"builtin:graded?n=1500&task={task}", "--output", str(out), "--no-progress",
                 *IN_MEMORY) == 0  # fmt: skip
    ds = ShardSet.open(out)
    rho = spearmanr(ds.column("difficulty"), ds.column("level")).statistic
    assert rho >= 0.5, rho


def test_graded_difficulty_follows_the_known_level_and_reruns_are_byte_identical(tmp_path):
    args = [
        "builtin:graded?n=600",
        "--signals",
        "compression_ratio,lexical_diversity,readability",
        "--no-progress",
        *IN_MEMORY,
    ]
    assert score(*args, "--output", str(tmp_path / "a")) == 0
    assert score(*args, "--output", str(tmp_path / "b"), "--rows-per-shard", "100") == 0
    assert score(*args, "--output", str(tmp_path / "c"), "--rows-per-shard", "100") == 0
    a, b, c = (ShardSet.open(tmp_path / x) for x in "abc")
    import numpy as np

    level, difficulty = a.column("level"), a.column("difficulty")
    assert np.corrcoef(level, difficulty)[0, 1] > 0.5
    means = [difficulty[level == lv].mean() for lv in range(1, 6)]
    assert means == sorted(means)
    assert b.num_rows == 600 and len(b.manifest["shards"]) >= 5
    assert [s["sha256"] for s in b.manifest["shards"]] == [
        s["sha256"] for s in c.manifest["shards"]
    ]


def test_overwrite_rules(tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "builtin:graded?n=50",
        "--signals",
        "readability",
        "--output",
        str(out),
        "--no-progress",
        *IN_MEMORY,
    ]
    assert score(*args) == 0
    first = (out / "manifest.json").read_text()
    assert score(*args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == first
    assert score(*args[:1], "builtin:graded?n=20&seed=9", *args[1:], "--overwrite") == 0
    assert ShardSet.open(out).num_rows == 70
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "precious.txt").write_text("keep me")
    assert score("builtin:graded?n=5", "--output", str(tmp_path / "foreign"), *IN_MEMORY) == 2
    assert (tmp_path / "foreign" / "precious.txt").exists()


def _kill_when(cmd: list[str], ready, timeout: float = 180) -> None:
    """Start ``cmd`` and SIGKILL its whole process group once ``ready()`` is true."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before it was killed"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_killed_run_resumes_to_the_clean_runs_bytes(tmp_path, capsys):
    """Killed past half-way, the run is refused without a flag (nothing deleted), then
    ``--resume`` reuses every part the killed run finished (its summary written) and scores
    the rest: the shards are byte-identical to an undisturbed run's."""
    spec = "builtin:graded?n=24000"
    job = ["--signals", "lexical_diversity,readability", "--no-progress", *IN_MEMORY]
    assert score(spec, "--output", str(tmp_path / "clean"), *job) == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipelines.score", spec, "--output", str(out), *job]
    done = lambda: len(list(out.glob("staging/*/done/*.pkl")))  # noqa: E731
    _kill_when(cmd, lambda: done() >= 14)  # 24 parts of 1,000
    finished = done()
    assert finished >= 14 and not (out / "manifest.json").exists()
    with pytest.raises(IncompleteDatasetError):
        ShardSet.open(out)
    before = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert score(spec, "--output", str(out), *job) == 2
    assert "--resume" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == before
    assert score(spec, "--output", str(out), *job, "--signals", "readability", "--resume") == 2
    assert "differ from the unfinished run" in capsys.readouterr().err
    assert score(spec, "--output", str(out), *job, "--resume") == 0
    clean, resumed = ShardSet.open(tmp_path / "clean"), ShardSet.open(out)
    assert resumed.manifest["resume"]["reused_parts"] >= finished
    assert resumed.manifest["counts"] == clean.manifest["counts"]
    assert [(s["path"], s["sha256"]) for s in resumed.manifest["shards"]] == [
        (s["path"], s["sha256"]) for s in clean.manifest["shards"]
    ]
    assert not (out / "staging").exists()
    assert validate(out) == []


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert score(str(tmp_path / "none-*.jsonl"), "--output", str(tmp_path / "o")) == 2
    assert "matches no file" in capsys.readouterr().err
    assert score("builtin:graded?n=5", "--output", str(tmp_path / "o"), "--signals", "nope") == 2
    assert "unknown signal 'nope'" in capsys.readouterr().err
    assert (
        score("builtin:graded?n=5", "--output", str(tmp_path / "o"), "--difficulty", "perplexity")
        == 2
    )
    assert "not a scored signal" in capsys.readouterr().err


def test_reference_lm_is_trained_on_the_input_and_scores_it(tmp_path):
    out = tmp_path / "out"
    rc = score(
        "builtin:graded?n=250",
        "--output",
        str(out),
        "--lm",
        "reference",
        "--reference-lm-steps",
        "30",
        "--signals",
        "length",
        "--no-progress",
        *IN_MEMORY,
    )
    assert rc == 0
    ds = ShardSet.open(out)
    assert (out / "reference_lm" / "config.json").exists()
    ppl = ds.column("perplexity")
    assert np.isfinite(ppl).all() and (ppl > 1).all()
    assert np.isfinite(ds.column("angle_concentration")).all()
    lm = {s["name"]: s for s in ds.manifest["signals"]}["perplexity"]
    assert lm["params"]["params"]["model"].endswith("reference_lm")
    level = ds.column("level")
    # Higher levels use longer words from larger lexicons: even a briefly trained LM sees it.
    assert np.median(ppl[level == 5]) > np.median(ppl[level == 1])


def test_clusters_assign_every_record_to_a_saved_centroid(tmp_path):
    out = tmp_path / "out"
    rc = score(
        "builtin:graded?n=150",
        "--output",
        str(out),
        "--clusters",
        "3",
        "--signals",
        "readability",
        "--no-progress",
        *IN_MEMORY,
    )
    assert rc == 0
    ds = ShardSet.open(out)
    cluster, dist = ds.column("cluster"), ds.column("centroid_distance")
    assert set(cluster.tolist()) <= {0, 1, 2} and len(set(cluster.tolist())) > 1
    assert ((dist >= 0) & (dist <= 2)).all()
    centroids = np.load(out / "centroids.npy")
    assert centroids.shape == (3, 384)
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-5)
    assert ds.manifest["clusters"]["k"] == 3
    assert "centroid_distance" in ds.manifest["options"]["difficulty_weights"]


def test_shards_are_bounded_by_bytes_and_never_collide(tmp_path):
    """Long texts: shard count follows the staged bytes (``shard_bytes``), each shard is one
    file, and every record is written once (a byte-rotated shard once overwrote its
    neighbour's index)."""
    from pipelines.score import JobConfig, run_job

    src = tmp_path / "long.jsonl"
    with open(src, "w") as fh:
        for i in range(300):
            fh.write(json.dumps({"text": f"record {i} " + "word " * (50 + i % 40)}) + "\n")
    cfg = JobConfig(
        inputs=[str(src)],
        output=str(tmp_path / "out"),
        signals=["length", "compression_ratio"],
        shard_bytes=20_000,
        progress=False,
    )
    manifest = run_job(cfg, IN_MEMORY)
    shards = manifest["shards"]
    assert len(shards) >= 4
    assert len({s["path"] for s in shards}) == len(shards)
    ds = ShardSet.open(tmp_path / "out")
    assert ds.num_rows == 300 and manifest["counts"]["written"] == 300
    texts = ds.take(np.arange(300), columns=["text"])["text"].to_pylist()
    assert sorted(int(t.split()[1]) for t in texts) == list(range(300))
    assert not (tmp_path / "out" / "staging").exists()
    assert validate(tmp_path / "out") == []


@pytest.fixture
def broken_scorer(monkeypatch, tmp_path):
    """A scorer that fails on every text (a missing model file, a CUDA error)."""
    (tmp_path / "broken_scorer.py").write_text(
        "class Broken:\n"
        "    name, version, outputs = 'broken', '1', {'broken': 1}\n"
        "    def describe(self):\n"
        "        return {'name': 'broken'}\n"
        "    def score(self, texts):\n"
        "        raise OSError('model.safetensors: no such file')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import scorers

    monkeypatch.setitem(scorers._REGISTRY, "broken", "broken_scorer:Broken")


def test_a_scorer_that_fails_on_everything_stops_the_job_with_its_error(
    tmp_path, broken_scorer, capsys
):
    """Not 2n-1 calls per batch and every record dead-lettered at the end: three batches whose
    first text alone fails too, and the job stops, naming the scorer and its error."""
    out = tmp_path / "out"
    began = time.monotonic()
    rc = score("builtin:graded?n=20000", "--output", str(out), "--signals", "length,broken",
               "--max-dead-letter-fraction", "1", "--no-progress", *IN_MEMORY)  # fmt: skip
    elapsed = time.monotonic() - began
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and elapsed < 60
    assert "scorer 'broken' failed on each of its first 3 batches" in err
    assert "model.safetensors: no such file" in err
    assert not (out / "manifest.json").exists()
    assert len(list(out.glob("staging/*/done/*.pkl"))) == 0  # it stopped in its first part


def test_a_blown_budget_stops_the_job_early_naming_the_budget(tmp_path, capsys):
    """30 % unparseable lines against the default 1 % budget: a worker stops the job once
    its own rejections exceed what the budget allows for the whole input, long before the
    corpus is scored; the error names the budget and no manifest is written."""
    src = tmp_path / "bad.jsonl"
    with open(src, "w") as fh:
        for i in range(60_000):
            fh.write("{broken\n" if i % 10 < 3 else json.dumps({"text": f"line {i} ok"}) + "\n")
    out = tmp_path / "out"
    rc = score(str(src), "--output", str(out), "--signals", "lexical_diversity", "--no-progress",
               *IN_MEMORY)  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and "over --max-dead-letter-fraction=0.01" in err
    assert "stopped early" in err and not (out / "manifest.json").exists()
    parts_done = len(list(out.glob("staging/*/done/*.pkl")))
    assert parts_done <= 2, parts_done  # of 32 parts


def test_the_log_has_one_line_per_part_not_per_batch(tmp_path):
    out = tmp_path / "out"
    rc = score("builtin:graded?n=6000", "--output", str(out), "--signals", "length",
               "--batch-size", "16", "--no-progress", *IN_MEMORY)  # fmt: skip
    assert rc == 0
    parts = len(ShardSet.open(out).manifest["shards"])
    lines = [ln for ln in (out / "gradum.log").read_text().splitlines() if " gradum." in ln]
    assert len([ln for ln in lines if "gradum.stage" in ln]) == parts
    assert len(lines) <= parts + 10  # 375 batches of 16: none of them logs a line
