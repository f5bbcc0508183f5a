"""sampler.hf: a real ``transformers.Trainer`` run on a tiny GPT-2 built from a config (no
downloads) whose batches come from the sampler and whose per-example losses are fed back."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # transformers.Trainer needs it

from sampler import Sampler  # noqa: E402
from sampler import strategies as S  # noqa: E402
from sampler.hf import make_trainer, per_example_loss  # noqa: E402

N, T, V, B, STEPS = 64, 8, 64, 4, 5


class _Rows(torch.utils.data.Dataset):
    def __init__(self) -> None:
        rs = np.random.default_rng(0)
        self.ids = torch.from_numpy(rs.integers(0, V, (N, T))).long()

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _source() -> dict[str, np.ndarray]:
    rs = np.random.default_rng(1)
    return {
        "difficulty": rs.random(N).astype(np.float32),
        "cluster": (np.arange(N) % 4).astype(np.int32),
    }


class _Recorder(Sampler):
    """Records every batch served and every update received."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.served_log: list[list[int]] = []
        self.update_log: list[tuple[list[int], list[float]]] = []

    def sample(self):
        b = super().sample()
        self.served_log.append(b.indices.tolist())
        return b

    def update(self, indices, **fb):
        self.update_log.append((torch.as_tensor(indices).tolist(), fb["loss"].tolist()))
        return super().update(indices, **fb)


def _tiny_gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=V, n_positions=T, bos_token_id=0, eos_token_id=0, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg)


def _train(strategy, tmp_path) -> tuple[_Recorder, object]:
    model = _tiny_gpt2()
    sampler = _Recorder(_source(), strategy, batch_size=B, seed=3, device="cpu")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=STEPS,
        per_device_train_batch_size=B,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = make_trainer(sampler, model=model, args=args, train_dataset=_Rows())
    trainer.train()
    return sampler, model


def _check_feedback(sampler: _Recorder, model) -> None:
    # every optimisation step drew one batch from the sampler and fed its losses back
    assert len(sampler.update_log) == STEPS
    assert len(sampler.served_log) == STEPS  # num_workers=0: no batch drawn ahead
    assert sampler.updates == STEPS
    ds = _Rows()
    for served, (ids, losses) in zip(sampler.served_log, sampler.update_log, strict=True):
        assert ids == served  # the batch trained on is the batch the sampler served
        assert len(losses) == B and all(np.isfinite(losses)) and all(x > 0 for x in losses)
    # the losses fed back are real per-example losses of the model (check the last step)
    ids, losses = sampler.update_log[-1]
    x = ds.ids[ids]
    assert max(losses) > min(losses)  # per example, not one batch mean repeated
    with torch.no_grad():
        logits = model(input_ids=x).logits
    ref = per_example_loss(logits, x).tolist()
    # the model moved one optimiser step since, so only roughly equal
    assert np.allclose(losses, ref, rtol=0.2)
    assert sampler.feedback["loss_n"] == STEPS * B


def test_trainer_prioritized_receives_losses(tmp_path):
    sampler, model = _train(S.Prioritized(alpha=1.0, eps=1e-6), tmp_path)
    _check_feedback(sampler, model)
    leaves = sampler.strategy.tree.leaves()
    last: dict[int, float] = {}
    for ids, losses in sampler.update_log:
        last.update(zip(ids, losses, strict=True))
    for i, loss in last.items():  # priority of every updated item is its latest loss
        assert float(leaves[i]) == pytest.approx(loss + 1e-6, rel=1e-5)
    untouched = sorted(set(range(N)) - set(last))
    assert torch.all(leaves[untouched] == 1.0)


def test_trainer_ucb_receives_losses(tmp_path):
    strat = S.UCB(group="cluster", reward="loss", window=50)
    sampler, model = _train(strat, tmp_path)
    _check_feedback(sampler, model)
    st = sampler.stats()
    probs = np.asarray(st["group_probabilities"], dtype=np.float64)
    assert probs.shape == (4,) and np.isclose(probs.sum(), 1.0)
    assert not np.allclose(probs, 0.25)  # loss rewards moved the group probabilities


