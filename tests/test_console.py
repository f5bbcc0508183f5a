"""The job's console (issue 14): one progress display summed over workers, the libraries' output
in a log file (on the console only with -v), errors in one line naming the log, no secrets."""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.console.log import (
    JobConsole,
    Redactor,
    default_log_path,
    one_line_error,
    secret_values,
)
from pipelines.console.progress import (
    Progress,
    ProgressDisplay,
    Totals,
    eta_seconds,
    format_eta,
    phase,
    plan_total,
    read_totals,
    shown_total,
    status_line,
    sum_records,
)

ROOT = Path(__file__).resolve().parent.parent
NOISE = ("apitools", "Pipeline_options", "Discarding", "Loading weights", "semi_persistent")


# -- progress -------------------------------------------------------------------------------
def test_progress_sums_two_workers(tmp_path):
    (tmp_path / "101.json").write_text(json.dumps({"read": 500, "scored": 256, "dead": 2}))
    (tmp_path / "102.json").write_text(json.dumps({"read": 0, "scored": 512, "dead": 1}))
    (tmp_path / "103.json.77.tmp").write_text("{half a")  # being replaced: skipped
    t = read_totals(str(tmp_path))
    assert (t.read, t.scored, t.dead, t.workers) == (500, 768, 3, 2)
    assert t.done == 771
    assert sum_records([{"read": 1, "scored": 1}, {"dead": 4}]) == Totals(1, 1, 4, 2)


def test_worker_progress_files_add_up(tmp_path):
    a, b = Progress(), Progress()
    a.configure(str(tmp_path))
    a.add(read=10, scored=7, dead=1)
    a.flush()
    assert json.loads((tmp_path / f"{os.getpid()}.json").read_text()) == {
        "read": 10,
        "scored": 7,
        "dead": 1,
        "shards": 0,
        "reused": 0,
    }
    b.configure(str(tmp_path / "not-on-this-machine"))  # a remote worker: counts only
    b.add(read=5)
    b.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{os.getpid()}.json"]


def test_the_bar_says_starting_then_scoring_then_writing_then_done(tmp_path):
    out = io.StringIO()
    labels = []
    with ProgressDisplay(str(tmp_path), 1000, out) as display:
        for scored in (0, 10, 1000):
            (tmp_path / "1.json").write_text(json.dumps({"read": 1000, "scored": scored}))
            display._update(force=True)
            labels.append(display._bar.desc)
    assert labels == ["starting", "scoring", "writing"]
    assert out.getvalue().split("\r")[-1].startswith("done 100%")
    assert phase(Totals(5, 0, 0, 1), None) == "starting"  # read, none scored yet
    assert phase(Totals(5, 0, 1, 1), None) == "scoring"  # a dead letter is done too
    assert phase(Totals(5, 9, 0, 1), None) == "scoring"  # no total, no shard begun yet
    # A total estimated from file sizes can be more than the records there are: a shard
    # being built says scoring is over all the same.
    assert phase(Totals(900, 900, 0, 2, shards=1), 1000) == "writing"
    assert phase(Totals(9, 9, 0, 2, shards=1), None) == "writing"
    # ...and one that is less says nothing about the end of scoring: only an exact total does.
    assert phase(Totals(300, 204, 0, 2), 177, exact=False) == "scoring"
    assert phase(Totals(300, 204, 0, 2, shards=1), 177, exact=False) == "writing"


def _lines(text: str) -> list[str]:
    """What a log or CI page shows of a bar drawn to a file: each redraw a line."""
    return [seg.rstrip() for seg in re.split(r"[\r\n]", text) if seg.strip()]


def test_a_short_estimate_shows_a_count_then_the_true_total(tmp_path):
    """The plan estimated 177 records from file sizes; there are 508. Past the estimate the
    bar shows the count alone (no percentage, no "/?"), and once writing has begun every
    record is scored: the count is the total."""
    out = io.StringIO()
    drawn = []
    with ProgressDisplay(str(tmp_path), 177, out, exact=False) as display:
        for scored, shards in ((100, 0), (300, 0), (508, 1)):
            (tmp_path / "1.json").write_text(
                json.dumps({"read": 508, "scored": scored, "shards": shards})
            )
            display._update(force=True)
            drawn.append(_lines(out.getvalue())[-1])
    assert drawn[0].startswith("scoring  56%|") and "100/177" in drawn[0]
    assert drawn[1].startswith("scoring 300 [") and "ETA unknown" in drawn[1]
    assert drawn[2].startswith("writing 100%|") and "508/508" in drawn[2]
    final = _lines(out.getvalue())[-1]
    assert final.startswith("done 100%|") and "508/508" in final
    assert not any("/?" in line or " 0%|" in line for line in _lines(out.getvalue())[1:])
    assert shown_total(Totals(600, 600, 0, 1, shards=1), 1000, exact=False) == 600  # over-estimate
    assert shown_total(Totals(600, 600, 0, 1, shards=1), None) == 600  # a streamed input
    assert shown_total(Totals(600, 600, 0, 1), None) is None
    assert shown_total(Totals(90, 90, 0, 1, shards=1), 100, exact=True) == 100  # exact holds


