"""The fused value and gradient of the SCL excess over one batch: what gradient descent and the loss
evaluate (docs/architecture.md "The fused kernel").

For one batch of m rows Z (m, d), their class representatives R (m, d) and per-anchor weights
alpha (m,) >= 0, :func:`batch_log_excess` returns

    log E_alpha = log sum_i alpha_i e_i,    e_i = within(i) + softplus(delta(i))

(``ufm.objectives.scl.formula``: alpha = 1 gives log E; the loss's reductions are other weights). Its JAX
derivative is a custom rule: the forward pass computes the gradient with the value, block by block
of c anchors, so ``jax.value_and_grad`` costs one pass and keeps O(c m) memory, chunked or not.

The rows are first sorted by class (members by label, then the rest), so each anchor's positives are
one contiguous range of columns [lo_i, hi_i) and its negatives the members outside it. Per block of
c consecutive sorted anchors:

1. Negatives, on every column, in the form of the plain loss: g = (Z_b Z^T - gap) / tau, the masked
   row maximum u_i, e = exp(g - u) on N(i) (0 elsewhere, one exponential per entry), and
   A = e [Z, gap, 1] (one product: the row sums S_N and what the gradient needs), so that
   lse_N X = u + log S_N - s_i with s_i = <z_i, r_i> / tau.
2. Positives, on a window of W columns that holds every anchor's positives (W = min(m, c + 2 n_c - 1)
   for a batch whose classes have at most n_c members, ``class_rows``): X = (Z_b (Z - R)_w^T - gap_w)
   / tau, the precise form of ``ufm.objectives.scl.formula.row_inputs``, and :func:`ufm.objectives.scl.formula.positives_state`
   (the centred series of the within-class term).
3. The closed-form cotangent (``ufm.objectives.scl.formula.cotangent_coefficients``): on negatives it is
   coef_i e_ia, so its pullback needs no (c, m) array beyond e: the anchor side is coef * A and the
   column side one product e^T [coef Z_b, coef]; the window's goes through its own (c, W) product.

With unit_rows gap_j = (|z_j|^2 - |r_j|^2) / 2 (0 otherwise) as in ``ufm.objectives.scl.formula.row_inputs``, so
value and gradient are those of the reference path's function, to rounding (tests: 1e-12 in float64).
Blocks combine as a log-sum-exp against a running reference (rescaled only when a block exceeds it):
the gradient of log E is sum_b (E_b / E) d log E_b. Hessian-vector products need the reference path
(a custom VJP has no forward-mode derivative): ``ufm.objectives.scl.losses.scl_loss_packed`` with ``num_classes=None``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ufm.blocks import block_size, class_rows_bucket, precise_default_block as default_block  # noqa: F401
from ufm.objectives.scl.formula import (_masked_lse, batch_rows, combine_log, cotangent_coefficients, log_softplus,
                        over_batches, positives_cotangent, positives_state)


def rows_product(left: jnp.ndarray, e: jnp.ndarray) -> jnp.ndarray:
    """left^T e, (k, m), for left (c, k) and a block e (c, m): the contraction over the rows of both
    (a block's column side). The small factor left^T (k, c) is materialised (an optimization
    barrier, so that XLA does not fold the transpose back into the product), which makes it a plain
    (k, c) @ (c, m) product: as a contraction over both factors' rows, XLA's CPU backend ran it 3x
    slower than the row side e @ right (n = 5000, c = 262, d = 10, float64)."""
    return jax.lax.optimization_barrier(left.T) @ e


class _Grads(NamedTuple):
    """d log E_alpha / d(Z, R, tau, alpha) of one batch (rows in the caller's order)."""

    Z: jnp.ndarray
    R: jnp.ndarray
    tau: jnp.ndarray
    alpha: jnp.ndarray


class _Sorted(NamedTuple):
    """A batch's rows sorted by class, with c rows of padding at the end (so every block of c rows
    is a slice): ``Z``, ``R`` (m + c, d), ``diff`` = Z - R, ``gap`` (m + c,), ``right`` (m, d + 2)
    = [Z, gap, 1], ``anchor`` (m + c,) bool, ``alpha`` (m + c,), ``starts`` (k + 1,): class y holds
    rows [starts[y], starts[y + 1]) and starts[k] is the number of members."""

    Z: jnp.ndarray
    R: jnp.ndarray
    diff: jnp.ndarray
    gap: jnp.ndarray
    right: jnp.ndarray
    anchor: jnp.ndarray
    alpha: jnp.ndarray
    starts: jnp.ndarray


class _Acc(NamedTuple):
    """Gradients of a sum of blocks' E_b, each scaled by e^{-ref}, in sorted rows: Z, R (m + c, d),
    gap (m + c,) (turned into Z and R at the end), tau (), alpha (m + c,)."""

    Z: jnp.ndarray
    R: jnp.ndarray
    gap: jnp.ndarray
    tau: jnp.ndarray
    alpha: jnp.ndarray


def _sort(Z, R, labels, member, is_anchor, alpha, num_classes: int, c: int, unit_rows: bool):
    """``(_Sorted, perm)``: the batch's rows by class (members first, stable), padded by c rows."""
    m, d = Z.shape
    key = jnp.where(member, jnp.clip(labels, 0, num_classes - 1), num_classes)
    perm = jnp.argsort(key, stable=True)
    pad = lambda x: jnp.concatenate([x[perm], jnp.zeros((c,) + x.shape[1:], x.dtype)])
    Zs, Rs = pad(Z), pad(R)
    diff = Zs - Rs
    gap = jnp.sum((Zs + Rs) * diff, axis=1) / 2 if unit_rows else jnp.zeros(m + c, Z.dtype)
    right = jnp.concatenate([Zs[:m], gap[:m, None], jnp.ones((m, 1), Z.dtype)], axis=1)   # the columns
    sizes = jnp.zeros(num_classes + 1, jnp.int32).at[key].add(1)
    starts = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(sizes[:num_classes], dtype=jnp.int32)])
    return _Sorted(Zs, Rs, diff, gap, right, pad(is_anchor & member), pad(alpha), starts), perm