def _resumable(tmp_path, strategy, steps: int, ga: int, save_steps: int, workers: int = 0):
    model = _tiny_gpt2()
    sampler = _Recorder(_source(), strategy, batch_size=B, seed=3, device="cpu")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        gradient_accumulation_steps=ga,
        per_device_train_batch_size=B,
        learning_rate=1e-3,
        save_strategy="steps",
        save_steps=save_steps,
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=workers,
        disable_tqdm=True,
    )
    return sampler, model, make_trainer(sampler, model=model, args=args, train_dataset=_Rows())


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _same_state(a[k], b[k])
        elif isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        elif isinstance(a[k], float) and np.isnan(a[k]):
            assert np.isnan(b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize(
    "make, workers",
    [(lambda: S.UCB(group="cluster", reward="loss", window=50), 0), (S.Prioritized, 1)],
)
def test_trainer_resume_from_checkpoint_is_exact(tmp_path, make, workers):
    # uninterrupted: 6 optimizer steps of 2 micro-batches, checkpoints every 3 steps
    kw = {"steps": 6, "ga": 2, "save_steps": 3, "workers": workers}
    full, full_model, trainer = _resumable(tmp_path / "a", make(), **kw)
    trainer.train()
    ckpt = tmp_path / "a" / "checkpoint-3"
    assert (ckpt / "gradum_sampler.rank0.pt").exists()
    saved = torch.load(ckpt / "gradum_sampler.rank0.pt", weights_only=True)
    assert saved["consumed"] == 6
    # a loader worker prefetches 2 batches: drawn before the save, trained on after it
    assert saved["ahead"].shape[0] == 2 * workers
    # a fresh trainer, model and sampler resume from step 3
    res, res_model, trainer2 = _resumable(tmp_path / "b", make(), **kw)
    trainer2.train(resume_from_checkpoint=str(ckpt))
    # it trains on exactly the batches the uninterrupted run trained on after step 3
    assert [ids for ids, _ in res.update_log] == [ids for ids, _ in full.update_log[6:]]
    np.testing.assert_allclose(
        [x for _, ls in res.update_log for x in ls],
        [x for _, ls in full.update_log[6:] for x in ls],
        rtol=1e-6,
    )
    # ...and the sampler ends in the same state, feedback statistics included
    _same_state(full.state_dict(), res.state_dict())
    for p, q in zip(full_model.parameters(), res_model.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_trainer_resume_without_sampler_state_is_a_clear_error(tmp_path):
    (tmp_path / "ckpt").mkdir()
    _, _, trainer = _resumable(tmp_path, S.Uniform(), steps=2, ga=1, save_steps=1)
    with pytest.raises(ValueError, match="no sampler state"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "ckpt"))


class _Fixed(Sampler):
    """Serves a fixed sequence of ids in batches of ``batch_size`` (identical data for two
    trainer layouts); records the feedback it receives."""

    def __init__(self, ids: list[int], batch_size: int) -> None:
        super().__init__(_source(), S.Uniform(), batch_size=batch_size, seed=0, device="cpu")
        self.ids = ids
        self.update_log: list[tuple[list[int], list[float]]] = []

    def sample(self):
        from sampler.core import Batch

        k, b = self.step, self.batch_size
        idx = torch.tensor(self.ids[k * b : (k + 1) * b], dtype=torch.int64)
        self.step += 1
        return Batch(idx, k, None, idx)

    def update(self, indices, **fb):
        self.update_log.append((torch.as_tensor(indices).tolist(), fb["loss"].tolist()))
        return super().update(indices, **fb)


def _one_step(tmp_path, ga: int, micro: int, ids: list[int]):
    model = _tiny_gpt2()
    sampler = _Fixed(ids, micro)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=1,
        gradient_accumulation_steps=ga,
        per_device_train_batch_size=micro,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = make_trainer(sampler, model=model, args=args, train_dataset=_Rows())
    trainer.train()
    log = next(x for x in trainer.state.log_history if "loss" in x)
    return log, sampler


def test_trainer_gradient_accumulation_equals_one_big_batch(tmp_path):
    ids = [int(i) for i in np.random.default_rng(7).permutation(N)[:16]]
    big, s_big = _one_step(tmp_path / "big", ga=1, micro=16, ids=ids)
    acc, s_acc = _one_step(tmp_path / "acc", ga=4, micro=4, ids=ids)
    # same gradients: GA = 4 x 4 equals GA = 1 x 16 on the same 16 examples
    assert acc["grad_norm"] == pytest.approx(big["grad_norm"], rel=1e-5)
    # the logged loss is the true mean per-example loss at the initial weights
    x = _Rows().ids[ids]
    with torch.no_grad():
        true = float(per_example_loss(_tiny_gpt2()(input_ids=x).logits, x).mean())
    assert big["loss"] == pytest.approx(true, rel=1e-5)
    assert acc["loss"] == pytest.approx(true, rel=1e-5)
    assert true < 1.5 * np.log(V)  # a per-example mean, not GA times it
    # each example's loss reaches the sampler exactly once
    for s, n_updates in ((s_big, 1), (s_acc, 4)):
        assert len(s.update_log) == n_updates
        fed = [i for batch, _ in s.update_log for i in batch]
        assert sorted(fed) == sorted(ids)
        assert s.feedback["loss_n"] == 16
    fed_big = {i: x for b, ls in s_big.update_log for i, x in zip(b, ls, strict=True)}
    fed_acc = {i: x for b, ls in s_acc.update_log for i, x in zip(b, ls, strict=True)}
    for i in ids:  # same per-example losses (same weights: one optimizer step, after them)
        assert fed_acc[i] == pytest.approx(fed_big[i], rel=1e-5)
