"""The command answers before loading the heavy libraries: ``--help``, ``--version`` and bad input never
import JAX, cvxpy, matplotlib or scipy.optimize (each costs 0.3-2 s a call), and ``import ufm`` is lean
while it still switches JAX to float64. Each check runs in a fresh interpreter (the test process has
everything loaded already)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("jax", "cvxpy", "matplotlib", "scipy.optimize", "optax")

#: Answers that must come before any heavy import: help, version, and one bad input of each kind and
#: command (a value, a combination of options, a missing option, the memory guard, a file).
LIGHT_CALLS = [
    ["--help"], ["--version"], ["solve", "--help"], ["verify", "--help"], ["sweep", "imbalance", "--help"],
    ["landscape", "--help"], ["explore", "--help"], ["batches", "check", "--help"], ["predict", "--help"],
    ["solve", "--tau", "0"], ["solve", "--counts", "8,8,2,1"], ["solve", "--bogus"], ["slove"],
    ["solve", "--counts", "10000000,10000000"], ["solve", "--method", "convex", "--counts", "400,400"],
    ["solve", "--float32", "--method", "convex"], ["solve", "--no-certify", "--gap-tol", "1e-3"],
    ["solve", "--method", "reduced", "--batching", "random", "--batch-size", "4"],
    ["solve", "--loss", "ce"], ["solve", "--relu", "--dim", "2"], ["solve", "--batching", "random"],
    ["solve", "--batching", "binding", "--batch-size", "3"], ["solve", "--batches-file", "/nonexistent.json"],
    ["predict", "--relu", "--dim", "2"], ["batches", "check", "--tau", "1"],
    ["verify", "--only", "no-such-check"], ["sweep", "temperature", "--taus", "0"],
    ["sweep", "imbalance", "--ratios", "3", "--n-max", "32"], ["sweep", "batching", "--batch-sizes", "100"],
    ["landscape", "--directions", "hessian", "--counts", "200,200"], ["explore", "--ratio", "1000"],
]

PROBE = r"""
import io, json, sys, contextlib
from ufm.app.cli import main
calls, heavy, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), []
for argv in calls:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    out.append([argv, code, [m for m in heavy if m in sys.modules]])
print(json.dumps(out))
"""


def _python(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_version_and_bad_input_load_no_heavy_library():
    results = json.loads(_python(PROBE, json.dumps(LIGHT_CALLS), json.dumps(HEAVY)))
    for argv, code, loaded in results:
        assert loaded == [], f"ufm {' '.join(argv)} imported {loaded}"
        assert code == (0 if "--help" in argv or "--version" in argv else 2), argv


def test_import_ufm_is_lean_and_still_switches_jax_to_float64():
    out = _python("import sys, ufm; print([m for m in %r if m in sys.modules]); import jax.numpy as jnp; "
                  "print(jnp.ones(2).dtype, jnp.asarray(0.1).dtype)" % (HEAVY,))
    assert out.split("\n")[:2] == ["[]", "float64 float64"]


def test_float64_also_where_jax_was_imported_first():
    assert _python("import jax, ufm, jax.numpy as jnp; print(jnp.ones(2).dtype)").strip() == "float64"


@pytest.mark.parametrize("name", ["Problem", "Batching", "scl_loss", "problem_loss", "CrossEntropy", "Solution",
                                  "ProblemError", "Prototypes", "check_conditions", "pack", "geometry",
                                  "batching", "enable_compile_cache"])
def test_every_public_name_resolves(name):
    import ufm
    assert name in ufm.__all__ and getattr(ufm, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    import ufm
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        ufm.nothing  # noqa: B018
