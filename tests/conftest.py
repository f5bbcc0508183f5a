"""Test-wide settings: never touch the network."""

import os
import tempfile

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX / OpenVINO exports of the embedding model (content-addressed, written atomically):
# shared by test sessions, never in the user's ~/.cache
os.environ.setdefault("GRADUM_CACHE_DIR", os.path.join(tempfile.gettempdir(), "gradum-test-cache"))
