"""The `gradum shards` command implementations (each takes the argparse Namespace)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ShardsError
from .reader import ShardSet
from .stats import column_stats, is_numeric
from .storage_options import StorageOptions
from .terminal import human_bytes, table
from .validation import validate

PROG = "gradum shards"


def run_guarded(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command, turning expected failures into a one-line message and exit status 2."""
    try:
        return fn(args)
    except ShardsError as e:
        _err(str(e))
    except KeyError as e:
        _err(e.args[0] if e.args else str(e))
    except (ValueError, IndexError) as e:
        _err(str(e))
    except BrokenPipeError:  # e.g. `gradum shards head OUT | head -1`
        sys.stderr.close()
        return 0
    return 2


def open_options(args: argparse.Namespace) -> dict[str, Any]:
    """``ShardSet.open`` keywords from the command line: ``--cache-dir``, ``--cache-limit``
    and the bucket connection options."""
    return {
        "cache_dir": getattr(args, "cache_dir", None),
        "cache_limit": getattr(args, "cache_limit", None),
        "storage": StorageOptions.from_args(args),
    }


def open_dataset(args: argparse.Namespace) -> ShardSet:
    """The dataset named by ``args.out``: a directory, or ``gs://`` / ``s3://`` through the
    local cache (``--cache-dir``, ``--cache-limit``, connection options)."""
    return ShardSet.open(args.out, **open_options(args))


def _err(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)


# summary -------------------------------------------------------------------------------
def summarize(ss: ShardSet) -> dict[str, Any]:
    """The facts `summary` prints, as a JSON-ready dict."""
    m = ss.manifest
    stats = m.get("stats") or {}
    if not stats and ss.num_rows:
        stats = column_stats(ss)
    signals = [s.get("name") for s in m.get("signals") or [] if isinstance(s, dict)]
    return {
        "path": ss.location,
        "format_version": m.get("format_version"),
        "gradum_version": m.get("gradum_version"),
        "created": m.get("created"),
        "rows": ss.num_rows,
        "shards": ss.num_shards,
        "bytes": int(sum(int(s.get("bytes", 0)) for s in m["shards"])),
        "counts": m.get("counts"),
        "columns": ss.column_names,
        "signals": signals,
        "stats": stats,
        "clusters": cluster_count(ss),
    }


def cluster_count(ss: ShardSet) -> int | None:
    """Number of clusters from the manifest, else from the ``cluster`` column, else None."""
    info = ss.manifest.get("clusters")
    if isinstance(info, dict):
        for key in ("k", "num_clusters", "count", "n_clusters"):
            if isinstance(info.get(key), int):
                return info[key]
    if "cluster" in ss.column_names:
        col = ss.column("cluster")
        return int(np.unique(col[~_isnan(col)]).size) if col.size else 0
    return None


