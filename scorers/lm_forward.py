"""The lean causal-LM forward pass behind ``scorers.lm``: per-token log-probabilities and
one hidden layer, without the B x T x V float32 copies.

Per-token log-probability of the true next token t at a position with hidden state h::

    ln p(t | h) = z_t - logsumexp_v z_v,    z = head(h)   (V logits)

computed on the real (non-padding) predicting positions only, ``chunk`` positions at a
time, each chunk's logits upcast to float32, so the peak extra memory is
``chunk * V * 4`` bytes (the exponentials are taken in place) instead of the
full ``B * T * V`` logits, their float32 copy and the log-softmax (~10 GB at 8,192 tokens
and a 128k vocabulary). The model's own logits are used unchanged when the head cannot be
applied separately (:func:`head_is_separable` says when).

The angle layer is captured by a forward hook (``output_hidden_states`` would keep every
layer): ``hidden_states[k]`` of transformers is the input of decoder block ``k`` for
``k < n_layers`` and the base model's (final-normed) output for ``k = n_layers``.
"""

from __future__ import annotations

from typing import Any

#: Default budget of one chunk of float32 logits: 16 MiB (4M elements).
DEFAULT_CHUNK_ELEMENTS = 1 << 22
#: ``sum(exp(z))`` without the max shift is used when it lies in [this, inf): every term
#: dropped to underflow is then below 1e-28 of it (as with the shift); else the shifted form.
_UNSHIFTED_MIN = 1e-10


def chunk_positions(vocab_size: int, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> int:
    """Positions per chunk so that ``positions * vocab_size <= chunk_elements`` (at least 1)."""
    return max(1, int(chunk_elements) // max(1, int(vocab_size)))


def decoder_layers(base: Any, n_layers: int) -> Any:
    """The ``ModuleList`` of the decoder blocks of ``base`` (GPT-2 ``h``, Llama ``layers``...)."""
    torch = __import__("torch")
    for _, mod in base.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layers:
            return mod
    raise ValueError(f"cannot find the {n_layers} decoder blocks of {type(base).__name__}")


def resolve_layer(layer: int, n_layers: int) -> int:
    """``layer`` as an index into the ``n_layers + 1`` hidden states (negative from the end)."""
    k = layer + n_layers + 1 if layer < 0 else layer
    if not 0 <= k <= n_layers:
        raise ValueError(f"layer {layer} out of range for a model with {n_layers} layers")
    return k


class LayerCapture:
    """Keeps ``hidden_states[k]`` of the next forward pass, and nothing else.

    ``k == n_layers``: the base model's output (``last_hidden_state``); else the input of
    decoder block ``k`` (a forward pre-hook). Use as a context manager around the forward.
    """

    def __init__(self, base: Any, k: int, n_layers: int) -> None:
        self.base, self.k, self.n_layers = base, k, n_layers
        self.value: Any = None
        self._handle: Any = None

    def __enter__(self) -> LayerCapture:
        self.value = None
        if self.k == self.n_layers:
            self._handle = self.base.register_forward_hook(self._on_output)
        else:
            block = decoder_layers(self.base, self.n_layers)[self.k]
            self._handle = block.register_forward_pre_hook(self._on_input, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def _on_output(self, module: Any, args: Any, output: Any) -> None:
        self.value = output[0] if isinstance(output, tuple) else output.last_hidden_state

    def _on_input(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.value = args[0] if args else kwargs["hidden_states"]


def gather_logprobs(flat: Any, positions: Any, targets: Any, project: Any, chunk: int) -> Any:
    """ln p(target) at each of ``positions`` (rows of ``flat``: hidden states, or logits).

    ``flat`` is (B*T, D) or (B*T, V), a view of the model's output; rows are picked
    ``chunk`` at a time (no copy of all of them); ``project`` maps picked rows to their
    logits (the LM head, or the identity when they already are logits). Returns float32 (N,).

    ``logsumexp(z)`` is ``log(sum(exp(z)))`` computed in place on the chunk (two passes over
    the logits instead of four: no max, no shifted copy) wherever that sum is finite and at
    least ``_UNSHIFTED_MIN`` (for LM logits, all of magnitude well below 88, it is); rows
    outside that range (a logit above ~88, or all far below 0) are recomputed with
    ``torch.logsumexp``. The two agree to float32 rounding; on CPU the product and these
    two passes cost ~7 % less than the product and ``torch.logsumexp``.
    """
    torch = __import__("torch")
    out = torch.empty(positions.shape[0], dtype=torch.float32, device=flat.device)
    for s in range(0, positions.shape[0], chunk):
        picked = positions[s : s + chunk]
        z = project(flat.index_select(0, picked)).float()  # a new tensor: safe to overwrite
        zt = z.gather(-1, targets[s : s + chunk, None]).squeeze(-1)
        total = z.exp_().sum(-1)
        del z
        lse = total.log()
        bad = ~(torch.isfinite(total) & (total >= _UNSHIFTED_MIN))
        if bool(bad.any()):
            rows = bad.nonzero().squeeze(-1)
            lse[rows] = torch.logsumexp(project(flat.index_select(0, picked[rows])).float(), -1)
        out[s : s + chunk] = zt - lse
    return out


def head_is_separable(model: Any, input_ids: Any) -> bool:
    """True when ``lm_head(base(x))`` reproduces ``model(x).logits`` on a probe input.

    False for models that transform the logits after the head (e.g. Gemma 2's final logit
    soft-capping, Cohere's ``logit_scale``); the scorer then reads the model's logits.
    """
    torch = __import__("torch")
    head = model.get_output_embeddings()
    if head is None:
        return False
    with torch.inference_mode():
        full = model(input_ids=input_ids, use_cache=False).logits.float()
        hid = model.base_model(input_ids=input_ids, use_cache=False)[0]
        mine = head(hid).float()
    if full.shape != mine.shape:
        return False
    tol = 1e-4 if hid.dtype == torch.float32 else 2e-2
    scale = full.abs().max().clamp(min=1.0)
    return bool(((full - mine).abs().max() / scale) <= tol)
