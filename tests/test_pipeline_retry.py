"""A bundle that fails after writing part of its output is retried by the runner, and the
shards are byte-identical to an undisturbed run: staging pieces are named by their content and
only the pieces named by committed bundles are read.

The multi-process DirectRunner does not retry a failed bundle (a failure fails the job); the
bundle-based DirectRunner does (up to 4 times, in this process), as Dataflow retries a work
item whose worker died."""

from __future__ import annotations

import json

from pipelines.io import storage as fs
from pipelines.score import JobConfig, run_job

BUNDLE_RUNNER = ["--runner=BundleBasedDirectRunner"]
IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _job(tmp_path, name: str, inputs: str) -> JobConfig:
    return JobConfig(
        inputs=[inputs],
        output=str(tmp_path / name),
        signals=["compression_ratio", "readability"],
        rows_per_shard=60,
        batch_size=32,
        progress=False,
    )


def test_a_bundle_failing_after_partial_writes_is_retried_and_changes_nothing(
    tmp_path, monkeypatch
):
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"text": f"item {i} " + "word " * (i % 13)}) + "\n" for i in range(300))
    )
    clean = run_job(_job(tmp_path, "clean", str(src)), IN_MEMORY)

    real_write = fs.write_bytes
    calls = {"staging": 0, "failed": 0}

    def flaky(path: str, data) -> None:
        real_write(path, data)
        if "staging" in path:
            calls["staging"] += 1
            if calls["staging"] == 2 and not calls["failed"]:
                calls["failed"] += 1
                raise OSError("simulated worker death after a partial write")

    monkeypatch.setattr(fs, "write_bytes", flaky)
    retried = run_job(_job(tmp_path, "retried", str(src)), BUNDLE_RUNNER)
    assert calls["failed"] == 1 and calls["staging"] > 2
    assert retried["counts"] == clean["counts"] == {"input": 300, "written": 300, "dead_letter": 0}
    assert [(s["path"], s["sha256"]) for s in retried["shards"]] == [
        (s["path"], s["sha256"]) for s in clean["shards"]
    ]
    assert not (tmp_path / "retried" / "staging").exists()
