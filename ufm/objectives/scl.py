"""The supervised contrastive loss (docs/theory.md sections 1-3), the default objective.

Where each backend of SCL lives (each written once):

- the loss in JAX, with batching, prototypes and chunking: :func:`ufm.loss.scl_loss`;
- the excess form (the loss minus its constant) in JAX, the solver's objective: :func:`ufm.excess.log_excess_packed`;
- the excess constant: :func:`ufm.excess.excess_constant`;
- the reduced class-level form: :func:`ufm.excess.reduced_excess`;
- the Gram-space gradient for the certificate: ``solvers.certificate``; the cvxpy expression of the
  n x n and k x k programs: ``solvers.convex`` and ``solvers.reduced``;
- the prediction: ``theory_checks.predictions``.
"""

from ufm.excess import excess_constant, log_excess_packed, reduced_excess

NAME = "scl"

__all__ = ["NAME", "excess_constant", "log_excess_packed", "reduced_excess"]
