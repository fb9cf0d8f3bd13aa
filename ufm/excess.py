"""The excess form of the SCL loss (docs/theory.md, "The excess form"): the loss minus its
geometry-free constant, to full relative precision at any temperature.

Per anchor i of a batch with positives P(i) and negatives N(i) (docs/theory.md section 1),

    l(i) = log|P(i)| + within(i) + softplus(lse_N(i) - lse_P(i)),
    lse_P(i) = logsumexp_{j in P(i)} G_ij / tau,   lse_N(i) = logsumexp_{a in N(i)} G_ia / tau,
    within(i) = lse_P(i) - mean_{j in P(i)} G_ij / tau - log|P(i)|   (>= 0, Jensen; 0 under collapse)

(the softplus term is 0 when N(i) is empty). The *excess* is

    E(H) = L(H) - sum_{anchors with a positive} log|P(i)| = sum_i [ within(i) + softplus(...) ] >= 0.

At small tau E is far below the rounding of L (at tau = 0.05 about 1e-9 of it, at 0.01 about 1e-57),
so solvers and certificates work on E, or on log E (E underflows below tau ~ 0.002).

Precision. ``within(i)`` is shift invariant, so it is computed from U_ij = <h_i, h_j - r_j> / tau,
where r_j is a fixed representative row of j's class (``rep``): rows equal to their representative
give U = 0 exactly, so a collapsed class has within = 0 exactly (a Gram entry G_ij - 1 would carry
rounding of order 1e-16 / tau, far above E at small tau). The between-class part is
delta_i = lse_N(i) - lse_P(i) = logsumexp_N(G_ia/tau - m_i) - logsumexp_P(U_ij), with
m_i = <h_i, r_i>/tau, and log softplus(delta) keeps full relative precision for delta -> -inf.

Reduced form (full batch, collapsed; docs/theory.md section 3): with
x_c(M) = sum_{c' != c} (n_c' / (n_c - 1)) exp((M_cc' - 1)/tau),

    E(M) = sum_c n_c log1p(x_c(M)),   constant sum_c n_c log(n_c - 1).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

#: Below this argument log softplus(x) = x - e^x / 2 to full precision (the next term is e^{2x}/3).
_LOG_SOFTPLUS_SWITCH = -30.0


# ---------------------------------------------------------------- scalar helpers
def log_softplus(x: jnp.ndarray) -> jnp.ndarray:
    """log(log(1 + e^x)) to full relative precision for every x (-inf at x = -inf); JAX."""
    small = x < _LOG_SOFTPLUS_SWITCH
    x_big = jnp.where(small, 0.0, x)
    return jnp.where(small, x - 0.5 * jnp.exp(jnp.where(small, x, _LOG_SOFTPLUS_SWITCH)),
                     jnp.log(jax.nn.softplus(x_big)))


def log_softplus_np(x: np.ndarray) -> np.ndarray:
    """NumPy :func:`log_softplus`."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        big = np.log(np.logaddexp(0.0, np.where(x < _LOG_SOFTPLUS_SWITCH, 0.0, x)))
        return np.where(x < _LOG_SOFTPLUS_SWITCH, x - 0.5 * np.exp(np.minimum(x, _LOG_SOFTPLUS_SWITCH)), big)


