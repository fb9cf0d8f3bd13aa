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

Precision. Every anchor's terms are computed from X_ij = G_ij / tau - s_i, its logits shifted by
s_i = <h_i, r_i> / tau, where r_i is a fixed representative row of i's class (``rep``); the excess
does not depend on the shift. On positives X_ij = <h_i, h_j - r_j> / tau - (|h_j|^2 - |r_j|^2) / (2 tau)
is formed from the difference h_j - r_j, so rows equal to their representative give X = 0 exactly
(a Gram entry G_ij - 1 would carry rounding of order 1e-16 / tau, far above E at small tau), and the
norm term removes the ~1e-16 norm error of float rows: E is that of the rows normalised exactly.
The within-class term is taken from the centred logits v = X - mean_P X as log1p(mean_P (e^v - 1 - v))
(:func:`anchor_parts`), so near collapse, where within ~ var_P(X)/2 is far below X, its error is the
rounding of X and not eps |X|. log softplus(delta) keeps full relative precision for delta -> -inf.

Reduced form (full batch, collapsed; docs/theory.md section 3): with
x_c(M) = sum_{c' != c} (n_c' / (n_c - 1)) exp((M_cc' - 1)/tau),

    E(M) = sum_c n_c log1p(x_c(M)),   constant sum_c n_c log(n_c - 1).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ufm.programs import program


#: The series of :func:`expm1_pair` covers |v| <= EXPM1_SERIES_REACH; beyond it e^v - 1 is exp(v) - 1.
EXPM1_SERIES_REACH = 1.0


def expm1mx_terms(eps: float) -> int:
    """How many Taylor terms of e^v - 1 - v (v^2/2! .. v^(T+1)/(T+1)!) the series keeps for
    |v| <= EXPM1_SERIES_REACH = 1 at a precision ``eps``: the fewest T whose first omitted term,
    relative to the first kept one, 2 / (T+2)!, is below eps/16. float64: T = 18 (the omitted term
    is 8.2e-19 of the sum); float32: T = 10 (4.2e-9)."""
    terms = 1
    while 2.0 * EXPM1_SERIES_REACH ** terms / math.factorial(terms + 2) >= eps / 16:
        terms += 1
    return terms

#: Below this argument log softplus(x) = x - e^x / 2 to full precision (the next term is e^{2x}/3).
_LOG_SOFTPLUS_SWITCH = -30.0


# ---------------------------------------------------------------- scalar helpers
def log_softplus(x: jnp.ndarray) -> jnp.ndarray:
    """log(log(1 + e^x)) to full relative precision for every x (-inf at x = -inf); JAX."""
    small = x < _LOG_SOFTPLUS_SWITCH
    x_big = jnp.where(small, 0.0, x)
    return jnp.where(small, x - 0.5 * jnp.exp(jnp.where(small, x, _LOG_SOFTPLUS_SWITCH)),
                     jnp.log(jax.nn.softplus(x_big)))


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
class AnchorInputs(NamedTuple):
    """What the excess of c anchors of one batch (m rows) depends on, in Gram space:

    - ``X`` (c, m): X_ij = G_ij / tau - s_i, the anchor's logits shifted by s_i = <h_i, r_i> / tau
      (r_i its class representative; the excess does not depend on s_i). On positives X_ij =
      (<h_i, h_j - r_j> - (|h_j|^2 - |r_j|^2)/2) / tau, computed from the difference h_j - r_j where
      rows are known (:func:`row_inputs`): exactly 0 when h_j = r_j, and blind to the ~1e-16 norm
      error of float rows (equal to G_ij/tau - s_i on unit rows);
    - ``positives``, ``negatives`` (c, m) bool: P(i) and N(i);
    - ``has_pos`` (c,) bool: the anchor counts (a member, an anchor, with a positive);
    - ``n_pos`` (c,) int: |P(i)|.
    """

    X: jnp.ndarray
    positives: jnp.ndarray
    negatives: jnp.ndarray
    has_pos: jnp.ndarray
    n_pos: jnp.ndarray


class AnchorParts(NamedTuple):
    """Per-anchor pieces of the excess for c anchors: ``within`` (c,) >= 0, ``log_softplus`` (c,)
    (log of the between-class term, -inf without negatives), ``has_pos`` (c,) bool, ``n_pos`` (c,)."""

    within: jnp.ndarray
    log_softplus: jnp.ndarray
    has_pos: jnp.ndarray
    n_pos: jnp.ndarray


def _anchor_masks(labels, member, is_anchor, rows):
    """``(r, positives, negatives, has_pos, n_pos)`` for the anchors ``rows`` (c,) of a batch of m rows;
    ``rows`` may hold indices >= m (padding of a chunked evaluation), which give no anchor; r is
    ``rows`` with those replaced by 0."""
    m = labels.shape[0]
    inside = rows < m
    r = jnp.where(inside, rows, 0)
    not_self = r[:, None] != jnp.arange(m)[None, :]
    others = (member[r] & inside)[:, None] & member[None, :] & not_self
    same = labels[r][:, None] == labels[None, :]
    positives = others & same
    negatives = others & ~same
    # |P(i)| = the batch's members of i's class, less i: a binary search per anchor in the sorted
    # member labels (the sort does not depend on the block; XLA hoists it out of the solver's loops),
    # not a (c, m) reduction
    members = jnp.sort(jnp.where(member, labels, jnp.iinfo(labels.dtype).max))
    y = labels[r]
    same_count = jnp.searchsorted(members, y, side="right") - jnp.searchsorted(members, y, side="left")
    n_pos = jnp.where(member[r] & inside, same_count - 1, 0)
    has_pos = is_anchor[r] & member[r] & inside & (n_pos > 0)
    return r, positives, negatives, has_pos, n_pos


def row_inputs(Z: jnp.ndarray, R: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray,
               is_anchor: jnp.ndarray, tau: float | jnp.ndarray, rows: jnp.ndarray,
               unit_rows: bool = True) -> AnchorInputs:
    """:class:`AnchorInputs` of the anchors ``rows`` (c,) from the batch's rows: Z (m, d) rows of the
    batch (padded), R (m, d) the class representative of each row, labels (m,), member (m,) bool
    (False on padding), is_anchor (m,) bool. Positives: X = (Z_r (Z - R)^T - gap) / tau, from the
    difference h_j - r_j (exactly 0 when h_j = r_j); the rest: Z_r Z^T / tau - <z_r, r_r> / tau.
    ``unit_rows`` (static): the rows stand for points of the sphere, and gap_j = (|h_j|^2 - |r_j|^2)/2
    removes their ~1e-16 norm error (as if they were normalised first); False for rows of any norm
    (the plain loss of ``ufm.objectives.scl.losses``), gap = 0, X = G_ij/tau - s_i exactly. The gap is subtracted from
    every column j (on negatives a ~1e-16 relative change), as the fused kernel's product does."""
    r, positives, negatives, has_pos, n_pos = _anchor_masks(labels, member, is_anchor, rows)
    Zr = Z[r]
    D = Z - R
    gap = jnp.sum((Z + R) * D, axis=1) / 2 if unit_rows else jnp.zeros(Z.shape[0], Z.dtype)
    own = jnp.sum(Zr * R[r], axis=1)                               # <h_i, r_i>   (c,)
    X = (jnp.where(positives, Zr @ D.T, Zr @ Z.T - own[:, None]) - gap[None, :]) / tau
    return AnchorInputs(X, positives, negatives, has_pos, n_pos)


def gram_inputs(G: jnp.ndarray, rep_gram: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray,
                is_anchor: jnp.ndarray, tau: float | jnp.ndarray, rows: jnp.ndarray) -> AnchorInputs:
    """:class:`AnchorInputs` of the anchors ``rows`` (c,) from a batch's Gram G (m, m) (any symmetric
    matrix: the convex program's points) and ``rep_gram`` (m,), G_{i r_i} for each row's class
    representative r_i; X = (G_ij - G_{i r_i}) / tau."""
    r, positives, negatives, has_pos, n_pos = _anchor_masks(labels, member, is_anchor, rows)
    X = (G[r] - rep_gram[r][:, None]) / tau
    return AnchorInputs(X, positives, negatives, has_pos, n_pos)


@jax.custom_jvp
def expm1_pair(v: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(e^v - 1, e^v - 1 - v)``, both to full relative precision, from one exponential: for
    |v| <= 1 the second is the Taylor series r = sum_{k>=2} v^k / k! (:func:`expm1mx_terms` terms for
    v's precision: the first omitted is below eps/16 of the sum) and the first v + r (|r| <= 0.72 |v|:
    no cancellation beyond a factor 2.7); beyond, exp(v) - 1 (its rounding is at most e/(e-1) = 1.6
    times exp's) and (exp(v) - 1) - v (which loses at most a factor 4 there). Finite for v <= 709.
    XLA's expm1 cost 3x its exp on a CPU; this takes one exp. The derivatives (e^v, e^v - 1) are
    taken from the pair itself (a custom rule: autodiff keeps the pair, not the series' partial
    sums, and computes no second exponential), to every order."""
    small = jnp.abs(v) <= EXPM1_SERIES_REACH
    x = jnp.where(small, v, 0.0)
    series = jnp.zeros_like(x)
    terms = expm1mx_terms(float(jnp.finfo(x.dtype).eps))
    for k in range(terms + 1, 1, -1):                  # Horner: x^2 (1/2! + x (1/3! + x (...)))
        series = 1.0 / math.factorial(k) + x * series
    r_small = x * x * series
    q_far = jnp.exp(jnp.where(small, 0.0, v)) - 1.0
    return jnp.where(small, x + r_small, q_far), jnp.where(small, r_small, q_far - v)


@expm1_pair.defjvp
def _expm1_pair_jvp(primals, tangents):
    (v,), (dv,) = primals, tangents
    q, r = expm1_pair(v)
    return (q, r), ((q + 1.0) * dv, q * dv)


class AnchorState(NamedTuple):
    """:class:`AnchorParts` with what their closed-form gradient (:func:`excess_cotangent`) needs,
    for c anchors of m rows: ``q`` (c, m) = expm1(w) on P(i) and N(i) (w the shifted, centred
    logits of :func:`anchor_state`; w = 0, so q = 0, elsewhere), ``mean_q`` (c,) = mean_P q, ``sum_pos`` (c,) = S_P = sum_P e^w,
    ``sum_neg`` (c,) = S_N = sum_N e^w (0 without negatives), ``delta`` (c,) = lse_N - lse_P."""

    parts: AnchorParts
    q: jnp.ndarray
    mean_q: jnp.ndarray
    sum_pos: jnp.ndarray
    sum_neg: jnp.ndarray
    delta: jnp.ndarray


class PositivesState(NamedTuple):
    """The positives' side of :func:`anchor_state` for c anchors: ``within`` (c,), ``lse_pos`` (c,) =
    lse_P X, ``q`` (c, w) = expm1 of the shifted, centred logits on P(i) (0 elsewhere), ``mean_q``
    (c,) = mean_P q, ``sum_pos`` (c,) = S_P = sum_P e^w."""

    within: jnp.ndarray
    lse_pos: jnp.ndarray
    q: jnp.ndarray
    mean_q: jnp.ndarray
    sum_pos: jnp.ndarray


def positives_state(X: jnp.ndarray, positives: jnp.ndarray, n_pos: jnp.ndarray) -> PositivesState:
    """The within-class term and lse_P of c anchors from their logits X (c, w) on the columns
    ``positives`` (c, w) bool, |P(i)| = ``n_pos`` (c,) (every positive among the w columns); the
    formula of :func:`anchor_state`. The fused kernel calls it on a window of columns that holds
    every anchor's positives."""
    has_any_pos = n_pos > 0
    npos = jnp.maximum(n_pos, 1).astype(X.dtype)
    mean_x = jnp.sum(jnp.where(positives, X, 0.0), axis=1) / npos
    # max_P v = max_P X - mean_P X >= 0 (mean_P v = 0); reductions of X alone, fused with mean_x's
    top = jax.lax.stop_gradient(jnp.max(jnp.where(positives, X, -jnp.inf), axis=1) - mean_x)
    t = jnp.where(has_any_pos & (top > 1.0), top, 0.0)
    # one exponential per entry: e^w - 1 - w with w = v - t <= 1
    w = jnp.where(positives, X - mean_x[:, None] - t[:, None], 0.0)
    q, r = expm1_pair(w)
    mean_r = jnp.sum(jnp.where(positives, r, 0.0), axis=1) / npos
    within = t + jnp.log1p(mean_r - t)                      # 0 without positives
    mean_q = jnp.sum(jnp.where(positives, q, 0.0), axis=1) / npos
    return PositivesState(within, jnp.log(npos) + mean_x + within, jnp.where(positives, q, 0.0), mean_q,
                          npos * (1.0 + mean_r - t))


def anchor_state(inputs: AnchorInputs) -> AnchorState:
    """The excess of each anchor (module docstring), the one formula every backend evaluates, with
    the intermediates of its closed-form gradient (:class:`AnchorState`).

    With v_ij = X_ij - mean_P X (centred on the positives, so mean_P v = 0) and t = max_P v if it
    exceeds 1, else t = 0 (a constant for autodiff):

        within(i) = log mean_P e^{v} = t + log1p(mean_P (e^{v-t} - 1 - (v-t)) - t),
        lse_P(i) = log|P| + mean_P X + within(i),   delta(i) = lse_N X - lse_P(i),

    lse_N shifted by max_N X (:func:`positives_state`, then the negatives). With t = 0 (every row
    near collapse) within keeps its full relative precision, where it is ~ var_P(X)/2, far below X
    itself: its error is that of v (the rounding of X, not of e^X), and it is exactly 0 when every
    X_ij on P(i) is equal (collapse: all 0). With t > 0 nothing overflows (v - t <= 0) and within >=
    O(1/|P|). Each entry takes one exponential. Differentiable by JAX (the reference path;
    :func:`excess_cotangent` is its closed form)."""
    X, positives, negatives = inputs.X, inputs.positives, inputs.negatives
    pos = positives_state(X, positives, inputs.n_pos)
    t_neg = jax.lax.stop_gradient(jnp.max(jnp.where(negatives, X, -jnp.inf), axis=1))
    t_neg = jnp.where(jnp.isfinite(t_neg), t_neg, 0.0)
    # e^w on negatives (w = X - max_N X <= 0; as 1 + expm1(w), exact to eps against their sum, >= 1)
    q_neg = jnp.expm1(jnp.where(negatives, X - t_neg[:, None], 0.0))
    sum_neg = jnp.sum(jnp.where(negatives, q_neg + 1.0, 0.0), axis=1)
    has_neg = sum_neg > 0                                   # >= 1 (the term at max_N X) with a negative
    lse_neg = jnp.where(has_neg, t_neg + jnp.log(jnp.where(has_neg, sum_neg, 1.0)), -jnp.inf)
    delta = lse_neg - pos.lse_pos
    has_pos = inputs.has_pos
    parts = AnchorParts(jnp.where(has_pos, pos.within, 0.0), jnp.where(has_pos, log_softplus(delta), -jnp.inf),
                        has_pos, inputs.n_pos)
    q = jnp.where(positives, pos.q, jnp.where(negatives, q_neg, 0.0))
    return AnchorState(parts, q, pos.mean_q, pos.sum_pos, sum_neg, delta)


def anchor_parts(inputs: AnchorInputs) -> AnchorParts:
    """Per-anchor pieces of the excess (:func:`anchor_state`), differentiable by JAX."""
    return anchor_state(inputs).parts


def excess_cotangent(inputs: AnchorInputs, state: AnchorState, log_scale: jnp.ndarray) -> jnp.ndarray:
    """d/dX of sum_i e^{log_scale_i} e_i, e_i = within(i) + softplus(delta(i)), in closed form from
    :func:`anchor_state`'s intermediates (no second exponential): (c, m), with
    d within(i)/dX_ij = (q_ij - mean_P q)/S_P on P(i) (the centring's -1/|P| folded in exactly) and
    d softplus(delta(i))/dX_ij = sigmoid(delta) (-(1 + q_ij)/S_P on P(i), (1 + q_ij)/S_N on N(i)).
    ``log_scale`` (c,): log of each anchor's weight, e.g. log alpha_i - log E (then the rows are those
    of d log E / dX); -inf or an anchor without positives gives 0. The within term is scaled as
    (q - mean q) s_i * (s_i / S_P), s_i = e^{log_scale/2}: within <= e^{-log_scale} makes the first
    factor O(1), so nothing overflows while log E > -1400 (and within = 0 below e^-745)."""
    coef = cotangent_coefficients(state.parts.has_pos, state.parts.within, state.sum_pos, state.sum_neg,
                                  state.delta, log_scale)
    q = state.q
    return jnp.where(inputs.positives, positives_cotangent(q, state.mean_q, coef),
                     jnp.where(inputs.negatives, coef.neg[:, None] * (1.0 + q), 0.0))


class CotangentCoefficients(NamedTuple):
    """Per-anchor factors of :func:`excess_cotangent` (c,): on P(i) the entry is
    (q - mean_P q) ``half`` ``within`` - ``pos`` (1 + q), on N(i) ``neg`` (1 + q) = ``sig`` e^w / S_N."""

    half: jnp.ndarray
    within: jnp.ndarray
    pos: jnp.ndarray
    neg: jnp.ndarray
    sig: jnp.ndarray


def cotangent_coefficients(has_pos: jnp.ndarray, within: jnp.ndarray, sum_pos: jnp.ndarray, sum_neg: jnp.ndarray,
                           delta: jnp.ndarray, log_scale: jnp.ndarray) -> CotangentCoefficients:
    """The per-anchor factors of :func:`excess_cotangent` from the anchors' excess pieces (c,) each:
    sig = e^{log_scale} sigmoid(delta) (0 without negatives: sum_neg = 0)."""
    live = has_pos & jnp.isfinite(log_scale)
    scale = jnp.where(live, log_scale, -jnp.inf)
    # within > 0 bounds scale by 745 (E >= within >= the smallest double): half stays finite
    half = jnp.where(within > 0, jnp.exp(0.5 * jnp.where(within > 0, scale, 0.0)), 0.0)
    has_neg = sum_neg > 0
    sig = jnp.exp(jax.nn.log_sigmoid(jnp.where(has_neg, delta, 0.0)) + scale)
    sig = jnp.where(has_neg, sig, 0.0)
    return CotangentCoefficients(half, half / sum_pos, sig / sum_pos, sig / jnp.where(has_neg, sum_neg, 1.0), sig)


def positives_cotangent(q: jnp.ndarray, mean_q: jnp.ndarray, coef: CotangentCoefficients) -> jnp.ndarray:
    """:func:`excess_cotangent` on the positives' entries (c, w) (any value elsewhere)."""
    return ((q - mean_q[:, None]) * coef.half[:, None]) * coef.within[:, None] - coef.pos[:, None] * (1.0 + q)


def block_parts(Z: jnp.ndarray, R: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray,
                is_anchor: jnp.ndarray, tau: float | jnp.ndarray, rows: jnp.ndarray,
                unit_rows: bool = True) -> AnchorParts:
    """Excess pieces of the anchors ``rows`` (c,) of one batch (arguments of :func:`row_inputs`)."""
    return anchor_parts(row_inputs(Z, R, labels, member, is_anchor, tau, rows, unit_rows))


def anchor_log_excess(inputs: AnchorInputs) -> jnp.ndarray:
    """log e_i = log(within(i) + softplus(delta(i))) of each anchor (c,), -inf for none."""
    parts = anchor_parts(inputs)
    return combine_log(parts.within, parts.log_softplus)


def anchor_gradient(inputs: AnchorInputs, tau: float | jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(log e (c,), D (c, m))`` with D_ij = d log e_i / d G_ij, the Gram-space gradient of each
    anchor's log excess: :func:`excess_cotangent` with log_scale = -log e_i (the closed form of JAX's
    derivative of :func:`anchor_parts`; the shift s_i has total derivative 0, so d/dG_ij =
    (d/dX_ij) / tau). Then d log E / d G_ij = sum_i e^{log e_i - log E} D_ij, in full precision
    however small E is."""
    state = anchor_state(inputs)
    log_e = combine_log(state.parts.within, state.parts.log_softplus)
    return log_e, excess_cotangent(inputs, state, -log_e) / tau


def batch_parts(Z: jnp.ndarray, R: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray, is_anchor: jnp.ndarray,
                tau: float | jnp.ndarray, chunk_size: int | None, unit_rows: bool = True) -> AnchorParts:
    """:func:`block_parts` for every row of one batch, in row blocks of ``chunk_size`` (None: one
    block) under ``jax.checkpoint`` so neither value nor gradient holds more than O(c m) logits."""
    m = Z.shape[0]
    if chunk_size is None or chunk_size >= m:
        return block_parts(Z, R, labels, member, is_anchor, tau, jnp.arange(m, dtype=jnp.int32), unit_rows)
    n_blocks = -(-m // chunk_size)
    blocks = jnp.arange(n_blocks * chunk_size, dtype=jnp.int32).reshape(n_blocks, chunk_size)
    body = jax.checkpoint(lambda rows: block_parts(Z, R, labels, member, is_anchor, tau, rows, unit_rows))
    parts = jax.lax.map(body, blocks)
    return AnchorParts(*(p.reshape(-1)[:m] for p in parts))


class StackedBatches(NamedTuple):
    """A packed batching over the stacked rows [H; W] (n examples, then p prototypes), prototypes
    appended to every batch: ``labels`` (n + p,), ``rep`` (n + p,) each row's class representative
    (a prototype's is that of the first example of its class), ``index`` (nb, w + p) rows of every
    batch, ``member`` and ``is_anchor`` (nb, w + p) bool."""

    labels: jnp.ndarray
    rep: jnp.ndarray
    index: jnp.ndarray
    member: jnp.ndarray
    is_anchor: jnp.ndarray


def stacked_batches(labels: np.ndarray | jnp.ndarray, rep: np.ndarray | jnp.ndarray, index: np.ndarray | jnp.ndarray,
                    valid: np.ndarray | jnp.ndarray, prototype_labels: np.ndarray | jnp.ndarray | None = None,
                    prototype_anchors: bool = True) -> StackedBatches:
    """:class:`StackedBatches` of a packed batching (``ufm.batching.pack``: index, valid (nb, w)) with
    labels (n,), ``rep`` (n,) (:func:`representatives`) and the p prototypes' labels (or None). NumPy
    inputs give NumPy arrays (host-side preparation, no JAX call), JAX inputs JAX arrays."""
    if prototype_labels is None:
        return StackedBatches(labels, rep, index, valid, valid)
    xp = np if isinstance(labels, np.ndarray) and isinstance(index, np.ndarray) else jnp
    n, p, n_batches = labels.shape[0], prototype_labels.shape[0], index.shape[0]
    first = xp.argmax(labels[None, :] == prototype_labels[:, None], axis=1)          # (p,)
    return StackedBatches(
        xp.concatenate([labels, prototype_labels]), xp.concatenate([rep, rep[first]]),
        xp.concatenate([index, xp.broadcast_to(n + xp.arange(p, dtype=index.dtype), (n_batches, p))], axis=1),
        xp.concatenate([valid, xp.ones((n_batches, p), dtype=bool)], axis=1),
        xp.concatenate([valid, xp.full((n_batches, p), prototype_anchors, dtype=bool)], axis=1))


def batch_rows(H: jnp.ndarray, labels: jnp.ndarray, rep: jnp.ndarray, index: jnp.ndarray, valid: jnp.ndarray,
               prototypes: jnp.ndarray | None = None, prototype_labels: jnp.ndarray | None = None,
               prototype_anchors: bool = True
               ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """The padded rows of every batch: ``(Z, R, labels, member, is_anchor)``, each with a leading
    batch axis (n_batches, width [+ p]). Prototypes (p, d) are appended to every batch; ``rep`` (n,)
    is the representative example of each example's class (:class:`StackedBatches`)."""
    s = stacked_batches(labels, rep, index, valid, prototype_labels, prototype_anchors)
    rows = H if prototypes is None else jnp.concatenate([H, prototypes.astype(H.dtype)])
    return rows[s.index], rows[s.rep[s.index]], s.labels[s.index], s.member, s.is_anchor


def over_batches(fn: Callable[..., jnp.ndarray], *batched: jnp.ndarray) -> jnp.ndarray:
    """fn applied to each batch (the leading axis of every array in ``batched``), results stacked:
    ``jax.vmap``, except that a single batch (full batch) is passed to fn directly, without the batch
    axis. A vmapped blocked kernel over one batch ran 10-25% slower on CPU (n = 5000, float64: XLA kept
    the batch axis in the blocks' products and exponentials)."""
    if batched[0].shape[0] == 1:
        return jax.tree_util.tree_map(lambda x: x[None], fn(*(a[0] for a in batched)))
    return jax.vmap(fn)(*batched)


def _row_blocks(width: int, chunk_size: int | None) -> jnp.ndarray:
    """Anchor row blocks (n_blocks, c) covering 0..width-1 (the last padded with indices >= width)."""
    c = width if chunk_size is None else max(1, min(int(chunk_size), width))
    return jnp.arange(-(-width // c) * c, dtype=jnp.int32).reshape(-1, c)


def weight_gradient_rows(log_rows: np.ndarray, D: np.ndarray) -> float:
    """log E from each anchor's log e (..., c), and D (..., c, m), the rows d log e_i / dG, turned in
    place into those of d log E / dG: log E = logsumexp_i log e_i, d log E / dG = sum_i
    e^{log e_i - log E} D_i (NumPy, float64; -inf and D = 0 when E = 0)."""
    finite = np.isfinite(log_rows)
    if not finite.any():
        D[...] = 0.0
        return -np.inf
    top = float(np.max(log_rows[finite]))
    log_total = top + float(np.log(np.sum(np.exp(log_rows[finite] - top))))
    weight = np.zeros(log_rows.shape)
    weight[finite] = np.exp(log_rows[finite] - log_total)     # each <= 1: no overflow, even at E ~ e^-1000
    D *= weight[..., None]
    return log_total


def _batches_cost(Z, *args, **kwargs) -> int:
    """Work of one evaluation over stacked batches Z (nb, w, d): nb w^2 pairs (:mod:`ufm.programs`)."""
    batches, width = Z.shape[0], Z.shape[1]
    return int(batches * width * width)


@partial(program, static_argnames=("chunk_size",), cost=_batches_cost)
def anchor_gradient_rows(Z: jnp.ndarray, R: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray,
                         is_anchor: jnp.ndarray, tau: float | jnp.ndarray,
                         chunk_size: int | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(log e (nb, w), D (nb, w, w))``: each anchor's log excess and its Gram-space gradient rows
    (:func:`anchor_gradient`) over the batches (the output of :func:`batch_rows`), anchors in row
    blocks of ``chunk_size``; :func:`weight_gradient_rows` turns them into log E and d log E / dG."""
    width = Z.shape[1]
    blocks = _row_blocks(width, chunk_size)

    def one_batch(Zb, Rb, lb, mb, ab):
        log_e, D = jax.lax.map(lambda rows: anchor_gradient(row_inputs(Zb, Rb, lb, mb, ab, tau, rows), tau), blocks)
        return log_e.reshape(-1)[:width], D.reshape(-1, width)[:width]

    return jax.vmap(one_batch)(Z, R, labels, member, is_anchor)


@partial(program, cost=lambda G, batches, tau: int(batches.index.shape[0] * batches.index.shape[1] ** 2))
def gram_gradient_rows(G: jnp.ndarray, batches: StackedBatches,
                       tau: float | jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(log e (nb, w), D (nb, w, w))`` at a symmetric matrix G (m, m) over the rows [H; W] (the
    convex program's points, not necessarily a Gram of unit rows): :func:`anchor_gradient_rows` from
    G's entries (:func:`gram_inputs`); D_b's rows and columns are the rows ``batches.index[b]``."""
    rows = jnp.arange(batches.index.shape[1], dtype=jnp.int32)

    def one_batch(idx, member, is_anchor):
        inputs = gram_inputs(G[idx][:, idx], G[idx, batches.rep[idx]], batches.labels[idx], member,
                             is_anchor, tau, rows)
        return anchor_gradient(inputs, tau)

    return jax.lax.map(lambda a: one_batch(*a), (batches.index, batches.member, batches.is_anchor))


@partial(program, static_argnames=("prototype_anchors", "chunk_size"),
         cost=lambda H, labels, rep, tau, index, *a, **k: int(index.shape[0] * index.shape[1] ** 2))
def excess_parts_packed(H: jnp.ndarray, labels: jnp.ndarray, rep: jnp.ndarray, tau: float | jnp.ndarray,
                        index: jnp.ndarray, valid: jnp.ndarray, prototypes: jnp.ndarray | None = None,
                        prototype_labels: jnp.ndarray | None = None, prototype_anchors: bool = True,
                        chunk_size: int | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(sum of within terms, log of the sum of between terms)`` over a packed batching
    (``ufm.batching.pack``): H (n, d), labels (n,), rep (n,) representative example of each example's
    class (:func:`representatives`), tau traced. Both are scalars; :func:`combine_log` gives log E."""
    Z, R, row_labels, member, is_anchor = batch_rows(H, labels, rep, index, valid, prototypes,
                                                     prototype_labels, prototype_anchors)
    parts = jax.vmap(lambda *a: batch_parts(*a, tau, chunk_size))(Z, R, row_labels, member, is_anchor)
    flat_ls = parts.log_softplus.reshape(-1)
    return jnp.sum(parts.within), _masked_lse(flat_ls, jnp.isfinite(flat_ls), axis=0)


def reference_log_excess_packed(H: jnp.ndarray, labels: jnp.ndarray, rep: jnp.ndarray, tau: float | jnp.ndarray,
                                index: jnp.ndarray, valid: jnp.ndarray, prototypes: jnp.ndarray | None = None,
                                prototype_labels: jnp.ndarray | None = None, prototype_anchors: bool = True,
                                chunk_size: int | None = None) -> jnp.ndarray:
    """log E over a packed batching (arguments of :func:`excess_parts_packed`); -inf when E = 0.
    Differentiable in H (the objective of gradient descent)."""
    return combine_log(*excess_parts_packed(H, labels, rep, tau, index, valid, prototypes,
                                            prototype_labels, prototype_anchors, chunk_size))


def class_representatives(labels: jnp.ndarray) -> jnp.ndarray:
    """:func:`representatives` in JAX (traceable): (n,) index of the first example of each example's
    class, by a stable sort of the labels."""
    n = labels.shape[0]
    order = jnp.argsort(labels, stable=True)
    ordered = labels[order]
    starts = jnp.concatenate([jnp.ones(1, dtype=bool), ordered[1:] != ordered[:-1]])
    first = jax.lax.cummax(jnp.where(starts, jnp.arange(n), 0), axis=0)
    return jnp.zeros(n, dtype=order.dtype).at[order].set(order[first])


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


def _reduced_value_and_grad_fn(M, counts, tau):
    return jax.value_and_grad(reduced_log_excess)(M, counts, tau)


_reduced_value_and_grad = program(_reduced_value_and_grad_fn, cost=lambda M, counts, tau: int(M.shape[0] ** 2))


def reduced_excess(M: np.ndarray, counts: Sequence[int], tau: float) -> ReducedExcess:
    """log E(M) and d log E / dM of :func:`reduced_log_excess` (the one formula, differentiated by
    JAX) in float64, as NumPy: what the certificate and the reduced programs judge."""
    log_e, grad = _reduced_value_and_grad(np.asarray(M, dtype=np.float64), np.asarray(counts, dtype=np.float64),
                                          np.float64(tau))
    log_e = float(log_e)
    return ReducedExcess(log_e, float(np.exp(log_e)), np.asarray(grad, dtype=np.float64))


def reduced_constant(counts: Sequence[int]) -> float:
    """``sum_c n_c log(n_c - 1)``: the reduced loss minus its excess."""
    return float(sum(c * np.log(c - 1.0) for c in counts))