def _block(S: _Sorted, tau, b0, c: int, window: int, with_grad: bool):
    """``(log E_block, _Acc or None)`` of the sorted anchors b0 .. b0 + c - 1 (module docstring);
    the gradients d log E_block in sorted rows."""
    mp, d = S.Z.shape
    members = S.starts[-1]
    rows = b0 + jnp.arange(c, dtype=jnp.int32)
    inside = rows < members
    y = jnp.clip(jnp.sum(rows[:, None] >= S.starts[None, 1:], axis=1), 0, S.starts.shape[0] - 2)  # class
    lo, hi = S.starts[y], S.starts[y + 1]
    n_pos = jnp.where(inside, hi - lo - 1, 0)
    has_pos = inside & jax.lax.dynamic_slice_in_dim(S.anchor, b0, c) & (n_pos > 0)
    has_neg = has_pos & (members - (hi - lo) > 0)
    Zb = jax.lax.dynamic_slice_in_dim(S.Z, b0, c)
    Rb = jax.lax.dynamic_slice_in_dim(S.R, b0, c)
    e, A, sum_neg, s, lse_neg = _negatives(S, tau, Zb, Rb, lo, hi, has_neg)
    # 2. positives, on the window [ws, ws + W) that holds every anchor's range [lo, hi)
    ws = jnp.clip(lo[0], 0, mp - window)
    wcols = ws + jnp.arange(window, dtype=jnp.int32)[None, :]
    pos = (wcols >= lo[:, None]) & (wcols < hi[:, None]) & (wcols != rows[:, None]) & inside[:, None]

    def window_logits(Zb, Dw, gw, tau):
        return (Zb @ Dw.T - gw[None, :]) / tau
    window_args = (Zb, jax.lax.dynamic_slice_in_dim(S.diff, ws, window),
                   jax.lax.dynamic_slice_in_dim(S.gap, ws, window), tau)
    if with_grad:
        Xw, window_pullback = jax.vjp(window_logits, *window_args)
    else:
        Xw = window_logits(*window_args)
    ps = positives_state(Xw, pos, n_pos)
    delta = lse_neg - ps.lse_pos
    within = jnp.where(has_pos, ps.within, 0.0)
    a = jnp.where(has_pos, jax.lax.dynamic_slice_in_dim(S.alpha, b0, c), 0.0)
    log_alpha = jnp.where(a > 0, jnp.log(jnp.where(a > 0, a, 1.0)), -jnp.inf)
    log_e = combine_log(within, jnp.where(has_pos, log_softplus(delta), -jnp.inf)) + log_alpha
    log_block = _masked_lse(log_e, jnp.isfinite(log_e), axis=0)
    if not with_grad:
        return log_block, None
    ref = jnp.where(jnp.isfinite(log_block), log_block, 0.0)
    coef = cotangent_coefficients(has_pos, within, ps.sum_pos, sum_neg, delta, log_alpha - ref)
    dXw = jnp.where(pos, positives_cotangent(ps.q, ps.mean_q, coef), 0.0)
    return log_block, _pullback(S, tau, b0, Zb, Rb, e, A, s, coef, window_pullback(dXw), ws,
                                jnp.where(a > 0, jnp.exp(log_e - log_alpha - ref), 0.0))


