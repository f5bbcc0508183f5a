"""The curriculum preview: run a strategy for N steps over a scored dataset without training and
record the difficulty it serves, then draw it (used by ``gradum preview`` and, as a section, by
``gradum shards report``).

Feedback for adaptive strategies is simulated from the difficulty column (a model that gets
easy items right: loss = difficulty, correct = difficulty < progress). torch and matplotlib are
imported when used.
"""

from __future__ import annotations

import html
from typing import Any

STRATEGIES = ("uniform", "curriculum", "ucb", "angle", "prioritized", "dropout")
PACINGS = ("linear", "root", "geometric", "step", "anti", "cyclical", "interleaved")
ADAPTIVE = ("ucb", "angle", "prioritized", "dropout")
SPARK = "▁▂▃▄▅▆▇█"


def make_pacing(name: str, T: int, c0: float = 0.05) -> Any:
    """A :mod:`sampler.pacing` function by its preview name, over ``T`` steps."""
    from . import pacing as P

    if name == "linear":
        return P.linear(T, c0)
    if name == "root":
        return P.root(T, 2.0, c0)
    if name == "geometric":
        return P.geometric(T, c0)
    if name == "step":
        return P.step([T // 4, T // 2, 3 * T // 4], [0.25, 0.5, 0.75, 1.0])
    if name == "anti":
        return P.anti(P.root(T, 2.0, c0))
    if name == "cyclical":
        return P.cyclical(max(T // 2, 1), low=0.25)
    if name == "interleaved":
        return P.interleaved(max(T // 4, 1), c0)
    raise ValueError(f"unknown pacing {name!r}; choose from {', '.join(PACINGS)}")


def make_strategy(
    name: str,
    *,
    steps: int,
    pacing: str = "root",
    pacing_steps: int | None = None,
    c0: float = 0.05,
    group: str = "cluster",
) -> Any:
    """A :mod:`sampler.strategies` object by its preview name."""
    from . import strategies as S

    if name == "uniform":
        return S.Uniform()
    if name == "curriculum":
        return S.Curriculum(make_pacing(pacing, pacing_steps or steps, c0))
    if name == "ucb":
        return S.UCB(group=group, reward="loss")
    if name == "angle":
        return S.AngleWindow()
    if name == "prioritized":
        return S.Prioritized()
    if name == "dropout":
        return S.ProgressiveDropout(revision_step=int(0.8 * steps))
    raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")


def simulate(
    source: Any, strategy: Any, *, steps: int, batch_size: int, seed: int = 0
) -> list[dict[str, float]]:
    """Per step: mean, p10 and p90 of the difficulty served, coverage (fraction of items served
    at least once) and the draw entropy. ``source`` is a dataset path or a ShardSet."""
    import torch

    from .core import Sampler

    s = Sampler(source, strategy, batch_size, seed=seed, prefetch=0)  # no rows are taken
    if s.difficulty is None:
        raise ValueError("the dataset has no 'difficulty' column")
    d = s.difficulty
    adaptive = strategy.name in ADAPTIVE  # these learn from (simulated) feedback
    rows = []
    for t in range(steps):
        b = s.sample()
        served = d[b.indices].to(torch.float64)
        if adaptive:
            progress = (t + 1) / steps
            s.update(
                b.indices,
                loss=served,
                reward=(served < progress).double(),
                correct=(served < progress).double(),
                advantage=served - progress,
            )
        st = s.stats()
        q = torch.quantile(served, torch.tensor([0.1, 0.9], dtype=torch.float64))
        rows.append(
            {
                "step": t,
                "mean": float(served.mean()),
                "p10": float(q[0]),
                "p90": float(q[1]),
                "coverage": st["coverage"],
                "entropy": float(st.get("entropy", float("nan"))),
            }
        )
    return rows


def sparkline(values: list[float], lo: float = 0.0, hi: float = 1.0) -> str:
    """One block character per value, scaled from ``lo`` to ``hi`` (NaN: a space)."""
    out = []
    for v in values:
        if v != v:
            out.append(" ")
            continue
        x = 0.0 if hi <= lo else (min(max(v, lo), hi) - lo) / (hi - lo)
        out.append(SPARK[min(len(SPARK) - 1, int(x * len(SPARK)))])
    return "".join(out)


def mean_sparkline(rows: list[dict[str, float]], width: int = 60) -> str:
    """The mean difficulty served, averaged into ``width`` buckets of steps."""
    means = [r["mean"] for r in rows]
    buckets = [
        means[int(i * len(means) / width) : int((i + 1) * len(means) / width) or None]
        for i in range(min(width, len(means)))
    ]
    return sparkline([sum(b) / len(b) for b in buckets if b])


def preview_figure(rows: list[dict[str, float]], title: str) -> Any:
    """A pyplot-free matplotlib Figure: mean difficulty served, its p10-p90 band and coverage
    against the step. Raises ImportError without matplotlib (the ``plot`` extra)."""
    from matplotlib.figure import Figure

    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(8, 3.6), dpi=96, layout="constrained")
    ax = fig.subplots()
    ax.fill_between(
        steps, [r["p10"] for r in rows], [r["p90"] for r in rows], alpha=0.3, label="p10-p90"
    )
    ax.plot(steps, [r["mean"] for r in rows], label="mean difficulty served")
    ax.plot(steps, [r["coverage"] for r in rows], label="coverage", linestyle="--")
    ax.set_xlabel("step")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def report_sections(ss: Any, steps: int = 500, batch_size: int = 64) -> list[Any]:
    """The report's "Curriculum preview" section for the dataset ``ss`` (a ShardSet): the root
    (sqrt) pacing from c0 = 0.05 over ``steps`` steps, as a figure (or a note saying why not)."""
    from shards import plots
    from shards.report import ReportSection

    def section(body: str) -> list[Any]:
        return [ReportSection("Curriculum preview", body, "preview")]

    if "difficulty" not in ss.column_names:
        return section("<p class=note>No difficulty column: nothing to preview.</p>")
    batch = max(1, min(batch_size, ss.num_rows))
    strategy = make_strategy("curriculum", steps=steps, pacing="root")
    rows = simulate(ss, strategy, steps=steps, batch_size=batch)
    served = batch * steps
    caption = (
        f"<p>Curriculum with root (sqrt) pacing from 5 % of the data, {steps:,} steps of "
        f"{batch:,} rows ({served / max(ss.num_rows, 1):.1f} passes), simulated without "
        "training: the difficulty served rises as the easy-first window opens. Other "
        f"schedules: <code>gradum preview {html.escape(str(ss.root))} --strategy ucb "
        "--png preview.png</code>.</p>"
    )
    spark = f"<p><code>mean difficulty served: {mean_sparkline(rows)}</code></p>"
    if not plots.have_matplotlib():
        return section(f"{caption}{spark}<p class=note>{plots.PLOT_EXTRA_NOTE}</p>")
    fig = preview_figure(rows, f"curriculum (root pacing), {steps} steps x {batch}")
    return section(caption + plots.img_tag(fig, "curriculum preview"))


__all__ = [
    "make_pacing",
    "make_strategy",
    "simulate",
    "sparkline",
    "mean_sparkline",
    "preview_figure",
    "report_sections",
]
