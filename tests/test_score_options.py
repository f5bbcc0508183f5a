"""gradum score's options: a misspelt one is refused with a suggestion and nothing written;
--config (YAML or JSON) under the command line; --dry-run prints the plan and writes nothing;
the same bucket options as every other command."""

from __future__ import annotations

import json

import pytest

from pipelines.cli import parse_score_args, run_score_command
from pipelines.options import OptionError

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


@pytest.mark.parametrize(
    ("option", "suggestion"),
    [
        ("--num-shard=4", "--num-shards"),
        ("--resum", "--resume"),
        ("--direct_num_worker=2", "--direct_num_workers"),
        ("--s3_endpoint=http://x", "--s3_endpoint_url"),
    ],
)
def test_a_misspelt_option_is_refused_with_the_closest_name(tmp_path, capsys, option, suggestion):
    out = tmp_path / "out"
    assert run_score_command(["builtin:graded?n=20", "-o", str(out), option]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"did you mean {suggestion}?" in err
    assert not out.exists()  # nothing written, not even a log


def test_beam_options_pass_and_abbreviations_do_not(tmp_path):
    args, beam = parse_score_args(["x.jsonl", "-o", "o", "--runner=DirectRunner", *IN_MEMORY])
    assert beam == ["--runner=DirectRunner", *IN_MEMORY]
    with pytest.raises(OptionError, match="--rows-per"):
        parse_score_args(["x.jsonl", "-o", "o", "--rows-per", "10"])  # no abbreviations


def test_a_config_file_gives_options_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        "inputs: ['builtin:graded?n=300']\n"
        "output: " + str(tmp_path / "out") + "\n"
        "signals: [length, readability]\n"
        "rows-per-shard: 100\n"
        "max_dead_letter_fraction: 0.5\n"
        "no-progress: true\n"
        "direct_running_mode: in_memory\n"
        "direct_num_workers: 1\n"
        "s3_secret_access_key: SECRETVALUE-not-recorded\n"
        "s3_access_key_id: AKEY\n"
    )
    args, beam = parse_score_args(["--config", str(cfg), "--rows-per-shard", "150"])
    assert args.rows_per_shard == 150 and args.signals == "length,readability"
    assert args.inputs == ["builtin:graded?n=300"] and args.no_progress is True
    assert "--direct_num_workers=1" in beam
    assert run_score_command(["--config", str(cfg), "--rows-per-shard", "150"]) == 0
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    options = json.loads(manifest)["options"]
    assert options["rows_per_shard"] == 150 and options["config"] == str(cfg)
    assert options["beam_options"]["direct_running_mode"] == "in_memory"
    assert "SECRETVALUE" not in manifest and "AKEY" not in manifest


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"rows-per-shard": "many"}', "rows-per-shard must be int"),
        ('{"num-shard": 4}', "unknown option --num_shard"),
        ('{"overwrite": "yes"}', "overwrite must be true or false"),
        ("[1, 2]", "expected a mapping"),
        ('{"inputs": [', "not valid JSON"),
    ],
)
def test_a_bad_config_is_one_clear_line(tmp_path, content, message):
    path = tmp_path / "job.json"
    path.write_text(content)
    with pytest.raises(OptionError, match=message):
        parse_score_args(["--config", str(path), "x.jsonl", "-o", "o"])


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(2000)))
    out = tmp_path / "out"
    argv = [str(src), "builtin:graded?n=5000", "-o", str(out), "--clusters", "4", "--dry-run"]
    assert run_score_command(argv) == 0
    text = capsys.readouterr().out
    for expected in ("inputs: 2 spec(s), 1 file(s)", "estimated rows:", "read units",
                     "signals: chars", "k-means sample 20,000 rows", "runner: DirectRunner",
                     "nothing written"):  # fmt: skip
        assert expected in text, (expected, text)
    assert not out.exists()


def test_both_s3_keys_or_neither(tmp_path, capsys):
    assert run_score_command(["x.jsonl", "-o", str(tmp_path / "o"), "--s3_access_key_id=K"]) == 2
    assert "give both --s3_access_key_id and --s3_secret_access_key" in capsys.readouterr().err