def _negatives(S: _Sorted, tau, Zb, Rb, lo, hi, has_neg):
    """Step 1 of a block (module docstring): the negatives, on the m columns of the batch (the c rows
    of padding are for the anchors only). ``(e (c, m), A = e [Z, gap, 1] (c, d + 2), S_N (c,),
    s_i = <z_i, r_i> / tau (c,), lse_N X (c,))``."""
    c, d = Zb.shape
    members = S.starts[-1]
    right = S.right
    cols = jnp.arange(right.shape[0], dtype=jnp.int32)[None, :]
    neg = (cols < members) & ((cols < lo[:, None]) | (cols >= hi[:, None])) & has_neg[:, None]
    g = jnp.concatenate([Zb, -jnp.ones((c, 1), Zb.dtype)], axis=1) / tau @ right[:, :d + 1].T   # one product
    u = jax.lax.stop_gradient(jnp.max(jnp.where(neg, g, -jnp.inf), axis=1))
    u = jnp.where(has_neg, u, 0.0)
    e = jnp.where(neg, jnp.exp(g - u[:, None]), 0.0)
    A = e @ right                                                       # (c, d + 2)
    sum_neg = jnp.where(has_neg, A[:, -1], 0.0)                         # >= 1 (the term at u)
    s = jnp.sum(Zb * Rb, axis=1) / tau
    lse_neg = jnp.where(has_neg, u + jnp.log(jnp.where(has_neg, sum_neg, 1.0)) - s, -jnp.inf)
    return e, A, sum_neg, s, lse_neg


def _pullback(S: _Sorted, tau, b0, Zb, Rb, e, A, s, coef, window_cotangents, ws, d_alpha) -> "_Acc":
    """Step 3 of a block (module docstring): the block's gradients in sorted rows, from the negatives
    (g's cotangent is coef.neg_i e_ia), s (-sig_i) and the window's pullback ``window_cotangents``
    (d Z_b, d D_w, d gap_w, d tau), placed at the block's rows b0.. and the window's ws.."""
    c, d = Zb.shape
    cn = coef.neg[:, None]
    dZb = cn * A[:, :d] / tau - coef.sig[:, None] * Rb / tau
    dRb = -coef.sig[:, None] * Zb / tau
    B = rows_product(jnp.concatenate([cn * Zb, cn], axis=1), e).T      # e^T [coef Z_b, coef]
    B = jnp.concatenate([B, jnp.zeros((c, d + 1), B.dtype)])           # (m + c, d + 1)
    eg = (jnp.sum(Zb * A[:, :d], axis=1) - A[:, d]) / tau               # sum_a e_ia g_ia
    dtau = (-jnp.sum(coef.neg * eg) + jnp.sum(coef.sig * s)) / tau
    dZb_w, dDw, dgw, dtau_w = window_cotangents
    acc = _Acc(B[:, :d] / tau, jnp.zeros_like(S.R), -B[:, d] / tau, dtau + dtau_w, jnp.zeros_like(S.alpha))
    add = lambda x, start, v: jax.lax.dynamic_update_slice_in_dim(
        x, jax.lax.dynamic_slice_in_dim(x, start, v.shape[0]) + v, start, 0)
    acc = acc._replace(Z=add(add(acc.Z, ws, dDw), b0, dZb + dZb_w),
                       R=add(add(acc.R, ws, -dDw), b0, dRb),
                       gap=add(acc.gap, ws, dgw),
                       alpha=add(acc.alpha, b0, d_alpha))
    return acc


def _window(m: int, c: int, class_rows: int | None) -> int:
    """Columns of a block's positives window: a block of c sorted rows touches at most two classes
    that reach outside it, each of at most ``class_rows`` members (None: any number)."""
    return m + c if class_rows is None else min(m + c, c + 2 * int(class_rows) - 1)


def _zero_acc(mp: int, d: int, dtype) -> _Acc:
    return _Acc(jnp.zeros((mp, d), dtype), jnp.zeros((mp, d), dtype), jnp.zeros(mp, dtype),
                jnp.zeros((), dtype), jnp.zeros(mp, dtype))


