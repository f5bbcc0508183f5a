"""`gradum shards report`: what the page holds, that it is self-contained, and that it degrades
without matplotlib (the browser check is in test_report_browser.py)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pytest

import shards
from gradum_cli.main import main as gradum
from shards import cli as shards_cli
from shards import report
from shards.report_data import cluster_rows, dead_letter_summary, spearman


def _dataset(out, n=300, seed=3, dead=("empty text",), clusters=True):
    rng = np.random.default_rng(seed)
    d = rng.random(n).astype(np.float32)
    cols = {
        "id": [f"r{i}" for i in range(n)],
        "text": pa.array([f"text number {i}" for i in range(n)], pa.large_string()),
        "readability": (100 - 50 * d).astype(np.float32),
        "length": rng.integers(10, 200, n).astype(np.int32),
        "difficulty": d,
    }
    if clusters:
        cl = (np.arange(n) % 4).astype(np.int32)
        cols["cluster"] = pa.array(cl, mask=np.arange(n) % 50 == 49)  # a few null clusters
    with shards.DeadLetterWriter(out, "validate-00000") as w:
        for i, reason in enumerate(dead):
            w.write(reason, {"source": "in.jsonl", "position": i}, stage="validate")
    signals = [
        {"name": "readability", "version": "1", "direction": -1, "params": {"x": 1}},
        {"name": "length", "version": "1", "direction": 1, "params": {}},
    ]
    return shards.write_dataset(
        out,
        pa.table(cols),
        max_rows=max(1, n // 3),
        signals=signals,
        counts={"input": n + len(dead), "written": n, "dead_letter": len(dead)},
    )


class _Page(HTMLParser):
    """Tags, attribute URLs, data-count cells and section titles of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.counts: dict[str, str] = {}
        self.alts: list[str] = []
        self._count: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "action") and v]
        if tag == "img":
            self.alts.append(a.get("alt", ""))
        if "data-count" in a:
            self._count = a["data-count"]
            self.counts[self._count] = ""

    def handle_endtag(self, tag):
        self._count = None

    def handle_data(self, data):
        if self._count:
            self.counts[self._count] += data


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "ds"
    manifest = _dataset(out, dead=("text is 12 bytes, over the cap of 10",) * 2 + ("empty text",))
    return out, manifest


def _render(capsys, tmp_path, argv):
    """Run ``gradum shards report`` (argv starts with "shards") or the standalone shards CLI."""
    page = tmp_path / "r.html"
    run = gradum if argv[0] == "shards" else shards_cli.main
    assert run([*argv, "--html", str(page)]) == 0
    capsys.readouterr()
    return page.read_text(encoding="utf-8")


def test_counts_on_the_page_equal_the_manifest(ds, capsys, tmp_path):
    out, manifest = ds
    p = _Page(_render(capsys, tmp_path, ["shards", "report", str(out)]))
    shown = {k: int(v.replace(",", "")) for k, v in p.counts.items()}
    c = manifest["counts"]
    assert shown == {
        "input": c["input"],
        "written": c["written"],
        "dead_letter": c["dead_letter"],
        "rows": 300,
        "dead_letter_lines": 3,
    }


def test_page_is_self_contained_with_every_section(ds, capsys, tmp_path):
    out, _ = ds
    text = _render(capsys, tmp_path, ["shards", "report", str(out)])
    p = _Page(text)
    assert "script" not in p.tags and "iframe" not in p.tags
    assert all(u.startswith(("data:", "#")) for u in p.urls), p.urls
    assert "@import" not in text and "url(" not in text
    assert p.alts == ["difficulty against each signal", "cluster sizes", "curriculum preview"]
    assert text.count("<svg") == 3  # histograms: readability, length, difficulty
    for title in (
        "Accounting",
        "Signals",
        "Difficulty against each signal",
        "Difficulty by cluster",
        "Curriculum preview",
        "Dead letters",
        "Manifest",
    ):
        assert f"<h2>{title}</h2>" in text
    assert "text is N bytes, over the cap of N</td><td class=num>2<" in text
    assert "input = written + dead_letter" in text


def test_standalone_shards_cli_says_where_the_preview_is(ds, capsys, tmp_path):
    out, _ = ds
    text = _render(capsys, tmp_path, ["report", str(out)])
    assert "Not included" in text and "gradum shards report" in text
    assert _Page(text).alts == ["difficulty against each signal", "cluster sizes"]


def test_without_matplotlib_the_page_says_so(ds, capsys, tmp_path, monkeypatch):
    out, _ = ds
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    text = _render(capsys, tmp_path, ["shards", "report", str(out)])
    assert "<img" not in text
    assert text.count("gradum[plot]") >= 3  # page top, scatter, clusters, preview
    assert text.count("<svg") == 3  # the histograms need only numpy
    assert "mean difficulty served: " in text  # the preview falls back to a sparkline


