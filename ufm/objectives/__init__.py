"""The objectives and their registry (docs/architecture.md "How to add a loss").

A loss is its options (held by the Problem, validated before any work, no JAX) and its implementation
(a module or an object that declares its capabilities, :mod:`ufm.objectives.base`). The registry maps
a name to both; the implementation is imported on first use, so describing a problem (the command's
checks) loads no JAX. SCL (``ufm.objectives.scl``) and cross-entropy (``ufm.objectives.ce``) are
registered below; a new loss is one file plus one call of :func:`register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ufm.errors import ProblemError

if TYPE_CHECKING:     # annotations only (ufm.problem imports this package)
    from types import ModuleType

    from ufm.problem import Problem
from ufm.objectives.base import (Capability, Evaluation, Objective, ObjectiveOptions,  # noqa: F401
                                 ObjectivePrediction, has, require)


def _load(target: Any) -> Any:
    """``target`` itself, or the attribute a ``"module:attribute"`` string names (a bare module path:
    the module)."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


class _Registry(Mapping):
    """Objective name -> its implementation (imported on first lookup); :meth:`options` -> its options
    class."""

    def __init__(self):
        self._entries: dict[str, tuple[Any, Any]] = {}
        self._declared: dict[str, frozenset[Capability]] = {}

    def register(self, name: str, options: type[ObjectiveOptions] | str,
                 implementation: Objective | ModuleType | str,
                 capabilities: frozenset[Capability] | None = None) -> None:
        self._entries[name] = (options, implementation)
        self._declared.pop(name, None)
        if capabilities is not None:
            self._declared[name] = frozenset(capabilities)

    def capabilities(self, name: str) -> frozenset[Capability]:
        """The capabilities of the loss ``name``: those declared at registration (read without importing
        the implementation: the command's checks), else the implementation's ``CAPABILITIES``."""
        self._entry(name)
        return self._declared[name] if name in self._declared else frozenset(self[name].CAPABILITIES)

    def _entry(self, name: str) -> tuple[Any, Any]:
        if name not in self._entries:
            raise ProblemError(f"no objective named {name!r}; the registered ones are {', '.join(self)}")
        return self._entries[name]

    def __getitem__(self, name: str) -> Objective:
        implementation = _load(self._entry(name)[1])
        declared = self._declared.get(name)
        if declared is not None and declared != frozenset(implementation.CAPABILITIES):
            raise ProblemError(f"the objective {name!r} was registered with capabilities "
                               f"{sorted(c.value for c in declared)} but its implementation declares "
                               f"{sorted(c.value for c in implementation.CAPABILITIES)}")
        return implementation

    def options(self, name: str) -> type:
        """The options class of the loss ``name`` (light: no JAX)."""
        return _load(self._entry(name)[0])

    def __contains__(self, name: object) -> bool:       # without importing the implementation
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


#: The registry: a new loss is one module plus one :func:`register` call.
OBJECTIVES = _Registry()


def register(name: str, options: type[ObjectiveOptions] | str, implementation: Objective | ModuleType | str,
             capabilities: frozenset[Capability] | None = None) -> None:
    """Register a loss: ``options`` its options class (a class, or ``"module:Class"``, imported when
    needed) and ``implementation`` its :class:`~ufm.objectives.base.Objective` (an object, a module, or
    a ``"module"`` / ``"module:attribute"`` string, imported on first use). The name is ``--loss NAME``.
    ``capabilities``: the implementation's ``CAPABILITIES``, where it is heavy to import, so that the
    command can check a method against them first (checked against the implementation on its load)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ProblemError(f"an objective's name must be an identifier (got {name!r})")
    OBJECTIVES.register(name, options, implementation, capabilities)


register("scl", "ufm.objectives.scl_options:SCL", "ufm.objectives.scl")     # its package imports no JAX
register("ce", "ufm.objectives.ce_options:CrossEntropy", "ufm.objectives.ce",
         frozenset({Capability.DESCENT, Capability.OWN_BOUND, Capability.PREDICT}))


#: The loss a Problem holds unless told otherwise.
DEFAULT_OBJECTIVE = "scl"


def default_objective() -> ObjectiveOptions:
    """The default loss's options (SCL's, which have no fields)."""
    return OBJECTIVES.options(DEFAULT_OBJECTIVE)()


def implementation(options: ObjectiveOptions) -> Objective:
    """The implementation of the loss whose options are ``options`` (a Problem's ``objective``)."""
    return OBJECTIVES[options.name]


def objective_of(problem: Problem) -> Objective:
    """The implementation of the problem's objective."""
    return implementation(problem.objective)


def batched(problem: Problem) -> bool:
    """Whether the problem's objective runs on the batched kernels (:attr:`Capability.BATCHED`)."""
    return has(objective_of(problem), Capability.BATCHED)


# ---------------------------------------------------------------- a Gram objective's defaults
# An objective with the GRAM capability needs only ``gram_value_and_grad``; these fill in what it
# does not supply itself (SCL supplies all three, computed on its kernels).
def excess_constant(problem: Problem) -> float:
    """The problem's loss minus its excess: the objective's ``excess_constant``, else 0."""
    objective = objective_of(problem)
    own = getattr(objective, "excess_constant", None)
    return 0.0 if own is None else float(own(problem))


def embeddings_loss(problem: Problem, H: np.ndarray) -> float:
    """The loss of embeddings H (n, d): the objective's ``loss``, else its Gram value at H H^T, else
    its ``evaluate``."""
    objective = objective_of(problem)
    own = getattr(objective, "loss", None)
    if own is not None:
        return float(own(problem, H))
    if has(objective, Capability.GRAM):
        H = np.asarray(H, dtype=np.float64)
        return float(objective.gram_value_and_grad(problem, H @ H.T)[0])
    require(objective, Capability.DESCENT, "the loss of embeddings")
    return float(objective.evaluate(problem, np.asarray(H, dtype=np.float64)).loss)


def embeddings_log_excess(problem: Problem, H: np.ndarray) -> float:
    """log of the excess of H (n, d): the objective's ``log_excess``, else log(loss - constant)
    (-inf where that is <= 0)."""
    own = getattr(objective_of(problem), "log_excess", None)
    if own is not None:
        return float(own(problem, H))
    excess = embeddings_loss(problem, H) - excess_constant(problem)
    return math.log(excess) if excess > 0 else -math.inf