def _run_blocks(S: _Sorted, tau, starts, c: int, window: int, with_grad: bool):
    """``(ref, weight, acc)`` over the blocks starting at the sorted rows ``starts`` (nb,): E of these
    blocks = e^ref weight, and acc = sum_b e^{log E_b - ref} d log E_b (None without gradients).
    Blocks past the members give nothing."""
    mp, d = S.Z.shape
    dtype = S.Z.dtype

    def body(carry, b0):
        ref, weight, acc = carry
        log_b, g_b = _block(S, tau, b0, c, window, with_grad)   # -inf past the members
        higher = log_b > ref                    # a new reference: rescale what is summed so far
        new_ref = jnp.where(higher, log_b, ref)
        factor = jnp.where(jnp.isfinite(ref), jnp.exp(ref - new_ref), 0.0)
        w_b = jnp.where(jnp.isfinite(log_b), jnp.exp(log_b - jnp.where(jnp.isfinite(new_ref), new_ref, 0.0)), 0.0)
        if with_grad:
            scale = jnp.where(higher, factor, 1.0)
            acc = jax.tree_util.tree_map(lambda x, y: scale * x + w_b * y, acc, g_b)
        return (new_ref, jnp.where(higher, factor * weight, weight) + w_b, acc), None

    init = (jnp.asarray(-jnp.inf, dtype), jnp.zeros((), dtype), _zero_acc(mp, d, dtype) if with_grad else None)
    (ref, weight, acc), _ = jax.lax.scan(body, init, starts)
    return ref, weight, acc


def _unsorted_result(S: _Sorted, perm, m: int, log_total, acc: _Acc | None, share, class_rows: int | None,
                     unit_rows: bool) -> tuple:
    """log E and the caller's-order gradients from the accumulated sorted ones (``share``: the
    factor that turns acc into d log E); NaN if a class has more members than ``class_rows``."""
    if class_rows is not None:
        fits = jnp.max(jnp.diff(S.starts)) <= class_rows
        log_total = jnp.where(fits, log_total, jnp.nan)
        share = jnp.where(fits, share, jnp.nan)
    if acc is None:
        return log_total, None
    if unit_rows:           # gap = (|z|^2 - |r|^2) / 2; else gap = 0, a constant
        acc = acc._replace(Z=acc.Z + acc.gap[:, None] * S.Z, R=acc.R - acc.gap[:, None] * S.R)
    dZ, dR = share * acc.Z, share * acc.R
    inverse = jnp.zeros_like(perm).at[perm].set(jnp.arange(m, dtype=perm.dtype))
    return log_total, _Grads(dZ[:m][inverse], dR[:m][inverse], share * acc.tau, (share * acc.alpha)[:m][inverse])


def _evaluate(Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size, unit_rows, with_grad,
              mesh=None, class_rows=None):
    m, d = Z.shape
    if mesh is None:
        c = block_size(m, chunk_size, m, Z.dtype.itemsize)
        starts = jnp.arange(0, m, c, dtype=jnp.int32)
        S, perm = _sort(Z, R, labels, member, is_anchor, alpha, num_classes, c, unit_rows)
        ref, weight, acc = _run_blocks(S, tau, starts, c, _window(m, c, class_rows), with_grad)
        total = jnp.where(weight > 0, ref + jnp.log(jnp.where(weight > 0, weight, 1.0)), -jnp.inf)
        return _unsorted_result(S, perm, m, total, acc, jnp.where(weight > 0, 1.0 / jnp.where(weight > 0, weight, 1.0), 0.0),
                       class_rows, unit_rows)
    return _evaluate_sharded(mesh, Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size,
                             unit_rows, with_grad, class_rows)


