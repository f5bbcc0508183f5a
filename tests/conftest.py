"""Test-wide settings: never touch the network."""

import os

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_report_header(config):  # noqa: ARG001
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if torch.cuda.is_available():
        return f"sampler GPU tests: CUDA {torch.cuda.get_device_name(0)}"
    return "sampler GPU tests: CUDA not available, tests/test_sampler_gpu.py cuda cases skipped"
