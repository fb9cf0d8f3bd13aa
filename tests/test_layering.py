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
