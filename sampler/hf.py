"""Hugging Face ``Trainer`` integration: the sampler chooses the training batches and receives
each example's loss after every forward pass (``transformers`` is imported lazily).

    from sampler.hf import make_trainer
    trainer = make_trainer(sampler, model=model, args=args, train_dataset=ds, data_collator=coll)
    trainer.train()

The train DataLoader uses ``sampler.torch.BatchSampler`` (one sampler step per device batch);
each example carries its row id (``gradum_index``), which ``compute_loss`` pops before the model
call; the per-example loss (token-mean cross-entropy for causal / masked LM logits with ``labels``
and the -100 ignore index, shifted for causal LMs) is fed back with ``sampler.update(ids,
loss=...)``. Staleness is the DataLoader's prefetch depth, as in ``sampler.torch``: the
Trainer fetches ``gradient_accumulation_steps`` batches per optimizer step and accelerate's loader
draws one batch ahead, so a batch reflects the feedback of all but the last GA + 1 batches.

Gradient accumulation: ``compute_loss`` returns the mean per-example loss of its micro-batch and
tells the Trainer that this loss is *not* normalised by ``num_items_in_batch``
(``loss_is_scaled_for_ga = False``, ``model_accepts_loss_kwargs = False``), so the Trainer
divides it by the number of micro-batches A of the optimizer step:

    L = sum_{a < A} (1 / A) (1 / B) sum_{i in batch a} l_i = (1 / (A B)) sum_i l_i

which is the mean per-example loss over the A B examples of the step (every micro-batch holds
B examples: the sampler always serves full batches). Gradients, and the logged loss, are
therefore the same for GA = 4 x batch 4 as for GA = 1 x batch 16 on the same examples; each
example's loss reaches the sampler once, in the micro-batch it was trained in.

Resume: every checkpoint the Trainer saves gets ``gradum_sampler.rank{r}.pt`` (the sampler's
``state_dict``, the number of batches trained on, and the batches already drawn ahead but not yet
trained on); ``trainer.train(resume_from_checkpoint=...)`` restores it, replays the drawn-ahead
batches first, and then continues drawing, so the resumed run trains on exactly the batches of an
uninterrupted run and the sampler ends in the same state. The Trainer's own data skipping is
turned off (``ignore_data_skip=True``): the sampler's state is the data position.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from typing import Any

import torch

from .core import Sampler
from .torch import BatchSampler


def _transformers():
    try:
        import transformers
    except ImportError as e:  # pragma: no cover
        raise ImportError(
            "sampler.hf needs transformers: pip install 'gradum[pipeline]' or transformers"
        ) from e
    return transformers


def per_example_loss(
    logits: torch.Tensor, labels: torch.Tensor, causal: bool = True
) -> torch.Tensor:
    """Token-mean cross-entropy per example ([B, T, V] logits, [B, T] labels, -100 ignored)."""
    if causal:
        logits, labels = logits[:, :-1], labels[:, 1:]
    tok = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(labels.shape)
    mask = (labels != -100).to(tok.dtype)
    return (tok * mask).sum(1) / mask.sum(1).clamp(min=1)


STATE_FILE = "gradum_sampler.rank{rank}.pt"


class _Indexed(torch.utils.data.Dataset):
    """Items are ``(row, step)`` pairs from ``_Feed``; returns them with the row's example."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        i, step = key
        return (int(i), int(step), self.ds[int(i)])


class _Position:
    """Where training stands: batches trained on, the last sampler step trained on, batches
    drawn recently (to know which were drawn ahead), and batches to replay after a resume."""

    def __init__(self) -> None:
        self.consumed = 0
        self.last_step = -1
        self.drawn: deque[tuple[int, list[int]]] = deque(maxlen=1024)
        self.replay: list[tuple[int, list[int]]] = []

    def ahead(self) -> list[tuple[int, list[int]]]:
        return [(s, idx) for s, idx in self.drawn if s > self.last_step]


class _Feed(BatchSampler):
    """Replays ``pos.replay`` first, then draws; yields ``(row, step)`` pairs."""

    def __init__(self, sampler: Sampler, num_steps: int, pos: _Position) -> None:
        super().__init__(sampler, num_steps)
        self.pos = pos

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:  # type: ignore[override]
        for _ in range(self.num_steps or 0):
            if self.pos.replay:
                step, idx = self.pos.replay.pop(0)
            else:
                b = self.sampler.sample()
                step, idx = b.step, b.indices.tolist()
                self.draw_log.append((step, self.sampler.updates))
            self.pos.drawn.append((step, idx))
            yield [(i, step) for i in idx]


def _state_path(folder: str, rank: int) -> str:
    return os.path.join(folder, STATE_FILE.format(rank=rank))


def check_world_size(sampler: Sampler, args: Any) -> None:
    """Raise ``ValueError`` unless the Trainer's world size (``args.world_size``: the process
    group its arguments set up) is the sampler's; a sampler built before the group existed is
    rebound first."""
    if args is None:
        return
    world = int(getattr(args, "world_size", 1) or 1)
    if world != sampler.world_size:
        sampler._ensure_ranks()  # built before the process group: bind now (no draw yet)
    if world != sampler.world_size:
        raise ValueError(
            f"sampler.hf: the Trainer runs {world} processes but the Sampler was built for "
            f"world size {sampler.world_size}; build the Sampler after TrainingArguments (which "
            "sets up the process group), so each rank serves its own slice"
        )