def _masked_lse(a: jnp.ndarray, mask: jnp.ndarray, axis: int) -> jnp.ndarray:
    """logsumexp of a over the entries where mask holds (-inf where none); safe gradients."""
    top = jax.lax.stop_gradient(jnp.max(jnp.where(mask, a, -jnp.inf), axis=axis, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    total = jnp.sum(jnp.where(mask, jnp.exp(jnp.where(mask, a, top) - top), 0.0), axis=axis)
    any_ = jnp.any(mask, axis=axis)
    return jnp.where(any_, jnp.squeeze(top, axis) + jnp.log(jnp.where(any_, total, 1.0)), -jnp.inf)


def combine_log(sum_within: jnp.ndarray, log_sum_softplus: jnp.ndarray) -> jnp.ndarray:
    """log E = log(sum_within + exp(log_sum_softplus)), -inf when both parts are 0; safe gradients."""
    positive = sum_within > 0
    log_w = jnp.where(positive, jnp.log(jnp.where(positive, sum_within, 1.0)), -jnp.inf)
    both_empty = ~positive & ~jnp.isfinite(log_sum_softplus)
    safe = jnp.logaddexp(jnp.where(both_empty, 0.0, log_w), jnp.where(both_empty, 0.0, log_sum_softplus))
    return jnp.where(both_empty, -jnp.inf, safe)


# ---------------------------------------------------------------- n x n excess (JAX)
class AnchorParts(NamedTuple):
    """Per-anchor pieces of the excess for c anchors: ``within`` (c,) >= 0, ``log_softplus`` (c,)
    (log of the between-class term, -inf without negatives), ``has_pos`` (c,) bool."""

    within: jnp.ndarray
    log_softplus: jnp.ndarray
    has_pos: jnp.ndarray


def block_parts(Z: jnp.ndarray, R: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray,
                is_anchor: jnp.ndarray, tau, rows: jnp.ndarray) -> AnchorParts:
    """Excess pieces of the anchors ``rows`` (c,) of one batch (module docstring).

    Z (m, d) rows of the batch (padded), R (m, d) the class representative of each row, labels (m,),
    member (m,) bool (False on padding), is_anchor (m,) bool; ``rows`` may hold indices >= m (padding
    of the last block of a chunked evaluation): those give no anchor.
    """
    m = Z.shape[0]
    inside = rows < m
    r = jnp.where(inside, rows, 0)
    Zr = Z[r]
    logits = (Zr @ Z.T) / tau                                      # G_ia / tau          (c, m)
    U = (Zr @ (Z - R).T) / tau                                     # <h_i, h_j - r_j>/tau (c, m)
    shift = jnp.sum(Zr * R[r], axis=1) / tau                       # m_i = <h_i, r_i>/tau (c,)
    not_self = r[:, None] != jnp.arange(m)[None, :]
    others = (member[r] & inside)[:, None] & member[None, :] & not_self
    same = labels[r][:, None] == labels[None, :]
    positives = others & same
    negatives = others & ~same
    n_pos = positives.sum(axis=1)
    has_pos = is_anchor[r] & member[r] & inside & (n_pos > 0)

    top = jax.lax.stop_gradient(jnp.max(jnp.where(positives, U, -jnp.inf), axis=1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    sum_exp = jnp.sum(jnp.where(positives, jnp.exp(jnp.where(positives, U, top) - top), 0.0), axis=1)
    npos = jnp.maximum(n_pos, 1).astype(Z.dtype)
    mean_exp = jnp.where(n_pos > 0, sum_exp / npos, 1.0)
    lse_pos = top[:, 0] + jnp.log(jnp.where(n_pos > 0, sum_exp, 1.0))
    mean_u = jnp.sum(jnp.where(positives, U, 0.0), axis=1) / npos
    # within = log(mean exp(U - top)) + top - mean U: exactly 0 when every U_ij is 0 (collapse)
    within = jnp.log(mean_exp) + (top[:, 0] - mean_u)
    lse_neg = _masked_lse(logits - shift[:, None], negatives, axis=1)
    delta = lse_neg - lse_pos
    return AnchorParts(jnp.where(has_pos, within, 0.0),
                       jnp.where(has_pos, log_softplus(delta), -jnp.inf), has_pos)


def _batch_parts(Z, R, labels, member, is_anchor, tau, chunk_size: int | None) -> AnchorParts:
    """:func:`block_parts` for every row of one batch, in row blocks of ``chunk_size`` (None: one
    block) under ``jax.checkpoint`` so neither value nor gradient holds more than O(c m) logits."""
    m = Z.shape[0]
    if chunk_size is None or chunk_size >= m:
        return block_parts(Z, R, labels, member, is_anchor, tau, jnp.arange(m, dtype=jnp.int32))
    n_blocks = -(-m // chunk_size)
    blocks = jnp.arange(n_blocks * chunk_size, dtype=jnp.int32).reshape(n_blocks, chunk_size)
    body = jax.checkpoint(lambda rows: block_parts(Z, R, labels, member, is_anchor, tau, rows))
    parts = jax.lax.map(body, blocks)
    return AnchorParts(*(p.reshape(-1)[:m] for p in parts))


def batch_rows(H, labels, rep, index, valid, prototypes=None, prototype_labels=None,
               prototype_anchors: bool = True):
    """The padded rows of every batch: ``(Z, R, labels, member, is_anchor)``, each with a leading
    batch axis (n_batches, width [+ p]). Prototypes (p, d) are appended to every batch; ``rep`` (n,)
    is the representative example of each example's class, and a prototype's representative is that
    of the first example of its class (``rep`` of that example)."""
    n_batches = index.shape[0]
    Z = H[index]
    R = H[rep[index]]
    row_labels = labels[index]
    member = valid
    is_anchor = valid
    if prototypes is not None:
        p = prototypes.shape[0]
        W = jnp.broadcast_to(prototypes.astype(H.dtype), (n_batches, p, H.shape[1]))
        first = jnp.argmax(labels[None, :] == prototype_labels[:, None], axis=1)   # (p,)
        RW = jnp.broadcast_to(H[rep[first]], (n_batches, p, H.shape[1]))
        Z = jnp.concatenate([Z, W], axis=1)
        R = jnp.concatenate([R, RW], axis=1)
        row_labels = jnp.concatenate([row_labels, jnp.broadcast_to(prototype_labels, (n_batches, p))], axis=1)
        member = jnp.concatenate([valid, jnp.ones((n_batches, p), dtype=bool)], axis=1)
        is_anchor = jnp.concatenate([valid, jnp.full((n_batches, p), prototype_anchors, dtype=bool)], axis=1)
    return Z, R, row_labels, member, is_anchor


@partial(jax.jit, static_argnames=("prototype_anchors", "chunk_size"))
def excess_parts_packed(H, labels, rep, tau, index, valid, prototypes=None, prototype_labels=None,
                        prototype_anchors: bool = True, chunk_size: int | None = None):
    """``(sum of within terms, log of the sum of between terms)`` over a packed batching
    (``ufm.batching.pack``): H (n, d), labels (n,), rep (n,) representative example of each example's
    class (:func:`representatives`), tau traced. Both are scalars; :func:`combine_log` gives log E."""
    Z, R, row_labels, member, is_anchor = batch_rows(H, labels, rep, index, valid, prototypes,
                                                     prototype_labels, prototype_anchors)
    parts = jax.vmap(lambda *a: _batch_parts(*a, tau, chunk_size))(Z, R, row_labels, member, is_anchor)
    flat_ls = parts.log_softplus.reshape(-1)
    return jnp.sum(parts.within), _masked_lse(flat_ls, jnp.isfinite(flat_ls), axis=0)


def log_excess_packed(H, labels, rep, tau, index, valid, prototypes=None, prototype_labels=None,
                      prototype_anchors: bool = True, chunk_size: int | None = None) -> jnp.ndarray:
    """log E over a packed batching (arguments of :func:`excess_parts_packed`); -inf when E = 0.
    Differentiable in H (the objective of gradient descent)."""
    return combine_log(*excess_parts_packed(H, labels, rep, tau, index, valid, prototypes,
                                            prototype_labels, prototype_anchors, chunk_size))


def representatives(labels: Sequence[int]) -> np.ndarray:
    """(n,) index of the first example of each example's class (the rows ``r_j`` of the module
    docstring)."""
    labels = np.asarray(labels)
    first = {}
    for i, y in enumerate(labels.tolist()):
        first.setdefault(y, i)
    return np.array([first[y] for y in labels.tolist()], dtype=np.int32)


def excess_constant(labels: Sequence[int], batches: Sequence[Sequence[int]],
                    prototype_labels: Sequence[int] | None = None,
                    prototype_anchors: bool = True) -> float:
    """``sum over batches and anchors with a positive of log|P(i)|``: L - E, independent of H."""
    labels = np.asarray(labels)
    proto = np.asarray([] if prototype_labels is None else prototype_labels, dtype=int)
    total = 0.0
    for batch in batches:
        batch_labels = labels[np.asarray(batch, dtype=int)]
        members = np.concatenate([batch_labels, proto])
        per_class = np.bincount(members, minlength=int(labels.max()) + 1)
        anchors = np.concatenate([batch_labels, proto]) if prototype_anchors else batch_labels
        positives = per_class[anchors] - 1
        total += float(np.sum(np.log(positives[positives > 0])))
    return total


# ---------------------------------------------------------------- reduced excess
class ReducedExcess(NamedTuple):
    """The reduced excess at M (k, k): ``log_value`` = log E(M), ``value`` = E(M) (0 if it
    underflows), ``grad_log`` (k, k) = d log E / dM (not symmetrised; the diagonal is 0)."""

    log_value: float
    value: float
    grad_log: np.ndarray


def reduced_log_excess(M: jnp.ndarray, counts: jnp.ndarray, tau: float | jnp.ndarray) -> jnp.ndarray:
    """JAX log E(M) of the reduced form (module docstring): gradient descent on a factor M = V V^T
    (:func:`solvers.reduced.factored_descent`) runs on it, and :func:`reduced_excess` is its value and
    gradient for the certificate; ``counts`` (k,) float:

        log E = logsumexp_c [ log n_c + log softplus(logsumexp_{c' != c} Z_cc') ],
        Z_cc' = (M_cc' - 1)/tau + log(n_c' / (n_c - 1)).
    """
    k = counts.shape[0]
    Z = (M - 1.0) / tau + jnp.log(counts)[None, :] - jnp.log(counts - 1.0)[:, None]
    log_x = _masked_lse(Z, ~jnp.eye(k, dtype=bool), axis=1)
    return jax.nn.logsumexp(jnp.log(counts) + log_softplus(log_x))


_reduced_value_and_grad = jax.jit(jax.value_and_grad(reduced_log_excess))


def reduced_excess(M: np.ndarray, counts: Sequence[int], tau: float) -> ReducedExcess:
    """log E(M) and d log E / dM of :func:`reduced_log_excess` (the one formula, differentiated by
    JAX) in float64, as NumPy: what the certificate and the reduced programs judge."""
    log_e, grad = _reduced_value_and_grad(jnp.asarray(M, dtype=jnp.float64), jnp.asarray(counts, dtype=jnp.float64),
                                          jnp.asarray(tau, dtype=jnp.float64))
    log_e = float(log_e)
    return ReducedExcess(log_e, float(np.exp(log_e)), np.asarray(grad, dtype=np.float64))


def reduced_constant(counts: Sequence[int]) -> float:
    """``sum_c n_c log(n_c - 1)``: the reduced loss minus its excess."""
    return float(sum(c * np.log(c - 1.0) for c in counts))

