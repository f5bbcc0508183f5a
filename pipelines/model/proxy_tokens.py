"""Text features for the proxy of an LM signal: the LM's own tokens.

A causal LM's log-perplexity is a mean over the text's tokens t_1..t_L,
``log PPL = (1/L) sum_i -log p(t_i | t_<i)``. Giving each token id ``v`` one learnt loss
``w_v`` in place of its loss in context turns that mean into a linear model of the text's
token frequencies ``f_v = #{i : t_i = v} / L``: ``log PPL ~ b + sum_v w_v f_v``, a unigram
picture of the LM's own loss that ridge regression (Hoerl & Kennard, 1970) fits from the
sample. Two dense features go with the frequencies: ``log(1 + L)`` and ``L / characters``.
Tokenizing costs a small fraction of the LM's forward pass (measured in
``benchmarks/proxy.py``). Texts are cut where the LM scorer cuts them (``max_tokens``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TOKEN_STATS = ("log_tokens", "tokens_per_char")


class TokenFeatures:
    """The token frequencies and token statistics of texts under one LM's tokenizer.

    Pickles with its tokenizer, so the fitted proxy needs no model files where it is applied.
    """

    def __init__(self, tokenizer: Any, *, name: str, max_tokens: int = 512) -> None:
        self.tokenizer, self.name, self.max_tokens = tokenizer, name, int(max_tokens)
        self.vocab = len(tokenizer)

    @classmethod
    def load(cls, model: str, *, max_tokens: int = 512, job_token: str = "") -> TokenFeatures:
        """The tokenizer of ``model`` (a local folder or a hub id; a bucket path is copied),
        texts cut at ``max_tokens`` or the tokenizer's own limit, whichever is less."""
        import transformers

        from pipelines.io.models import local_model_path

        tok = transformers.AutoTokenizer.from_pretrained(local_model_path(model, job_token))
        limit = getattr(tok, "model_max_length", None) or max_tokens
        return cls(tok, name=model, max_tokens=min(max_tokens, int(min(limit, 1 << 30))))

    def describe(self) -> str:
        return (
            f"frequencies of the {self.vocab:,} token ids of {self.name}'s tokenizer (first "
            f"{self.max_tokens} tokens), {' and '.join(TOKEN_STATS)}"
        )

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        from scorers.base import replace_surrogates
        from scorers.lm import CHARS_PER_TOKEN_CAP

        cap = self.max_tokens * CHARS_PER_TOKEN_CAP
        clean = [replace_surrogates(t[:cap]) for t in texts]
        ids = self.tokenizer(clean, add_special_tokens=False)["input_ids"] if clean else []
        return [x[: self.max_tokens] for x in ids]

    def matrices(self, texts: Sequence[str]) -> tuple[np.ndarray, Any]:
        """``(stats, frequencies)``: an ``n x 2`` array and an ``n x vocab`` CSR matrix whose
        rows sum to 1 (0 for a text without tokens)."""
        from scipy import sparse

        ids = self.encode(texts)
        lengths = np.array([len(x) for x in ids], dtype=np.float64)
        chars = np.array([max(len(t), 1) for t in texts], dtype=np.float64)
        stats = np.column_stack([np.log1p(lengths), lengths / chars]).reshape(len(ids), 2)
        flat = np.fromiter((v for x in ids for v in x), dtype=np.int64, count=int(lengths.sum()))
        flat = np.clip(flat, 0, self.vocab - 1)
        rows = np.repeat(np.arange(len(ids)), lengths.astype(np.int64))
        weight = np.repeat(1.0 / np.maximum(lengths, 1.0), lengths.astype(np.int64))
        freq = sparse.csr_matrix((weight, (rows, flat)), shape=(len(ids), self.vocab))
        freq.sum_duplicates()
        return stats, freq
