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
           "reduced_expression", "collapsed_gram_gradient"]


def reduced_loss(M: np.ndarray, counts: Sequence[int], tau: float) -> tuple[float, np.ndarray]:
    """The reduced objective sum_c n_c log((n_c - 1) + sum_c' n_c' e^{(M_cc' - 1)/tau}) at M (k, k)
    and its gradient C (k, k), NumPy float64: the constant plus the excess (:func:`reduced_excess`).

    Equals the full-batch SCL loss of collapsed unit embeddings whose class means have Gram M."""
    ex = reduced_excess(np.asarray(M, dtype=float), counts, tau)
    return reduced_constant(counts) + ex.value, ex.value * ex.grad_log


def collapsed_gram_gradient(M: np.ndarray, counts: Sequence[int], tau: float) -> tuple[float, np.ndarray]:
    """``(log E, B (k, k))`` of the full-batch loss of exactly collapsed unit embeddings (h_i = v_c for
    every i of class c, M = V V^T) as a function of the n x n Gram G: B[c, c'] = d log E / d G_ij for
    one entry, i of class c and j != i of class c', as anchor i's term reads it (not symmetrised; the
    diagonal G_ii does not enter, its derivative is 0). The certificate's k x k form of its n x n
    gradient (``solvers.certificate``, docs/theory.md section 8).

    Between classes B[c, c'] = (d log E / dM_cc') / (n_c n_c') (:func:`reduced_excess`: M_cc' stands
    for the n_c n_c' entries that class c's anchors read). Within a class, each anchor's loss
    l(i) = logsumexp_{a != i} G_ia/tau - mean_{p in P(i)} G_ip/tau does not change when a constant is
    added to all of its entries, so sum_{j != i} d l(i) / d G_ij = 0, and
    B[c, c] = -sum_{c' != c} n_c' B[c, c'] / (n_c - 1) = -sum_{c'} (d log E / dM_cc') / (n_c (n_c - 1))."""
    n = np.asarray(counts, dtype=np.float64)
    ex = reduced_excess(np.asarray(M, dtype=np.float64), counts, tau)
    grad = np.array(ex.grad_log, dtype=np.float64)
    np.fill_diagonal(grad, 0.0)
    B = grad / (n[:, None] * n[None, :])
    np.fill_diagonal(B, -grad.sum(axis=1) / (n * (n - 1.0)))
    return ex.log_value, B


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
