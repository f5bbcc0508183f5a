"""Hugging Face ``Trainer`` integration: the sampler chooses the training batches and receives
each example's loss after every forward pass (``transformers`` is imported lazily).

    from sampler.hf import make_trainer
    trainer = make_trainer(sampler, model=model, args=args, train_dataset=ds, data_collator=coll)
    trainer.train()

The train DataLoader uses ``sampler.torch.BatchSampler`` (one sampler step per device batch);
each example carries its row id (``gradum_index``), which ``compute_loss`` pops before the model
call; the per-example loss (token-mean cross-entropy for causal / masked LM logits with ``labels``
and the -100 ignore index, shifted for causal LMs) is fed back with ``sampler.update(ids,
loss=...)``. Staleness is the DataLoader's prefetch depth, as in ``sampler.torch``.
"""

from __future__ import annotations

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


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Any:
        return (int(i), self.ds[int(i)])


def make_trainer(sampler: Sampler, causal: bool = True, trainer_cls: Any = None, **kwargs: Any):
    """A ``transformers.Trainer`` (or subclass ``trainer_cls``) whose batches come from
    ``sampler`` and whose per-example losses are fed back to it."""
    tr = _transformers()
    base = trainer_cls or tr.Trainer
    collate = kwargs.pop("data_collator", None) or tr.default_data_collator

    class GradumTrainer(base):  # type: ignore[misc, valid-type]
        def get_train_dataloader(self) -> torch.utils.data.DataLoader:
            steps = self.args.max_steps * self.args.gradient_accumulation_steps
            if steps <= 0:
                raise ValueError(
                    "sampler.hf: set TrainingArguments(max_steps=...) (the sampler is infinite)"
                )

            def coll(items: list[tuple[int, Any]]) -> dict[str, Any]:
                batch = collate([x for _, x in items])
                batch["gradum_index"] = torch.tensor([i for i, _ in items], dtype=torch.int64)
                return batch

            return torch.utils.data.DataLoader(
                _Indexed(self.train_dataset),
                batch_sampler=BatchSampler(sampler, num_steps=steps),
                collate_fn=coll,
                num_workers=self.args.dataloader_num_workers,
            )

        def compute_loss(self, model, inputs, return_outputs=False, **kw):  # noqa: ANN001
            idx = inputs.pop("gradum_index", None)
            outputs = model(**inputs)
            if idx is None or "labels" not in inputs:
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
                return (loss, outputs) if return_outputs else loss
            per = per_example_loss(outputs["logits"], inputs["labels"], causal=causal)
            if model.training:
                sampler.update(idx.cpu(), loss=per.detach().cpu().double())
            loss = per.mean()
            return (loss, outputs) if return_outputs else loss

    kwargs.setdefault("args", None)
    if kwargs["args"] is not None:
        kwargs["args"].remove_unused_columns = False
    return GradumTrainer(data_collator=collate, **kwargs)
