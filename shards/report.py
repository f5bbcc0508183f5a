"""render_report: one self-contained HTML page (inline SVG, no external assets)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from .reader import ShardSet
from .stats import is_numeric

_SKIP = {"cluster", "bucket"}


def _svg_hist(values: np.ndarray, bins: int = 30, w: int = 320, h: int = 140) -> str:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "<p><em>no finite values</em></p>"
    counts, edges = np.histogram(v, bins=bins)
    peak = max(int(counts.max()), 1)
    bw = w / len(counts)
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{h - 20 - (h - 20) * c / peak:.1f}" width="{bw - 1:.1f}" '
        f'height="{(h - 20) * c / peak:.1f}" fill="#4a7bd0"><title>[{edges[i]:.4g}, '
        f"{edges[i + 1]:.4g}): {c}</title></rect>"
        for i, c in enumerate(counts.tolist())
    )
    labels = (
        f'<text x="0" y="{h - 5}" font-size="10">{edges[0]:.4g}</text>'
        f'<text x="{w}" y="{h - 5}" font-size="10" text-anchor="end">{edges[-1]:.4g}</text>'
    )
    return f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">{bars}{labels}</svg>'


def _corr_table(names: list[str], cols: list[np.ndarray]) -> str:
    if len(names) < 2:
        return "<p><em>fewer than two signals</em></p>"
    m = np.vstack([np.asarray(c, dtype=np.float64) for c in cols])
    ok = np.all(np.isfinite(m), axis=0)
    m = m[:, ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(m) if m.shape[1] > 1 else np.full((len(names),) * 2, np.nan)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for i, n in enumerate(names):
        cells = []
        for j in range(len(names)):
            r = corr[i, j]
            if np.isfinite(r):
                color = f"rgba({220 if r < 0 else 60},{90},{60 if r < 0 else 220},{abs(r):.2f})"
                cells.append(f'<td style="background:{color}">{r:.2f}</td>')
            else:
                cells.append("<td>–</td>")
        body.append(f"<tr><th>{html.escape(n)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>"


def _cluster_section(ss: ShardSet) -> str:
    from .commands import cluster_table

    if "cluster" not in ss.column_names:
        return "<p><em>no cluster column</em></p>"
    rows = cluster_table(ss)
    peak = max((r["mean_difficulty"] or 0.0 for r in rows), default=0.0) or 1.0
    out = ["<table><tr><th>cluster</th><th>size</th><th>mean difficulty</th><th>example</th></tr>"]
    for r in rows:
        md = r["mean_difficulty"]
        bar = (
            f'<span class="bar" style="width:{120 * md / peak:.0f}px"></span> {md:.3f}'
            if md is not None
            else "–"
        )
        ex = html.escape(" ".join(str(r["example"] or "").split())[:120])
        out.append(
            f"<tr><td>{r['cluster']}</td><td>{r['size']:,}</td><td>{bar}</td><td>{ex}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _accounting(m: dict[str, Any], ss: ShardSet) -> str:
    c = m.get("counts") or {}
    rows = [
        ("input", c.get("input")),
        ("written", c.get("written")),
        ("dead_letter", c.get("dead_letter")),
        ("rows in shards", ss.num_rows),
        ("shards", ss.num_shards),
    ]
    cells = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def render_report(ss: ShardSet) -> str:
    """HTML with every signal's histogram, the signal correlation matrix, difficulty by
    cluster and the accounting. Signals are the manifest's signals plus ``difficulty``,
    or every numeric column when the manifest names none."""
    m = ss.manifest
    declared = [s.get("name") for s in m.get("signals") or [] if isinstance(s, dict)]
    numeric = [f.name for f in ss.schema if is_numeric(f.type)]
    names = [n for n in declared if n in numeric]
    if "difficulty" in numeric and "difficulty" not in names:
        names.append("difficulty")
    if not names:
        names = [n for n in numeric if n not in _SKIP]
    cols = [ss.column(n) for n in names]
    hists = "".join(
        f'<div class="h"><h3>{html.escape(n)}</h3>{_svg_hist(c)}</div>'
        for n, c in zip(names, cols, strict=True)
    )
    title = html.escape(f"gradum dataset report: {ss.root}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:left}} .h{{display:inline-block;margin:0 1em 1em 0}}
.bar{{display:inline-block;height:10px;background:#d0704a}}
</style></head><body>
<h1>{title}</h1>
<p>format v{html.escape(str(m.get("format_version")))}, gradum
{html.escape(str(m.get("gradum_version")))}, created {html.escape(str(m.get("created")))},
{ss.num_rows:,} rows in {ss.num_shards} shards</p>
<h2>Accounting</h2>{_accounting(m, ss)}
<h2>Signal histograms</h2>{hists or "<p><em>no numeric signals</em></p>"}
<h2>Correlation between signals</h2>{_corr_table(names, cols)}
<h2>Difficulty by cluster</h2>{_cluster_section(ss)}
</body></html>
"""
