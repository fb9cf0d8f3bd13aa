"""Gradient descent over (objective, constraint set, transform), as pure functions in the manner of
jaxopt and optax: :func:`init`, :func:`update` (one step), :func:`run` (a ``lax.while_loop``), with the
state in a NamedTuple (:class:`DescentState`; a driver keeps its own numbers in its ``record``).
:mod:`solvers.gd`'s batched driver is built on them: an epoch of a deterministic batching is
:func:`update`, one of a random scheme a :func:`step` per drawn batch then :func:`judge`; the temperature
stages and the two phases run :func:`going`'s loop again from the state they hand over.

One step from params P with f = objective(P), G = grad f(P):

    g = constraint_set.direction(P, G)                       (the descent direction; 0 at a KKT point)
    u, tx_state = tx.update(g, tx_state, P, value=f, grad=g, value_fn=objective o retract)
    P' = constraint_set.retract(P + u)

A non-finite f (E = 0 exactly, f = log E = -inf: a global minimum) gives g = 0, so the point stays.

One evaluation per step: with ``keep`` the transform also receives ``value_and_grad_fn``; a search that uses it
(:func:`solvers.transforms.nonmonotone_armijo`) keeps f and grad f at the point it accepts, and
:func:`after_step` takes them from its state instead of evaluating the new point again.

Stopping (:func:`judge`, the one test of every driver): converged when |f_k - f_(k-1)| <= tol and ||g_k||_F <= grad_tol (with
f = log E the first is the relative change of the excess), or f = -inf; stalled when a transform
that searches (it has an ``accepted`` field, :func:`solvers.transforms.nonmonotone_armijo`) finds no
step while g != 0; failed on a non-finite value or gradient, or a point off the set by more than
``FEASIBILITY_TOL`` (an overflowing step).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

from ufm.constraint_sets import ConstraintSet

#: A point this far off its constraint set (after a retraction) is a failure, not a result.
FEASIBILITY_TOL = 1e-3


def step(objective: Callable, constraint_set: ConstraintSet, tx: optax.GradientTransformationExtraArgs,
         params: optax.Params, value: jax.Array, grad: optax.Updates, tx_state: optax.OptState,
         keep: bool = False) -> tuple[optax.Params, optax.OptState, jax.Array]:
    """One step from ``params`` with ``value`` = objective(params) and ``grad`` its Euclidean gradient.
    Returns ``(new params, new transform state, stalled)``. ``keep``: also pass the transform
    ``value_and_grad_fn`` so that it can keep f and grad f at the new point; only for a transform
    that declares it (:func:`solvers.transforms.keeps_evaluation`: optax's own line searches refuse
    unknown arguments), and only where the next step is on the same objective (not a new batch)."""
    grad = jax.tree_util.tree_map(lambda x: jnp.where(jnp.isfinite(value), x, 0.0), grad)
    g = constraint_set.direction(params, grad)
    kept = {"value_and_grad_fn": lambda p: value_and_grad(objective, p)} if keep else {}
    updates, tx_state = tx.update(g, tx_state, params, value=value, grad=g,
                                  value_fn=lambda p: objective(constraint_set.retract(p)), **kept)
    new = constraint_set.retract(otu.tree_add(params, updates))
    accepted = otu.tree_get(tx_state, "accepted", default=jnp.asarray(True))
    stalled = (~accepted) & (otu.tree_vdot(g, g) > 0)
    return new, tx_state, stalled


class DescentState(NamedTuple):
    params: optax.Params
    value: jax.Array          # objective(params)
    grad: optax.Updates       # its Euclidean gradient
    grad_norm: jax.Array      # ||constraint_set.direction(params, grad)||_F
    change: jax.Array         # |value - previous value|
    iteration: jax.Array
    converged: jax.Array
    stalled: jax.Array
    failed: jax.Array
    tx_state: optax.OptState
    record: Any = None        # what a driver keeps beside the state (solvers.gd: histories); kept as is


def value_and_grad(objective: Callable, params: optax.Params) -> tuple[jax.Array, optax.Updates]:
    """``(f, grad f)`` at ``params``; the gradient is 0 where f is not finite."""
    value, grad = jax.value_and_grad(objective)(params)
    return value, jax.tree_util.tree_map(lambda x: jnp.where(jnp.isfinite(value), x, 0.0), grad)


def measure(objective: Callable, constraint_set: ConstraintSet,
            params: optax.Params) -> tuple[jax.Array, optax.Updates, jax.Array]:
    """``(f, grad f, ||direction||_F)`` at ``params``; the gradient is 0 where f is not finite."""
    value, grad = value_and_grad(objective, params)
    return value, grad, otu.tree_norm(constraint_set.direction(params, grad))


def after_step(objective: Callable, constraint_set: ConstraintSet, params: optax.Params, tx_state: optax.OptState,
               value: jax.Array, grad: optax.Updates, keep: bool) -> tuple[jax.Array, optax.Updates, jax.Array]:
    """``(f, grad f, ||direction||_F)`` at the new ``params`` after :func:`step` from a point with
    ``value`` and ``grad``: with ``keep`` (as given to :func:`step`), the transform's kept evaluation
    (a search that evaluated value and gradient at the point it accepted,
    :func:`solvers.transforms.nonmonotone_armijo`), or the old ones where it found no step (the
    point did not move); otherwise a new evaluation."""
    kept = otu.tree_get(tx_state, "accepted_value")
    if not keep or kept is None:
        return measure(objective, constraint_set, params)
    accepted = otu.tree_get(tx_state, "accepted")
    new_value = jnp.where(accepted, kept, value)
    new_grad = jax.tree_util.tree_map(lambda a, b: jnp.where(accepted, a, b),
                                      otu.tree_get(tx_state, "accepted_grad"), grad)
    return new_value, new_grad, otu.tree_norm(constraint_set.direction(params, new_grad))


def failed(constraint_set: ConstraintSet, params: optax.Params, value: jax.Array, grad_norm: jax.Array) -> jax.Array:
    """A non-finite value (other than -inf: E = 0) or direction norm, or a point off its set."""
    bad_value = ~jnp.isfinite(value) & (value != -jnp.inf)
    on_set = jnp.asarray(constraint_set.violation(params) <= FEASIBILITY_TOL)
    return bad_value | ~jnp.isfinite(grad_norm) | ~on_set


def init(objective: Callable, constraint_set: ConstraintSet, tx: optax.GradientTransformationExtraArgs,
         params: optax.Params) -> DescentState:
    """The state at ``params`` (a point of the constraint set)."""
    value, grad, grad_norm = measure(objective, constraint_set, params)
    dtype = otu.tree_dtype(params)
    return DescentState(params, value, grad, grad_norm, jnp.asarray(jnp.inf, dtype), jnp.asarray(0),
                        value == -jnp.inf, jnp.asarray(False),
                        failed(constraint_set, params, value, grad_norm), tx.init(params))


def update(objective: Callable, constraint_set: ConstraintSet, tx: optax.GradientTransformationExtraArgs,
           state: DescentState, tol: float, grad_tol: float, keep: bool = False) -> DescentState:
    """One step and the stopping tests (module docstring); ``keep`` as in :func:`step`."""
    params, tx_state, stalled = step(objective, constraint_set, tx, state.params, state.value, state.grad,
                                     state.tx_state, keep)
    value, grad, grad_norm = after_step(objective, constraint_set, params, tx_state, state.value, state.grad, keep)
    return judge(constraint_set, state, params, tx_state, value, grad, grad_norm, stalled, tol, grad_tol)


def judge(constraint_set: ConstraintSet, state: DescentState, params: optax.Params, tx_state: optax.OptState,
          value: jax.Array, grad: optax.Updates, grad_norm: jax.Array, stalled: jax.Array,
          tol: float, grad_tol: float) -> DescentState:
    """The state after ``state`` moved to ``params`` (with f, grad f and the direction's norm there):
    the one stopping test of every driver (module docstring). f = -inf (E = 0) is a global minimum;
    a non-finite value or direction, or a point off the set, has failed."""
    zero = value == -jnp.inf
    change = jnp.where(zero, 0.0, jnp.abs(value - state.value))
    bad = failed(constraint_set, params, value, grad_norm)
    converged = (zero | ((change <= tol) & (grad_norm <= grad_tol))) & ~bad
    return DescentState(params, value, grad, grad_norm, change, state.iteration + 1, converged, stalled,
                        bad, tx_state, state.record)


def going(state: DescentState, max_steps: int | jax.Array) -> jax.Array:
    """Whether a run goes on: not converged, stalled or failed, and below ``max_steps``."""
    return ~state.converged & ~state.stalled & ~state.failed & (state.iteration < max_steps)


def run(objective: Callable, constraint_set: ConstraintSet, tx: optax.GradientTransformationExtraArgs,
        params: optax.Params, *, max_steps: int, tol: float, grad_tol: float, keep: bool = False) -> DescentState:
    """Steps until converged, stalled, failed or ``max_steps`` (jit it with the objective fixed);
    ``keep`` as in :func:`step`."""
    return jax.lax.while_loop(lambda s: going(s, max_steps),
                              lambda s: update(objective, constraint_set, tx, s, tol, grad_tol, keep),
                              init(objective, constraint_set, tx, params))
