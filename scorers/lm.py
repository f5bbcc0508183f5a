"""``lm``: perplexity, confidence and angle concentration from ONE causal-LM forward pass.

For a text tokenized as t_1..t_L (a BOS token t_0 is prepended when the tokenizer has one
and does not add it itself), with next-token log-probabilities from the model:

- ``perplexity`` = exp( -(1/L) * sum_{i=1..L} ln p(t_i | t_<i) )  (direction +1);
  the standard causal-LM perplexity (e.g. Marion et al. 2023, "When less is more:
  investigating data pruning for pretraining LLMs at scale", arXiv:2309.04564).
- ``confidence`` = (1/L) * sum_i p(t_i | t_<i), the mean probability given to the true next
  token (direction -1), as in data-maps style confidence (Swayamdipta et al. 2020).
- ``angle_concentration`` = mean pairwise cosine between the hidden states h_1..h_n
  (layer ``layer``, default the last) of the text's own tokens, padding and the prepended
  BOS excluded. With unit vectors x_i = h_i / ||h_i||, exactly
  (||sum_i x_i||^2 - n) / (n (n - 1)), O(n d) (GAIN-RL, Wang et al. 2025,
  arXiv:2506.02281). Direction -1.

Policies (recorded in ``describe()``):
- truncation: texts are first cut to ``max_tokens * 32`` characters (so a 10 MB text is
  never tokenized whole), then to the first ``max_tokens`` tokens (BOS included); no stride.
- lone surrogates are replaced with U+FFFD before tokenization.
- batching: texts are sorted by token length, packed so that
  ``batch_size * longest <= token_budget``, right-padded (padding never influences real
  positions of a causal LM), and the outputs are put back in input order.
- device: CUDA when available (bf16 there), else CPU float32; log-softmax in float32.
- ``trust_remote_code`` is False unless the caller sets it.

Edge cases: a text with no predicted token (empty text with no BOS token) gives NaN
perplexity and confidence; fewer than 2 own tokens gives NaN angle concentration.
Whitespace, emoji, control characters and non-Latin text are scored like any text
(byte-level tokenizers cover every byte). A batch whose forward pass fails is retried one
text at a time, and the failing text raises :class:`ScoringError` with its position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scorers._lazy import require
from scorers.base import Scorer, ScoringError, check_texts, preview, replace_surrogates

CHARS_PER_TOKEN_CAP = 32


def pack_batches(lengths: Sequence[int], token_budget: int, max_batch_size: int) -> list[list[int]]:
    """Indices sorted by decreasing length, packed so that size * longest <= token_budget."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        ln = max(1, lengths[i])
        new_longest = max(longest, ln)
        if cur and ((len(cur) + 1) * new_longest > token_budget or len(cur) >= max_batch_size):
            batches.append(cur)
            cur, new_longest = [], ln
        cur.append(i)
        longest = new_longest
    if cur:
        batches.append(cur)
    return batches


class LanguageModelScorer(Scorer):
    name = "lm"
    version = "1"
    outputs = {"perplexity": +1, "confidence": -1, "angle_concentration": -1}

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_tokens: int = 512,
        token_budget: int = 8192,
        max_batch_size: int = 64,
        layer: int = -1,
        prepend_bos: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        self.model_name = str(model)
        self.revision = revision
        self.max_tokens = int(max_tokens)
        self.token_budget = max(int(token_budget), self.max_tokens)
        self.max_batch_size = int(max_batch_size)
        self.layer = int(layer)
        self.prepend_bos = bool(prepend_bos)
        self.trust_remote_code = bool(trust_remote_code)
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
        self._bos = bos if (self.prepend_bos and bos is not None and probe[:1] != [bos]) else None

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
            ids = self._tok(clean, add_special_tokens=True)["input_ids"]
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
        for batch in pack_batches([len(x) for x in ids], self.token_budget, self.max_batch_size):
            try:
                rows = self._forward([ids[i] for i in batch])
            except Exception:  # noqa: BLE001 - isolate the failing text
                rows = []
                for i in batch:
                    try:
                        rows.extend(self._forward([ids[i]]))
                    except Exception as exc:  # noqa: BLE001
                        raise ScoringError(i, preview(texts[i]), exc) from exc
            for i, (ppl, conf, ang) in zip(batch, rows, strict=True):
                out["perplexity"][i] = ppl
                out["confidence"][i] = conf
                out["angle_concentration"][i] = ang
        return out

    def _forward(self, seqs: list[list[int]]) -> list[tuple[float, float, float]]:
        torch = self._torch
        lengths = [len(s) for s in seqs]
        width = max(lengths)
        if width == 0:
            return [(math.nan, math.nan, math.nan)] * len(seqs)
        input_ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            input_ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, : len(s)] = 1
        input_ids, mask = input_ids.to(self._device), mask.to(self._device)
        with torch.inference_mode():
            res = self._model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
            logp = torch.log_softmax(res.logits[:, :-1].float(), dim=-1)
            tgt_logp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, W-1)
            pred_mask = mask[:, 1:].float()
            npred = pred_mask.sum(1)
            tgt_logp = torch.where(pred_mask > 0, tgt_logp, 0.0)
            mean_nll = -(tgt_logp * pred_mask).sum(1) / npred.clamp(min=1)
            mean_p = (tgt_logp.exp() * pred_mask).sum(1) / npred.clamp(min=1)
            hid = res.hidden_states[self.layer].float()
            unit = torch.nn.functional.normalize(hid, dim=-1)
            own = mask.clone().float()
            if self._bos is not None:
                own[:, 0] = 0.0
            nown = own.sum(1)
            ssum = torch.where(own[..., None] > 0, unit, 0.0).sum(1)
            sq = (ssum * ssum).sum(-1)
            ang = (sq - nown) / (nown * (nown - 1)).clamp(min=1)
        rows = []
        for r in range(len(seqs)):
            k, m = int(npred[r].item()), int(nown[r].item())
            ppl = math.exp(mean_nll[r].item()) if k > 0 else math.nan
            conf = mean_p[r].item() if k > 0 else math.nan
            a = ang[r].item() if m >= 2 else math.nan
            rows.append((ppl, conf, a))
        return rows

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "model": self.model_name,
            "revision": self.revision,
            "max_tokens": self.max_tokens,
            "truncation": f"first {CHARS_PER_TOKEN_CAP}*max_tokens chars, then first max_tokens "
            "tokens; no stride",
            "prepend_bos": self.prepend_bos,
            "hidden_state_layer": self.layer,
            "token_budget": self.token_budget,
            "trust_remote_code": self.trust_remote_code,
            "surrogates": "replaced with U+FFFD",
        }
        if self._model is not None:
            p["device"] = str(self._device)
            p["dtype"] = str(self._dtype).removeprefix("torch.")
            p["resolved_revision"] = getattr(self._model.config, "_commit_hash", None)
            p["bos_prepended"] = self._bos is not None
        return p
