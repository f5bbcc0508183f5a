"""Spherical k-means on a seeded sample of embeddings (faiss), and assignment.

Fit: the ``sample_size`` records with the smallest sha1(seed, id) (a deterministic, uniform
sample that any runner reproduces), sorted by id, clustered by ``faiss.Kmeans`` with
``spherical=True`` (centroids renormalised each iteration; Dhillon & Modha 2001), on the
GPU when faiss-gpu and CUDA are present. Assignment: nearest centroid by cosine,
``centroid_distance = 1 - cos``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def sample_key(seed: int, record_id: str) -> str:
    return hashlib.sha1(f"{seed}\0{record_id}".encode()).hexdigest()


def fit_centroids(
    sample: list[tuple[str, np.ndarray]], k: int, *, seed: int = 0, niter: int = 25
) -> tuple[np.ndarray, dict[str, Any]]:
    """Centroids (k x d, unit rows) from ``(id, embedding)`` pairs, plus info for the manifest."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "clustering needs faiss: pip install 'gradum[pipeline]' (or gradum[gpu])"
        ) from exc
    if not sample:
        raise ValueError("--clusters needs at least one scored record with an embedding")
    sample = sorted(sample, key=lambda p: p[0])
    x = np.ascontiguousarray(np.stack([e for _, e in sample]).astype(np.float32))
    faiss.normalize_L2(x)
    k_used = min(k, len(x))
    use_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    faiss.omp_set_num_threads(1)  # results must not depend on the thread count
    km = faiss.Kmeans(
        x.shape[1],
        k_used,
        niter=niter,
        seed=seed,
        spherical=True,
        gpu=use_gpu,
        verbose=False,
        max_points_per_centroid=max(256, len(x) // k_used + 1),
    )
    km.train(x)
    centroids = km.centroids.astype(np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    info = {
        "k": int(k_used),
        "k_requested": int(k),
        "sample_size": len(x),
        "method": "faiss.Kmeans spherical",
        "niter": niter,
        "seed": seed,
        "device": "cuda" if use_gpu else "cpu",
        "objective": float(km.obj[-1]) if len(km.obj) else None,
    }
    return centroids, info


def assign(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (int32) and cosine distance (float32) of each embedding."""
    e = np.asarray(embeddings, dtype=np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sims = e @ centroids.T
    best = sims.argmax(axis=1).astype(np.int32)
    dist = (1.0 - sims[np.arange(len(e)), best]).astype(np.float32)
    return best, np.maximum(dist, 0.0)
