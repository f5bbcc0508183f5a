"""``lm``: perplexity, confidence and angle concentration from ONE causal-LM forward pass.

For a text tokenized as t_1..t_L (a BOS token t_0 is prepended when the tokenizer has one
and does not add it itself), with next-token log-probabilities from the model:

- ``perplexity`` = exp( -(1/L) * sum_{i=1..L} ln p(t_i | t_<i) )  (direction +1);
  the standard causal-LM perplexity (e.g. Marion et al. 2023, "When less is more:
  investigating data pruning for pretraining LLMs at scale", arXiv:2309.04564).
- ``confidence`` = (1/L) * sum_i p(t_i | t_<i), the mean probability given to the true next
  token (direction -1), as in data-maps style confidence (Swayamdipta et al. 2020).
- ``angle_concentration`` = mean pairwise cosine between the hidden states h_1..h_n
  (layer ``layer``, default the last) of the text's own tokens: padding excluded, and a
  BOS excluded whether the scorer prepended it or the tokenizer added it itself (Llama,
  Mistral, Gemma tokenizers do). With unit vectors x_i = h_i / ||h_i||, exactly
  (||sum_i x_i||^2 - n) / (n (n - 1)), O(n d) (GAIN-RL, Wang et al. 2025,
  arXiv:2506.02281). Direction -1.

Policies (recorded in ``describe()``):
- truncation: texts are first cut to ``max_tokens * 32`` characters (so a 10 MB text is
  never tokenized whole), then to the first ``max_tokens`` tokens (BOS included); no stride.
- lone surrogates are replaced with U+FFFD before tokenization.
- batching: texts are sorted by token length, packed so that
  ``batch_size * longest <= token_budget`` and ``batch_size <= max_batch_size``,
  right-padded (padding never influences real positions of a causal LM), and the outputs
  are put back in input order. ``token_budget`` None: 2,048 padded tokens on CPU (short
  batches waste little on padding, and a CPU forward pass costs about the same per token
  from 2k to 8k tokens: benchmarks/length_batching.py), 8,192 on GPU; never below
  ``max_tokens``.
- device: CUDA when available (bf16 there), else CPU float32.
- memory: ln p(t_i | t_<i) = z_t - logsumexp(z) is computed in float32 on chunks of
  real positions (``chunk_elements`` logits per chunk, default 4M = 16 MiB), applying the
  LM head to the last hidden state chunk by chunk, so the B x T x V logits are never
  materialised (the model's own logits, read chunk-wise, when its head is not separable,
  e.g. logit soft-capping); only the hidden layer the angle uses is kept (a forward hook,
  not ``output_hidden_states``). See :mod:`scorers.lm_forward`.
- ``trust_remote_code`` is False unless the caller sets it.

Edge cases: a text with no predicted token (empty text with no BOS token) gives NaN
perplexity and confidence; fewer than 2 own tokens gives NaN angle concentration.
Whitespace, emoji, control characters and non-Latin text are scored like any text
(byte-level tokenizers cover every byte). A batch whose forward pass fails (e.g. out of
memory) is retried in halves with a logged warning, down to single texts; a text that
fails alone raises :class:`ScoringError` with its position.

Version 2: the lean forward above; angle concentration now excludes a tokenizer-added
BOS (version 1 included it); other values unchanged (relative difference < 1e-4).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from scorers._lazy import require
from scorers.base import Scorer, ScoringError, check_texts, preview, replace_surrogates
from scorers.batching import pack_batches
from scorers.lm_forward import (
    DEFAULT_CHUNK_ELEMENTS,
    LayerCapture,
    chunk_positions,
    gather_logprobs,
    head_is_separable,
    resolve_layer,
)

log = logging.getLogger(__name__)

CHARS_PER_TOKEN_CAP = 32
#: Padded tokens per forward pass with ``token_budget`` None, by device.
CPU_TOKEN_BUDGET = 2048
GPU_TOKEN_BUDGET = 8192


def _identity(x: Any) -> Any:
    return x


class LanguageModelScorer(Scorer):
    name = "lm"
    version = "2"
    outputs = {"perplexity": +1, "confidence": -1, "angle_concentration": -1}

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_tokens: int = 512,
        token_budget: int | None = None,
        max_batch_size: int = 64,
        layer: int = -1,
        prepend_bos: bool = True,
        trust_remote_code: bool = False,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> None:
        self.model_name = str(model)
        self.revision = revision
        self.max_tokens = int(max_tokens)
        self.token_budget = None if token_budget is None else int(token_budget)
        self._budget = 0  # resolved on load: the device's default, at least max_tokens
        self.max_batch_size = int(max_batch_size)
        self.layer = int(layer)
        self.prepend_bos = bool(prepend_bos)
        self.trust_remote_code = bool(trust_remote_code)
        self.chunk_elements = int(chunk_elements)
        self._device_req, self._dtype_req = device, dtype
        self._model: Any = None
        self._tok: Any = None

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> None:
        if self._model is not None:
            return
        torch = require("torch")
        transformers = require("transformers")
        device = self._device_req or ("cuda" if torch.cuda.is_available() else "cpu")
        if self._dtype_req:
            dtype = getattr(torch, self._dtype_req)
        else:
            dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        kw: dict[str, Any] = {
            "revision": self.revision,
            "trust_remote_code": self.trust_remote_code,
        }
        self._tok = transformers.AutoTokenizer.from_pretrained(self.model_name, **kw)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            self.model_name, dtype=dtype, **kw
        )
        self._model = model.to(device).eval()
        self._torch, self._device, self._dtype = torch, torch.device(device), dtype
        bos = self._tok.bos_token_id
        probe = self._tok("a", add_special_tokens=True)["input_ids"]
        n_pos = getattr(model.config, "max_position_embeddings", None)
        if n_pos:
            self.max_tokens = min(self.max_tokens, int(n_pos))
        self._tok_bos = bos is not None and probe[:1] == [bos]
        self._bos = bos if (self.prepend_bos and bos is not None and not self._tok_bos) else None
        self._bos_id = bos
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
        n_layers = int((cfg or model.config).num_hidden_layers)
        self._layer_k = resolve_layer(self.layer, n_layers)
        self._n_layers = n_layers
        self._base = model.base_model
        self._head = model.get_output_embeddings()
        vocab = int(self._head.weight.shape[0]) if self._head is not None else 0
        probe_ids = torch.tensor([([self._bos] if self._bos is not None else []) + probe * 2])
        self._separable = head_is_separable(model, probe_ids.to(device))
        vocab = vocab or int((cfg or model.config).vocab_size)
        self._chunk = chunk_positions(vocab, self.chunk_elements)
        budget = self.token_budget
        if budget is None:
            budget = GPU_TOKEN_BUDGET if self._device.type == "cuda" else CPU_TOKEN_BUDGET
        self._budget = max(budget, self.max_tokens)

    @property
    def model(self) -> Any:
        self._load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self._load()
        return self._tok

    # -- tokenization ----------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, with the BOS / truncation policy applied."""
        self._load()
        cap = self.max_tokens * CHARS_PER_TOKEN_CAP
        clean = [replace_surrogates(t[:cap]) for t in texts]
        limit = self.max_tokens - (1 if self._bos is not None else 0)
        try:
            ids = self._tok(clean, add_special_tokens=True, return_attention_mask=False)[
                "input_ids"
            ]
        except Exception:  # noqa: BLE001 - find the offending text
            ids = []
            for i, t in enumerate(clean):
                try:
                    ids.append(self._tok(t, add_special_tokens=True)["input_ids"])
                except Exception as exc:  # noqa: BLE001
                    raise ScoringError(i, preview(texts[i]), exc) from exc
        pre = [self._bos] if self._bos is not None else []
        return [pre + list(x[:limit]) for x in ids]

    # -- scoring ---------------------------------------------------------------------------
    def score(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts = check_texts(texts)
        n = len(texts)
        out = {k: np.full(n, np.nan, dtype=np.float32) for k in self.outputs}
        if n == 0:
            return out
        ids = self.encode(texts)
        for batch in pack_batches([len(x) for x in ids], self._budget, self.max_batch_size):
            rows = self._score_batch(batch, ids, texts)
            for j, k in enumerate(self.outputs):
                out[k][batch] = rows[:, j]
        return out

    def _score_batch(self, batch: list[int], ids: list[list[int]], texts: list[str]) -> np.ndarray:
        """Forward ``batch``; on failure retry it in halves (logged), down to the failing text.

        Halving both survives an out-of-memory batch (each half needs about half the
        memory) and isolates a text that cannot be scored in log2(batch) steps. Returns one
        row (perplexity, confidence, angle) per text of ``batch``.
        """
        try:
            return np.asarray(self._forward([ids[i] for i in batch]), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - isolate the failing text
            if len(batch) == 1:
                raise ScoringError(batch[0], preview(texts[batch[0]]), exc) from exc
            longest = max(len(ids[i]) for i in batch)
            log.warning(
                "lm: forward pass of %d texts x %d tokens failed (%s: %s); retrying in halves",
                len(batch),
                longest,
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
            if self._device.type == "cuda":
                self._torch.cuda.empty_cache()
            half = len(batch) // 2
            return np.concatenate(
                [
                    self._score_batch(batch[:half], ids, texts),
                    self._score_batch(batch[half:], ids, texts),
                ]
            )

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        """(perplexity, confidence, angle) per sequence, as a (len(seqs), 3) float64 array."""
        torch = self._torch
        b = len(seqs)
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=b)
        width = int(lengths.max())
        if width == 0:
            return np.full((b, 3), np.nan)
        # right-padded ids and mask, built in numpy at once (no per-row tensors)
        mask_np = np.arange(width)[None, :] < lengths[:, None]
        ids_np = np.zeros((b, width), dtype=np.int64)
        ids_np[mask_np] = np.fromiter(chain.from_iterable(seqs), dtype=np.int64)
        dev = self._device
        input_ids = torch.from_numpy(ids_np).to(dev)
        mask = torch.from_numpy(mask_np).to(dev)
        with torch.inference_mode():
            with LayerCapture(self._base, self._layer_k, self._n_layers) as cap:
                if self._separable:
                    res = self._base(
                        input_ids=input_ids, attention_mask=mask.long(), use_cache=False
                    )
                    rows_src, project = res[0], self._head
                else:
                    res = self._model(
                        input_ids=input_ids, attention_mask=mask.long(), use_cache=False
                    )
                    rows_src, project = res.logits, _identity
            # predicting positions: position j predicts token j + 1, both real
            pred = mask[:, 1:]
            row_of = torch.arange(b, device=dev)[:, None].expand(b, width - 1)[pred]
            col = torch.arange(width - 1, device=dev)[None, :].expand(b, width - 1)[pred]
            tgt_logp = gather_logprobs(
                rows_src.reshape(b * width, -1),
                row_of * width + col,
                input_ids[:, 1:][pred],
                project,
                self._chunk,
            )
            del rows_src, res
            npred = pred.sum(1).float()
            sum_logp = torch.zeros(b, device=dev).index_add_(0, row_of, tgt_logp)
            sum_p = torch.zeros(b, device=dev).index_add_(0, row_of, tgt_logp.exp())
            mean_nll = -sum_logp / npred.clamp(min=1)
            mean_p = sum_p / npred.clamp(min=1)
            # angle concentration on the text's own tokens (padding and any BOS excluded)
            own = mask.clone()
            if self._bos is not None:
                own[:, 0] = False
            elif self._tok_bos:
                own[:, 0] &= input_ids[:, 0] != self._bos_id
            unit = torch.nn.functional.normalize(cap.value.float(), dim=-1)
            ssum = torch.where(own[..., None], unit, 0.0).sum(1)
            del unit
            nown = own.sum(1).float()
            sq = (ssum * ssum).sum(-1)
            ang = (sq - nown) / (nown * (nown - 1)).clamp(min=1)
            cols = torch.stack([mean_nll, mean_p, ang, npred, nown], 1).cpu().numpy()
        rows = cols[:, :3].astype(np.float64)
        rows[:, 0] = np.exp(rows[:, 0])
        rows[cols[:, 3] < 1, :2] = np.nan
        rows[cols[:, 4] < 2, 2] = np.nan
        return rows

    def runtime(self) -> dict[str, Any]:
        if getattr(self, "_model", None) is None:
            return {}
        return {"device": str(self._device), "dtype": str(self._dtype).replace("torch.", "")}

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "model": self.model_name,
            "revision": self.revision,
            "max_tokens": self.max_tokens,
            "truncation": f"first {CHARS_PER_TOKEN_CAP}*max_tokens chars, then first max_tokens "
            "tokens; no stride",
            "prepend_bos": self.prepend_bos,
            "hidden_state_layer": self.layer,
            "bos_in_angle": "excluded (prepended by the scorer or added by the tokenizer)",
            "token_budget": self.token_budget,
            "max_batch_size": self.max_batch_size,
            "batching": "sorted by tokens; at most max_batch_size texts and token_budget padded "
            f"tokens per forward pass (None: {CPU_TOKEN_BUDGET} on CPU, {GPU_TOKEN_BUDGET} on "
            "GPU; never below max_tokens)",
            "trust_remote_code": self.trust_remote_code,
            "surrogates": "replaced with U+FFFD",
        }
        if self._model is not None:
            p["device"] = str(self._device)
            p["dtype"] = str(self._dtype).removeprefix("torch.")
            p["resolved_revision"] = getattr(self._model.config, "_commit_hash", None)
            p["bos_prepended"] = self._bos is not None
            p["token_budget_used"] = self._budget
            p["tokenizer_adds_bos"] = self._tok_bos
            p["logprobs"] = (
                f"lm_head on the last hidden state, {self._chunk} positions per chunk"
                if self._separable
                else f"model logits, {self._chunk} positions per chunk"
            )
        return p