def test_the_last_line_is_drawn_once(tmp_path):
    out = io.StringIO()
    with ProgressDisplay(str(tmp_path), 50, out) as display:
        (tmp_path / "1.json").write_text(json.dumps({"read": 50, "scored": 50}))
        display._update(force=True)
    lines = _lines(out.getvalue())
    assert [line.split()[0] for line in lines] == ["starting", "writing", "done"]
    assert out.getvalue().endswith("\n") and out.getvalue().count("done") == 1
    out = io.StringIO()  # a failed job: where it stopped, once, and no "done"
    with pytest.raises(RuntimeError), ProgressDisplay(str(tmp_path), 80, out):
        raise RuntimeError("boom")
    assert [line.split()[0] for line in _lines(out.getvalue())] == ["starting", "scoring"]


def test_a_shard_builder_reports_writing_to_the_bar(tmp_path):
    from pipelines.console.progress import Progress, read_totals

    worker = Progress()
    worker.configure(str(tmp_path))
    worker.add(scored=7)
    worker.add(shards=1)
    worker.flush()
    totals = read_totals(str(tmp_path))
    assert (totals.scored, totals.shards) == (7, 1) and phase(totals, 10_000) == "writing"


def test_a_bar_on_a_file_is_redrawn_every_15_s_at_most(tmp_path):
    out = io.StringIO()  # not a terminal
    with ProgressDisplay(str(tmp_path), 1000, out) as display:
        drawn = out.getvalue().count("\r")
        for _ in range(20):  # what the polling thread does every 0.5 s
            display._update()
        assert out.getvalue().count("\r") == drawn


def test_eta_from_total_and_none_without():
    assert eta_seconds(250, 1000, 10.0) == pytest.approx(30.0)
    assert format_eta(eta_seconds(250, 1000, 10.0)) == "ETA 00:30"
    assert format_eta(3725) == "ETA 1:02:05"
    assert eta_seconds(250, None, 10.0) is None
    assert format_eta(None) == "ETA unknown"
    assert eta_seconds(1200, 1000, 10.0) is None  # past an estimated total: unknown
    assert "ETA 00:30" in status_line(Totals(400, 250, 0, 2), 1000, 10.0)
    line = status_line(Totals(400, 250, 0, 2), None, 10.0)
    assert "ETA unknown" in line and "25.0 docs/s" in line and "workers 2" in line


def test_plan_total_known_or_not():
    class P:
        rows, streamed = 6407, False

    assert plan_total(P) == 6407
    P.streamed = True  # a Hub stream: its size is a guess
    assert plan_total(P) is None


# -- redaction, log path, error line ---------------------------------------------------------
def test_secret_option_values_are_redacted():
    args = ["--s3_secret_access_key=S3CRETVALUE", "--s3_access_key_id", "AKIAEXAMPLE", "--x=1"]
    assert secret_values(args) == ["S3CRETVALUE", "AKIAEXAMPLE"]
    r = Redactor(secret_values(args))
    text = (
        "Pipeline_options: {'s3_secret_access_key': 'S3CRETVALUE', 'runner': 'DirectRunner'} "
        "argv --s3_access_key_id AKIAEXAMPLE --hf_token=hf_abc123 "
        "Discarding unparseable args: [\\'--api_password=hunter22\\']"
    )
    out = r(text)
    for secret in ("S3CRETVALUE", "AKIAEXAMPLE", "hf_abc123", "hunter22"):
        assert secret not in out
    assert "'runner': 'DirectRunner'" in out and "***" in out


def test_default_log_path(tmp_path):
    assert default_log_path(str(tmp_path / "new")) == (str(tmp_path / "new" / "gradum.log"), False)
    (tmp_path / "ds" / "shards").mkdir(parents=True)
    assert default_log_path(str(tmp_path / "ds"))[0] == str(tmp_path / "ds" / "gradum.log")
    (tmp_path / "file").write_text("x")
    assert default_log_path(str(tmp_path / "file"))[1] is True
    assert default_log_path("gs://bucket/run1")[1] is True


