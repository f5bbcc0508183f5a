"""The dataset report: one self-contained HTML page (inline SVG and base64 PNG, no script, no
external CSS, font or image), so it opens offline and can be mailed as one file.

Sections: accounting (the manifest's counts, each cell marked ``data-count="NAME"``), signal
histograms, rank correlations, difficulty against each signal, clusters (sizes, easiest and
hardest text per cluster), dead-letter reasons, then any extra sections the caller passes
(``gradum shards report`` adds the sampler's curriculum preview this way: ``shards`` imports no
other gradum package, so the composition happens in the ``gradum`` dispatcher). Figures that
need matplotlib (the ``plot`` extra) become a note saying so when it is missing.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import plots
from .reader import ShardSet
from .report_data import (
    cluster_rows,
    dead_letter_summary,
    numeric_columns,
    sample_indices,
    spearman_matrix,
)
from .stats import is_numeric

HIST_ROWS = 1_000_000  # histograms and correlations use at most this many sampled rows
SCATTER_ROWS = 20_000  # difficulty-against-signal panels use at most this many
TEXT_CHARS = 240
_SKIP = {"cluster", "bucket", "difficulty"}


@dataclass(frozen=True)
class ReportSection:
    """A titled part of the page. ``body`` is trusted HTML made by code (for a figure, use
    :func:`shards.plots.img_tag`; for text, escape it with :func:`html.escape`)."""

    title: str
    body: str
    anchor: str = ""


SectionProvider = Callable[[ShardSet], Sequence[ReportSection]]


def write_report(
    out: str | os.PathLike,
    html_path: str | os.PathLike,
    sections: SectionProvider | None = None,
    open_options: dict[str, Any] | None = None,
) -> Path:
    """Open the dataset at ``out`` (``ShardSet.open(out, **open_options)``), render its report
    (plus ``sections(ss)`` when given) and write it to ``html_path``; return that path."""
    ss = ShardSet.open(out, **(open_options or {}))
    extra = list(sections(ss)) if sections is not None else None
    page = render_report(ss, extra)
    path = Path(html_path)
    path.write_text(page, encoding="utf-8")
    return path


def render_report(ss: ShardSet, extra: Sequence[ReportSection] | None = None) -> str:
    """The page as a string. ``extra`` sections go after the clusters; ``None`` (no provider
    was given) adds a note on how to get the curriculum preview."""
    m = ss.manifest
    names = _signal_names(ss)
    can_plot = plots.have_matplotlib()
    hist_rows = sample_indices(ss.num_rows, HIST_ROWS)
    cols = numeric_columns(ss, names, hist_rows)
    sections = [
        ReportSection("Accounting", _accounting(ss), "accounting"),
        ReportSection("Signals", _signals(m, names, cols, hist_rows is not None), "signals"),
        ReportSection("Difficulty against each signal", _scatter(ss, names, can_plot), "scatter"),
        ReportSection("Difficulty by cluster", _clusters(ss, can_plot), "clusters"),
    ]
    if extra is None:
        extra = [
            ReportSection(
                "Curriculum preview",
                "<p class=note>Not included: the preview comes from the sampler package; "
                "<code>gradum shards report</code> adds it.</p>",
                "preview",
            )
        ]
    sections += list(extra)
    sections.append(ReportSection("Dead letters", _dead_letters(ss), "dead-letters"))
    sections.append(ReportSection("Manifest", _manifest_details(m), "manifest"))
    return _page(ss, sections, can_plot)


# sections ------------------------------------------------------------------------------
def _signal_names(ss: ShardSet) -> list[str]:
    """The manifest's signals present as numeric columns, plus ``difficulty``; every numeric
    column (but cluster / bucket) when the manifest names none."""
    numeric = [f.name for f in ss.schema if is_numeric(f.type)]
    declared = [s.get("name") for s in ss.manifest.get("signals") or [] if isinstance(s, dict)]
    names = [n for n in declared if n in numeric and n not in _SKIP]
    if not names:
        names = [n for n in numeric if n not in _SKIP]
    return names + (["difficulty"] if "difficulty" in numeric else [])


def _accounting(ss: ShardSet) -> str:
    c = ss.manifest.get("counts") or {}
    cells = []
    for key in ("input", "written", "dead_letter"):
        v = c.get(key)
        shown = f"{v:,}" if isinstance(v, int) else html.escape(str(v))
        cells.append(f'<tr><th>{key}</th><td class=num data-count="{key}">{shown}</td></tr>')
    cells.append(
        f'<tr><th>rows in shards</th><td class=num data-count="rows">{ss.num_rows:,}</td></tr>'
    )
    cells.append(f"<tr><th>shards</th><td class=num>{ss.num_shards:,}</td></tr>")
    if all(isinstance(c.get(k), int) for k in ("input", "written", "dead_letter")):
        holds = c["input"] == c["written"] + c["dead_letter"] and c["written"] == ss.num_rows
        verdict = (
            "<p class=ok>input = written + dead_letter, and written = rows in the shards.</p>"
            if holds
            else "<p class=bad>The counts do not add up: run <code>gradum shards validate</code>."
            "</p>"
        )
    else:
        verdict = "<p class=note>The manifest holds no complete counts.</p>"
    return f"<table>{''.join(cells)}</table>{verdict}"


def _signals(m: dict[str, Any], names: list[str], cols: list[Any], sampled: bool) -> str:
    if not names:
        return "<p class=note>No numeric signal columns.</p>"
    meta = {s.get("name"): s for s in m.get("signals") or [] if isinstance(s, dict)}
    weights = (m.get("options") or {}).get("difficulty_weights") or {}
    rows = []
    for n in names:
        s = meta.get(n, {})
        d = s.get("direction")
        params = _params(s)
        version = str(s.get("version", ""))
        weight = weights.get(n, "-" if weights else "")
        if n == "difficulty" and not s:  # the combined score, not a scorer's output
            d, version, weight = 1, "combined", ""
            params = "rank-combined signals, weights in the next column" if weights else ""
        if s.get("scorer") not in (None, n):
            params = f"<b>scorer {html.escape(str(s['scorer']))}</b><br>{params}"
        arrow = {1: "+1 (larger is harder)", -1: "-1 (larger is easier)"}.get(d, "")
        rows.append(
            f"<tr><th>{html.escape(n)}</th><td>{html.escape(version)}</td><td>{arrow}</td>"
            f"<td class=num>{html.escape(str(weight))}</td><td class=params>{params}</td></tr>"
        )
    table = (
        "<table><tr><th>signal</th><th>version</th><th>direction</th>"
        "<th>weight in difficulty</th><th>parameters</th></tr>"
        f"{''.join(rows)}</table>"
    )
    hists = "".join(
        f"<figure class=hist><figcaption>{html.escape(n)}</figcaption>{plots.svg_hist(c)}</figure>"
        for n, c in zip(names, cols, strict=True)
    )
    note = f"<p class=note>Over {HIST_ROWS:,} sampled rows.</p>" if sampled else ""
    return (
        f"{table}<h3>Histograms</h3>{note}<div class=grid>{hists}</div>"
        f"<h3>Correlation between signals (Spearman)</h3>{_corr_table(names, cols)}"
    )


def _params(signal: dict[str, Any]) -> str:
    """A signal's parameters as ``key: value`` lines (the scorer's own ``params`` when the
    manifest nests the scorer's whole spec)."""
    p = signal.get("params")
    if isinstance(p, dict) and isinstance(p.get("params"), dict):
        p = p["params"]
    if not isinstance(p, dict) or not p:
        return ""
    return "<br>".join(
        f"{html.escape(str(k))}: <code>{html.escape(v if isinstance(v, str) else json.dumps(v))}"
        "</code>"
        for k, v in p.items()
    )