def test_dead_letters_that_disagree_with_the_manifest_are_flagged(tmp_path, capsys):
    out = tmp_path / "ds"
    _dataset(out, dead=("empty text", "empty text"))
    (out / "dead_letter" / "validate-00000.jsonl").write_text(
        '{"reason": "empty text", "stage": "validate"}\nnot json\n{"reason": "empty text"}\n'
    )
    text = _render(capsys, tmp_path, ["shards", "report", str(out)])
    assert "(the manifest counts 2)" in text
    assert "1 line(s) are not JSON objects" in text


def test_dead_letter_summary_groups_reasons(tmp_path):
    with shards.DeadLetterWriter(tmp_path, "a") as w:
        w.write("text is 5 bytes, over the cap of 4", {"source": "f", "position": 1}, "validate")
        w.write("text is 9 bytes, over the cap of 4", {"source": "f", "position": 2}, "validate")
        w.write("boom", "raw payload", "score")
    with shards.DeadLetterWriter(tmp_path, "b") as w:
        w.write("text is 7 bytes, over the cap of 4", {"source": "g", "position": 0}, "validate")
    s = dead_letter_summary(tmp_path)
    assert (s.files, s.total, s.unreadable_lines) == (2, 4, 0)
    got = [(r.stage, r.pattern, r.count, r.example_where) for r in s.reasons]
    assert got == [
        ("validate", "text is N bytes, over the cap of N", 3, "f:1"),
        ("score", "boom", 1, "dead_letter/a.jsonl"),
    ]
    assert dead_letter_summary(tmp_path / "none").total == 0


def test_cluster_rows_give_true_extremes(tmp_path):
    out = tmp_path / "ds"
    _dataset(out, n=203, seed=5)
    ss = shards.ShardSet.open(out)
    rows, total = cluster_rows(ss, limit=3)
    cl = ss.table(["cluster"]).column("cluster").to_pylist()
    d = ss.column("difficulty")
    texts = ss.column("text")
    assert total == 4 and len(rows) == 3
    sizes = {k: sum(1 for c in cl if c == k) for k in range(4)}
    assert [r.size for r in rows] == sorted(sizes.values(), reverse=True)[:3]
    for r in rows:
        members = [i for i, c in enumerate(cl) if c == r.cluster]
        lo, hi = min(members, key=lambda i: d[i]), max(members, key=lambda i: d[i])
        assert r.easiest == (pytest.approx(float(d[lo])), texts[lo])
        assert r.hardest == (pytest.approx(float(d[hi])), texts[hi])
        assert r.mean_difficulty == pytest.approx(float(np.mean(d[members])), rel=1e-5)


def test_big_sets_are_sampled_and_hexbinned(tmp_path, capsys, monkeypatch):
    out = tmp_path / "big"
    _dataset(out, n=12_000, dead=(), clusters=False)
    monkeypatch.setattr(report, "HIST_ROWS", 5_000)
    monkeypatch.setattr(report, "SCATTER_ROWS", 11_000)
    text = _render(capsys, tmp_path, ["report", str(out)])
    assert "Over 5,000 sampled rows." in text
    assert "No cluster column" in text
    assert _Page(text).alts == ["difficulty against each signal"]


def test_minimal_dataset_and_unwritable_path(tmp_path, capsys):
    out = tmp_path / "min"
    shards.write_dataset(out, pa.table({"x": [1.0, 2.0, float("nan")]}))
    text = _render(capsys, tmp_path, ["shards", "report", str(out)])
    assert "No cluster column" in text and "No difficulty column" in text
    code = gradum(["shards", "report", str(out), "--html", str(tmp_path / "no/such/dir/r.html")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the report" in err and "no/such/dir" in err


def test_spearman_matches_definition():
    x = np.array([1.0, 2.0, 2.0, 3.0, 10.0])
    y = np.array([5.0, 6.0, 7.0, 7.0, 20.0])
    rx, ry = np.array([0, 1.5, 1.5, 3, 4]), np.array([0, 1, 2.5, 2.5, 4])
    assert spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert np.isnan(spearman(x, np.ones(5)))


def test_shards_report_imports_no_other_gradum_package(ds, tmp_path):
    out, _ = ds
    code = (
        "import sys\n"
        "from shards.cli import main\n"
        f"assert main(['report', {str(out)!r}, '--html', {str(tmp_path / 'r.html')!r}]) == 0\n"
        "print('LOADED:' + ','.join(m for m in ('sampler', 'pipelines', 'scorers', 'gradum_cli') "
        "if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip().splitlines()[-1] == "LOADED:"


def test_demo_ends_with_the_report_and_three_commands(ds, tmp_path, capsys):
    from gradum_cli.previews import report_sections
    from pipelines.demo import REPORT_NAME, _write_report

    out = tmp_path / "demo out"
    shutil.copytree(ds[0], out)
    args = argparse.Namespace(output=str(out), clusters=4, report_sections=report_sections)
    assert _write_report(args) == 0
    printed = capsys.readouterr().out
    page = out / REPORT_NAME
    assert f"open file://{page.resolve()}" in printed
    assert 'alt="curriculum preview"' in page.read_text(encoding="utf-8")
    tries = printed.split("== try next")[1].strip().splitlines()
    assert len(tries) == 3 and all(t.strip().startswith("gradum ") for t in tries)
    assert f"'{out}'" in tries[0]  # quoted: the path has a space
