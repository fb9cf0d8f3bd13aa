"""The optimisers of gradient descent, by name: one factory per optimiser, one registration each.

A factory takes ``(learning_rate, total_steps, constraint_set, stochastic)`` and returns an optax
transform. The solver (:func:`solvers.descent.step`) feeds it the constraint set's descent direction
and the extra arguments ``value``, ``grad`` and ``value_fn``, then retracts ``params + updates``
(:mod:`solvers.transforms`). Any optax ``GradientTransformation`` passed to a solver goes the same way.

To add an optimiser: write its transform (a new file, or an optax one) and add one entry to
:data:`OPTIMIZERS`. A transform that keeps f and grad f at the point it accepts says so by being a
:class:`solvers.transforms.KeepingTransformation`; the solver then evaluates once per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import optax

from solvers.transforms import KeepingTransformation, nonmonotone_armijo, scale_by_barzilai_borwein

if TYPE_CHECKING:
    import jax

    from ufm.constraint_sets import ConstraintSet


def spectral_projected_gradient(learning_rate: float | jax.Array, total_steps: int, constraint_set: ConstraintSet,
                                stochastic: bool) -> optax.GradientTransformationExtraArgs:
    """The default (``"bb"``): a Barzilai-Borwein step and a nonmonotone Armijo search (memory 10),
    first trial step ``learning_rate``. On the batches of a random scheme (``stochastic``) the BB
    secant has no meaning: a monotone search whose first trial is twice the last accepted step."""
    if stochastic:
        return optax.chain(optax.scale(-learning_rate), nonmonotone_armijo(constraint_set, memory=1,
                                                                           initial="double"))
    # the search keeps f and grad f at the point it accepts, and says so
    return KeepingTransformation(*optax.chain(scale_by_barzilai_borwein(learning_rate),
                                              nonmonotone_armijo(constraint_set)))


def adam(learning_rate: float | jax.Array, total_steps: int, constraint_set: ConstraintSet,
         stochastic: bool) -> optax.GradientTransformation:
    """Adam with a cosine-decayed rate (to 1e-4 of ``learning_rate`` over the run)."""
    return optax.adam(optax.cosine_decay_schedule(learning_rate, max(total_steps, 1), alpha=1e-4))


def sgd(learning_rate: float | jax.Array, total_steps: int, constraint_set: ConstraintSet,
        stochastic: bool) -> optax.GradientTransformation:
    """Plain (Riemannian) gradient descent at a constant rate."""
    return optax.sgd(learning_rate)


def lbfgs(learning_rate: float | jax.Array, total_steps: int, constraint_set: ConstraintSet,
          stochastic: bool) -> optax.GradientTransformationExtraArgs:
    """``optax.lbfgs()`` with its zoom line search, on the objective composed with the retraction."""
    return optax.lbfgs()


#: The registry of named optimisers.
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "bb": spectral_projected_gradient,
    "adam": adam,
    "sgd": sgd,
    "lbfgs": lbfgs,
}
