"""Gradient descent for an objective with the ``DESCENT`` capability (``ufm.objectives.base``; cross-entropy
and any registered loss without batched kernels): :func:`solvers.descent.run` over the objective's
constraint set with a named optimiser or any optax transform, then the objective's float64 evaluation
and a proved lower bound decide the status: its own (``OWN_BOUND``) or the dual certificate of its Gram
(``GRAM``, :func:`solvers.certificate.certify_embeddings`).

An objective with batched kernels (``BATCHED``: SCL) has the driver of :mod:`solvers.gd` (batching
epochs, temperature stages, the tied polish), built on the same :func:`solvers.descent.step`.
``gd.solve`` sends every other problem here.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import tree_utils as otu

from ufm.geometry import class_mean_gram
from ufm.objectives import Capability, Evaluation, has, objective_of, require
from ufm.objectives import OBJECTIVES
from ufm.problem import Problem, ProblemArrays, ProblemShape
from ufm.programs import program
from ufm.random_batches import raw_key
from ufm.solution import DescentInfo, Solution, certified_status
from solvers import descent
from solvers.certificate import Certificate, certify_embeddings, evaluation_certificate
from solvers.optimizers import OPTIMIZERS
from solvers.transforms import keeps_evaluation

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

#: The gradient test is ||direction|| <= tol ** GRAD_POWER, as in solvers.gd.
GRAD_POWER = 0.75


def _runs(params, arrays: ProblemArrays, *, shape: ProblemShape, optimizer, steps: int, lr: float, tol: float,
          many: bool):
    """:func:`solvers.descent.run` of the objective from ``params`` (stacked starts, vmapped, with
    ``many``): its value for the problem's ``shape`` (static) at its ``arrays`` (traced: tau, labels)."""
    objective = OBJECTIVES[shape.objective.name]
    value_at = objective.solver_value(shape)
    cset = objective.constraint_set(shape)

    def value(p):
        return value_at(p, arrays)
    tx = optax.with_extra_args_support(optimizer if not isinstance(optimizer, str)
                                       else OPTIMIZERS[optimizer](lr, steps, cset, False))

    def run(start):
        return descent.run(value, cset, tx, start, max_steps=steps, tol=tol, grad_tol=tol ** GRAD_POWER,
                           keep=keeps_evaluation(tx))
    return jax.vmap(run)(params) if many else run(params)


#: The compiled runs, one per (problem shape, optimiser, steps, rate, tolerance), kept across processes
#: where the compile cache is on (a user's optax transform or loss is kept in memory only). The
#: objectives are sums over examples: cost ~ n k.
_RUNS = program(_runs, static_argnames=("shape", "optimizer", "steps", "lr", "tol", "many"),
                cost=lambda params, arrays, shape, **k: shape.n * shape.k)


def _compiled(problem: Problem, optimizer, steps: int, lr: float, tol: float, many: bool):
    return _RUNS.bind(shape=problem.shape, optimizer=optimizer, steps=steps, lr=lr, tol=tol, many=many)


def _solution(problem: Problem, state: descent.DescentState, seconds: float, tol: float, certify: bool,
              gap_tol: float, optimizer) -> Solution:
    objective = objective_of(problem)
    iterations = int(state.iteration)
    info = DescentInfo(optimizer=optimizer if isinstance(optimizer, str) else "custom", objective=objective.NAME,
                       dtype=jnp.dtype(otu.tree_dtype(state.params)).name, tol=tol, grad_tol=tol ** GRAD_POWER,
                       value_change=float(state.change), direction_norm=float(state.grad_norm),
                       solver_value=float(state.value))
    if bool(state.failed):
        k = problem.k
        return Solution("gd", np.full((k, k), np.nan), float("nan"), "error", iterations=iterations,
                        seconds=seconds, info=info,
                        message=f"the objective, its gradient or the point became non-finite by step {iterations}; "
                                "lower the learning rate or use optimizer='bb'")
    ev = objective.evaluate(problem, jax.tree_util.tree_map(np.asarray, state.params))
    info = replace(info, metrics=dict(ev.info))
    if bool(state.converged):
        status, message = "converged", ""
    elif bool(state.stalled):
        status, message = "converged", "line search cannot decrease the objective further (floating-point floor)"
    else:
        status = "not_converged"
        message = (f"stopped after {iterations} steps: change {float(state.change):.3g} (tol {tol:g}), direction "
                   f"norm {float(state.grad_norm):.3g} (tol {tol ** GRAD_POWER:.3g}); raise steps")
    cert = _certificate(problem, ev, gap_tol) if certify else None
    status, message = certified_status(status, message, cert)
    return Solution("gd", class_mean_gram(ev.embeddings, problem.labels), ev.loss, status,
                    embeddings=ev.embeddings, lower_bound=None if cert is None else cert.lower_bound,
                    excess=ev.excess, log_excess=ev.log_excess, certificate=cert, iterations=iterations,
                    seconds=seconds, message=message, info=info)


def _certificate(problem: Problem, ev: Evaluation, gap_tol: float) -> Certificate:
    """The objective's own proved bound (``OWN_BOUND``), else the dual certificate of its Gram
    (``GRAM``, :func:`solvers.certificate.certify_embeddings`); one line where it has neither."""
    if not has(objective_of(problem), Capability.OWN_BOUND):
        return certify_embeddings(problem, ev.embeddings, gap_tol)
    return evaluation_certificate(ev, gap_tol)


def solve_from(problem: Problem, params: object, *, steps: int, learning_rate: float,
               optimizer: str | optax.GradientTransformation, tol: float, certify: bool,
               gap_tol: float) -> Solution:
    """One run from the start ``params`` (the objective's point, e.g. unit rows H (n, d)): the
    staircase's descent at a higher rank (:mod:`solvers.staircase`)."""
    t0 = time.perf_counter()
    run = _compiled(problem, optimizer, int(steps), float(learning_rate), float(tol), False)
    out = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(run(params, problem.arrays())))
    return _solution(problem, out, time.perf_counter() - t0, tol, certify, gap_tol, optimizer)


def solve_many(problem: Problem, seeds: Sequence[int], *, steps: int, learning_rate: float,
               optimizer: str | optax.GradientTransformation, dtype: DTypeLike, tol: float, certify: bool,
               gap_tol: float) -> list[Solution]:
    """One vmapped run per seed (``jax.random.PRNGKey(seed)`` starts, as ``gd.solve_many``)."""
    objective = objective_of(problem)
    require(objective, Capability.DESCENT, "gradient descent (gd.solve)")
    if certify and not (has(objective, Capability.OWN_BOUND) or has(objective, Capability.GRAM)):
        require(objective, Capability.GRAM, "a certified solve (certify=True)")
    starts = [objective.start(problem, raw_key(int(s)), dtype) for s in seeds]
    params = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *starts)
    t0 = time.perf_counter()
    run = _compiled(problem, optimizer, int(steps), float(learning_rate), float(tol), True)
    out = jax.block_until_ready(run(params, problem.arrays()))
    seconds = time.perf_counter() - t0
    out = jax.tree_util.tree_map(np.asarray, out)
    return [_solution(problem, jax.tree_util.tree_map(lambda x: x[i], out), seconds, tol, certify, gap_tol,
                      optimizer) for i in range(len(seeds))]
