"""`gradum shards` CLI: output and exit codes."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pyarrow as pa
import pytest

import shards
from shards import cli


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ds"
    rng = np.random.default_rng(1)
    n = 60
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": pa.array(
                [f"line one {i}\nline two " + "x" * 100 for i in range(n)], pa.large_string()
            ),
            "perplexity": rng.random(n).astype(np.float32) * 10,
            "readability": rng.random(n).astype(np.float32),
            "cluster": (np.arange(n) % 3).astype(np.int32),
            "difficulty": (np.arange(n) / n).astype(np.float32),
        }
    )
    signals = [
        {"name": "perplexity", "version": "1", "direction": 1, "params": {}},
        {"name": "readability", "version": "1", "direction": -1, "params": {}},
    ]
    shards.write_dataset(
        out,
        table,
        max_rows=25,
        signals=signals,
        clusters={"k": 3},
        counts={"input": 62, "written": 60, "dead_letter": 2},
    )
    return out


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_register_with_lead_parser(ds, capsys):
    p = argparse.ArgumentParser(prog="gradum")
    sub = p.add_subparsers(dest="command")
    cli.register(sub)
    args = p.parse_args(["shards", "validate", str(ds)])
    assert args.func(args) == 0
    assert "OK" in capsys.readouterr().out
    args = p.parse_args(["shards"])
    assert args.func(args) == 2


def test_summary(ds, capsys):
    code, out, _ = run(capsys, "summary", ds)
    assert code == 0
    assert "rows        60" in out and "shards      3" in out
    assert "input 62 = written 60 + dead_letter 2" in out
    assert "clusters    3" in out and "perplexity" in out and "median" in out
    code, out, _ = run(capsys, "summary", ds, "--json")
    info = json.loads(out)
    assert (
        info["rows"] == 60
        and info["clusters"] == 3
        and info["signals"] == ["perplexity", "readability"]
    )
    assert len(info["stats"]["perplexity"]["quantiles"]) == 101


def test_head(ds, capsys):
    code, out, _ = run(
        capsys,
        "head",
        ds,
        "-n",
        "3",
        "--sort",
        "difficulty",
        "--desc",
        "--columns",
        "id,text,difficulty",
        "--where",
        "cluster==1",
        "--width",
        "30",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "text", "difficulty"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["r58", "r55", "r52"]
    assert "…" in out and "\n" not in lines[2]  # shortened, one line per row
    assert "(3 of 60 rows)" in out
    code, out, _ = run(capsys, "head", ds, "-n", "2", "--where", "id=r7", "--columns", "id")
    assert code == 0 and "r7" in out and "(1 of 60 rows)" in out


def test_hist(ds, capsys, tmp_path):
    code, out, _ = run(capsys, "hist", ds, "difficulty", "--bins", "4")
    assert code == 0 and out.count("█") > 0 and "60 values" in out
    png = tmp_path / "h.png"
    code, out, _ = run(capsys, "hist", ds, "perplexity", "--png", png)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    code, _, err = run(capsys, "hist", ds, "text")
    assert code == 2 and "not numeric" in err


def test_clusters(ds, capsys):
    code, out, _ = run(capsys, "clusters", ds)
    assert code == 0 and "(3 clusters)" in out
    row0 = out.splitlines()[2].split()
    assert row0[:2] == ["0", "20"] and float(row0[2]) == pytest.approx(0.475, abs=1e-3)


def test_report(ds, capsys, tmp_path):
    page = tmp_path / "r.html"
    code, _, _ = run(capsys, "report", ds, "--html", page)
    html = page.read_text()
    assert code == 0 and html.count("<svg") == 3  # perplexity, readability, difficulty
    for s in ("Correlation", "Difficulty by cluster", "Accounting", "dead_letter"):
        assert s in html
    assert "http" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained


def test_validate_exit_codes(ds, capsys, tmp_path):
    code, out, _ = run(capsys, "validate", ds)
    assert code == 0 and out.startswith("OK")
    bad = tmp_path / "bad"
    shards.write_dataset(bad, pa.table({"x": [1.0, 2.0]}))
    os.remove(bad / "shards/part-00000.arrow")
    code, out, err = run(capsys, "validate", bad)
    assert code == 1 and "part-00000.arrow" in out and "missing" in out and "1 problem" in err
    os.remove(bad / "manifest.json")
    code, out, _ = run(capsys, "validate", bad)
    assert code == 1 and "incomplete dataset" in out


@pytest.mark.parametrize("cmd", ["summary", "head", "clusters"])
def test_error_messages(capsys, tmp_path, cmd):
    code, out, err = run(capsys, cmd, tmp_path / "nope")
    assert (
        code == 2
        and out == ""
        and err.startswith("gradum shards: error:")
        and "no such file" in err
    )
    code, _, err = run(capsys, cmd, tmp_path)
    assert code == 2 and "not a gradum dataset" in err
    (tmp_path / "shards").mkdir()
    code, _, err = run(capsys, cmd, tmp_path)
    assert code == 2 and "incomplete dataset" in err


def test_bad_arguments(ds, capsys):
    code, _, err = run(capsys, "head", ds, "--sort", "nope")
    assert code == 2 and "unknown column" in err and "'nope'" in err
    code, _, err = run(capsys, "head", ds, "--where", "difficulty ~ 3")
    assert code == 2 and "bad filter" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["summary"])
    assert e.value.code == 2
