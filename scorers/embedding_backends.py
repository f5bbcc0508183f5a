"""Inference backends of the embedding scorer: ``torch``, ``onnx``, ``onnx-int8``, ``openvino``.

The sentence-transformers model is always loaded (its tokenizer, pooling and normalisation
modules are reused as they are); a non-torch backend replaces only the transformer's
forward pass, ``last_hidden_state = encoder(input_ids, attention_mask[, token_type_ids])``.

- ``onnx``: the transformer exported to ONNX locally with ``torch.onnx.export`` (never a
  download; the packaged all-MiniLM-L6-v2 ships no ONNX file), run by ONNX Runtime's CPU
  execution provider in float32.
- ``onnx-int8``: the same graph with dynamic int8 quantisation of the MatMul weights
  (ONNX Runtime ``quantize_dynamic``, per-channel, activations quantised at run time with
  one scale per tensor, hence run one text at a time so that a text's embedding never
  depends on the batch it came in;
  Jacob et al. 2018, "Quantization and training of neural networks for efficient
  integer-arithmetic-only inference", arXiv:1712.05877).
- ``openvino``: the exported ONNX graph compiled by OpenVINO for the CPU, float32
  inference precision forced (OpenVINO would otherwise pick bf16 on CPUs that have it).

Exports are cached under ``$GRADUM_CACHE`` (default ``~/.cache/gradum``) in
``embedding/<sha256 of the weights, config and export recipe>/``; files are written
under a temporary name and renamed, so concurrent workers never read half a file.
Extras: ``gradum[embed-fast]`` (onnx, onnx-int8), ``gradum[embed-openvino]`` (openvino).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scorers.batching import pack_batches
from scorers.sigaltstack_guard import preserved_signal_stack

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
#: ``auto`` on CPU takes the first installed of these, fastest first (benchmarks/embedding.py,
#: benchmarks/README.md: 1 thread, python-docs, all-MiniLM-L6-v2 at 256 word pieces:
#: onnx-int8 4.8x torch at cosine 0.994; openvino 1.7x and onnx 1.4x, both float32-exact).
CPU_PREFERENCE = ("onnx-int8", "openvino", "onnx")
EXTRAS = {"onnx": "embed-fast", "onnx-int8": "embed-fast", "openvino": "embed-openvino"}
_NEEDS = {
    "torch": (),
    "onnx": ("onnx", "onnxruntime"),
    "onnx-int8": ("onnx", "onnxruntime"),
    "openvino": ("onnx", "openvino"),
}
#: Bump when the export recipe changes: it is part of the cache key.
EXPORT_RECIPE = "torch.onnx.export opset 17, dynamic batch/sequence; int8: quantize_dynamic v1"


def installed(backend: str) -> bool:
    """Whether the packages ``backend`` needs are importable (nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None for m in _NEEDS[backend])


def available_backends() -> list[str]:
    """The backends usable here, in :data:`BACKENDS` order."""
    return [b for b in BACKENDS if installed(b)]


def resolve_backend(backend: str, device: str) -> str:
    """``auto`` -> torch on CUDA, else the fastest installed CPU backend; others checked."""
    if backend == "auto":
        if device.startswith("cuda"):
            return "torch"
        return next((b for b in CPU_PREFERENCE if installed(b)), "torch")
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; choose auto or one of {BACKENDS}")
    if not installed(backend):
        missing = [m for m in _NEEDS[backend] if importlib.util.find_spec(m) is None]
        raise ImportError(
            f"embedding backend {backend!r} needs {missing}; "
            f"install the extra: pip install 'gradum[{EXTRAS[backend]}]'"
        )
    return backend


