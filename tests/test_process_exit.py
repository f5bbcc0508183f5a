"""The command-line entry points end without Python's finalisation
(:mod:`pipelines.console.process_exit`), yet nothing a normal exit would do is lost: the exit
code, buffered output, ``atexit`` handlers, and a thread still running."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    script = textwrap.dedent(code).format(tmp=str(tmp_path))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_exit_code_buffered_output_and_atexit_handlers_survive(tmp_path):
    out = _run(
        """
        import atexit, logging, pathlib, sys
        from pipelines.console.process_exit import exit_process
        log = logging.getLogger("t")
        log.addHandler(logging.FileHandler("{tmp}/log.txt"))
        log.warning("logged before exit")
        atexit.register(lambda: pathlib.Path("{tmp}/atexit").write_text("ran"))
        sys.stdout.write("x" * 100_000)  # buffered: no newline, no flush
        sys.stderr.write("to stderr")
        exit_process(3)
        """,
        tmp_path,
    )
    assert out.returncode == 3
    assert out.stdout == "x" * 100_000 and out.stderr == "to stderr"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "log.txt").read_text() == "logged before exit\n"


def test_a_thread_still_running_is_waited_for(tmp_path):
    out = _run(
        """
        import pathlib, threading, time
        from pipelines.console.process_exit import exit_process
        def late():
            time.sleep(0.3)
            pathlib.Path("{tmp}/late").write_text("done")
        threading.Thread(target=late).start()
        exit_process(0)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "late").read_text() == "done"


def test_the_gradum_command_exits_through_it(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "one short line"}\n{"text": "and another, a little longer"}\n')
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.score", str(src), "--output", str(tmp_path / "out"),
         "--signals", "length", "--no-progress"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "2 records read, 2 written" in out.stderr
    assert (tmp_path / "out" / "manifest.json").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "pipelines.score", str(tmp_path / "missing.jsonl"), "--output",
         str(tmp_path / "out2")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode != 0 and bad.stderr.strip()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["gradum"] == "gradum_cli.main:run"
