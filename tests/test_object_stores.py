"""The job against real object-store servers on loopback: GCS (gcp-storage-emulator) and S3
(moto), on the multi-process DirectRunner with 2 workers, started by the tests themselves."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from stores import SECRET, gcs_server, s3_server

from pipelines.cli import add_score_arguments
from shards import ShardMismatchError, ShardSet
from shards.cli import main as shards_main

TWO_WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
SERVERS = {"gcs": gcs_server, "s3": s3_server}


def score(*argv: str) -> int:
    from pipelines.score import run_from_args

    parser = argparse.ArgumentParser()
    add_score_arguments(parser)
    args, beam_args = parser.parse_known_args(list(argv))
    return run_from_args(args, beam_args)


def corpus() -> bytes:
    lines = [
        json.dumps({"text": f"Record {i}: " + "a plain sentence, said clearly. " * (1 + i % 7)})
        for i in range(400)
    ]
    lines[17] = "{not json"
    lines[230] = json.dumps({"body": "no text"})
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module", params=sorted(SERVERS))
def store(request):
    with SERVERS[request.param]() as s:
        s.put("in/corpus.jsonl", corpus())
        yield s


@pytest.fixture(scope="module")
def committed(store, tmp_path_factory):
    """One job from the bucket to the bucket and one from the bucket to a local directory."""
    local = tmp_path_factory.mktemp("local") / "out"
    job = [store.url("in/corpus.jsonl"), "--signals", "compression_ratio,readability"]
    job += ["--rows-per-shard", "100", "--no-progress", *TWO_WORKERS, *store.beam_args]
    assert score(*job, "--output", store.url("runs/a")) == 0
    assert score(*job, "--output", str(local)) == 0
    return store.url("runs/a"), local


def test_a_job_in_a_bucket_writes_the_same_shards_as_on_a_local_disk(store, committed):
    remote, local = committed
    manifest = json.loads(store.get("runs/a/manifest.json"))
    local_manifest = json.loads((local / "manifest.json").read_text())
    assert (
        manifest["counts"]
        == local_manifest["counts"]
        == {
            "input": 400,
            "written": 398,
            "dead_letter": 2,
        }
    )
    assert len(manifest["shards"]) >= 4
    assert [(s["path"], s["sha256"]) for s in manifest["shards"]] == [
        (s["path"], s["sha256"]) for s in local_manifest["shards"]
    ]
    for s in manifest["shards"]:
        assert hashlib.sha256(store.get(f"runs/a/{s['path']}")).hexdigest() == s["sha256"]
    keys = store.keys("runs/a/")
    assert not [k for k in keys if k.startswith("runs/a/staging")]
    dead = [k for k in keys if k.startswith("runs/a/dead_letter/")]
    assert sum(store.get(k).count(b"\n") for k in dead) == 2


def test_no_secret_reaches_any_output(store, committed):
    _, local = committed
    for key in store.keys():
        assert SECRET.encode() not in store.get(key), key
    for root, _, names in os.walk(local):
        for name in names:
            with open(os.path.join(root, name), "rb") as fh:
                assert SECRET.encode() not in fh.read(), name
    manifest = json.loads(store.get("runs/a/manifest.json"))
    assert manifest["options"]["beam_options"]["direct_num_workers"] == 2


def test_a_remote_dataset_reads_back_through_a_checked_cache(store, committed, tmp_path, capsys):
    remote, local = committed
    ds = ShardSet.open(remote, cache_dir=tmp_path / "cache")
    here = ShardSet.open(local)
    assert ds.num_rows == here.num_rows == 398
    assert ds.take([0, 397, 5]).equals(here.take([0, 397, 5]))
    assert ds.column("readability").tolist() == here.column("readability").tolist()
    assert sum(b.num_rows for b in ds.iter_batches(64)) == 398
    for command in (["summary"], ["head", "-n", "2"], ["validate"]):
        assert shards_main([*command, remote, "--cache-dir", str(tmp_path / "cache2")]) == 0
    assert "OK:" in capsys.readouterr().out


def test_a_remote_shard_that_fails_its_check_is_never_served(store, committed, tmp_path):
    manifest = json.loads(store.get("runs/a/manifest.json"))
    for key in store.keys("runs/a/"):
        store.put(key.replace("runs/a/", "runs/bad/", 1), store.get(key))
    victim = manifest["shards"][1]["path"]
    data = bytearray(store.get(f"runs/bad/{victim}"))
    data[-20] ^= 0xFF
    store.put(f"runs/bad/{victim}", bytes(data))
    ds = ShardSet.open(store.url("runs/bad"), cache_dir=tmp_path / "cache")
    assert ds.take([0]).num_rows == 1  # shard 0 is sound
    with pytest.raises(ShardMismatchError, match="sha256"):
        ds.column("text")  # not in the index: read from the shards
    assert not (tmp_path / "cache" / victim).exists()
    assert shards_main(["validate", store.url("runs/bad"), "--cache-dir", str(tmp_path / "c")]) == 1


def test_a_killed_launcher_leaves_no_manifest_and_a_rerun_with_overwrite_commits(store, tmp_path):
    out = store.url("runs/killed")
    cmd = [sys.executable, "-m", "pipelines.score", "builtin:graded?n=400000"]
    cmd += ["--output", out, "--signals", "lexical_diversity", *TWO_WORKERS, *store.beam_args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while not store.keys("runs/killed/staging/") and time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before it was killed"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    keys = store.keys("runs/killed/")
    assert keys and "runs/killed/manifest.json" not in keys
    job = ["builtin:graded?n=60", "--signals", "lexical_diversity", "--no-progress"]
    assert score(*job, "--output", out, "--overwrite", *TWO_WORKERS, *store.beam_args) == 0
    keys = store.keys("runs/killed/")
    assert "runs/killed/manifest.json" in keys
    assert not [k for k in keys if "/staging/" in k]
    assert json.loads(store.get("runs/killed/manifest.json"))["counts"]["written"] == 60


def _refused(capsys, *argv: str) -> str:
    assert score(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_outputs_are_refused_before_any_worker_starts(store, committed, capsys, monkeypatch):
    job = ["builtin:graded?n=20", "--signals", "readability", "--no-progress", *store.beam_args]
    before = store.keys()
    err = _refused(capsys, *job, "--output", f"{store.scheme}://no-such-bucket/x")
    assert "does not exist" in err
    store.put("foreign/precious.txt", b"keep me")
    err = _refused(capsys, *job, "--output", store.url("foreign"))
    assert "gradum did not write" in err and store.get("foreign/precious.txt") == b"keep me"
    first = store.get("runs/a/manifest.json")
    err = _refused(capsys, *job, "--output", committed[0])
    assert "--overwrite" in err and store.get("runs/a/manifest.json") == first
    assert store.keys() == sorted(before + ["foreign/precious.txt"])


def test_an_unreachable_store_is_one_line(store, capsys, monkeypatch):
    import pipelines.output.preflight

    monkeypatch.setattr(pipelines.output.preflight, "PREFLIGHT_TIMEOUT_S", 5.0)
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens
    job = ["builtin:graded?n=20", "--signals", "readability", "--no-progress"]
    if store.scheme == "s3":
        args = [a for a in store.beam_args if not a.startswith("--s3_endpoint_url")]
        err = _refused(capsys, *job, *args, f"--s3_endpoint_url={dead}", "--output", store.url("x"))
    else:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", dead)
        err = _refused(capsys, *job, "--output", store.url("x"))
    assert "cannot list" in err or "cannot reach" in err or "cannot be reached" in err


def test_no_write_permission_is_refused_and_nothing_is_written(capsys):
    with s3_server("gradum-readonly") as s3:
        s3.client.put_bucket_policy(
            Bucket="gradum-readonly",
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:PutObject",
                            "Resource": "arn:aws:s3:::gradum-readonly/*",
                        }
                    ],
                }
            ),
        )
        job = ["builtin:graded?n=20", "--signals", "readability", *s3.beam_args]
        err = _refused(capsys, *job, "--output", s3.url("out"))
        assert "permission denied" in err
        assert s3.keys() == []


def test_reference_lm_and_parquet_inputs_live_in_the_bucket(tmp_path):
    """``--lm reference`` trains in the launcher, stores the model under the output, and the
    workers load it from there (the LM scorer and the perplexity proxy's tokenizer); a Parquet
    input is planned from its footer in the bucket."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with gcs_server("gradum-lm") as gcs:
        texts = [
            f"the cat number {i} sat on the mat and looked at {i % 7} birds" for i in range(150)
        ]
        pq.write_table(pa.table({"text": texts}), tmp_path / "t.parquet", row_group_size=40)
        gcs.put("in/t.parquet", (tmp_path / "t.parquet").read_bytes())
        gcs.put("in/c.jsonl", corpus())
        job = [gcs.url("in/t.parquet"), gcs.url("in/c.jsonl"), "--lm", "reference"]
        job += ["--reference-lm-steps", "20", "--reference-lm-samples", "200", "--signals"]
        job += ["length", "--no-progress", "--output", gcs.url("lm"), *TWO_WORKERS]
        job += ["--proxy", "perplexity", "--proxy-fraction", "0.5"]
        assert score(*job) == 0
        keys = gcs.keys("lm/")
        assert "lm/reference_lm/config.json" in keys and "lm/manifest.json" in keys
        manifest = json.loads(gcs.get("lm/manifest.json"))
        assert manifest["counts"] == {"input": 550, "written": 548, "dead_letter": 2}
        lm = {s["name"]: s for s in manifest["signals"]}["perplexity"]
        assert lm["params"]["params"]["model"] == gcs.url("lm/reference_lm")
        ds = ShardSet.open(gcs.url("lm"), cache_dir=tmp_path / "cache")
        ppl = ds.column("perplexity")
        scored = ppl[np.isfinite(ppl)]
        assert (scored > 1).all() and 150 < len(scored) < 400 and len(set(scored.tolist())) > 100
        assert gcs.url("lm/reference_lm") in manifest["proxy"]["tokens"]
        assert np.isfinite(ds.column("perplexity_proxy")).all()


def test_objects_grow_with_the_parts_not_with_the_workers():
    """On the S3 server: the same input at 2 and at 4 workers writes the same objects (a
    staging object, a summary, a kept object, a shard and an index part per part, the marker,
    the manifest),
    within c (shards + read units) + a constant, whatever the workers or bundles."""
    lines = [json.dumps({"text": f"Record {i}: " + "plain words said clearly. " * (3 + i % 5)})
             for i in range(4000)]  # fmt: skip
    with s3_server("gradum-objects") as s3:
        s3.put("in/c.jsonl", ("\n".join(lines) + "\n").encode())
        written = {}
        for workers in (2, 4):
            s3.requests.clear()
            job = [s3.url("in/c.jsonl"), "--signals", "compression_ratio", "--rows-per-shard",
                   "400", "--no-progress", "--output", s3.url(f"w{workers}"),
                   "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}",
                   *s3.beam_args]  # fmt: skip
            assert score(*job) == 0
            written[workers] = {k.split("/", 1)[1] for k in s3.objects_written(f"w{workers}/")}
        manifest = json.loads(s3.get("w2/manifest.json"))
    shards = len(manifest["shards"])
    assert shards >= 8
    assert len(written[2]) == len(written[4])
    assert {k for k in written[2] if "staging/" not in k} == {
        k for k in written[4] if "staging/" not in k
    }
    # per part: staging object, summary, kept object, shard, index part; then run.json,
    # manifest.json and the launcher's write probe (written and deleted before anything else)
    assert len(written[2]) <= 5 * shards + 3