def cache_root() -> Path:
    """``$GRADUM_CACHE`` or ``~/.cache/gradum``."""
    env = os.environ.get("GRADUM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gradum"


def weights_digest(module: Any) -> str:
    """sha256 of a torch module's class, config, parameters and the export recipe."""
    h = hashlib.sha256()
    h.update(type(module).__name__.encode())
    h.update(EXPORT_RECIPE.encode())
    cfg = getattr(module, "config", None)
    if cfg is not None:
        h.update(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _atomic(target: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_dir)`` (it writes ``tmp_dir / target.name``), then rename into place."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".tmp-") as tmp:
        write(Path(tmp))
        for f in Path(tmp).iterdir():  # the graph last: its presence means complete
            if f.name != target.name:
                os.replace(f, target.parent / f.name)
        os.replace(Path(tmp) / target.name, target)
    return target


class _Encoder:
    """``last_hidden_state`` of the transformer, as a wrapper ``torch.onnx.export`` traces."""

    def __init__(self, model: Any, input_names: list[str]) -> None:
        torch = importlib.import_module("torch")

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args: Any) -> Any:
                out = self.model(**dict(zip(input_names, args, strict=True)), return_dict=True)
                return out.last_hidden_state

        self.module = Wrapped().eval()


def export_onnx(model: Any, input_names: list[str], sample: dict[str, Any], out: Path) -> None:
    """Export ``model`` (a transformers encoder) to ``out`` with dynamic batch and sequence."""
    torch = importlib.import_module("torch")
    wrapped = _Encoder(model, input_names).module
    args = tuple(sample[n] for n in input_names)
    axes = {n: {0: "batch", 1: "sequence"} for n in [*input_names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / deprecation chatter of a one-time export
        try:  # the TorchScript exporter: needs only ``onnx``, one self-contained file
            torch.onnx.export(
                wrapped,
                args,
                str(out),
                input_names=input_names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        except Exception as exc:  # noqa: BLE001 - newer torch: the dynamo exporter
            log.info("TorchScript ONNX export failed (%s); trying the dynamo exporter", exc)
            dim_b, dim_t = torch.export.Dim("batch"), torch.export.Dim("sequence")
            torch.onnx.export(
                wrapped,
                args,
                str(out),
                input_names=input_names,
                output_names=["last_hidden_state"],
                dynamic_shapes={n: {0: dim_b, 1: dim_t} for n in input_names},
                dynamo=True,
            )


def quantize_int8(src: Path, out: Path) -> None:
    """Dynamic int8 quantisation of ``src`` (weights per channel, signed int8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"],
    )


class CompiledEncoder:
    """Runs the exported transformer with ONNX Runtime or OpenVINO; returns torch tensors."""

    def __init__(self, st_model: Any, backend: str, threads: int | None = None) -> None:
        torch = importlib.import_module("torch")
        first = st_model[0]
        auto = first.auto_model
        tok = first.tokenizer
        self.output_name = getattr(first, "module_output_name", "token_embeddings")
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids")]
        sample = _preprocess(st_model, ["a sample sentence", "two"])
        self.input_names = [n for n in names if n in sample and n in tok.model_input_names]
        self.backend = backend
        # dynamic int8 quantises activations with one scale per input tensor: a batched
        # text's embedding would depend on its batch mates (up to 0.03 here), so run alone
        self.per_text = backend == "onnx-int8"
        self.threads = int(threads or torch.get_num_threads())
        folder = cache_root() / "embedding" / weights_digest(auto)
        fp32 = _atomic(
            folder / "model.onnx",
            lambda d: export_onnx(auto, self.input_names, sample, d / "model.onnx"),
        )
        if backend == "onnx-int8":
            graph = _atomic(
                folder / "model_qint8.onnx", lambda d: quantize_int8(fp32, d / "model_qint8.onnx")
            )
        else:
            graph = fp32
        self.path = graph
        self._run = (
            self._onnxruntime(graph) if backend.startswith("onnx") else self._openvino(graph)
        )

    def _onnxruntime(self, graph: Path) -> Callable[[dict[str, Any]], Any]:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
        return lambda feed: sess.run(["last_hidden_state"], feed)[0]

    def _openvino(self, graph: Path) -> Callable[[dict[str, Any]], Any]:
        import openvino as ov

        core = ov.Core()
        with preserved_signal_stack():  # see scorers.sigaltstack_guard: OpenVINO replaces it
            compiled = core.compile_model(
                core.read_model(str(graph)),
                "CPU",
                {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": "f32"},
            )
            request = compiled.create_infer_request()

        def run(feed: dict[str, Any]) -> Any:
            return request.infer(feed)[compiled.output(0)].copy()

        return run

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        """``features`` (from the model's preprocess) with the token embeddings added."""
        torch = importlib.import_module("torch")
        feed = {n: features[n].cpu().numpy().astype("int64") for n in self.input_names}
        features[self.output_name] = torch.from_numpy(self._run(feed))
        return features


def _preprocess(st_model: Any, texts: list[str]) -> dict[str, Any]:
    fn = getattr(st_model, "preprocess", None) or st_model.tokenize
    return dict(fn(texts))


def token_lengths(st_model: Any, texts: list[str]) -> list[int] | None:
    """Word pieces per text as the model sees them (special tokens included, cut at its
    ``max_seq_length``), from its Hugging Face tokenizer with the first module's own
    preparation (strip; lower case if it does); ``None`` when the first module has none."""
    first = st_model[0]
    tok = getattr(first, "tokenizer", None)
    if tok is None or not callable(tok):
        return None
    prepared = [t.strip() for t in texts]
    if getattr(first, "do_lower_case", False):
        prepared = [t.lower() for t in prepared]
    limit = st_model.max_seq_length
    ids = tok(
        prepared,
        add_special_tokens=True,
        truncation=limit is not None,
        max_length=None if limit is None else int(limit),
        return_attention_mask=False,
        return_token_type_ids=False,
    )["input_ids"]
    return [len(x) for x in ids]


def plan_batches(
    st_model: Any, texts: list[str], max_batch_size: int, token_budget: int | None
) -> list[list[int]]:
    """Batches of indices into ``texts``: sorted by word pieces (:func:`token_lengths`), cut
    so that ``size * longest <= token_budget`` and ``size <= max_batch_size``
    (:func:`scorers.batching.pack_batches`). ``token_budget`` None: batches of
    ``max_batch_size``, still sorted. A model without a Hugging Face tokenizer: sorted by
    characters, batches of ``max_batch_size`` (what sentence-transformers does)."""
    if token_budget is None and len(texts) <= max_batch_size:
        return [list(range(len(texts)))]  # one forward pass whatever the order: no lengths
    lengths = token_lengths(st_model, texts)
    if lengths is None or token_budget is None:
        key = (lambda i: len(texts[i])) if lengths is None else lengths.__getitem__
        order = sorted(range(len(texts)), key=lambda i: (-key(i), i))
        return [order[s : s + max_batch_size] for s in range(0, len(order), max_batch_size)]
    return pack_batches(lengths, token_budget, max_batch_size)


def encode(
    st_model: Any,
    enc: CompiledEncoder | None,
    texts: list[str],
    batches: list[list[int]],
    normalize: bool,
) -> Any:
    """Sentence embeddings (numpy float32, input order), one forward pass per batch of
    ``batches`` (indices into ``texts``, from :func:`plan_batches`). ``enc`` None: the
    torch model through ``SentenceTransformer.encode``; else the transformer from ``enc``,
    then the model's own remaining modules (pooling, dense, normalize), as ``encode``
    computes them. One text per run when ``enc.per_text`` (no padding, so that is about as
    fast on CPU)."""
    import numpy as np

    torch = importlib.import_module("torch")
    if enc is not None and enc.per_text:
        batches = [[i] for b in batches for i in b]
    parts = []
    with torch.inference_mode():
        for batch in batches:
            chunk = [texts[i] for i in batch]
            if enc is None:
                emb = st_model.encode(
                    chunk,
                    batch_size=len(chunk),
                    convert_to_numpy=True,
                    normalize_embeddings=normalize,
                    show_progress_bar=False,
                )
                parts.append(np.asarray(emb, dtype=np.float32))
                continue
            feats = enc.forward(_preprocess(st_model, chunk))
            for module in list(st_model)[1:]:
                feats = module(feats)
            emb = feats["sentence_embedding"].float()
            if normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            parts.append(emb.numpy())
    out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
    out[[i for b in batches for i in b]] = np.concatenate(parts)
    return out
