"""Which rank a Sampler serves, and who holds the per-item state.

``share="host"`` (the default): on each host the lowest rank (the *host leader*) holds the
strategy's per-item state and draws every global batch; it broadcasts the batch to the other
ranks of its host, which hold no per-item state at all. Hosts are told apart by
``socket.gethostname()`` (or ``$GRADUM_HOST_ID``, which tests use to simulate hosts). The
leaders of different hosts hold identical states (the same seed, the same all-gathered
feedback), so they draw identical global batches. Per host: one copy of the state instead of
one per GPU.

``share="none"``: every rank holds the whole state and draws the global batch itself.

The binding is read from ``torch.distributed`` when the Sampler is built and checked again at
every draw and update (:func:`current`): a Sampler built before ``init_process_group`` is
rebound before its first draw, and a process group that changes after drawing started is an
error (see ``Sampler._ensure_ranks``).
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch

SHARES = ("host", "none")
_GROUPS: dict[tuple[Any, ...], Any] = {}


def current() -> tuple[int, int]:
    """(world size, rank) of the default process group; (1, 0) without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def comm_device(device: torch.device) -> torch.device:
    """Where collectives run: NCCL moves CUDA tensors only (the sampler's own GPU, else the
    current one); gloo and the others use the CPU."""
    if torch.distributed.get_backend() == "nccl":
        if device.type == "cuda":
            return device
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@dataclass
class Ranks:
    """How this process takes part: world size, rank, whether it holds the state (leader),
    the global rank of its host's leader, the ranks of its host and their process group
    (None: the default group)."""

    world: int
    rank: int
    share: str
    leader: bool = True
    leader_rank: int = 0
    host_ranks: tuple[int, ...] = (0,)
    group: Any = None

    @property
    def broadcasts(self) -> bool:
        """Whether batches travel from the host leader to other ranks of the host."""
        return self.share == "host" and len(self.host_ranks) > 1


def host_key() -> int:
    """63-bit id of this host (``$GRADUM_HOST_ID`` or the hostname)."""
    name = os.environ.get("GRADUM_HOST_ID") or socket.gethostname()
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "little") >> 1


def bind(share: str, device: torch.device) -> Ranks:
    """The binding for the current process group (a collective when world > 1 and
    ``share="host"``: every rank must call it, as every rank builds its Sampler)."""
    if share not in SHARES:
        raise ValueError(f"Sampler: share must be one of {SHARES}, got {share!r}")
    world, rank = current()
    if world == 1 or share == "none":
        return Ranks(world, rank, share, True, rank, (rank,), None)
    dist = torch.distributed
    dev = comm_device(device)
    mine = torch.tensor([host_key()], dtype=torch.int64, device=dev)
    keys = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(keys, mine)
    keys_l = [int(k.item()) for k in keys]
    hosts = list(dict.fromkeys(keys_l))  # in order of their lowest rank
    members = {h: tuple(r for r in range(world) if keys_l[r] == h) for h in hosts}
    here = members[keys_l[rank]]
    group = None
    if len(hosts) > 1:
        cache_key = (id(dist.group.WORLD), tuple(members[h] for h in hosts))
        if cache_key not in _GROUPS:  # new_group is collective: every rank makes every group
            _GROUPS[cache_key] = {h: dist.new_group(list(members[h])) for h in hosts}
        group = _GROUPS[cache_key][keys_l[rank]]
    return Ranks(world, rank, share, rank == here[0], here[0], here, group)


def broadcast(t: torch.Tensor, ranks: Ranks, device: torch.device) -> torch.Tensor:
    """``t`` from the host leader to every rank of its host (in place on the comm device);
    returns it on ``device``."""
    dev = comm_device(device)
    x = t.to(dev)
    torch.distributed.broadcast(x, src=ranks.leader_rank, group=ranks.group)
    return x.to(device)