def make_trainer(sampler: Sampler, causal: bool = True, trainer_cls: Any = None, **kwargs: Any):
    """A ``transformers.Trainer`` (or subclass ``trainer_cls``) whose batches come from
    ``sampler``, whose per-example losses are fed back to it, and whose checkpoints carry the
    sampler's state (exact resume with ``train(resume_from_checkpoint=...)``). The Trainer's
    world size must be the sampler's (``check_world_size``)."""
    tr = _transformers()
    check_world_size(sampler, kwargs.get("args"))
    base = trainer_cls or tr.Trainer
    collate = kwargs.pop("data_collator", None) or tr.default_data_collator
    pos = _Position()

    class _SaveSampler(tr.TrainerCallback):
        def on_save(self, args, state, control, **kw):  # noqa: ANN001
            folder = os.path.join(
                args.output_dir, f"{tr.trainer_utils.PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            )
            ahead = pos.ahead()
            torch.save(
                {
                    "sampler": sampler.state_dict(),
                    "consumed": pos.consumed,
                    "last_step": pos.last_step,
                    "ahead_steps": torch.tensor([s for s, _ in ahead], dtype=torch.int64),
                    "ahead": torch.tensor([idx for _, idx in ahead], dtype=torch.int64),
                },
                _state_path(folder, args.process_index),
            )
            return control

    class GradumTrainer(base):  # type: ignore[misc, valid-type]
        # compute_loss returns a per-micro-batch mean: the Trainer must divide by the number
        # of accumulated micro-batches (see the module docstring)
        loss_is_scaled_for_ga = False

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.model_accepts_loss_kwargs = False  # transformers < 5: same decision

        def train(self, resume_from_checkpoint: str | bool | None = None, **kw: Any):
            folder = resume_from_checkpoint
            if folder is True:
                folder = tr.trainer_utils.get_last_checkpoint(self.args.output_dir)
            if isinstance(folder, str):
                self._load_sampler(folder)
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kw)

        def _load_sampler(self, folder: str) -> None:
            path = _state_path(folder, self.args.process_index)
            if not os.path.exists(path):
                raise ValueError(
                    f"sampler.hf: {folder} holds no sampler state ({os.path.basename(path)}); "
                    "was it saved by a trainer from make_trainer?"
                )
            saved = torch.load(path, weights_only=True)
            sampler.load_state_dict(saved["sampler"])
            pos.consumed, pos.last_step = int(saved["consumed"]), int(saved["last_step"])
            pos.replay = list(
                zip(saved["ahead_steps"].tolist(), saved["ahead"].tolist(), strict=True)
            )
            pos.drawn.clear()

        def get_train_dataloader(self) -> torch.utils.data.DataLoader:
            steps = self.args.max_steps * self.args.gradient_accumulation_steps
            if steps <= 0:
                raise ValueError(
                    "sampler.hf: set TrainingArguments(max_steps=...) (the sampler is infinite)"
                )

            def coll(items: list[tuple[int, int, Any]]) -> dict[str, Any]:
                batch = collate([x for _, _, x in items])
                batch["gradum_index"] = torch.tensor([i for i, _, _ in items], dtype=torch.int64)
                batch["gradum_step"] = torch.tensor([s for _, s, _ in items], dtype=torch.int64)
                return batch

            return torch.utils.data.DataLoader(
                _Indexed(self.train_dataset),
                batch_sampler=_Feed(sampler, max(0, steps - pos.consumed), pos),
                collate_fn=coll,
                num_workers=self.args.dataloader_num_workers,
            )

        def compute_loss(self, model, inputs, return_outputs=False, **kw):  # noqa: ANN001
            # num_items_in_batch (if any) is ignored on purpose: the loss is a per-example
            # mean and the Trainer divides it by the accumulation steps
            kw.pop("num_items_in_batch", None)
            idx = inputs.pop("gradum_index", None)
            step = inputs.pop("gradum_step", None)
            outputs = model(**inputs)
            if idx is None or "labels" not in inputs:
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
                return (loss, outputs) if return_outputs else loss
            per = per_example_loss(outputs["logits"], inputs["labels"], causal=causal)
            if model.training:
                sampler.update(idx.cpu(), loss=per.detach().cpu().double())
                pos.consumed += 1
                if step is not None and step.numel():
                    pos.last_step = max(pos.last_step, int(step.max()))
            loss = per.mean()
            return (loss, outputs) if return_outputs else loss

    kwargs.setdefault("args", None)
    if kwargs["args"] is not None:
        kwargs["args"].remove_unused_columns = False
        kwargs["args"].ignore_data_skip = True
    callbacks = list(kwargs.pop("callbacks", None) or []) + [_SaveSampler()]
    return GradumTrainer(data_collator=collate, callbacks=callbacks, **kwargs)
