"""Reducible-loss selection (RHO-LOSS: Mindermann et al., "Prioritized Training on Points that
are Learnable, Worth Learning, and Not Yet Learnt", ICML 2022).

    reducible_i = loss_i - irreducible_i

``loss_i`` is the trainer's *current* loss on record i; ``irreducible_i`` is the loss of a small
reference model on the same record. The reference model must be trained on **held-out data**
(records the trainer does not train on, from the same distribution, noise included): then noise
(random bytes, shuffled words) has a high loss under both models and a low reducible loss, and
what is already learnt (duplicated boilerplate) has a low loss under the trainer: both are
skipped; what is learnable and not yet learnt is kept. A reference model trained on the
training split itself has memorised part of it and under-states its irreducible loss. The
pipeline's ``--lm reference`` (per-token log perplexity) trains on the first records of its own
input, so for this column pass ``--lm PATH`` with a model trained on held-out data;
``benchmarks/efficacy_tasks.py`` (``attach_reference``) trains one in-benchmark.

Two forms:

Online (the paper's): each step the trainer draws a candidate batch of ``n_b / keep`` records
(e.g. from ``Uniform``), computes their loss in one forward pass without gradients, and trains on
the ``keep`` fraction with the largest reducible loss::

    cand = next(candidate_sampler).indices                  # n_B = batch / keep ids
    with torch.no_grad():
        loss = per_example_loss(model, rows(cand))
    sel = sampler.select(cand, loss, irreducible[cand], keep=0.25)
    train_step(rows(sel.indices))                           # n_b = batch ids

Per-step cost: one extra forward pass over n_B = n_b / keep records. A training step is about
3 forward passes over n_b records (forward + backward), so a step costs (3 + 1 / keep) / 3 of a
uniform step: 2.33x at keep = 0.25, 1.67x at keep = 0.5 (plus O(n_B) for the top-k itself).
Count that when comparing steps: ``benchmarks/efficacy.py`` reports forward-pass FLOPs.

Cheap (no extra forward pass): the loss the trainer computed last time it saw a record, through
the ``Prioritized`` strategy, fed ``reducible_loss(loss, irreducible)`` instead of the loss::

    s = Sampler(cols, strategies.Prioritized(signal="loss", alpha=1.0), batch_size=32)
    ...
    s.update(batch.indices, loss=sampler.reducible_loss(per_example, irreducible[batch.indices]))

The priority is then stale (last-seen loss, not the current one) and unseen records keep the
initial priority, but the cost per step is the same as uniform's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Selection(NamedTuple):
    """What ``select`` keeps: ``indices`` (candidate ids, largest reducible loss first),
    ``positions`` (where they are in the candidate batch, to index its rows) and ``reducible``
    (their reducible losses)."""

    indices: torch.Tensor
    positions: torch.Tensor
    reducible: torch.Tensor


def _as_1d_float(name: str, value, n: int | None) -> torch.Tensor:
    t = torch.as_tensor(value)
    if t.dtype == torch.bool or not (t.is_floating_point() or t.dtype in _INT_TYPES):
        raise ValueError(f"{name}: expected real numbers, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if t.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D tensor, got shape {tuple(t.shape)}")
    if n is not None and t.numel() != n:
        raise ValueError(f"{name}: expected {n} values (one per candidate), got {t.numel()}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: NaN or infinite values")
    return t


_INT_TYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def reducible_loss(loss, irreducible, floor: float | None = 0.0) -> torch.Tensor:
    """``loss - irreducible`` per record (float64), clamped below at ``floor`` (``None``: no
    clamp). The clamp makes it a valid ``Prioritized`` feedback: that strategy takes ``|x|``, so a
    negative reducible loss (trainer already better than the reference) must not become a large
    priority. Bad input (shapes, NaN / inf) raises ``ValueError``."""
    lo = _as_1d_float("loss", loss, None)
    irr = _as_1d_float("irreducible", irreducible, lo.numel())
    if floor is not None and not (isinstance(floor, (int, float)) and floor == floor):
        raise ValueError(f"floor must be a number or None, got {floor!r}")
    red = lo.to(irr.device) - irr
    return red if floor is None else red.clamp(min=float(floor))


def kept_count(n: int, keep: float | int) -> int:
    """How many of ``n`` candidates ``keep`` keeps: a float in (0, 1] is a fraction (rounded,
    at least 1), an int >= 1 a count (at most ``n``)."""
    if isinstance(keep, bool):
        raise ValueError(f"keep must be a fraction in (0, 1] or a count >= 1, got {keep!r}")
    if isinstance(keep, int):
        if not 1 <= keep <= n:
            raise ValueError(f"keep: a count must be in [1, {n}] (candidates), got {keep}")
        return keep
    if isinstance(keep, float) and 0.0 < keep <= 1.0:
        return max(1, min(n, int(round(keep * n))))
    raise ValueError(f"keep must be a fraction in (0, 1] or a count >= 1, got {keep!r}")


def select(candidates, loss, irreducible, keep: float | int = 0.1) -> Selection:
    """Keep the candidates with the largest reducible loss (``loss - irreducible``).

    ``candidates``: 1-D integer ids (a candidate batch); ``loss``: the trainer's current
    per-candidate loss; ``irreducible``: the reference model's loss on the same candidates, in
    the same order and the same units; ``keep``: fraction in (0, 1] (rounded, at least one) or a
    count. Ties go to the earlier candidate, so the result is deterministic. Empty or mismatched
    input, non-integer ids, NaN / inf losses or a bad ``keep`` raise ``ValueError``.
    Cost: O(n_B) (a top-k on the candidates' device); the forward pass that produced ``loss``
    is the real cost (see the module docstring)."""
    ids = torch.as_tensor(candidates)
    if ids.dim() != 1:
        raise ValueError(f"candidates: expected a 1-D tensor of ids, got shape {tuple(ids.shape)}")
    if ids.dtype not in _INT_TYPES:
        raise ValueError(f"candidates: expected integer ids, got dtype {ids.dtype}")
    n = ids.numel()
    if n == 0:
        raise ValueError("candidates: empty candidate batch")
    k = kept_count(n, keep)
    red = reducible_loss(loss, irreducible, floor=None)
    # stable descending order: sort by (-reducible, position)
    order = torch.sort(-red, stable=True).indices[:k]
    pos = order.to(ids.device)
    return Selection(ids[pos], pos, red[order])
