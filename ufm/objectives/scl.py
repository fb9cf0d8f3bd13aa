"""The supervised contrastive loss (docs/theory.md sections 1-3), the default objective.

SCL is written once per backend. The formula itself, each anchor's within-class and between-class
terms from its shifted logits, is :func:`ufm.excess.anchor_parts`; every JAX and NumPy caller
evaluates it:

- gradient descent's objective, log of the excess (the loss minus its constant), on the rows:
  :func:`ufm.excess_fused.log_excess_packed`, the fused kernel (value and closed-form gradient in one
  pass, with batching, prototypes and row chunking); :func:`ufm.excess.log_excess_packed` is the same
  function differentiated by JAX (the reference path, with Hessians);
- the loss itself on rows of any norm (constant + excess): :func:`ufm.loss.scl_loss`;
- the Gram-space value and gradient for the certificate and the n x n program's objective: the
  closed-form derivative (:func:`ufm.excess.excess_cotangent`) of the same function of the Gram entries, :func:`ufm.excess.anchor_gradient_rows`
  (from rows) and :func:`ufm.excess.gram_gradient_rows` (from any symmetric matrix);
- the excess constant: :func:`ufm.excess.excess_constant`;
- the reduced class-level form (full batch, collapsed): :func:`ufm.excess.reduced_log_excess`, and
  its jitted value and gradient :func:`ufm.excess.reduced_excess`.

The convex programs need it as a cvxpy expression, once for each program (cvxpy lives above the
model, in ``solvers``): the n x n Gram program in ``solvers.convex.build_relaxation`` and the k x k
class-level program in ``solvers.reduced.excess_expression``. The prediction is
``theory_checks.predictions``.
"""

from ufm.excess import (anchor_gradient_rows, anchor_parts, excess_constant, gram_gradient_rows,
                        log_excess_packed, reduced_excess, reduced_log_excess)

NAME = "scl"

__all__ = ["NAME", "anchor_gradient_rows", "anchor_parts", "excess_constant", "gram_gradient_rows",
           "log_excess_packed", "reduced_excess", "reduced_log_excess"]
