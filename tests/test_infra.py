"""Sanity checks of infra/dataflow (no network, no Beam job): metadata and launcher."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATAFLOW = ROOT / "infra" / "dataflow"


def _launcher():
    spec = importlib.util.spec_from_file_location("gradum_df_launcher", DATAFLOW / "launcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def metadata() -> dict:
    return json.loads((DATAFLOW / "metadata.json").read_text())


@pytest.fixture(scope="module")
def score_help() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.score", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def test_metadata_is_valid(metadata):
    assert metadata["name"] and metadata["description"]
    names = [p["name"] for p in metadata["parameters"]]
    assert len(names) == len(set(names))
    for p in metadata["parameters"]:
        assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_]*", p["name"]), p["name"]
        assert p["label"] and p["helpText"]
        for rx in p.get("regexes", []):
            re.compile(rx)
    required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional", False)}
    assert required == {"input", "output"}


def _option_spellings() -> list[set[str]]:
    """The long spellings of each ``gradum score`` option (its own parser: what the command
    accepts; the bucket options have two, ``--s3_region_name`` and ``--s3-region-name``)."""
    from pipelines.cli import score_parser

    spellings = [
        {s for s in a.option_strings if s.startswith("--")}
        for a in score_parser()._actions  # noqa: SLF001
    ]
    return [s for s in spellings if s and s != {"--help"}]


def _long_options() -> set[str]:
    return set().union(*_option_spellings())


def test_every_parameter_is_a_score_option(metadata, score_help):
    launcher = _launcher()
    assert "INPUT" in score_help
    options = _long_options()
    names = {p["name"] for p in metadata["parameters"]}
    assert names == set(launcher.GRADUM_PARAMS)  # both ways: no parameter the launcher drops
    for name in names:
        flag = launcher.GRADUM_PARAMS[name]
        assert flag is None or flag in options, (name, flag)  # None: the positional INPUT


def test_every_score_option_is_a_parameter_or_left_out_with_its_reason():
    """A new ``gradum score`` option fails this until the template takes it or says why not."""
    launcher = _launcher()
    mapped = {f for f in launcher.GRADUM_PARAMS.values() if f}
    left_out = set(launcher.NOT_PARAMETERS)
    assert not mapped & left_out
    assert left_out <= _long_options(), left_out - _long_options()  # no stale reason
    neither = [s for s in _option_spellings() if not s & (mapped | left_out)]
    assert not neither, f"gradum score options neither parameters nor left out: {neither}"
    matter = {"--proxy", "--proxy-fraction", "--lm", "--reference-lm-steps",
              "--reference-lm-samples", "--overwrite", "--resume", "--config"}  # fmt: skip
    assert matter <= mapped, matter - mapped
    assert all(reason.strip() for reason in launcher.NOT_PARAMETERS.values())


EXAMPLES = {
    "input": "gs://b/data/*.jsonl.gz,builtin:graded?n=100",
    "output": "gs://my-bucket/gradum/run1",
    "config": "gs://my-bucket/jobs/score.yaml",
    "signals": "length,readability",
    "text_field": "body",
    "id_field": "doc_id",
    "lm": "reference",
    "reference_lm_steps": "200",
    "reference_lm_samples": "5000",
    "embedding": "default",
    "embedding_backend": "onnx-int8",
    "embedding_max_seq_length": "128",
    "clusters": "256",
    "difficulty": "perplexity:2,readability:1",
    "proxy": "perplexity",
    "proxy_fraction": "0.05",
    "buckets": "20",
    "batch_size": "128",
    "max_text_bytes": "500000",
    "max_dead_letter_fraction": "0.01",
    "rows_per_shard": "50000",
    "num_shards": "64",
    "seed": "3",
    "overwrite": "false",
    "resume": "true",
    "keep_embeddings": "true",
}


def test_regexes_accept_examples(metadata):
    by_name = {p["name"]: p for p in metadata["parameters"]}
    assert set(EXAMPLES) == set(by_name)
    for name, value in EXAMPLES.items():
        for rx in by_name[name].get("regexes", []):
            assert re.fullmatch(rx, value), (name, value)


def test_every_parameter_reaches_the_job_options(tmp_path):
    """The translated command line of every parameter at once goes through ``gradum score``'s
    own parsing (the config file read, every option checked) to the job's settings."""
    from pipelines.cli import parse_score_args
    from pipelines.config import JobConfig

    config = tmp_path / "score.yaml"
    config.write_text("rows-per-shard: 1000\nseed: 9\ndirect_num_workers: 2\n")
    values = dict(EXAMPLES, config=str(config))
    argv = _launcher().translate([f"--{k}={v}" for k, v in values.items()])
    args, beam = parse_score_args(argv)
    cfg = JobConfig.from_args(args)
    assert cfg.inputs == ["gs://b/data/*.jsonl.gz", "builtin:graded?n=100"]
    assert (cfg.proxy, cfg.proxy_fraction, cfg.lm) == ("perplexity", 0.05, "reference")
    assert (cfg.reference_lm_steps, cfg.reference_lm_samples) == (200, 5000)
    assert cfg.resume and not cfg.overwrite and cfg.keep_embeddings and not cfg.progress
    assert (cfg.config, cfg.rows_per_shard, cfg.seed) == (str(config), 50000, 3)  # flags win
    assert args.verbose and "--direct_num_workers=2" in beam


