"""The objectives, one module per loss, and their registry (docs/architecture.md "Adding a loss").

An objective module supplies, for a :class:`~ufm.problem.Problem` whose ``objective`` names it:

- ``NAME``; a frozen dataclass of its options, validated with the problem (``validate(k, dim, relu)``);
- ``constraint_set(problem)`` (``ufm.constraint_sets``) and ``start(problem, key, dtype)``;
- ``solver_value(problem)``: the JAX function of the parameters that gradient descent minimises (for
  gradient descent and the landscape's Hessians);
- ``evaluate(problem, params)``: the float64 loss, its excess (the loss minus its geometry-free
  constant) and a lower bound proved without the solver, as an ``Evaluation``;
- ``predict(problem)``: the theory's prediction of the optimum.

SCL (``ufm.objectives.scl``) is the default objective (``Problem.objective is None``); its JAX value,
excess constant and reduced class-level form live in ``ufm.excess`` and ``ufm.loss``, its certificate
and convex programs in ``solvers``. Cross-entropy (``ufm.objectives.ce``; its options, without JAX,
in ``ufm.objectives.ce_options``) is written through the interface above and solved by the generic
path of ``solvers.gd``.

The registry names each module and imports it on first use, so that describing a problem (the
command's checks) loads no JAX.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType


class _Registry(Mapping):
    """Objective name -> its module, imported on first lookup."""

    def __init__(self, modules: dict[str, str]):
        self._modules = modules

    def __getitem__(self, name: str) -> ModuleType:
        return importlib.import_module(self._modules[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


#: The registry: a new loss is one module plus one entry here.
OBJECTIVES = _Registry({"scl": "ufm.objectives.scl", "ce": "ufm.objectives.ce"})


def objective_of(problem) -> ModuleType:
    """The module of the problem's objective."""
    return OBJECTIVES["scl" if problem.objective is None else problem.objective.name]
