"""Peak memory of the lm scorer's forward pass: version 1 vs the lean forward, side by side.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lm_memory.py [--vocab 32000 --tokens 1024
     --batches 1,4]

The same random GPT-2-style model (vocab ``--vocab``, 2 layers, width 64, so the logits
dominate) scores the same random token ids, ``batch`` sequences of ``--tokens`` tokens:

- ``v1``: the version-1 code path: ``output_hidden_states=True``, the B x T x V logits
  copied to float32 and ``log_softmax`` over all of them, then gather;
- ``lean``: ``LanguageModelScorer._forward`` (scorers.lm_forward): the LM head applied
  to the last hidden state in chunks of real positions, one hidden layer kept by a hook.

Each variant runs in a fresh process. Peak = the process's peak resident set during the
forward minus its resident set just before (Linux: VmHWM reset through
/proc/self/clear_refs); on CUDA, ``torch.cuda.max_memory_allocated`` minus the allocated
memory before. The values of both variants are compared (max relative difference).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 1 << 20


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def _v1_forward(model, input_ids, mask):  # type: ignore[no-untyped-def]
    """The version-1 computation (scorers/lm.py before the lean forward)."""
    import torch

    with torch.inference_mode():
        res = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        logp = torch.log_softmax(res.logits[:, :-1].float(), dim=-1)
        tgt = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        pred = mask[:, 1:].float()
        n = pred.sum(1)
        ppl = torch.exp(-(tgt * pred).sum(1) / n)
        conf = (tgt.exp() * pred).sum(1) / n
        unit = torch.nn.functional.normalize(res.hidden_states[-1].float(), dim=-1)[:, 1:]
        ssum = unit.sum(1)
        m = unit.shape[1]
        ang = ((ssum * ssum).sum(-1) - m) / (m * (m - 1))
    return [(float(a), float(b), float(c)) for a, b, c in zip(ppl, conf, ang, strict=True)]


def _child(variant: str, path: str, batch: int, tokens: int, vocab: int, q: mp.Queue) -> None:
    import torch

    import scorers

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    s = scorers.get(
        "lm", model=path, max_tokens=tokens, token_budget=batch * tokens, max_batch_size=batch
    )
    s._load()
    dev = s._device
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (batch, tokens), generator=gen)
    ids[:, 0] = s._bos_id
    seqs = ids.tolist()
    mask = torch.ones_like(ids)
    if variant == "v1":
        x, mk = ids.to(dev), mask.to(dev)

        def run():  # type: ignore[no-untyped-def]
            return _v1_forward(s._model, x, mk)
    else:

        def run():  # type: ignore[no-untyped-def]
            return s._forward(seqs)

    warm_ids = [q_[:8] for q_ in seqs]
    if variant == "v1":
        _v1_forward(s._model, ids[:, :8].to(dev), mask[:, :8].to(dev))
    else:
        s._forward(warm_ids)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        _reset_peak()
        before = _status_kib("VmRSS") * 1024
    t0 = time.perf_counter()
    rows = run()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _status_kib("VmHWM") * 1024 - before
    q.put({"peak_bytes": peak, "seconds": time.perf_counter() - t0, "rows": rows})


def _build_model(vocab: int, tokens: int, out: Path) -> str:
    import torch
    import transformers

    from scorers.reference_lm import train_tokenizer

    tok = train_tokenizer(["a tiny tokenizer; the model has the large vocabulary"], 300)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=tokens,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    transformers.GPT2LMHeadModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def measure(variant: str, path: str, batch: int, tokens: int, vocab: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(variant, path, batch, tokens, vocab, q))
    p.start()
    res = q.get()
    p.join()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus"
    )
    print(f"# load average before: {os.getloadavg()}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = _build_model(a.vocab, a.tokens, Path(tmp) / "m")
        print(f"vocab {a.vocab}, {a.tokens} tokens per sequence; peak over the forward pass")
        print(
            f"{'batch':>5} {'v1 MiB':>9} {'lean MiB':>9} {'saving':>7} {'v1 s':>6} "
            f"{'lean s':>6} {'max rel diff':>12}"
        )
        for batch in [int(b) for b in a.batches.split(",")]:
            v1 = measure("v1", path, batch, a.tokens, a.vocab)
            lean = measure("lean", path, batch, a.tokens, a.vocab)
            diff = max(
                abs(x - y) / max(abs(x), 1e-12)
                for r1, r2 in zip(v1["rows"], lean["rows"], strict=True)
                for x, y in zip(r1, r2, strict=True)
            )
            row = {
                "batch": batch,
                "tokens": a.tokens,
                "vocab": a.vocab,
                "v1_peak_mib": v1["peak_bytes"] / MIB,
                "lean_peak_mib": lean["peak_bytes"] / MIB,
                "saving": v1["peak_bytes"] / max(lean["peak_bytes"], 1),
                "v1_seconds": v1["seconds"],
                "lean_seconds": lean["seconds"],
                "max_rel_diff": diff,
            }
            results.append(row)
            print(
                f"{batch:>5} {row['v1_peak_mib']:>9.1f} {row['lean_peak_mib']:>9.1f} "
                f"{row['saving']:>6.1f}x {row['v1_seconds']:>6.2f} {row['lean_seconds']:>6.2f} "
                f"{diff:>12.2e}"
            )
    print(f"# load average after: {os.getloadavg()}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
