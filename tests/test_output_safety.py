"""gradum deletes only what it can prove it wrote (its run marker or its manifest lists it),
locally and on the S3 and GCS servers: a user's files beside or inside the output, an input
inside the output, an unfinished run, --overwrite of a complete dataset with a report."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from stores import gcs_server, s3_server

from pipelines.cli import add_score_arguments

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
JOB = ["--signals", "readability", "--no-progress", *IN_MEMORY]


def score(*argv: str) -> int:
    from pipelines.score import run_from_args

    parser = argparse.ArgumentParser()
    add_score_arguments(parser)
    args, beam_args = parser.parse_known_args(list(argv))
    return run_from_args(args, beam_args)


class Local:
    """The same small interface as tests/stores.Store, over a local directory."""

    def __init__(self, root: Path) -> None:
        self.root, self.beam_args = root, []

    def url(self, key: str = "") -> str:
        return str(self.root / key)

    def put(self, key: str, data: bytes) -> None:
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def keys(self, prefix: str = "") -> list[str]:
        found = [str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()]
        return sorted(k for k in found if k.startswith(prefix))


@pytest.fixture(scope="module", params=["local", "s3", "gcs"])
def store(request, tmp_path_factory):
    if request.param == "local":
        yield Local(tmp_path_factory.mktemp("local"))
    elif request.param == "s3":
        with s3_server("gradum-safety") as s:
            yield s
    else:
        with gcs_server("gradum-safety") as s:
            yield s


def _refused(capsys, *argv: str) -> str:
    assert score(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _ours(keys: list[str], prefix: str) -> list[str]:
    return [k for k in keys if k.startswith(prefix) and not k.endswith("gradum.log")]


def test_user_files_in_an_output_without_a_marker_are_never_deleted(store, capsys):
    """No manifest, no run marker: nothing there is gradum's, with or without --overwrite."""
    store.put("a/staging/notes.txt", b"my notes")
    store.put("a/shards/part-00000.arrow", b"not gradum's")
    before = store.keys("a/")
    for flags in ([], ["--overwrite"], ["--resume"]):
        err = _refused(capsys, "builtin:graded?n=20", "--output", store.url("a"), *JOB,
                       *flags, *store.beam_args)  # fmt: skip
        assert "did not write" in err or "no unfinished run" in err
        assert store.keys("a/") == before
    assert store.get("a/staging/notes.txt") == b"my notes"


def test_an_input_inside_the_output_is_refused_before_anything_happens(store, capsys):
    lines = b"".join(
        json.dumps({"text": f"record {i} is here"}).encode() + b"\n" for i in range(30)
    )
    store.put("b/shards/my-corpus.jsonl", lines)
    before = store.keys("b/")
    for flags in ([], ["--overwrite"]):
        err = _refused(capsys, store.url("b/shards/my-corpus.jsonl"), "--output", store.url("b"),
                       *JOB, *flags, *store.beam_args)  # fmt: skip
        assert "lies inside --output" in err
        assert store.keys("b/") == before  # not even a run marker or a log