def test_launcher_translates_to_score_args():
    from pipelines.cli import add_score_arguments

    argv = _launcher().translate(
        [
            "--input=a.jsonl,b/*.parquet",
            "--output=gs://b/out",
            "--max_dead_letter_fraction=0.05",
            "--text_field",
            "body",
            "--overwrite=true",
            "--keep_embeddings=false",
            "--runner=DataflowRunner",
            "--project=p",
        ]
    )
    parser = argparse.ArgumentParser()
    add_score_arguments(parser)
    args, beam = parser.parse_known_args(argv)
    assert args.inputs == ["a.jsonl", "b/*.parquet"]
    assert args.output == "gs://b/out"
    assert args.max_dead_letter_fraction == 0.05
    assert args.text_field == "body"
    assert args.overwrite and not args.keep_embeddings
    assert args.project == "p"  # a connection option gradum shares with every command
    assert beam == ["--runner=DataflowRunner"]


def test_the_launch_command_for_a_bucket_corpus_names_only_bucket_paths(tmp_path):
    """launch.sh, run with a stand-in gcloud that records its arguments: the input, output,
    template, temp and staging locations are all gs:// paths, and a non-bucket output is
    refused before gcloud runs."""
    stub = tmp_path / "bin" / "gcloud"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$GCLOUD_ARGS"\n')
    stub.chmod(0o755)
    env = {
        "PATH": f"{stub.parent}:/usr/bin:/bin",
        "GCLOUD_ARGS": str(tmp_path / "args"),
        "PROJECT": "p",
        "REGION": "us-central1",
        "BUCKET": "my-bucket",
        "INPUT": "gs://my-bucket/corpus/*.jsonl.gz",
        "OUTPUT": "gs://my-bucket/gradum/run1",
        "TAG": "t",
        "LM": "reference",
    }
    run = subprocess.run(["bash", str(DATAFLOW / "launch.sh")], env=env, capture_output=True)
    assert run.returncode == 0, run.stderr.decode()
    args = (tmp_path / "args").read_text().splitlines()
    flags = dict(zip(args, args[1:], strict=False))
    params = dict(kv.split("=", 1) for kv in flags["--parameters"].removeprefix("^~^").split("~"))
    paths = [params["input"], params["output"]] + [
        flags[f] for f in ("--template-file-gcs-location", "--temp-location", "--staging-location")
    ]
    assert all(p.startswith("gs://my-bucket/") for p in paths), paths
    assert not any(a.startswith("/gcs") or "/mnt" in a for a in args)
    env["OUTPUT"] = "/gcs/my-bucket/run1"
    (tmp_path / "args").unlink()
    run = subprocess.run(["bash", str(DATAFLOW / "launch.sh")], env=env, capture_output=True)
    assert run.returncode == 2 and b"gs://" in run.stderr and not (tmp_path / "args").exists()


def test_the_worker_entrypoint_stops_loudly_when_gradum_does_not_import(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(
        "#!/bin/sh\necho 'ModuleNotFoundError: pipelines' >&2\nexit 1\n"
    )
    (bin_dir / "python").chmod(0o755)
    run = subprocess.run(
        ["sh", str(DATAFLOW / "entrypoint.sh"), "--id=1"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
    )
    assert run.returncode == 1
    assert b"worker set-up failed" in run.stderr and b"ModuleNotFoundError" in run.stderr
