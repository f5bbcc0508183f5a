"""Is the proxy limited by its sample or by its features? Both, side by side, in one run.

Usage: .venv/bin/python benchmarks/proxy_features.py FULL_DATASET [--sizes 128,320,640,2000]
       [--draws 3]

FULL_DATASET is the output of a job that scored every record with the LM: the *full* job of
``benchmarks/proxy.py --workdir DIR`` (``DIR/full-python-docs``; without ``--workdir`` that
script deletes its temporary folder at the end). For each sample size, ``--draws`` random samples are drawn; ``pipelines.model.proxy.fit``
(the job's own model selection) is fitted on each from the CPU signals alone, with the
all-MiniLM-L6-v2 embedding (computed here, on the default embedding backend), with the
frequencies of the reference LM's tokens (``pipelines.model.proxy_tokens``; the LM the full job
used, from its manifest), and with both, and scored by Spearman's rho against the true
perplexity on every record outside the sample.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIGNALS = ["chars", "words", "compression_ratio", "lexical_diversity", "readability", "word_rarity"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--sizes", default="128,320,640,2000")
    ap.add_argument("--draws", type=int, default=3)
    a = ap.parse_args()

    from scipy.stats import spearmanr

    import scorers
    from pipelines.model import proxy
    from pipelines.model.proxy_tokens import TokenFeatures
    from shards import ShardSet

    data = ShardSet.open(a.dataset)
    lm = next(s for s in data.manifest["signals"] if s["name"] == "perplexity")
    tokens = TokenFeatures.load(lm["params"]["params"]["model"])
    signals = np.stack([np.asarray(data.column(f), float) for f in SIGNALS], 1)
    target = np.asarray(data.column("perplexity"), float)
    texts = list(data.column("text"))
    embedder = scorers.get("embedding")
    emb = np.concatenate(
        [embedder.score(texts[i : i + 256])["embedding"] for i in range(0, len(texts), 256)]
    )
    print(f"- dataset: {a.dataset} ({len(texts):,} records), embedding backend {embedder.backend}")
    print(f"- command: {' '.join(sys.argv)}\n")
    print("| sample | features | rho vs true, unsampled (mean of draws) | models picked |")
    print("|---:|---|---:|---|")
    rng = np.random.default_rng(0)
    for n in [int(v) for v in a.sizes.split(",")]:
        draws = [rng.permutation(len(target)) for _ in range(a.draws)]
        for label, names, tok in (
            ("signals", SIGNALS, None),
            ("signals + embedding", [*SIGNALS, "embedding"], None),
            ("signals + tokens", SIGNALS, tokens),
            ("signals + tokens + embedding", [*SIGNALS, "embedding"], tokens),
        ):
            x = signals if len(names) == len(SIGNALS) else np.concatenate([signals, emb], 1)
            rhos, picks = [], []
            for order in draws:
                sample, rest = order[:n], order[n:]
                rows = [(rng.random(), str(i), x[i], texts[i], target[i]) for i in sample]
                fitted = proxy.fit(rows, "perplexity", names, seed=0, tokens=tok)
                cols = {f: signals[rest, j] for j, f in enumerate(SIGNALS)}
                cols["embedding"] = emb[rest]
                pred = proxy.predict(fitted, cols, names, [texts[i] for i in rest])
                rhos.append(float(spearmanr(pred, target[rest]).statistic))
                picks.append(fitted["info"]["model"].split(":")[0])
            print(f"| {n:,} | {label} | {np.mean(rhos):.3f} | {', '.join(picks)} |", flush=True)


if __name__ == "__main__":
    main()