def test_overwrite_deletes_only_what_the_manifest_lists(store, capsys):
    """A complete dataset with a report and centroids, and a user file next to it added
    later: refused (the user's file is not gradum's); once the user moves it, --overwrite
    replaces exactly the listed objects, the report included."""
    out = store.url("c")
    first = ["builtin:graded?n=120", "--output", out, *JOB, "--rows-per-shard", "40",
             "--clusters", "2", *store.beam_args]  # fmt: skip
    from pipelines.config import JobConfig
    from pipelines.job.launch import run_job

    cfg = JobConfig(
        inputs=["builtin:graded?n=120"], output=out, signals=["readability"], clusters=2,
        rows_per_shard=40, progress=False, extra_outputs=("report.html",),
        embedding_backend="torch",  # no one-time ONNX export inside a test
    )  # fmt: skip
    run_job(cfg, [*IN_MEMORY, *store.beam_args])
    capsys.readouterr()
    store.put("c/report.html", b"<html>report</html>")
    old = store.keys("c/")
    assert "c/centroids.npy" in old and "c/run.json" in old
    assert len([k for k in old if k.startswith("c/shards/")]) == 3
    store.put("c/shards/extra-notes.txt", b"mine")
    err = _refused(capsys, *first[:1], *first[1:], "--overwrite")
    assert "shards/extra-notes.txt" in err and store.keys("c/") == sorted(
        [*old, "c/shards/extra-notes.txt"]
    )
    if isinstance(store, Local):
        (store.root / "c/shards/extra-notes.txt").unlink()
    elif store.scheme == "s3":
        store.client.delete_object(Bucket=store.bucket, Key="c/shards/extra-notes.txt")
    else:
        store.client.bucket(store.bucket).blob("c/shards/extra-notes.txt").delete()
    assert score("builtin:graded?n=60", "--output", out, *JOB, "--overwrite", *store.beam_args) == 0
    new = store.keys("c/")
    assert "c/report.html" not in new and "c/centroids.npy" not in new
    assert len([k for k in new if k.startswith("c/shards/")]) == 1
    assert not [k for k in new if "/staging/" in k]


def test_an_unfinished_run_is_refused_then_overwritten_by_its_marker(store, capsys):
    """A run cut short (marker, staging, some shards, no manifest): refused without a flag;
    --overwrite deletes what the marker lists and nothing else."""
    out = store.url("d")
    assert score("builtin:graded?n=200", "--output", out, *JOB, *store.beam_args) == 0
    capsys.readouterr()
    # Make it an unfinished run: its manifest gone, a staging leftover in its prefix.
    marker = json.loads(store.get("d/run.json"))
    store.put(f"d/staging/{marker['run_id']}/parts/part-00000000-000000.arrow", b"leftover")
    if isinstance(store, Local):
        (store.root / "d/manifest.json").unlink()
    elif store.scheme == "s3":
        store.client.delete_object(Bucket=store.bucket, Key="d/manifest.json")
    else:
        store.client.bucket(store.bucket).blob("d/manifest.json").delete()
    before = store.keys("d/")
    err = _refused(capsys, "builtin:graded?n=200", "--output", out, *JOB, *store.beam_args)
    assert "unfinished run" in err and store.keys("d/") == before
    assert score("builtin:graded?n=50", "--output", out, *JOB, "--overwrite", *store.beam_args) == 0
    keys = store.keys("d/")
    assert not [k for k in keys if "/staging/" in k] and "d/manifest.json" in keys
    assert json.loads(store.get("d/manifest.json"))["counts"]["written"] == 50


def test_the_marker_lists_patterns_not_users_files():
    from pipelines.output.ownership import RunMarker, classify

    marker = RunMarker.new({"options": "x", "inputs": "y"}, extra=("report.html",))
    rels = [
        "run.json",
        "gradum.log",
        "shards/part-00000001-000002.arrow",
        "shards/.part-00000001-000002.arrow.tmp-77",
        "shards/notes/part-x.arrow",  # a different depth: not a shard
        f"staging/{marker.run_id}/done/part-00000000-000000.pkl",
        "staging/another-run/x.arrow",
        "report.html",
        "reports/report.html",
    ]
    ours, foreign = classify(rels, None, marker, "out")
    assert sorted(foreign) == ["reports/report.html", "shards/notes/part-x.arrow",
                               "staging/another-run/x.arrow"]  # fmt: skip
    assert "gradum.log" not in ours + foreign


def test_local_overwrite_keeps_the_log_and_removes_only_empty_directories(tmp_path):
    out = tmp_path / "out"
    assert score("builtin:graded?n=40", "--output", str(out), *JOB) == 0
    (out / "gradum.log").write_text("an earlier log\n")
    assert score("builtin:graded?n=30", "--output", str(out), *JOB, "--overwrite") == 0
    assert (out / "gradum.log").read_text().startswith("an earlier log")
    assert not (out / "staging").exists()
    shutil.rmtree(out)
