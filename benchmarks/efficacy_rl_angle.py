"""Angle concentration of prompts under the RL task's own policy, computed by the scorer the
pipeline uses (``scorers.lm.LanguageModelScorer``), not a copy of its formula.

GAIN-RL (Wang et al. 2025, "Angles Don't Lie", arXiv 2506.02281) ranks prompts by the angle
concentration of the policy's hidden states on the prompt: the mean pairwise cosine between the
per-token hidden states h_1..h_n of the last layer, exactly (||sum_i x_i||^2 - n) / (n (n - 1))
with x_i = h_i / ||h_i|| (``scorers.lm``). ``PolicyScorer`` runs that scorer on a TinyGPT
(``benchmarks.efficacy_model``): it binds the scorer's model hooks to the policy instead of a
Hugging Face checkpoint (the final LayerNorm's output is the "last hidden state", as
``hidden_states[n_layers]`` of transformers), and tokenizes with the task's own encoder (no BOS:
a prompt's own tokens only). One forward pass also gives the prompt's perplexity and confidence.

Coupling: ``scorers.lm`` exposes no pure angle function, so this adapter sets the attributes its
``_load`` would set (``_base``, ``_head``, ``_layer_k``, ...); ``tests/test_efficacy_rl.py``
checks the result against a direct computation, so a change there fails loudly here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from benchmarks.efficacy_model import TinyGPT
from scorers.lm import LanguageModelScorer
from scorers.lm_forward import chunk_positions, resolve_layer


class _Trunk(nn.Module):
    """The policy without its head, called the way the scorer calls a base model: returns a
    tuple whose first item is the last hidden state (after the final LayerNorm)."""

    def __init__(self, gpt: TinyGPT) -> None:
        super().__init__()
        self.gpt = gpt
        self.blocks = gpt.blocks  # the decoder blocks, found by the scorer for other layers

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: object
    ) -> tuple[torch.Tensor]:
        g = self.gpt
        h = g.tok(input_ids) + g.pos(torch.arange(input_ids.shape[1], device=input_ids.device))
        for blk in g.blocks:
            h = blk(h)  # causal: right padding never reaches a real position
        return (g.ln(h),)


class PolicyScorer(LanguageModelScorer):
    """``scorers.lm``'s perplexity, confidence and angle concentration under a TinyGPT policy;
    ``encode(text) -> token ids`` is the task's tokenizer."""

    def __init__(
        self, policy: TinyGPT, encode: Callable[[str], list[int]], layer: int = -1
    ) -> None:
        super().__init__(model="efficacy-rl-policy", device="cpu", dtype="float32", layer=layer)
        self._policy, self._encode_one = policy, encode

    def _load(self) -> None:
        if self._model is not None:
            return
        policy = self._policy.eval()
        n_layers = len(policy.blocks)
        self._model, self._tok = policy, None
        self._torch, self._device, self._dtype = torch, torch.device("cpu"), torch.float32
        self._base, self._head = _Trunk(policy), policy.head
        self._layer_k, self._n_layers = resolve_layer(self.layer, n_layers), n_layers
        self._separable = True
        self._chunk = chunk_positions(int(policy.head.weight.shape[0]), self.chunk_elements)
        self._bos, self._tok_bos, self._bos_id = None, False, None
        self.max_tokens = int(policy.pos.weight.shape[0])

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        self._load()
        return [list(self._encode_one(t))[: self.max_tokens] for t in texts]


def policy_angles(
    policy: TinyGPT, prompts: Sequence[str], encode: Callable[[str], list[int]]
) -> np.ndarray:
    """Angle concentration of each prompt under ``policy`` (float32, NaN below 2 tokens)."""
    with torch.no_grad():
        return PolicyScorer(policy, encode).score(list(prompts))["angle_concentration"]
