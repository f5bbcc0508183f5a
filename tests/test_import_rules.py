"""DESIGN §1: a training process never imports Beam or the model libraries."""

import subprocess
import sys

import pytest

HEAVY = ("apache_beam", "transformers", "sentence_transformers", "faiss", "datasets")


@pytest.mark.parametrize("module", ["sampler", "shards", "scorers", "pipelines.corpora"])
def test_light_packages_do_not_import_heavy_libraries(module):
    code = (
        f"import sys, {module}\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_gradum_shards_cli_path_does_not_import_beam():
    code = (
        "import sys\n"
        "from gradum_cli.main import main\n"
        "try:\n"
        "    main(['shards', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('HEAVY:' + ','.join(m for m in ('apache_beam', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: gradum shards" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY:"
