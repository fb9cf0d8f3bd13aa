"""The default optimiser's pieces as optax transforms (``GradientTransformationExtraArgs``).

The default method of :mod:`solvers.gd` is the spectral projected gradient method (Birgin, Martinez,
Raydan 2000) on the constraint set: a Barzilai-Borwein step, then a nonmonotone Armijo backtracking
search (Grippo-Lampariello-Lucidi) along the retraction. Written as two transforms, chained like
``optax.lbfgs`` chains ``scale_by_lbfgs`` and ``scale_by_zoom_linesearch``:

    chain(scale_by_barzilai_borwein(lr), nonmonotone_armijo(constraint_set))

The solver (:func:`solvers.descent.step`) feeds every transform the same arguments, so any optax
transform runs through the same path: ``updates`` = g, the descent direction of the constraint set
(``constraint_set.direction(params, grad f)``), and the extra arguments ``value`` = f(params),
``grad`` = g and ``value_fn`` = f composed with the retraction. The new point is
``retract(params + updates)``.

- :func:`scale_by_barzilai_borwein`: ``updates = -a g`` with the alternating BB steps
  a = <s,s>/<s,y> (even steps), <s,y>/<y,y> (odd steps), s = params - previous params,
  y = g - previous g; the first step is ``initial_step``. Where <s,y> <= 0 (no positive curvature
  along the last move, as at a random start of the SCL, where log E is concave along the first
  steps) the secant gives no step: a is then the larger of twice the last step and
  ``NEGATIVE_CURVATURE_MOVE`` / max|g| (the step that moves the largest coordinate by that much).
  Doubling alone from a small first step took 14 steps to reach the scale of the BB steps on the
  benchmark problem (n = 1000, k = 10, tau 0.5: a first step of 0.1 against BB steps of 250-700).
  Clipped to [1e-12, 1e12].
- :func:`nonmonotone_armijo`: tries ``P(m) = retract(params + m u)`` from m = 1 (or, with
  ``initial="double"``, twice the last accepted m) and halves m until
  f(P(m)) <= max(last ``memory`` accepted values, f(params)) + c <g, P(m) - params> with a decrease
  (<g, P(m) - params> < 0); E = 0 (f = -inf) is always accepted. After ``max_backtracks`` halvings it
  returns a zero update and records ``accepted = False`` (the floating-point floor, or a zero
  gradient). ``memory=1`` is the monotone search (the reference is f(params) alone, as a
  stochastic step on a new batch needs).

The tangent projection is not needed in the search: on the nonnegative sphere the cone direction g
and the tangent gradient differ only on active coordinates whose move is 0, so <g, P(m) - params>
is the tangent gradient's first-order decrease along the actual move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

if TYPE_CHECKING:
    from ufm.constraint_sets import ConstraintSet

NONMONOTONE_MEMORY = 10
ARMIJO_C = 1e-4
MAX_BACKTRACKS = 50
STEP_MIN, STEP_MAX = 1e-12, 1e12
#: Where <s,y> <= 0 the BB step moves the gradient step's largest coordinate by at least this much
#: (the rows are unit vectors; the line search halves a step that is too long). Iterations to a 1e-6
#: gap on the excess, balanced n = 1000, k = 10, tau 0.5, seeds 0-4: plain doubling 25/31/25/26/26;
#: 0.1: 16/19/14/15/14; 0.3: 14/18/13/14/13 (with ReLU, d = 10, the two starts that reach the
#: orthogonal frame: 20/30 -> 8/14).
NEGATIVE_CURVATURE_MOVE = 0.3


class BarzilaiBorweinState(NamedTuple):
    previous_params: optax.Params
    previous_grad: optax.Updates
    step: jax.Array            # the last step a
    count: jax.Array           # steps taken


def scale_by_barzilai_borwein(initial_step: float | jax.Array = 1.0,
                              negative_curvature_move: float = NEGATIVE_CURVATURE_MOVE
                              ) -> optax.GradientTransformationExtraArgs:
    """``updates -> -a updates`` with the alternating Barzilai-Borwein step a (module docstring);
    where <s,y> <= 0, a = max(2 a_last, ``negative_curvature_move`` / max|updates|)."""

    def init(params):
        zeros = otu.tree_zeros_like(params)
        dtype = otu.tree_dtype(params)
        return BarzilaiBorweinState(params, zeros, jnp.asarray(initial_step, dtype), jnp.asarray(0))

    def update(updates, state, params=None, **extra):
        del extra
        s = otu.tree_sub(params, state.previous_params)
        y = otu.tree_sub(updates, state.previous_grad)
        sy, ss, yy = otu.tree_vdot(s, y), otu.tree_vdot(s, s), otu.tree_vdot(y, y)
        bb = jnp.where(state.count % 2 == 0, ss / jnp.where(sy > 0, sy, 1.0), sy / jnp.where(yy > 0, yy, 1.0))
        first = state.count == 0
        largest = otu.tree_max(jax.tree_util.tree_map(jnp.abs, updates))
        grow = jnp.maximum(2.0 * state.step,
                           negative_curvature_move / jnp.where(largest > 0, largest, jnp.inf))
        step = jnp.where(first, state.step, jnp.where(sy > 0, bb, grow))
        step = jnp.clip(step, STEP_MIN, STEP_MAX).astype(state.step.dtype)
        new = BarzilaiBorweinState(params, updates, step, state.count + 1)
        return otu.tree_scale(-step, updates), new

    return optax.GradientTransformationExtraArgs(init, update)


class KeepingTransformation(optax.GradientTransformationExtraArgs):
    """A transform that declares it keeps its last evaluation: it accepts the extra argument
    ``value_and_grad_fn`` and its state holds ``accepted``, ``accepted_value`` and ``accepted_grad``
    (f and grad f at the point it accepted; as optax's line searches keep ``value`` and ``grad`` for
    ``optax.value_and_grad_from_state``). The solver then reuses them (:func:`solvers.descent.after_step`)."""

    keeps_evaluation = True


def keeps_evaluation(tx: optax.GradientTransformation) -> bool:
    """Whether the transform declares that it keeps its last evaluation (:class:`KeepingTransformation`)."""
    return bool(getattr(tx, "keeps_evaluation", False))


class ArmijoState(NamedTuple):
    values: jax.Array          # (memory,) last accepted values (nan: none yet)
    scale: jax.Array           # the last accepted multiplier m
    count: jax.Array           # accepted steps
    accepted: jax.Array        # whether the last search found a step
    trials: jax.Array          # objective evaluations made by every search so far
    accepted_value: jax.Array  # with value_and_grad_fn: f at the accepted point (nan otherwise)
    accepted_grad: optax.Updates   # ... and its Euclidean gradient (zeros otherwise)


def nonmonotone_armijo(constraint_set: ConstraintSet, memory: int = NONMONOTONE_MEMORY, c: float = ARMIJO_C,
                       max_backtracks: int = MAX_BACKTRACKS,
                       initial: str = "one") -> optax.GradientTransformationExtraArgs:
    """Backtracking along ``retract(params + m updates)`` (module docstring). Needs the extra
    arguments ``value``, ``grad`` and ``value_fn``. ``initial``: ``"one"`` (start every search at
    m = 1: the step of the previous transform) or ``"double"`` (twice the last accepted m).

    With the extra argument ``value_and_grad_fn`` (f and its Euclidean gradient at a point of the
    set) each trial evaluates both, and the state keeps them at the accepted point
    (``accepted_value``, ``accepted_grad``), so the solver need not evaluate there again
    (:func:`solvers.descent.update`): one loss-and-gradient evaluation per step where the first trial
    is accepted, as optax's zoom line search keeps ``value`` and ``grad`` in its state."""
    if initial not in ("one", "double"):
        raise ValueError(f"initial must be 'one' or 'double' (got {initial!r})")

    def init(params):
        dtype = otu.tree_dtype(params)
        return ArmijoState(jnp.full((memory,), jnp.nan, dtype), jnp.asarray(1.0, dtype), jnp.asarray(0),
                           jnp.asarray(True), jnp.asarray(0), jnp.asarray(jnp.nan, dtype),
                           otu.tree_zeros_like(params))

    def update(updates, state, params=None, *, value, grad, value_fn, value_and_grad_fn=None, **extra):
        del extra
        if memory == 1:       # monotone: the reference is the value here (the batch may have changed)
            reference = jnp.asarray(value)
        else:
            reference = jnp.max(jnp.where(jnp.isfinite(state.values), state.values, value))
            reference = jnp.maximum(reference, value)
        m0 = jnp.where((state.count > 0) & (initial == "double"), 2.0 * state.scale, 1.0).astype(state.scale.dtype)
        evaluate = value_and_grad_fn if value_and_grad_fn is not None else \
            (lambda p: (value_fn(p), state.accepted_grad))

        def searching(carry):
            ok, i = carry[3], carry[5]
            return (~ok) & (i < max_backtracks)

        def backtrack(carry):
            m, _, _, _, _, i = carry
            trial = constraint_set.retract(otu.tree_add_scale(params, m, updates))
            f_trial, g_trial = evaluate(trial)
            decrease = otu.tree_vdot(grad, otu.tree_sub(trial, params))
            ok = ((f_trial == -jnp.inf) | (jnp.isfinite(f_trial) & (f_trial <= reference + c * decrease))) \
                & (decrease < 0)
            return jnp.where(ok, m, m / 2), trial, f_trial, ok, g_trial, i + 1

        m, trial, f_trial, ok, g_trial, tried = jax.lax.while_loop(
            searching, backtrack, (m0, params, jnp.asarray(value), jnp.asarray(False), state.accepted_grad,
                                   jnp.asarray(0)))
        # the move m u itself (0 when no step was found): the solver's retract(params + m u) is the
        # trial point's own expression, so a kept value and gradient belong to the new iterate
        step = otu.tree_scale(jnp.where(ok, m, 0.0).astype(state.scale.dtype), updates)
        values = jnp.roll(state.values, 1).at[0].set(jnp.where(ok, f_trial, value))
        kept_value = jnp.where(ok & (value_and_grad_fn is not None), f_trial, jnp.nan).astype(state.accepted_value.dtype)
        new = ArmijoState(values, jnp.where(ok, m, state.scale), state.count + ok.astype(state.count.dtype), ok,
                          state.trials + tried, kept_value, g_trial)
        return step, new

    return optax.GradientTransformationExtraArgs(init, update)