def _evaluate_sharded(mesh, Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size, unit_rows,
                      with_grad, class_rows):
    """Row-sharded over the devices of ``mesh`` (one axis): every device holds all rows (gathered at
    the boundary), sorts them, takes its own ceil(m / p) sorted anchors, and the devices' sums
    combine as one more log-sum-exp (an all-gather of p scalars and one psum)."""
    axis = mesh.axis_names[0]
    p = mesh.shape[axis]
    m, d = Z.shape
    per = -(-m // p)
    c = block_size(per, chunk_size, m, Z.dtype.itemsize)
    local = jnp.arange(0, per, c, dtype=jnp.int32)            # block offsets within a device's rows

    def on_device(Z, R, labels, member, is_anchor, alpha, tau):
        S, perm = _sort(Z, R, labels, member, is_anchor, alpha, num_classes, c, unit_rows)
        first = jax.lax.axis_index(axis) * per
        # blocks of c from the device's first row; a block may run into the next device's rows, so
        # the device's rows are those below first + per: the others are masked by a shorter member range
        S_dev = S._replace(anchor=S.anchor & (jnp.arange(S.Z.shape[0]) >= first)
                           & (jnp.arange(S.Z.shape[0]) < first + per))
        ref, weight, acc = _run_blocks(S_dev, tau, jnp.minimum(first + local, m), c, _window(m, c, class_rows),
                                       with_grad)
        refs = jax.lax.all_gather(ref, axis)
        top = jnp.max(refs)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        scale = jnp.where(jnp.isfinite(ref), jnp.exp(ref - top), 0.0)
        weight = jax.lax.psum(scale * weight, axis)
        total = jnp.where(weight > 0, top + jnp.log(jnp.where(weight > 0, weight, 1.0)), -jnp.inf)
        if not with_grad:
            return _unsorted_result(S, perm, m, total, None, 1.0, class_rows, unit_rows)
        acc = jax.tree_util.tree_map(lambda x: jax.lax.psum(scale * x, axis), acc)
        return _unsorted_result(S, perm, m, total, acc, jnp.where(weight > 0, 1.0 / jnp.where(weight > 0, weight, 1.0), 0.0),
                       class_rows, unit_rows)

    spec = jax.sharding.PartitionSpec()
    out_specs = (spec, None if not with_grad else _Grads(spec, spec, spec, spec))
    fn = jax.shard_map(on_device, mesh=mesh, in_specs=(spec,) * 7, out_specs=out_specs, check_vma=False)
    return fn(Z, R, labels, member, is_anchor, alpha, tau)


@partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9, 10, 11))
def batch_log_excess(Z: jnp.ndarray, R: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray,
                     is_anchor: jnp.ndarray, alpha: jnp.ndarray, tau: jnp.ndarray, num_classes: int,
                     chunk_size: int | None = None, unit_rows: bool = True,
                     mesh: jax.sharding.Mesh | None = None, class_rows: int | None = None) -> jnp.ndarray:
    """log sum_i alpha_i e_i over one batch (module docstring); -inf when it is 0.

    Z, R (m, d) the batch's rows and their class representatives, labels (m,) in [0, num_classes),
    member, is_anchor (m,) bool, alpha (m,) >= 0, tau (). Static: ``num_classes``, ``chunk_size``
    (anchors per block; None: :func:`default_block`), ``unit_rows`` (the rows stand for points of the sphere:
    their norm error is removed as in ``ufm.objectives.scl.formula.row_inputs``). Its derivative with respect to
    Z, R, tau and alpha is computed with the value (a custom VJP). ``mesh``: None, or a one-axis
    ``jax.sharding.Mesh`` whose devices split the anchors by rows (:func:`_evaluate_sharded`; the
    same value and gradient, summed in another order). ``class_rows``: at most this many members of
    one class in the batch (None: any), which bounds the positives' window (module docstring); a
    batch with more gives NaN, never a wrong number."""
    return _evaluate(Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size, unit_rows, False,
                     mesh, class_rows)[0]


def _forward(Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size, unit_rows, mesh, class_rows):
    value, grads = _evaluate(Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size,
                             unit_rows, True, mesh, class_rows)
    return value, (grads, jnp.isfinite(value))


def _backward(num_classes, chunk_size, unit_rows, mesh, class_rows, residual, cotangent):
    grads, finite = residual
    g = jnp.where(finite, cotangent, 0.0)
    return (g * grads.Z, g * grads.R, None, None, None, g * grads.alpha, g * grads.tau)


batch_log_excess.defvjp(_forward, _backward)


def log_excess_packed(H: jnp.ndarray, labels: jnp.ndarray, rep: jnp.ndarray, tau: float | jnp.ndarray,
                      index: jnp.ndarray, valid: jnp.ndarray, num_classes: int, prototypes: jnp.ndarray | None = None,
                      prototype_labels: jnp.ndarray | None = None, prototype_anchors: bool = True,
                      chunk_size: int | None = None, mesh: jax.sharding.Mesh | None = None,
                      class_rows: int | None = None) -> jnp.ndarray:
    """log E over a packed batching, on the fused kernel: the value of
    :func:`ufm.objectives.scl.formula.reference_log_excess_packed` (its arguments, plus the static ``num_classes``, labels of
    examples and prototypes in [0, num_classes)) with the gradient computed alongside. The objective
    of gradient descent. ``mesh``: rows sharded over its devices; ``class_rows``: a bound on one
    class's members in a batch, prototypes included (:func:`batch_log_excess`)."""
    Z, R, row_labels, member, is_anchor = batch_rows(H, labels, rep, index, valid, prototypes,
                                                     prototype_labels, prototype_anchors)
    alpha = jnp.ones(member.shape, Z.dtype)
    logs = over_batches(lambda *a: batch_log_excess(*a, tau, num_classes, chunk_size, True, mesh, class_rows),
                        Z, R, row_labels, member, is_anchor, alpha)
    return _masked_lse(logs, jnp.isfinite(logs), axis=0)
