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
- the reduced class-level form (capability ``REDUCED``): :mod:`ufm.objectives.scl.reduced`, the
  programs in ``solvers.reduced``;
- its predictions (capability ``PREDICT``): :mod:`ufm.objectives.scl.prediction` (the imbalanced case
  without ReLU names the reduced program, which ``theory_checks.predictions`` solves).

Nothing outside ``ufm/objectives/`` imports these modules: solvers, checks and the command find them
here, through the registry (``ufm.objectives.implementation``), by the names of each capability
(:class:`ufm.objectives.base.Capability`). Importing this package loads no JAX: ``CAPABILITIES`` is
read without it (the command's checks), and each function is imported from its module on first
access (:data:`_FUNCTIONS`, a module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ufm.objectives.base import Capability
from ufm.objectives.scl_options import NAME

CAPABILITIES = frozenset({Capability.BATCHED, Capability.GRAM, Capability.RELAXATION, Capability.REDUCED,
                          Capability.PREDICT})

#: Each function of SCL's capabilities -> ``"module:attribute"`` (imported on first access).
_FUNCTIONS = {
    # GRAM and the loss of a problem's embeddings
    "gram_value_and_grad": "gram:gram_value_and_grad", "excess_constant": "gram:problem_constant",
    "loss": "losses:problem_loss", "log_excess": "losses:problem_log_excess",
    # RELAXATION
    "relaxation_expression": "relaxation:relaxation_expression",
    # PREDICT
    "predict": "prediction:predict", "batched_orthogonal_frame_loss": "prediction:batched_orthogonal_frame_loss",
    # BATCHED: gradient descent's kernels, the batched certificate's rows, the landscape's loss
    "log_excess_packed": "precise:log_excess_packed", "class_rows_bucket": "precise:class_rows_bucket",
    "log_excess_plain_packed": "plain:log_excess_plain_packed", "min_tau": "plain:min_tau",
    "rounding_estimate": "plain:rounding_estimate", "representatives": "formula:representatives",
    "problem_batches": "gram:problem_batches", "anchor_gradient_rows": "formula:anchor_gradient_rows",
    "weight_gradient_rows": "formula:weight_gradient_rows", "loss_packed": "losses:scl_loss_packed",
    # REDUCED: the class-level form
    "reduced_log_excess": "reduced:reduced_log_excess", "reduced_excess": "reduced:reduced_excess",
    "reduced_constant": "reduced:reduced_constant", "reduced_expression": "reduced:reduced_expression",
    "collapsed_gram_gradient": "reduced:collapsed_gram_gradient",
}

__all__ = ["NAME", "CAPABILITIES", *_FUNCTIONS]


def __getattr__(name: str) -> Any:
    """A capability's function, imported from its module on first access (then kept here)."""
    if name not in _FUNCTIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attribute = _FUNCTIONS[name].partition(":")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
