"""Imports point only downward (docs/architecture.md): the model (``ufm``), then ``solvers``, then
``theory_checks``, then the front ends (``ufm.app``, ``ufm.__main__``). Every import statement is
parsed, including those inside functions, so a lazy import cannot hide an upward edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ufm", "solvers", "theory_checks")
FRONT_ENDS = ("ufm.app", "ufm.__main__")


def layer(module: str) -> int | None:
    """1 model, 2 solvers, 3 theory_checks, 4 front ends; None for anything outside the project."""
    if any(module == f or module.startswith(f + ".") for f in FRONT_ENDS):
        return 4
    top = module.split(".")[0]
    return {"ufm": 1, "solvers": 2, "theory_checks": 3}.get(top)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imported_modules(source: str, importer: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source``, at any depth. ``from a import b`` counts as the
    module ``a.b`` where that is a module of the project, else as ``a``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = importer.split(".") if is_package else importer.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else base))
    return found


def upward_imports(path: Path) -> list[str]:
    importer = module_name(path)
    own = layer(importer)
    return [f"{path.relative_to(ROOT)}:{line} ({importer}, layer {own}) imports {target} "
            f"(layer {layer(target)})"
            for line, target in imported_modules(path.read_text(), importer, path.name == "__init__.py")
            if layer(target) is not None and layer(target) > own]


SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_layering_test_sees_every_package():
    names = {module_name(p) for p in SOURCES}
    assert {"ufm.problem", "solvers.gd", "theory_checks.catalogue", "ufm.app.cli"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_only_downward(path):
    assert upward_imports(path) == []


def test_an_upward_import_inside_a_function_is_caught():
    source = "import numpy\n\ndef f():\n    from theory_checks.predictions import predict\n    from ufm import app\n"
    found = [t for _, t in imported_modules(source, "solvers.gd")]
    assert "theory_checks.predictions" in found and "ufm.app" in found
    assert all(layer(t) is None or layer(t) > 2 for t in found if t != "numpy")


def test_relative_imports_are_resolved():
    found = [t for _, t in imported_modules("from .cli import main\nfrom . import plots\n", "ufm.app.explore")]
    assert found == ["ufm.app.cli", "ufm.app.plots"]


# ---------------------------------------------------------------- benchmarks/ and examples/
#: The top layer: they may import every package, but only its public names (no ``_name``, no
#: module whose path has a ``_part``); their own modules (``benchmarks.x``, ``examples/_common``) are theirs.
USERS = sorted(p for folder in ("benchmarks", "examples") for p in (ROOT / folder).rglob("*.py"))


def private_names(source: str) -> list[tuple[int, str]]:
    """(line, name) of every import of the project's private names or modules in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        else:
            continue
        found += [(line, name) for line, name in names if layer(name) is not None and
                  any(part.startswith("_") and part not in ("__main__", "__init__") for part in name.split("."))]
    return found


def test_the_users_test_sees_benchmarks_and_examples():
    names = {p.relative_to(ROOT).as_posix() for p in USERS}
    assert {"benchmarks/peers.py", "examples/prototypes.py"} <= names


@pytest.mark.parametrize("path", USERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_benchmarks_and_examples_use_only_public_names(path):
    assert private_names(path.read_text()) == []


def test_a_private_import_is_caught():
    source = "from ufm.objectives.scl.formula import _private\nimport solvers._hidden\nfrom numpy import _x\nimport ufm.__main__\n"
    assert private_names(source) == [(1, "ufm.objectives.scl.formula._private"), (2, "solvers._hidden")]


def test_the_layer_table_names_every_module():
    """docs/architecture.md's layer table names every module of the packages (its last name)."""
    import re

    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("## Layers"):text.index("## Starting fast")]
    named = set(re.findall(r"[A-Za-z_]+", " ".join(re.findall(r"`([^`]+)`", table))))
    missing = sorted(module_name(p) for p in SOURCES
                     if module_name(p).split(".")[-1] not in named | {"ufm", "solvers", "theory_checks"})
    assert missing == []


#: The longest a function of the packages may be (docs/architecture.md, "Readable code").
MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_sixty_lines():
    long = [f"{p.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in SOURCES for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


#: A loss's own modules: outside ``ufm/objectives/`` nothing imports them (the registry finds them).
LOSS_MODULES = ("ufm.objectives.scl", "ufm.objectives.ce", "ufm.objectives.scl_options", "ufm.objectives.ce_options")


def loss_imports(path: Path) -> list[str]:
    """Imports of a loss's own modules from a module outside ``ufm/objectives/``."""
    importer = module_name(path)
    if importer == "ufm.objectives" or importer.startswith("ufm.objectives."):
        return []
    return [f"{path.relative_to(ROOT)}:{line} imports {target}"
            for line, target in imported_modules(path.read_text(), importer, path.name == "__init__.py")
            if any(target == m or target.startswith(m + ".") for m in LOSS_MODULES)]


def test_no_module_outside_the_objectives_imports_a_loss_by_name():
    """Solvers, checks, the model and the command dispatch through the registry
    (``ufm.objectives.implementation``): none imports SCL's or cross-entropy's modules."""
    found = [line for path in SOURCES for line in loss_imports(path)]
    assert found == [], "\n".join(found)


def test_the_loss_import_test_catches_one(tmp_path):
    fake = ROOT / "solvers" / "gd.py"
    source = "def f():\n    from ufm.objectives.scl.precise import log_excess_packed\n"
    hits = [t for _, t in imported_modules(source, module_name(fake))
            if any(t == m or t.startswith(m + ".") for m in LOSS_MODULES)]
    assert hits == ["ufm.objectives.scl.precise"]
