"""The objective interface (docs/architecture.md "How to add a loss"): what a loss declares and
supplies, without JAX, so that describing and checking a problem loads nothing heavy.

Two parts per loss:

- its **options** (:class:`ObjectiveOptions`): a frozen, hashable dataclass the
  :class:`~ufm.problem.Problem` holds in ``objective`` (SCL's is :class:`SCL`, with no fields). It
  names the loss, validates itself against the problem's k, dim and ReLU, and states two facts the
  Problem checks for every loss alike: the fewest examples a class needs (``min_class_size``) and
  whether batching and prototypes apply (``batched``);
- its **implementation** (:class:`Objective`): a module or an object, found through the registry
  (``ufm.objectives.OBJECTIVES``), that declares its :class:`Capability` set and supplies the
  functions of each capability it declares. A solver asks for the capability it needs
  (:func:`require`) and refuses in one line when the objective lacks it.

Conventions: n examples, k classes, d the dimension; H (n, d) the embeddings; G (m, m) a symmetric
Gram matrix (m = n, or n + p with p prototype rows); every float returned to a solver is float64.
The *excess* is the loss minus its geometry-free constant (docs/theory.md section 3): gaps are
measured on it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol, runtime_checkable

import numpy as np

from ufm.errors import ProblemError

if TYPE_CHECKING:      # names for the annotations only: importing them would load JAX and cvxpy, and a cycle
    import cvxpy as cp
    import jax
    from numpy.typing import DTypeLike

    from ufm.constraint_sets import ConstraintSet
    from ufm.problem import Problem, ProblemArrays, ProblemShape

#: An objective's point: a pytree of arrays (the embeddings H (n, d), or the learned CE's (H, W, b)).
Params = Any


class Capability(str, enum.Enum):
    """What an objective can be asked for (a ``str``: it prints as its value)."""

    #: ``constraint_set(shape)``, ``start(problem, key, dtype)``, ``solver_value(shape)`` (the JAX
    #: function ``(params, arrays)`` that gradient descent minimises, for a
    #: :class:`~ufm.problem.ProblemShape`, at the problem's traced :class:`~ufm.problem.ProblemArrays`)
    #: and ``evaluate(problem, params)``: gradient descent of ``solvers.generic``, compiled once per
    #: shape.
    DESCENT = "descent"
    #: ``evaluate`` returns a lower bound proved without the solver (``Evaluation.lower_bound``).
    OWN_BOUND = "own-bound"
    #: ``gram_value_and_grad(problem, G)``, ``loss(problem, H)`` and ``excess_constant(problem)``: a
    #: function of the Gram matrix, convex in G, and its gradient; the dual certificate of
    #: ``solvers.certificate`` rests on it.
    GRAM = "gram"
    #: ``relaxation_expression(problem, G)``: the same function as a cvxpy expression of a cvxpy G,
    #: for the n x n program of ``solvers.convex``.
    RELAXATION = "relaxation"
    #: the class-level k x k program of ``solvers.reduced`` (full batch, collapsed classes), as
    #: functions of the class-mean Gram M (k, k), the counts (k,) and tau: ``reduced_log_excess`` (JAX,
    #: counts and tau traced), ``reduced_excess`` (NumPy: ``log_value``, ``value``, ``grad_log``),
    #: ``reduced_constant(counts)``, ``reduced_expression(B, group_sizes, group_counts, tau)`` (cvxpy,
    #: over a block-constant M; the general program is k singleton groups) and
    #: ``collapsed_gram_gradient(M, counts, tau)`` (log E and the n x n gradient of log E at the
    #: collapsed point, as k x k blocks: the certificate's collapsed form).
    REDUCED = "reduced"
    #: ``predict(problem) -> ObjectivePrediction``: the theory's closed form, or "none" with the reason
    #: (or "reduced-program": the solver layer solves the objective's reduced program for it).
    PREDICT = "predict"
    #: batchings, prototypes and the batched kernels, with SCL's signatures (``ufm.objectives.scl``):
    #: for the driver of ``solvers.gd`` ``log_excess_packed`` and ``log_excess_plain_packed`` (log E over
    #: packed batches, precise and plain), ``min_tau``, ``rounding_estimate``, ``representatives`` and
    #: ``class_rows_bucket``; for the batched certificate ``problem_batches``, ``anchor_gradient_rows``
    #: and ``weight_gradient_rows``; for the landscape ``loss_packed`` (the reference path, with Hessians);
    #: and ``excess_constant``, ``loss`` and ``log_excess`` of a problem's embeddings.
    BATCHED = "batched"


@runtime_checkable
class ObjectiveOptions(Protocol):
    """What a :class:`~ufm.problem.Problem` holds in ``objective``: frozen and hashable."""

    #: the registry's name of the loss (``--loss NAME``)
    name: str
    #: the fewest examples a class needs (SCL: 2, an anchor needs a positive)
    min_class_size: int
    #: whether batchings other than full batch, and prototypes, apply
    batched: bool

    def validate(self, k: int, dim: int, relu: bool) -> None:
        """Raise :class:`~ufm.errors.ProblemError` for options that do not fit the problem."""

    def describe(self) -> str:
        """A short label for titles and reports."""


class Evaluation(NamedTuple):
    """An objective's account of a point in float64 (what a Solution reports).

    ``embeddings`` (n, d); ``loss``; ``excess`` (loss minus the geometry-free constant) and
    ``log_excess`` its logarithm (finite where the excess underflows); ``lower_bound`` on the optimal
    loss, ``relative_gap`` (on the excess) and ``method`` when the objective proves its own bound
    (:attr:`Capability.OWN_BOUND`), else None, None, ""; ``info``: numbers of its own."""

    embeddings: np.ndarray
    loss: float
    excess: float
    log_excess: float
    lower_bound: float | None
    relative_gap: float | None
    method: str
    info: dict


class ObjectivePrediction(NamedTuple):
    """The closed-form optimum: ``geometry`` (a name, ``"none"`` without one), ``class_mean_gram``
    (k, k) or None, ``loss`` or None, ``why`` (the reason, or why there is none); optionally
    ``hypotheses`` (each one checked, name -> holds) and ``excess`` (to full relative precision; None:
    the loss itself where the objective has no constant). Geometry ``"reduced-program"`` with no
    Gram asks ``theory_checks.predictions.predict`` to solve the objective's reduced program
    (capability ``REDUCED``) for it."""

    geometry: str
    class_mean_gram: np.ndarray | None
    loss: float | None
    why: str
    hypotheses: dict | None = None
    excess: float | None = None


class Objective(Protocol):
    """An objective's implementation (a module or an object). ``NAME`` and ``CAPABILITIES`` always;
    the functions of each capability it declares (:class:`Capability`). ``params`` is a pytree of
    arrays (the embeddings H (n, d), or more: the learned CE's (H, W, b)); ``dtype`` a JAX dtype."""

    NAME: str
    CAPABILITIES: frozenset[Capability]

    def constraint_set(self, shape: ProblemShape) -> ConstraintSet: ...

    def start(self, problem: Problem, key: jax.Array, dtype: DTypeLike) -> Params: ...

    def solver_value(self, shape: ProblemShape) -> Callable[[Params, ProblemArrays], jax.Array]: ...

    def evaluate(self, problem: Problem, params: Params) -> Evaluation: ...

    def gram_value_and_grad(self, problem: Problem, G: np.ndarray) -> tuple[float, np.ndarray]: ...

    def loss(self, problem: Problem, H: np.ndarray) -> float: ...

    def excess_constant(self, problem: Problem) -> float: ...

    def relaxation_expression(self, problem: Problem, G: cp.Expression) -> cp.Expression: ...

    def predict(self, problem: Problem) -> ObjectivePrediction: ...


#: What each capability lets a solver do, for the refusal's sentence.
_NEEDED_FOR = {
    Capability.DESCENT: "a start, a constraint set and a value to descend",
    Capability.OWN_BOUND: "a lower bound of its own",
    Capability.GRAM: "its value and gradient as a function of the Gram matrix",
    Capability.RELAXATION: "a convex cvxpy expression of the Gram matrix",
    Capability.REDUCED: "a class-level k x k program",
    Capability.PREDICT: "a closed-form prediction",
    Capability.BATCHED: "batched kernels (batchings, prototypes)",
}


def has(objective: Objective, capability: Capability) -> bool:
    """Whether ``objective`` declares ``capability``."""
    return capability in objective.CAPABILITIES


def require(objective: Objective, capability: Capability, who: str) -> None:
    """:class:`ProblemError` in one line unless ``objective`` declares ``capability`` (``who``: the
    function or command that needs it)."""
    if not has(objective, capability):
        raise ProblemError(f"{who} needs {_NEEDED_FOR[capability]} ({capability.value}), which the objective "
                           f"{objective.NAME!r} does not supply; use a method it supports "
                           f"(it declares: {', '.join(sorted(c.value for c in objective.CAPABILITIES))})")
