"""Beam's DaskRunner is refused (issue 23), and the reasons are real.

gradum refuses it in one line that names it and why, before reading anything or writing
anything (``pipelines.job.runner.DASK_REFUSED``). Run anyway (Beam 2.77, dask 2026.8, the
refusal bypassed), ``gradum score`` wrote its run marker and staging, then failed mid-run with
``ValueError: too many values to unpack (expected 2)``. The witnesses below run Beam's DaskRunner on
a real ``distributed.LocalCluster`` of 2 worker processes (``dask`` and ``distributed`` are in
the ``dev`` extra) and show each loss the refusal names; when a Beam release fixes them, they
fail, and the refusal is to be revisited.
"""

from __future__ import annotations

import os
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.cli import run_score_command
from pipelines.job.runner import DASK_REFUSED

DASK = "apache_beam.runners.dask.dask_runner.DaskRunner"  # Beam knows no short name for it


@pytest.mark.parametrize(
    "runner", [[f"--runner={DASK}", "--dask_client_address=localhost:8786"], ["--runner", "dask"]]
)
def test_gradum_score_refuses_dask_in_one_line_before_reading_anything(tmp_path, capsys, runner):
    out = tmp_path / "out"
    never_read = str(tmp_path / "missing-*.jsonl")  # reading it would fail: "matches no file"
    status = run_score_command([never_read, "--output", str(out), *runner])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert err[0] == f"gradum score: error: {DASK_REFUSED}"
    assert "DaskRunner" in err[0] and "finish_bundle" in err[0] and "last sink" in err[0]
    assert not out.exists()  # nothing written, not even the log


def test_the_dry_run_and_the_library_entry_refuse_dask_too(tmp_path, capsys):
    from pipelines.config import JobConfig
    from pipelines.job.launch import run_console_job

    out = tmp_path / "o"
    dry = ["builtin:graded?n=5", "--output", str(out), f"--runner={DASK}", "--dry-run"]
    assert run_score_command(dry) == 2
    assert DASK_REFUSED in capsys.readouterr().err
    status, _ = run_console_job(JobConfig(["builtin:graded?n=5"], str(out)), [f"--runner={DASK}"])
    assert status == 2 and capsys.readouterr().err.strip() == f"gradum score: error: {DASK_REFUSED}"
    assert not out.exists()


# -- the witnesses: Beam's DaskRunner on a real cluster -------------------------------------
@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed", reason="pip install 'gradum[dev]'")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def _touch(element, directory: str) -> None:
    """A visible side effect per element (the workers are other processes on this machine)."""
    Path(directory, str(element)).touch()


def _on_dask(address: str, build) -> None:
    """Build a pipeline with ``build(p)`` and run it on the cluster to its end."""
    pipeline = beam.Pipeline(
        options=PipelineOptions([f"--runner={DASK}", f"--dask_client_address={address}"])
    )
    build(pipeline)
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        result.client.close()


def test_witness_batch_elements_loses_what_it_emits_in_finish_bundle(dask_cluster, tmp_path):
    """BatchElements (RunInference batches with it) emits its last, partial batch in
    finish_bundle: on Dask those records vanish, and the job still succeeds."""

    def build(p):
        _ = (
            p
            | beam.Create(range(20))
            | beam.BatchElements(min_batch_size=8, max_batch_size=8)
            | beam.FlatMap(lambda batch, d: [_touch(x, d) for x in batch], str(tmp_path))
        )

    _on_dask(dask_cluster, build)
    assert len(os.listdir(tmp_path)) < 20  # 20 in, fewer out: 16 (two full batches) here


def test_witness_only_the_last_sink_runs(dask_cluster, tmp_path):
    first, last = tmp_path / "first", tmp_path / "last"
    first.mkdir()
    last.mkdir()

    def build(p):
        records = p | beam.Create(range(10))
        _ = records | "First" >> beam.Map(_touch, str(first))
        _ = records | "Last" >> beam.Map(_touch, str(last))

    _on_dask(dask_cluster, build)
    assert (len(os.listdir(first)), len(os.listdir(last))) == (0, 10)


def test_witness_read_from_text_fails(dask_cluster, tmp_path):
    text = tmp_path / "lines.txt"
    text.write_text("".join(f"line {i}\n" for i in range(5)))
    seen = tmp_path / "seen"
    seen.mkdir()

    def build(p):
        _ = p | beam.io.ReadFromText(str(text)) | beam.Map(_touch, str(seen))

    with pytest.raises(Exception):  # noqa: B017 - any failure: Beam's read is not translated
        _on_dask(dask_cluster, build)
    assert not os.listdir(seen)


def test_the_public_transforms_refuse_dask_when_the_pipeline_is_built(tmp_path):
    pytest.importorskip("distributed", reason="pip install 'gradum[dev]'")
    from pipelines import ScoreTexts, WriteShards

    options = PipelineOptions([f"--runner={DASK}"])
    with pytest.raises(ValueError, match="DaskRunner is not supported"):
        p = beam.Pipeline(options=options)
        _ = p | beam.Create([{"text": "a b c"}]) | ScoreTexts(signals=["length"])
    p = beam.Pipeline(options=options)
    with pytest.raises(ValueError, match="DaskRunner is not supported"):
        rows = p | beam.Create([{"id": "a", "text": "a b c", "length": 3.0}])
        _ = rows | WriteShards(str(tmp_path / "o"), scoring=ScoreTexts(signals=["length"]))
    assert not (tmp_path / "o").exists()