def _corr_table(names: list[str], cols: list[Any]) -> str:
    if len(names) < 2:
        return "<p class=note>Fewer than two signals.</p>"
    corr = spearman_matrix(cols)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for i, n in enumerate(names):
        cells = []
        for r in corr[i]:
            if r == r:
                rgb = "214,96,77" if r < 0 else "67,147,195"
                cells.append(
                    f'<td class=num style="background:rgba({rgb},{abs(r):.2f})">{r:.2f}</td>'
                )
            else:
                cells.append("<td>-</td>")
        body.append(f"<tr><th>{html.escape(n)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>"


def _scatter(ss: ShardSet, names: list[str], can_plot: bool) -> str:
    others = [n for n in names if n != "difficulty"]
    if "difficulty" not in names or not others:
        return "<p class=note>Needs a difficulty column and at least one signal.</p>"
    if not can_plot:
        return f"<p class=note>{plots.PLOT_EXTRA_NOTE}</p>"
    rows = sample_indices(ss.num_rows, SCATTER_ROWS, seed=1)
    cols = numeric_columns(ss, others + ["difficulty"], rows)
    fig = plots.difficulty_scatter(others, cols[:-1], cols[-1], ss.num_rows)
    return plots.img_tag(fig, "difficulty against each signal")


def _clusters(ss: ShardSet, can_plot: bool) -> str:
    if "cluster" not in ss.column_names:
        return "<p class=note>No cluster column: clustering did not run.</p>"
    rows, total = cluster_rows(ss)
    if not rows:
        return "<p class=note>Every row has a null cluster.</p>"
    chart = (
        plots.img_tag(
            plots.cluster_sizes(
                [r.cluster for r in rows], [r.size for r in rows], [r.mean_difficulty for r in rows]
            ),
            "cluster sizes",
        )
        if can_plot
        else f"<p class=note>{plots.PLOT_EXTRA_NOTE}</p>"
    )
    shown = f"the {len(rows)} largest of {total:,}" if total > len(rows) else f"all {total:,}"
    body = [
        "<table class=clusters><tr><th>cluster</th><th>rows</th><th>mean difficulty</th>"
        "<th>easiest text (difficulty)</th><th>hardest text (difficulty)</th></tr>"
    ]
    for r in rows:
        md = "-" if r.mean_difficulty is None else f"{r.mean_difficulty:.3f}"
        body.append(
            f"<tr><td class=num>{r.cluster}</td><td class=num>{r.size:,}</td>"
            f"<td class=num>{md}</td><td>{_example(r.easiest)}</td>"
            f"<td>{_example(r.hardest)}</td></tr>"
        )
    body.append("</table>")
    return f"{chart}<p>Clusters shown: {shown}, largest first.</p>{''.join(body)}"


def _example(ex: tuple[float, str] | None) -> str:
    if ex is None:
        return "-"
    d, text = ex
    flat = " ".join(text.split())
    cut = flat[:TEXT_CHARS] + ("…" if len(flat) > TEXT_CHARS else "")
    return f"{html.escape(cut)} <span class=d>({d:.3f})</span>"


def _dead_letters(ss: ShardSet) -> str:
    s = dead_letter_summary(ss.root)
    expected = (ss.manifest.get("counts") or {}).get("dead_letter")
    if s.total == 0 and expected in (0, None):
        return (
            '<p class=ok><span data-count="dead_letter_lines">0</span> dead letters: every input '
            "record was written.</p>"
        )
    head = (
        f'<p><span data-count="dead_letter_lines">{s.total:,}</span> dead-letter line(s) in '
        f"{s.files} file(s) under <code>dead_letter/</code>"
    )
    if isinstance(expected, int) and expected != s.total:
        head += f" <span class=bad>(the manifest counts {expected:,})</span>"
    head += ".</p>"
    if s.unreadable_lines:
        head += f"<p class=bad>{s.unreadable_lines:,} line(s) are not JSON objects.</p>"
    if not s.reasons:
        return head
    rows = "".join(
        f"<tr><td>{html.escape(r.stage)}</td><td>{html.escape(r.pattern)}</td>"
        f"<td class=num>{r.count:,}</td><td>{html.escape(r.example_reason)}<br>"
        f"<span class=d>{html.escape(r.example_where)}</span></td></tr>"
        for r in s.reasons
    )
    return (
        f"{head}<table><tr><th>stage</th><th>reason (numbers as N)</th><th>count</th>"
        f"<th>example</th></tr>{rows}</table>"
    )


def _manifest_details(m: dict[str, Any]) -> str:
    short = {k: v for k, v in m.items() if k not in ("stats", "shards")}
    text = html.escape(json.dumps(short, indent=2, default=str))
    return (
        "<details><summary>manifest.json without stats and the shard list</summary>"
        f"<pre>{text}</pre></details>"
    )


# page ----------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;
max-width:1200px;padding:1.5em 2em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em} nav a{margin-right:1em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top;font-size:13px} th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.clusters td{max-width:420px} td.params{font-size:12px;max-width:560px} .d{color:#777;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:.5em 1.5em} figure{margin:0}
figcaption{font-weight:600;font-size:13px} img{max-width:100%;height:auto}
.note{color:#666;font-style:italic} .ok{color:#1a7f37} .bad{color:#b42318;font-weight:600}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:12px}
"""


def _page(ss: ShardSet, sections: list[ReportSection], can_plot: bool) -> str:
    m = ss.manifest
    title = html.escape(f"gradum report: {ss.root}")
    nav = "".join(
        f'<a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a>'
        for s in sections
        if s.anchor
    )
    body = "".join(
        f'<section id="{html.escape(s.anchor)}"><h2>{html.escape(s.title)}</h2>{s.body}</section>'
        if s.anchor
        else f"<section><h2>{html.escape(s.title)}</h2>{s.body}</section>"
        for s in sections
    )
    plot_note = (
        ""
        if can_plot
        else "<p class=bad>matplotlib is not installed, so only the histograms are drawn: "
        "<code>pip install 'gradum[plot]'</code> and run the report again.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title><style>{_CSS}</style></head><body>
<h1>{title}</h1>
<p>{ss.num_rows:,} rows in {ss.num_shards:,} shard(s); format v{html.escape(str(m.get("format_version")))},
gradum {html.escape(str(m.get("gradum_version")))}, created {html.escape(str(m.get("created")))}.</p>
{plot_note}<nav>{nav}</nav>
{body}
</body></html>
"""
