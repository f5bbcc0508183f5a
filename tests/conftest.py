"""Test-wide settings: never touch the network, never write to ~/.cache.

The caches gradum and its libraries write (``GRADUM_CACHE``: remote shards fetched by
``shards.remote``; the datasets library's cache; matplotlib's font cache) point into one
temporary directory for the session, removed at its end; subprocesses inherit them.
"""

import atexit
import os
import shutil
import tempfile

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist (``make test`` runs TEST_WORKERS processes) the cores are shared: each
# process's math libraries (torch's OpenMP pool, BLAS) and the jobs' subprocesses get their
# share, not every core (oversubscribed OpenMP pools spin: a 2-thread torch step ran 2.6x slower
# than a 1-thread one beside a second test process on 2 cores).
_TEST_PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _TEST_PROCESSES > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _share = str(max(1, (_cores or 1) // _TEST_PROCESSES))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, _share)

_CACHE_ROOT = tempfile.mkdtemp(prefix="gradum-test-cache-")
atexit.register(shutil.rmtree, _CACHE_ROOT, ignore_errors=True)
os.environ["GRADUM_CACHE"] = os.path.join(_CACHE_ROOT, "gradum")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_CACHE_ROOT, "hf-datasets")
os.environ["MPLCONFIGDIR"] = os.path.join(_CACHE_ROOT, "matplotlib")


def pytest_report_header(config):  # noqa: ARG001
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    if torch.cuda.is_available():
        return f"sampler GPU tests: CUDA {torch.cuda.get_device_name(0)}"
    return "sampler GPU tests: CUDA not available, tests/test_sampler_gpu.py cuda cases skipped"


def pytest_addoption(parser):
    """Job servers for tests/test_runners.py (also from the environment, same names upper-cased
    with underscores): the cluster runners' tests run only where one is given."""
    group = parser.getgroup("gradum runners")
    for name, what in (
        ("gradum-flink-job-server-jar", "Beam's Flink job-server jar"),
        ("gradum-spark-job-server-jar", "Beam's Spark job-server jar"),
        ("gradum-prism-binary", "the Prism runner's binary"),
    ):
        group.addoption(f"--{name}", default=None, metavar="PATH", help=f"{what} (PATH)")
