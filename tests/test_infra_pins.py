"""The Dataflow images install what the tests ran with (issue 23): every pin of
infra/dataflow/requirements.txt is the version installed here, every package of the extras the
images install has a pin, and the images' Python and Beam versions are this environment's."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
DATAFLOW = ROOT / "infra" / "dataflow"
# The extras the worker image installs (worker.Dockerfile: gradum[pipeline,embed-fast]).
IMAGE_EXTRAS = ("pipeline", "embed-fast")


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503)."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (DATAFLOW / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        assert match, f"requirements.txt: {line!r} is not an exact pin (name==version)"
        pins[_name(match.group(1))] = match.group(3)
    return pins


def _release(version: str) -> str:
    """The version without its local label: torch's 2.13.0+cpu is release 2.13.0."""
    return version.split("+", 1)[0]


def test_every_pin_is_the_installed_version():
    wrong = {}
    for name, pinned in _pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if _release(installed) != pinned:
            wrong[name] = f"pinned {pinned}, tested with {installed}"
    assert not wrong, f"infra/dataflow/requirements.txt differs from this environment: {wrong}"


def test_every_package_the_images_install_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in IMAGE_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    missing = {_name(r) for r in wanted} - set(_pins())
    assert not missing, f"not pinned in infra/dataflow/requirements.txt: {sorted(missing)}"


def test_the_images_python_and_beam_are_this_environments():
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    launcher = (DATAFLOW / "Dockerfile").read_text()
    worker = (DATAFLOW / "worker.Dockerfile").read_text()
    assert f"python{python.replace('.', '')}-template-launcher-base" in launcher
    assert f"apache/beam_python{python}_sdk:" in worker
    beam = re.search(r"ARG BEAM_VERSION=(\S+)", worker).group(1)
    assert beam == _pins()["apache-beam"] == _release(metadata.version("apache-beam"))