def test_a_refused_job_writes_nothing_not_even_its_log(tmp_path, capsys):
    """The log goes to a pending file until the output is checked and claimed: a job refused
    beside someone's files leaves no gradum.log among them, and its error names no log."""
    from pipelines.job import launch

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    cfg = launch.JobConfig(inputs=["builtin:graded?n=5"], output=str(tmp_path / "mine"))
    status, _ = launch.run_console_job(cfg, ["--direct_running_mode=in_memory"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "gradum did not write" in err and "(log:" not in err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]


def test_one_line_error_from_a_remote_traceback():
    exc = RuntimeError(
        "Pipeline job failed:\nTraceback (most recent call last):\n  File 'x.py', line 3\n"
        "    boom()\nValueError: the model file is corrupt [while running 'Score/RunInference']\n"
    )
    assert one_line_error(exc) == "ValueError: the model file is corrupt"
    assert one_line_error(OSError("disk full")) == "OSError: disk full"


def test_unexpected_failure_is_one_line_with_the_log(tmp_path, monkeypatch, capsys):
    from pipelines.job import launch as score

    def explode(cfg, beam_args, console=None):
        print("library chatter on stdout")
        raise RuntimeError("worker died\nTraceback ...\nMemoryError: out of memory")

    monkeypatch.setattr(score, "run_job", explode)
    cfg = score.JobConfig(inputs=["x.jsonl"], output=str(tmp_path / "out"))
    status, manifest = score.run_console_job(cfg, ["--s3_secret_access_key=ZZSECRET"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and manifest is None
    # It failed before claiming its output: the log stays where it was being written.
    assert err[-1].startswith("gradum score: failed: MemoryError: out of memory (log: ")
    log = err[-1].split("(log: ", 1)[1].rstrip(")")
    assert not (tmp_path / "out").exists()
    text = open(log).read()
    assert "Traceback" in text and "worker died" in text and "ZZSECRET" not in text


def test_console_restores_descriptors_and_logging(tmp_path):
    import logging

    before = (list(logging.getLogger().handlers), os.fstat(1).st_ino, os.fstat(2).st_ino)
    with JobConsole(str(tmp_path / "a.log"), argv=[]) as c:
        os.write(2, b"raw fd 2 write\n")
        logging.getLogger("apache_beam.x").info("an INFO record")
        c.say("for the console")
    after = (list(logging.getLogger().handlers), os.fstat(1).st_ino, os.fstat(2).st_ino)
    assert before == after
    text = (tmp_path / "a.log").read_text()
    assert "raw fd 2 write" in text and "an INFO record" in text and "for the console" in text


# -- the real thing, in a subprocess ---------------------------------------------------------
def _gradum(*argv, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "gradum_cli.main", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )


SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.mark.slow
def test_score_console_is_quiet_and_the_log_has_the_rest(tmp_path):
    out = tmp_path / "out"
    job = ["builtin:graded?n=300", "--signals", "readability", "--output", str(out)]
    beam = [
        "--direct_num_workers=2",
        "--s3_access_key_id=AKIDEXAMPLE",
        f"--s3_secret_access_key={SECRET}",
    ]
    r = _gradum("score", *job, *beam, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for noise in NOISE:
        assert noise not in r.stderr, r.stderr
    assert "300 records read, 300 written, 0 dead-lettered" in r.stderr
    bar = [line for line in _lines(r.stderr) if line.startswith("done ")]
    assert len(bar) == 1 and "300/300" in bar[0], r.stderr  # the last line, once
    assert f"log -> {out / 'gradum.log'}" in r.stderr
    assert r.stdout == ""
    log = (out / "gradum.log").read_text()
    assert "Pipeline_options" in log  # the workers' logging reached the file ...
    assert SECRET not in log + r.stderr + r.stdout  # ... without the key

    r = _gradum("score", *job, "--overwrite", "-v", *beam, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Pipeline_options" in r.stderr and SECRET not in r.stderr + r.stdout


@pytest.mark.slow
def test_score_error_is_one_line_naming_the_log(tmp_path):
    log = tmp_path / "elsewhere.log"
    r = _gradum(
        "score", str(tmp_path / "missing-*.jsonl"), "-o", str(tmp_path / "o"), "--log-file",
        str(log), cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("gradum score: error: ") and lines[-1].endswith(f"(log: {log})")
    assert "matches no file" in lines[-1]
    assert len(lines) == 1
    assert log.exists()
