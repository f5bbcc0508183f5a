"""The learned proxy against scoring every record with the LM, side by side in one run.

Usage: .venv/bin/python benchmarks/proxy.py [--corpora python-docs,graded-language,...]
       [--graded-n 30000] [--fraction 0.02] [--workdir DIR]
       [--lm-layers 2] [--lm-width 128] [--lm-steps 300]

For each corpus a reference LM is trained once (untimed, ``scorers.reference_lm``, 300 steps on
2,000 records; 2 x 128 by default, tiny, so LM scoring costs about what the CPU signals cost:
``--lm-layers 6 --lm-width 384`` is closer to a real reference model) and given to both jobs by
path, so both score with the same model:

- full:  ``gradum score CORPUS --lm PATH`` (the CPU signals + perplexity of every record);
- proxy: ``gradum score CORPUS --lm PATH --difficulty proxy:perplexity --proxy-fraction F``.

Reported: the proxy's Spearman rho against the true perplexity on the records the proxy job
did *not* score with the LM (joined by id), the manifest's own held-out rho, and docs/s of
both jobs (whole process wall time, 2 workers).

Corpora: ``builtin:python-docs`` (6,407 paragraphs), ``builtin:graded`` both tasks, and
``stdlib-code``: every function of the Python standard library, as source text (real text of
another kind, made here from the interpreter's own files).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TWO_WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def stdlib_code(work: Path, limit: int) -> Path:
    """Functions of the standard library (source text, 200-4000 characters) as JSONL."""
    path = work / "stdlib-code.jsonl"
    if path.exists():
        return path
    lib = Path(sysconfig.get_paths()["stdlib"])
    rows = []
    for file in sorted(lib.glob("*.py")):
        try:
            source = file.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                text = ast.get_source_segment(source, node) or ""
                if 200 <= len(text) <= 4000:
                    rows.append({"id": f"{file.name}:{node.lineno}", "text": text})
    with open(path, "w") as fh:
        for r in rows[:limit]:
            fh.write(json.dumps(r) + "\n")
    return path


def corpus_spec(name: str, n: int, work: Path) -> str:
    if name == "python-docs":
        return "builtin:python-docs"
    if name.startswith("graded-"):
        return f"builtin:graded?n={n}&task={name.split('-', 1)[1]}"
    if name == "stdlib-code":
        return str(stdlib_code(work, n))
    raise SystemExit(f"unknown corpus {name!r}")


def reference_lm(spec: str, work: Path, name: str, layers: int, width: int, steps: int) -> str:
    from pipelines.io.formats import read_sample
    from scorers.reference_lm import train_reference_lm

    texts = read_sample([spec], 2000)
    out = work / f"lm-{name}-{layers}x{width}"
    return str(
        train_reference_lm(
            texts, out, n_layer=layers, n_embd=width, steps=steps, seed=0, progress=False
        )
    )


def lm_parameters(path: str) -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())


def job(spec: str, out: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "pipelines.score", spec, "--output", str(out), "--no-progress"]
    cmd += TWO_WORKERS + extra
    if "stdlib-code" in spec:
        cmd += ["--id-field", "id"]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{run.stderr[-3000:]}")
    return time.perf_counter() - t0


def compare(full: Path, prox: Path) -> tuple[float, int]:
    from scipy.stats import spearmanr

    from shards import ShardSet

    a, b = ShardSet.open(full), ShardSet.open(prox)
    truth = dict(zip(a.column("id").tolist(), a.column("perplexity").tolist(), strict=True))
    ids = b.column("id").tolist()
    sampled = np.isfinite(b.column("perplexity"))
    pred = b.column("perplexity_proxy")
    keep = [i for i in range(len(ids)) if not sampled[i]]
    x = np.array([truth[ids[i]] for i in keep])
    return float(spearmanr(pred[keep], x).statistic), len(keep)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--corpora", default="python-docs,graded-language,graded-arithmetic,stdlib-code"
    )
    ap.add_argument("--graded-n", type=int, default=30_000)
    ap.add_argument("--fraction", type=float, default=0.02)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--lm-layers", type=int, default=2, help="reference LM depth (default 2)")
    ap.add_argument("--lm-width", type=int, default=128, help="reference LM width (default 128)")
    ap.add_argument("--lm-steps", type=int, default=300, help="reference LM training steps")
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="gradum-bench-proxy-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.corpora.split(","):
        spec = corpus_spec(name, a.graded_n, work)
        model = reference_lm(spec, work, name, a.lm_layers, a.lm_width, a.lm_steps)
        load = os.getloadavg()[0]
        t_full = job(spec, work / f"full-{name}", [f"--lm={model}"])
        t_proxy = job(
            spec,
            work / f"proxy-{name}",
            [f"--lm={model}", "--difficulty=proxy:perplexity", f"--proxy-fraction={a.fraction}"],
        )
        rho, unseen = compare(work / f"full-{name}", work / f"proxy-{name}")
        manifest = json.loads((work / f"proxy-{name}" / "manifest.json").read_text())
        n = manifest["counts"]["written"]
        rows.append(
            (
                name,
                lm_parameters(model),  # the vocabulary, so the count, follows the corpus
                n,
                manifest["proxy"],
                rho,
                unseen,
                n / t_full,
                n / t_proxy,
                t_full,
                t_proxy,
                load,
            )
        )
        print(
            f"{name}: rho {rho:.3f}, full {n / t_full:,.0f} docs/s, proxy {n / t_proxy:,.0f}",
            flush=True,
        )
    print(f"\n- machine: {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"- command: {' '.join(sys.argv)}\n")
    print(
        "| corpus | reference LM | records | sample (held-out rho) | proxy vs true perplexity, "
        "unsampled records | full LM docs/s (wall s) | proxy docs/s (wall s) | speed-up | load |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    lm = f"{a.lm_layers} x {a.lm_width}"
    for name, params, n, info, rho, unseen, f, p, tf, tp, load in rows:
        print(
            f"| {name} | {lm} ({params / 1e6:.1f}M) | {n:,} "
            f"| {info['sample_size']:,} ({info['held_out_spearman'] or float('nan'):.3f}) "
            f"| {rho:.3f} (n = {unseen:,}) | {f:,.0f} ({tf:.0f}) | {p:,.0f} ({tp:.0f}) "
            f"| {p / f:.1f}x | {load:.1f} |"
        )
    if not a.workdir:  # a folder the user named is kept (benchmarks/proxy_features.py reads it)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
