"""The Sampler's counters, snapshots (``state_dict`` / ``load_state_dict``) and ``stats()``.

A rank that holds no per-item state (``share="host"``, not its host's leader) saves a
*partial* state: the counters, an empty ``seen`` vector and no strategy state. It loads a
partial or a full state (keeping the counters); a state holder refuses a partial one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import feedback as fb_

FORMAT = "gradum.sampler/1"


def snapshot(obj: Any) -> Any:
    """A deep copy of a state: tensors cloned to the CPU, dicts / lists copied recursively."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


def held_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of the tensors reachable from ``obj`` (attributes, lists, dicts), each once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(held_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(held_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return held_bytes(vars(obj), seen)
    return 0


class StateMixin:
    """State handling of :class:`sampler.Sampler` (see that class)."""

    def _reset_counters(self) -> None:
        self.step = 0
        self.updates = 0
        self.served = 0
        self.difficulty_sum = 0.0
        self.difficulty_n = 0  # served records with a difficulty (NaN ones are not averaged)
        self.last_difficulty = float("nan")
        self.feedback = fb_.empty_sums()
        self.validation = dict(self.feedback)

    def device_bytes(self) -> int:
        """Bytes of the tensors this rank holds for the sampler (per-item state, coverage,
        difficulty, group state): what it keeps on its device."""
        parts = [self.strategy, self.difficulty, self.coverage]
        return held_bytes(parts) if self.ranks.leader else 0

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the whole state (every tensor a CPU copy): later draws and updates
        never change a state already returned, on any device. Partial on a rank that holds
        no per-item state."""
        with self._lock:
            return snapshot(self._state())

    def _state(self) -> dict[str, Any]:
        leader = self.ranks.leader
        return {
            "format": FORMAT,
            "strategy": self.strategy.name,
            "n": self.n,
            "seed": self.seed,
            "global_batch": self.global_batch,
            "step": self.step,
            "updates": self.updates,
            "served": self.served,
            "difficulty_sum": self.difficulty_sum,
            "difficulty_n": self.difficulty_n,
            "last_difficulty": self.last_difficulty,
            "seen": self.coverage.to_bytes() if leader else torch.zeros(0, dtype=torch.uint8),
            "feedback": self.feedback,
            "validation": self.validation,
            "strategy_state": self.strategy.state_dict() if leader else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``; a mismatching state raises ``ValueError`` and changes
        nothing. A different world size is accepted (elastic resume): the stream continues from
        the saved step with the new global batch size."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("load_state_dict: not a gradum sampler state")
        for key, mine in (("strategy", self.strategy.name), ("n", self.n), ("seed", self.seed)):
            if state.get(key) != mine:
                raise ValueError(
                    f"load_state_dict: state has {key}={state.get(key)!r}, sampler has {mine!r}"
                )
        seen = state.get("seen")
        if self.ranks.leader and isinstance(seen, torch.Tensor) and seen.numel() == 0:
            raise ValueError(
                "load_state_dict: this state was saved on a rank that held no per-item state "
                "(share='host'); load the state saved on the host leader (rank 0)"
            )
        with self._lock:
            backup = self.state_dict()
            try:
                self._load(state)
            except Exception as e:
                self._load(backup)
                raise ValueError(f"load_state_dict: {e}") from e
            self._version += 1
        if self._planner is not None:
            self._planner.poke()

    def _load(self, state: dict[str, Any]) -> None:
        seen = state["seen"]
        if self.ranks.leader:
            if not isinstance(seen, torch.Tensor) or seen.numel() != self.n:
                raise ValueError("coverage vector length does not match the source")
            self.strategy.load_state_dict(state["strategy_state"])
            self.coverage.load_bytes(seen)
        self.step = int(state["step"])
        self.updates = int(state["updates"])
        self.served = int(state["served"])
        self.difficulty_sum = float(state["difficulty_sum"])
        self.difficulty_n = int(state.get("difficulty_n", self.served))
        self.last_difficulty = float(state["last_difficulty"])
        self.feedback = dict(state["feedback"])
        self.validation = dict(state["validation"])

    def stats(self) -> dict[str, Any]:
        """step, served, coverage (fraction of items served at least once), mean difficulty
        served (overall and last batch), entropy of the current draw distribution, mean feedback
        values (training and validation kept apart), plus strategy specifics
        (``group_probabilities`` for group strategies). A rank without the per-item state
        reports the counters, and ``state_rank``: the rank that holds it."""
        with self._lock:
            leader = self.ranks.leader
            has_d = self.difficulty_n and (self.difficulty is not None or not leader)
            out: dict[str, Any] = {
                "strategy": self.strategy.name,
                "step": self.step,
                "updates": self.updates,
                "served": self.served,
                "coverage": self.coverage.count() / self.n if leader else float("nan"),
                "mean_difficulty_served": (  # over served records that have a difficulty
                    self.difficulty_sum / self.difficulty_n if has_d else float("nan")
                ),
                "last_batch_difficulty": self.last_difficulty,
                "bytes_per_item": self.bytes_per_item,
                "state_rank": self.ranks.leader_rank,
            }
            for name, acc in (("feedback", self.feedback), ("validation", self.validation)):
                out[name] = {"count": acc["count"]} | {
                    f"mean_{s}": acc[f"{s}_sum"] / acc[f"{s}_n"]
                    for s in fb_.SIGNALS
                    if acc[f"{s}_n"]
                }
            if leader:
                out.update(self.strategy.stats(self.step))
            if "entropy" in out and not math.isfinite(out["entropy"]):
                out["entropy"] = float("nan")
            return out
