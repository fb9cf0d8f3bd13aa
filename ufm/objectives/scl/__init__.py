"""The supervised contrastive loss (docs/theory.md sections 1-3), the default objective: its
implementation of :class:`ufm.objectives.base.Objective` (its options: :mod:`ufm.objectives.scl_options`).

SCL's formula is written once, :func:`ufm.objectives.scl.formula.anchor_parts` (each anchor's within-class and
between-class terms from its shifted logits); every JAX and NumPy caller evaluates it:

- gradient descent's objective, log of the excess (the loss minus its constant), on the rows:
  :func:`ufm.objectives.scl.precise.log_excess_packed` (the precise fused kernel) and
  :func:`ufm.objectives.scl.plain.log_excess_plain_packed` (the plain form, docs/theory.md section 9), driven
  by ``solvers.gd`` (capability ``BATCHED``); :func:`ufm.objectives.scl.formula.reference_log_excess_packed` is the same
  function differentiated by JAX (the reference path, with Hessians);
- the loss on rows of any norm (constant + excess): :func:`ufm.objectives.scl.losses.scl_loss`, and of a problem's
  embeddings :func:`ufm.objectives.scl.losses.problem_loss` (:func:`loss` here);
- as a function of the Gram matrix (capability ``GRAM``): :mod:`ufm.objectives.scl.gram`
  (:func:`ufm.objectives.scl.formula.gram_gradient_rows` underneath); the certificate's batch blocks
  :func:`ufm.objectives.scl.formula.anchor_gradient_rows`;
- as a cvxpy expression of the Gram (capability ``RELAXATION``): :mod:`ufm.objectives.scl.relaxation`;
- the reduced class-level form (capability ``REDUCED``): :func:`ufm.objectives.scl.formula.reduced_log_excess`, the
  program in ``solvers.reduced``;
- its predictions (capability ``PREDICT``) need the reduced program, a solver, so they are registered
  in ``theory_checks.predictions``.

What still names these modules from outside the package is listed in docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ufm.objectives.base import Capability
from ufm.objectives.scl.gram import gram_value_and_grad, problem_constant
from ufm.objectives.scl_options import NAME
from ufm.problem import Problem

if TYPE_CHECKING:     # annotations only: cvxpy loads when a program is built
    import cvxpy as cp

CAPABILITIES = frozenset({Capability.BATCHED, Capability.GRAM, Capability.RELAXATION, Capability.REDUCED,
                          Capability.PREDICT})

__all__ = ["NAME", "CAPABILITIES", "gram_value_and_grad", "excess_constant", "loss", "log_excess",
           "relaxation_expression"]


def excess_constant(problem: Problem) -> float:
    """The loss minus the excess for the problem's batching at epoch 0 (independent of H)."""
    return problem_constant(problem)


def loss(problem: Problem, H: np.ndarray) -> float:
    """The SCL loss of H (n, d) over the problem's batching at epoch 0 (:func:`ufm.objectives.scl.losses.problem_loss`)."""
    from ufm.objectives.scl.losses import problem_loss
    return problem_loss(problem, H)


def log_excess(problem: Problem, H: np.ndarray) -> float:
    """log E of H (n, d), precise where E is far below the loss (the fused kernel, value only)."""
    from ufm.objectives.scl.losses import problem_log_excess
    return problem_log_excess(problem, H)


def relaxation_expression(problem: Problem, G: cp.Expression) -> cp.Expression:
    """The loss as a cvxpy expression of the Gram G (m, m) (:mod:`ufm.objectives.scl.relaxation`)."""
    from ufm.objectives.scl.relaxation import relaxation_expression as expression
    return expression(problem, G)
