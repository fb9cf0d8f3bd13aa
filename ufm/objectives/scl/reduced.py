"""SCL's reduced class-level form (docs/theory.md section 3, capability ``REDUCED``): the full-batch loss
of collapsed unit embeddings as a function of their class-mean Gram M (k, k), for counts n_c,

    L(M) = sum_c n_c log((n_c - 1) + sum_{c' != c} n_c' e^{(M_cc' - 1)/tau}),

written as the constant sum_c n_c log(n_c - 1) (:func:`reduced_constant`) plus the excess E(M)
(:func:`reduced_log_excess`, its logarithm in JAX; :func:`reduced_excess`, value and gradient in NumPy),
and as a cvxpy expression of M or of a block-constant M (:func:`reduced_expression`). The k x k programs
of ``solvers.reduced`` minimise it over unit-diagonal PSD M (nonnegative with ReLU)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ufm.objectives.scl.formula import ReducedExcess, reduced_constant, reduced_excess, reduced_log_excess

if TYPE_CHECKING:      # cvxpy loads when a program is built
    import cvxpy as cp

__all__ = ["ReducedExcess", "reduced_constant", "reduced_excess", "reduced_log_excess", "reduced_loss",
           "reduced_expression"]


def reduced_loss(M: np.ndarray, counts: Sequence[int], tau: float) -> tuple[float, np.ndarray]:
    """The reduced objective sum_c n_c log((n_c - 1) + sum_c' n_c' e^{(M_cc' - 1)/tau}) at M (k, k)
    and its gradient C (k, k), NumPy float64: the constant plus the excess (:func:`reduced_excess`).

    Equals the full-batch SCL loss of collapsed unit embeddings whose class means have Gram M."""
    ex = reduced_excess(np.asarray(M, dtype=float), counts, tau)
    return reduced_constant(counts) + ex.value, ex.value * ex.grad_log


def reduced_expression(B: cp.Expression, group_sizes: Sequence[int], group_counts: Sequence[int],
                       tau: float) -> cp.Expression:
    """The reduced excess as a cvxpy expression over B (q, q): the cosine within group g on the
    diagonal, between groups g and h off it, for groups of k_g classes of n_g examples each,

        sum_g k_g n_g logistic( logsumexp_h ( (B_gh - 1)/tau + log w_gh ) ),
        w_gh = (k_h - [g = h]) n_h / (n_g - 1),

    that is sum_c n_c log1p(x_c(M)) of :func:`reduced_log_excess` for the block-constant M (the general
    k x k program is the case of k singleton groups, B = M). A zero weight (a singleton's own diagonal)
    becomes e^{-2/tau - 60}, below every other term by a factor e^{-60}."""
    import cvxpy as cp

    k_g, n_g = np.asarray(group_sizes, dtype=float), np.asarray(group_counts, dtype=float)
    with np.errstate(divide="ignore"):
        log_w = np.log((k_g[None, :] - np.eye(len(k_g))) * n_g[None, :]) - np.log(n_g[:, None] - 1.0)
    log_w[~np.isfinite(log_w)] = -2.0 / tau - 60.0
    return (k_g * n_g) @ cp.logistic(cp.log_sum_exp((B - 1) / tau + log_w, axis=1))
