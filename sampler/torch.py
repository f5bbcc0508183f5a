"""PyTorch ``DataLoader`` adapters: a batch sampler driven by a ``Sampler`` and a map-style
dataset over a ``ShardSet``.

    ds = ShardDataset(OUT, columns=["text"])
    bs = BatchSampler(sampler, num_steps=10_000)
    loader = DataLoader(ds, batch_sampler=bs, num_workers=4, collate_fn=...)

Staleness contract: the DataLoader iterates the batch sampler in the *main* process and keeps
``num_workers * prefetch_factor`` batches in flight (1 with ``num_workers=0``), so the batch
consumed at step k was drawn when at most S = ``num_workers * prefetch_factor`` later updates had
not yet happened: every batch reflects all feedback up to step k - S. Workers only read rows; they
never touch the sampler, and draws / updates hold the sampler's lock, so a prefetch never sees a
half-applied update. ``BatchSampler.staleness(loader)`` returns S; ``draw_log`` records, for the
last ``log_window`` (default 1024) drawn steps, how many updates had been applied (the tests
check the bound); older entries are dropped, so a run of any length holds a bounded log.

Resume: the sampler state counts drawn steps; batches that were prefetched but not consumed when
the state was saved are not replayed (as with any prefetching loader). Use ``num_workers=0`` for
bit-exact resume of the batch sequence.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.utils.data

from .core import Sampler


class BatchSampler(torch.utils.data.Sampler):
    """Yields lists of row ids (this rank's slice) from ``sampler``; ``num_steps`` batches per
    iteration (forever when None; ``len()`` then raises ``TypeError``). ``draw_log`` keeps the
    last ``log_window`` (step, updates applied when drawn) pairs."""

    def __init__(
        self, sampler: Sampler, num_steps: int | None = None, log_window: int = 1024
    ) -> None:
        if num_steps is not None and (int(num_steps) != num_steps or num_steps < 0):
            raise ValueError(f"BatchSampler: num_steps must be an integer >= 0, got {num_steps!r}")
        if int(log_window) != log_window or log_window < 1:
            raise ValueError(
                f"BatchSampler: log_window must be an integer >= 1, got {log_window!r}"
            )
        self.sampler = sampler
        self.num_steps = num_steps
        # (step, updates applied when drawn), the last log_window draws only
        self.draw_log: deque[tuple[int, int]] = deque(maxlen=int(log_window))

    def __iter__(self) -> Iterator[list[int]]:
        k = 0
        while self.num_steps is None or k < self.num_steps:
            b = self.sampler.sample()
            self.draw_log.append((b.step, self.sampler.updates))
            yield b.indices.tolist()
            k += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("BatchSampler with num_steps=None is infinite")
        return self.num_steps

    @staticmethod
    def staleness(loader: torch.utils.data.DataLoader) -> int:
        """Steps of prefetch S this loader can hold: num_workers * prefetch_factor (1 if 0)."""
        if loader.num_workers == 0:
            return 1
        return loader.num_workers * (loader.prefetch_factor or 2)


class ShardDataset(torch.utils.data.Dataset):
    """Map-style dataset over a ShardSet (or a dataset path, opened lazily in each worker):
    ``ds[i]`` is row i as a dict; ``__getitems__`` fetches a whole batch with one ``take``.
    ``open_options`` (``cache_dir``, ``cache_limit``, ``storage``) go to ``ShardSet.open`` for a
    path; a ShardSet given is reopened in each worker with its own options. Workers of one host
    share the cache directory: a shard is downloaded once, and the sampler's prefetch (in the
    main process) fills the same cache."""

    def __init__(
        self, source: Any, columns: Sequence[str] | None = None, **open_options: Any
    ) -> None:
        self._path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        self._set = None if self._path is not None else source
        self._open_options = dict(open_options)
        self.columns = list(columns) if columns is not None else None
        self._len = int(self._shardset().num_rows)

    def _shardset(self) -> Any:
        if self._set is None:
            import shards

            self._set = shards.ShardSet.open(self._path, **self._open_options)
        return self._set

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._path is not None:
            state["_set"] = None  # reopen (memory-map) in the worker
        return state

    def __len__(self) -> int:
        return self._len

    def _rows(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        for i in indices:
            if not (0 <= int(i) < self._len):
                raise IndexError(f"row {i} out of range [0, {self._len})")
        table = self._shardset().take(list(map(int, indices)))
        if self.columns is not None:
            table = table.select(self.columns)
        return table.to_pylist()

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._rows([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return self._rows(indices)
