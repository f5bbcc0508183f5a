"""Test-wide settings: never touch the network."""

import os
import tempfile

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX / OpenVINO exports of the embedding model (content-addressed, written atomically):
# shared by test sessions, never in the user's ~/.cache
os.environ.setdefault("GRADUM_CACHE", os.path.join(tempfile.gettempdir(), "gradum-test-cache"))


def pytest_report_header(config):  # noqa: ARG001
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if torch.cuda.is_available():
        return f"sampler GPU tests: CUDA {torch.cuda.get_device_name(0)}"
    return "sampler GPU tests: CUDA not available, tests/test_sampler_gpu.py cuda cases skipped"
