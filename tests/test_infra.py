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


def test_every_parameter_is_a_score_option(metadata, score_help):
    launcher = _launcher()
    assert "INPUT" in score_help
    for p in metadata["parameters"]:
        assert p["name"] in launcher.GRADUM_PARAMS, p["name"]
        flag = launcher.GRADUM_PARAMS[p["name"]]
        if flag is None:
            continue  # the positional INPUT
        assert re.search(rf"(^|[\s,\[]){re.escape(flag)}([\s=,\]]|$)", score_help, re.M), flag


def test_regexes_accept_examples(metadata):
    examples = {
        "input": "gs://b/data/*.jsonl.gz,builtin:graded?n=100",
        "output": "gs://my-bucket/gradum/run1",
        "signals": "length,readability",
        "difficulty": "perplexity:2,readability:1",
        "max_dead_letter_fraction": "0.01",
        "clusters": "256",
        "overwrite": "true",
    }
    by_name = {p["name"]: p for p in metadata["parameters"]}
    for name, value in examples.items():
        for rx in by_name[name].get("regexes", []):
            assert re.fullmatch(rx, value), (name, value)


def test_launcher_translates_to_score_args():
    from pipelines.cli import add_score_arguments

    argv = _launcher().translate(
        [
            "--input=a.jsonl,b/*.parquet",
            "--output=/gcs/b/out",
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
    assert args.output == "/gcs/b/out"
    assert args.max_dead_letter_fraction == 0.05
    assert args.text_field == "body"
    assert args.overwrite and not args.keep_embeddings
    assert beam == ["--runner=DataflowRunner", "--project=p"]


def test_launcher_leaves_unmounted_gs_output_for_the_job_to_refuse():
    assert (
        _launcher().map_output("gs://no-such-bucket-mounted/x") == "gs://no-such-bucket-mounted/x"
    )
