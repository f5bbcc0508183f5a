"""The report's figures: inline SVG histograms (numpy only) and matplotlib figures embedded as
base64 PNG ``<img>`` tags. Nothing here reaches the network; matplotlib (the ``plot`` extra) is
imported lazily, and :func:`have_matplotlib` lets the page say so when it is missing."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from .report_data import central_range, spearman

PLOT_EXTRA_NOTE = (
    "This figure needs matplotlib, which is not installed: <code>pip install "
    "'gradum[plot]'</code> and run the report again."
)


def have_matplotlib() -> bool:
    """True when matplotlib can be imported (it is in the ``plot`` extra)."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        return False
    return True


def new_figure(width: float, height: float) -> Any:
    """A pyplot-free matplotlib Figure (no global state, no GUI backend)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=96, layout="constrained")


def img_tag(fig: Any, alt: str) -> str:
    """``<img>`` holding ``fig`` as a base64 PNG data URI, with its pixel size."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    w, h = (int(round(x)) for x in fig.get_size_inches() * fig.dpi)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        f'<img alt="{html.escape(alt)}" width="{w}" height="{h}" '
        f'src="data:image/png;base64,{data}">'
    )


def svg_hist(values: np.ndarray, bins: int = 30, w: int = 320, h: int = 164) -> str:
    """A histogram of the finite values as inline SVG over their central 99 % (how many lie
    outside is written below), bars with their range and count as a tooltip, the median
    dashed, the tallest bar's count on the left."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "<p><em>no finite values</em></p>"
    lo, hi, below, above = central_range(v)
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi) if hi > lo else None)
    peak = max(int(counts.max()), 1)
    left, bottom = 34, 46  # room for the peak count and three lines of labels
    plot_w, plot_h = w - left, h - bottom - 4
    bw = plot_w / len(counts)
    bars = "".join(
        f'<rect x="{left + i * bw:.1f}" y="{4 + plot_h - plot_h * c / peak:.1f}" '
        f'width="{max(bw - 1, 0.5):.1f}" height="{plot_h * c / peak:.1f}" fill="#4a7bd0">'
        f"<title>[{edges[i]:.4g}, {edges[i + 1]:.4g}): {c:,}</title></rect>"
        for i, c in enumerate(counts.tolist())
    )
    med = float(np.median(v))
    span = edges[-1] - edges[0]
    mx = left + (plot_w * (med - edges[0]) / span if span > 0 else plot_w / 2)
    base = 4 + plot_h
    outside = f"{below:,} below, {above:,} above this range" if below or above else ""
    parts = [
        bars,
        f'<line x1="{left}" y1="{base}" x2="{w}" y2="{base}" stroke="#555"/>',
        f'<line x1="{mx:.1f}" y1="4" x2="{mx:.1f}" y2="{base}" stroke="#d0704a" '
        'stroke-dasharray="3,2"/>',
        f'<text x="{left - 3}" y="12" font-size="10" text-anchor="end">{peak:,}</text>',
        f'<text x="{left - 3}" y="{base}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{left}" y="{base + 13}" font-size="10">{edges[0]:.4g}</text>',
        f'<text x="{w}" y="{base + 13}" font-size="10" text-anchor="end">{edges[-1]:.4g}</text>',
        f'<text x="{left + plot_w / 2:.0f}" y="{base + 27}" font-size="10" '
        f'text-anchor="middle" fill="#d0704a">median {med:.4g}</text>',
        f'<text x="{left + plot_w / 2:.0f}" y="{base + 40}" font-size="10" '
        f'text-anchor="middle" fill="#777">{outside}</text>',
    ]
    return (
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


def difficulty_scatter(
    names: list[str], cols: list[np.ndarray], difficulty: np.ndarray, total_rows: int
) -> Any:
    """One panel per signal: difficulty (y) against the signal (x) over the given (already
    subsampled) rows, as a scatter up to 10,000 points and a hexbin above, over the signal's
    central 99 %; Spearman's rho of all the given rows in each title."""
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig = new_figure(3.6 * ncols, 2.9 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    d = np.asarray(difficulty, dtype=np.float64)
    for ax, name, col in zip(axes, names, cols, strict=False):
        x = np.asarray(col, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(d)
        xs, ds = x[ok], d[ok]
        label = name
        if xs.size == 0:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center")
        else:
            ax.set_title(f"{name}  (Spearman {spearman(xs, ds):+.2f})", fontsize=9)
            lo, hi, below, above = central_range(xs)
            if below or above:  # show the central 99 %; a few outliers would squash the rest
                keep = (xs >= lo) & (xs <= hi)
                xs, ds = xs[keep], ds[keep]
                label = f"{name} (central 99 %, {below + above:,} outside)"
            if xs.size <= 10_000:
                ax.scatter(xs, ds, s=4, alpha=0.35, linewidths=0, color="#4a7bd0")
            else:
                ax.hexbin(xs, ds, gridsize=40, mincnt=1, cmap="Blues", bins="log")
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel("difficulty", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    shown = len(d)
    note = f"all {total_rows:,} rows" if shown == total_rows else f"{shown:,} of {total_rows:,}"
    fig.suptitle(f"difficulty against each signal ({note})", fontsize=10)
    return fig


def cluster_sizes(ids: list[int], sizes: list[int], means: list[float | None]) -> Any:
    """Bar chart of cluster sizes, each bar coloured by its cluster's mean difficulty (the
    colour bar spans the clusters' own range, so small differences still show)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig = new_figure(min(12.0, 4.0 + 0.25 * len(ids)), 2.8)
    ax = fig.subplots()
    known = [m for m in means if m is not None]
    norm = Normalize(min(known, default=0.0), max(known, default=1.0))
    cmap = colormaps["viridis"]
    colors = [cmap(norm(m)) if m is not None else "#999999" for m in means]
    pos = np.arange(len(ids))
    ax.bar(pos, sizes, color=colors)
    if len(ids) <= 40:
        ax.set_xticks(pos, [str(int(i)) for i in ids], fontsize=7)
    ax.set_xlabel("cluster, largest first", fontsize=8)
    ax.set_ylabel("rows", fontsize=8)
    ax.tick_params(labelsize=7)
    if known:
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        bar.set_label("mean difficulty", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return fig
