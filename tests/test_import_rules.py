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


# DESIGN §1: which gradum packages each package may import (lazily or not).
ALLOWED = {
    "scorers": {"scorers"},
    "shards": {"shards"},
    "pipelines": {"pipelines", "scorers", "shards"},
    "sampler": {"sampler", "shards"},
}
GRADUM_PACKAGES = set(ALLOWED) | {"gradum_cli"}


def _imported_packages(path):
    """(line, top-level gradum package) of every import in ``path``, at any depth, including
    ``importlib.import_module("x.y")`` / ``find_spec("x.y")`` with a literal name."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "find_spec", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        for name in names:
            top = name.split(".")[0]
            if top in GRADUM_PACKAGES:
                yield node.lineno, top


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_what_design_allows(package):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    bad = [
        f"{path.relative_to(root)}:{line} imports {top}"
        for path in sorted((root / package).rglob("*.py"))
        for line, top in _imported_packages(path)
        if top not in ALLOWED[package]
    ]
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}: " + "; ".join(bad)


def test_import_rule_check_sees_lazy_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "def f():\n"
        "    import importlib.util\n"
        "    if importlib.util.find_spec('sampler.cli'):\n"
        "        from sampler.cli import main\n"
    )
    assert {top for _, top in _imported_packages(src)} == {"sampler"}


def test_tests_never_write_to_the_home_cache():
    """tests/conftest.py points gradum's cache (shards.remote) into a temporary directory."""
    import os
    import tempfile

    from shards.remote import default_cache_dir

    home_cache = os.path.join(os.path.expanduser("~"), ".cache")
    assert not str(default_cache_dir()).startswith(home_cache)
    assert str(default_cache_dir()).startswith(tempfile.gettempdir())


def _module_imports(root, package: str) -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports, at any depth (lazy imports too)."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m.split(".")[0] == package}
    known = set(graph)
    return {m: {d for d in deps if d in known and d != m} for m, deps in graph.items()}


@pytest.mark.parametrize("package", ["pipelines", "shards", "sampler", "scorers"])
def test_no_import_cycles(package):
    """No module of a package imports (even lazily, inside a function) a module that imports
    it back, directly or through others: each subpackage has one role and one direction."""
    from pathlib import Path

    graph = _module_imports(Path(__file__).resolve().parent.parent, package)
    # A package's __init__ importing its own modules is not a cycle of roles.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