def cmd_summary(args: argparse.Namespace) -> int:
    """Print rows, shards, bytes, accounting, the per-signal stats table, cluster count."""
    info = summarize(open_dataset(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c = info["counts"] or {}
    print(f"dataset     {info['path']}")
    print(f"format      v{info['format_version']} (gradum {info['gradum_version']})")
    print(f"created     {info['created']}")
    print(f"rows        {info['rows']:,}")
    print(f"shards      {info['shards']:,} ({human_bytes(info['bytes'])})")
    print(
        f"accounting  input {c.get('input', '?'):,} = written {c.get('written', '?'):,}"
        f" + dead_letter {c.get('dead_letter', '?'):,}"
        if all(isinstance(c.get(k), int) for k in ("input", "written", "dead_letter"))
        else f"accounting  {c}"
    )
    print(f"clusters    {info['clusters'] if info['clusters'] is not None else '-'}")
    if info["signals"]:
        print(f"signals     {', '.join(map(str, info['signals']))}")
    rows = []
    for name, st in info["stats"].items():
        q = st.get("quantiles") or []
        med = q[50] if len(q) == 101 else None
        rows.append(
            [
                name,
                st.get("count"),
                st.get("nan_count"),
                st.get("mean"),
                st.get("std"),
                st.get("min"),
                med,
                st.get("max"),
            ]
        )
    if rows:
        print()
        print(table(["column", "count", "nan", "mean", "std", "min", "median", "max"], rows))
    return 0


# head ----------------------------------------------------------------------------------
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(==|!=|>=|<=|>|<|=)\s*(.*?)\s*$")
_OPS = {
    "==": pc.equal,
    "=": pc.equal,
    "!=": pc.not_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
    "<": pc.less,
    "<=": pc.less_equal,
}


def filter_mask(ss: ShardSet, expr: str) -> np.ndarray:
    """Boolean mask over the whole set for ``COLUMN OP VALUE`` (nulls never match)."""
    m = _FILTER.match(expr)
    if not m:
        raise ValueError(
            f"bad filter {expr!r}; expected COLUMN OP VALUE with OP in == != > >= < <="
        )
    name, op, raw = m.groups()
    col = ss.arrow_column(name)
    raw = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else raw
    if is_numeric(col.type):
        try:
            value: Any = float(raw)
        except ValueError as e:
            raise ValueError(f"filter {expr!r}: column {name!r} is numeric, {raw!r} is not") from e
    elif pa.types.is_boolean(col.type):
        value = raw.lower() in ("1", "true", "yes")
    else:
        value = raw
    result = _OPS[op](col, pa.scalar(value) if not isinstance(value, float) else value)
    return np.asarray(result.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def select_rows(ss: ShardSet, where: list[str], sort: str | None, desc: bool, n: int) -> np.ndarray:
    """Global row indices that pass every filter, sorted as asked, first ``n``."""
    idx = np.arange(ss.num_rows, dtype=np.int64)
    if where:
        mask = np.ones(ss.num_rows, dtype=bool)
        for expr in where:
            mask &= filter_mask(ss, expr)
        idx = idx[mask]
    if sort:
        sort_col = ss.arrow_column(sort)
        keys = sort_col.take(pa.array(idx)) if where else sort_col
        order = pc.array_sort_indices(
            keys, order="descending" if desc else "ascending", null_placement="at_end"
        )
        idx = idx[order.to_numpy()]
    return idx[: max(n, 0)]


def cmd_head(args: argparse.Namespace) -> int:
    """Print the first ``-n`` rows (after filters and sorting), texts shortened."""
    ss = open_dataset(args)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if columns is None:
        columns = [c for c in ss.column_names if c != "embedding"]
    rows_idx = select_rows(ss, args.where, args.sort, args.desc, args.n)
    t = ss.take(rows_idx, columns=columns)
    data = t.to_pydict()
    rows = [[data[c][i] for c in columns] for i in range(t.num_rows)]
    print(table(columns, rows, width=args.width))
    print(f"({t.num_rows} of {ss.num_rows:,} rows)")
    return 0


# hist ----------------------------------------------------------------------------------
def histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Counts and edges over the finite values, plus the number of non-finite values."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0), int(v.size)
    counts, edges = np.histogram(finite, bins=max(1, bins))
    return counts, edges, int(v.size - finite.size)


def cmd_hist(args: argparse.Namespace) -> int:
    """Terminal histogram of a numeric column; ``--png FILE`` also saves an image."""
    ss = open_dataset(args)
    col = ss.arrow_column(args.column)
    if not (is_numeric(col.type) or pa.types.is_boolean(col.type)):
        raise ValueError(f"column {args.column!r} is {col.type}, not numeric")
    values = ss.column(args.column)
    counts, edges, nonfinite = histogram(values, args.bins)
    print(f"{args.column}: {values.size:,} values, {nonfinite:,} NaN/inf/null")
    if counts.size:
        peak = max(int(counts.max()), 1)
        for i, cnt in enumerate(counts.tolist()):
            bar = "█" * int(round(40 * cnt / peak))
            print(f"[{edges[i]:>10.4g}, {edges[i + 1]:>10.4g})  {cnt:>9,}  {bar}")
    if args.png:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            _err("--png needs matplotlib: pip install 'gradum[plot]'")
            return 2
        fig, ax = plt.subplots(figsize=(7, 4))
        finite = np.asarray(values, dtype=np.float64)
        ax.hist(finite[np.isfinite(finite)], bins=max(1, args.bins))
        ax.set_xlabel(args.column)
        ax.set_ylabel("rows")
        fig.tight_layout()
        fig.savefig(args.png)
        plt.close(fig)
        print(f"wrote {args.png}")
    return 0


# clusters ------------------------------------------------------------------------------
def cluster_table(ss: ShardSet) -> list[dict[str, Any]]:
    """Per cluster: id, size, mean difficulty (None without that column), example row."""
    if "cluster" not in ss.column_names:
        raise ValueError("this dataset has no 'cluster' column (clustering did not run)")
    cl = ss.column("cluster")
    ok = ~_isnan(cl)
    ids, first, sizes = np.unique(cl[ok].astype(np.int64), return_index=True, return_counts=True)
    rows_ok = np.flatnonzero(ok)
    means = [None] * len(ids)
    if "difficulty" in ss.column_names and ids.size:
        d = ss.column("difficulty").astype(np.float64)[ok]
        inv = np.searchsorted(ids, cl[ok].astype(np.int64))
        good = np.isfinite(d)
        tot = np.bincount(inv[good], weights=d[good], minlength=ids.size)
        cnt = np.bincount(inv[good], minlength=ids.size)
        means = [float(t / c) if c else None for t, c in zip(tot, cnt, strict=True)]
    texts: list[Any] = [None] * len(ids)
    if "text" in ss.column_names and ids.size:
        texts = ss.take(rows_ok[first], columns=["text"]).column("text").to_pylist()
    return [
        {"cluster": int(i), "size": int(s), "mean_difficulty": m, "example": t}
        for i, s, m, t in zip(ids, sizes, means, texts, strict=True)
    ]


def cmd_clusters(args: argparse.Namespace) -> int:
    """Print per-cluster size, mean difficulty and an example text."""
    rows = cluster_table(open_dataset(args))
    print(
        table(
            ["cluster", "size", "mean_difficulty", "example"],
            [[r["cluster"], r["size"], r["mean_difficulty"], r["example"]] for r in rows],
            width=args.width,
        )
    )
    print(f"({len(rows)} clusters)")
    return 0


# validate ------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    """Exit 0 and say OK when sound; exit 1 listing every problem otherwise."""
    opts = open_options(args)
    problems = validate(args.out, opts["cache_dir"], opts["storage"])
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) found in {args.out}", file=sys.stderr)
        return 1
    ss = open_dataset(args)
    print(f"OK: {args.out}: {ss.num_shards} shard(s), {ss.num_rows:,} rows")
    return 0


# report --------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    """Write one self-contained HTML page (see :mod:`shards.report`). ``args.report_sections``,
    when the ``gradum`` dispatcher sets it, adds sections from other packages (the sampler's
    curriculum preview)."""
    from .report import write_report

    try:
        path = write_report(
            args.out, args.html, getattr(args, "report_sections", None), open_options(args)
        )
    except OSError as e:  # the page cannot be written (missing folder, permissions)
        raise ShardsError(f"cannot write the report: {e}") from e
    print(f"wrote {path}")
    return 0


def _isnan(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.isnan(a)
    return np.zeros(a.shape, dtype=bool)


# reorder -------------------------------------------------------------------------------
def cmd_reorder(args: argparse.Namespace) -> int:
    """Rewrite OUT to DEST sorted for locality (see :mod:`shards.reorder`), then say what was
    written."""
    from .reorder import reorder

    keys = [k.strip() for k in args.by.split(",") if k.strip()]
    opts = open_options(args)
    if args.rows_per_shard is not None and args.rows_per_shard < 1:
        raise ValueError("--rows-per-shard must be >= 1")
    m = reorder(open_dataset(args), args.dest, keys, args.rows_per_shard, opts["storage"])
    rows = sum(int(s["rows"]) for s in m["shards"])
    print(
        f"wrote {args.dest}: {len(m['shards'])} shard(s) of {m['layout']['rows_per_shard']:,} "
        f"rows ({rows:,} rows), sorted by {', '.join(keys)}"
    )
    return 0
