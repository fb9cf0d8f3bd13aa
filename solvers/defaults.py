"""The solvers' defaults and the rule of where the reduced program applies: plain values, no JAX and no
cvxpy, so that the command checks a request against them before it loads either. The solvers import
them from here (:mod:`solvers.gd`, :mod:`solvers.certificate`, :mod:`solvers.reduced`)."""

from __future__ import annotations

from ufm.errors import ProblemError, is_number

#: Gradient descent: at most this many epochs, and the first trial step of its line search.
DEFAULT_STEPS = 5000
DEFAULT_LR = 0.1
#: Default tolerance on the relative gap (gap / E) for ``certified`` (and status ``optimal``).
GAP_TOL = 1e-6


def check_reduced_applies(batching_scheme: str, prototypes: bool) -> None:
    """Raise :class:`ProblemError` unless the reduced program applies: full batch (``batching_scheme``
    ``"full"``), no prototypes."""
    if batching_scheme != "full":
        raise ProblemError(f"the reduced program assumes full-batch collapse; this problem uses "
                           f"{batching_scheme!r} batching: use the n x n program "
                           "(solve_relaxation / --method convex)")
    if prototypes:
        raise ProblemError("the reduced program has no prototype rows; with prototypes use the n x n "
                           "program (solve_relaxation / --method convex)")


def check_gap_tol(gap_tol: object) -> None:
    """:class:`ufm.errors.ProblemError` unless ``gap_tol`` is a number in (0, 1) (checked before any work:
    the certificate that reads it comes last)."""
    if not (is_number(gap_tol) and 0 < gap_tol < 1):
        raise ProblemError(f"gap_tol must be a number in (0, 1): the largest relative gap on the excess "
                           f"that counts as optimal (got {gap_tol!r})")

