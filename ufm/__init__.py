"""ufm-scl: the unconstrained features model (UFM) with the supervised contrastive loss (SCL).

Importing the package switches JAX to float64 (``jax_enable_x64``): verification runs in double
precision; float32 is an explicit option of the solvers. JAX itself is not imported here: where it is
already loaded its configuration is updated, otherwise ``JAX_ENABLE_X64=1`` is set for the import that
comes later (JAX reads it then). So ``import ufm`` and the command's argument checks stay fast, and
the names below load their module on first use (PEP 562).

The library leaves the rest of the user's JAX configuration alone; :func:`enable_compile_cache` is the
one call that keeps compiled programs on disk across processes (the ``ufm`` command makes it).
"""

from __future__ import annotations

import importlib
import os
import sys

if "jax" in sys.modules:
    sys.modules["jax"].config.update("jax_enable_x64", True)
else:
    os.environ["JAX_ENABLE_X64"] = "1"

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first access).
_EXPORTS = {
    "Batching": "ufm.batching", "check_conditions": "ufm.batching", "pack": "ufm.batching",
    "ProblemError": "ufm.errors",
    "problem_loss": "ufm.objectives.scl.losses", "scl_loss": "ufm.objectives.scl.losses",
    "CrossEntropy": "ufm.objectives.ce_options", "SCL": "ufm.objectives.scl_options",
    "register_objective": "ufm.objectives",
    "Problem": "ufm.problem", "Prototypes": "ufm.problem",
    "Solution": "ufm.solution",
    "enable_compile_cache": "ufm.compile_cache",
}
#: Public names that differ from the name in their module.
_RENAMED = {"register_objective": "register"}
_SUBMODULES = ("batching", "geometry")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    elif name in _SUBMODULES:
        value = importlib.import_module(f"ufm.{name}")
    else:
        raise AttributeError(f"module 'ufm' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
