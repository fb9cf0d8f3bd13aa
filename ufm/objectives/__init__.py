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
and convex programs in ``solvers``. Cross-entropy (``ufm.objectives.ce``) is written through the
interface above and solved by the generic path of ``solvers.gd``.
"""

from ufm.objectives import ce, scl

#: The registry: a new loss is one module plus one entry here.
OBJECTIVES = {scl.NAME: scl, ce.NAME: ce}


def objective_of(problem):
    """The module of the problem's objective."""
    return OBJECTIVES[scl.NAME if problem.objective is None else problem.objective.name]
