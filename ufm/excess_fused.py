"""The fused value and gradient of the SCL excess over one batch: what gradient descent and the loss
evaluate (docs/architecture.md "The fused kernel").

For one batch of m rows Z (m, d), their class representatives R (m, d) and per-anchor weights
alpha (m,) >= 0, :func:`batch_log_excess` returns

    log E_alpha = log sum_i alpha_i e_i,    e_i = within(i) + softplus(delta(i))

(``ufm.excess``: alpha = 1 gives log E; the loss's reductions are other weights). Its JAX
derivative is a custom rule: the forward pass computes the gradient with the value, block by block
of c anchors, so ``jax.value_and_grad`` costs one pass and keeps O(c m) memory, chunked or not.

Per block:

1. The logits in one product, X = [Z_r, C] @ [Z - R, onehot(labels)]^T / tau - gap / tau, with
   C_ic = <z_i, rep_c> - <z_i, rep_{y_i}> (k columns, exactly 0 on i's own class): on positives
   X_ij = <z_i, z_j - r_j>/tau - gap_j/tau (the precise form of ``ufm.excess.row_inputs``), on
   negatives <z_i, z_j>/tau - <z_i, r_i>/tau.
2. :func:`ufm.excess.anchor_state`: one reduction pass, one exponential per entry.
3. dX = d/dX sum_i alpha_i e_i / E_block in closed form (:func:`ufm.excess.excess_cotangent`), and
   its pullback through the product (two (c, m) x (m, d + k) products) to Z, R, tau.

Blocks combine as a running log-sum-exp: the gradient of log E is sum_b (E_b / E) d log E_b.
The gradient matches JAX's derivative of the reference path (``ufm.excess.anchor_parts``) to
rounding (tests: 1e-12 in float64). Hessian-vector products need that reference path (a custom
VJP has no forward-mode derivative): ``ufm.loss.scl_loss_packed`` with ``num_classes=None``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ufm.excess import (AnchorInputs, _anchor_masks, _masked_lse, anchor_state, batch_rows, combine_log,
                        excess_cotangent)


class _Grads(NamedTuple):
    """d log E_alpha / d(Z, R, tau, alpha) of one batch."""

    Z: jnp.ndarray
    R: jnp.ndarray
    tau: jnp.ndarray
    alpha: jnp.ndarray


def _logits(Z, R, tau, labels, rows, num_classes: int, unit_rows: bool):
    """X (c, m) of the anchors ``rows`` (c,) from one product (module docstring, step 1)."""
    m = Z.shape[0]
    r = jnp.where(rows < m, rows, 0)
    Zr = Z[r]
    classes = jnp.arange(num_classes)
    onehot = (labels[:, None] == classes[None, :]).astype(Z.dtype)              # (m, k)
    first = jnp.argmax(labels[None, :] == classes[:, None], axis=1)              # (k,) a row of each class
    T = Zr @ R[first].T                                                          # (c, k) <z_i, rep_c>
    own = jnp.clip(labels[r], 0, num_classes - 1)                                # (padding may lie outside)
    C = T - jnp.take_along_axis(T, own[:, None], axis=1)                        # 0 on the own class
    left = [Zr, C]
    right = [Z - R, onehot]
    if unit_rows:                                                                # -(|z_j|^2 - |r_j|^2)/2
        left.append(-jnp.ones((rows.shape[0], 1), Z.dtype))
        right.append((jnp.sum((Z + R) * (Z - R), axis=1) / 2)[:, None])
    return (jnp.concatenate(left, axis=1) / tau) @ jnp.concatenate(right, axis=1).T


def _block(Z, R, labels, member, is_anchor, alpha, tau, rows, num_classes, unit_rows, with_grad):
    """``(log E_block, grads or None)`` of the anchors ``rows`` (c,): grads are d log E_block /
    d(Z, R, tau, alpha) (alpha's over the c rows)."""
    m = Z.shape[0]
    make = lambda Z_, R_, tau_: _logits(Z_, R_, tau_, labels, rows, num_classes, unit_rows)
    if with_grad:
        X, pullback = jax.vjp(make, Z, R, tau)
    else:
        X = make(Z, R, tau)
    r, positives, negatives, has_pos, n_pos = _anchor_masks(labels, member, is_anchor, rows)
    inputs = AnchorInputs(X, positives, negatives, has_pos, n_pos)
    state = anchor_state(inputs)
    a = jnp.where((rows < m) & has_pos, alpha[r], 0.0)
    log_alpha = jnp.where(a > 0, jnp.log(jnp.where(a > 0, a, 1.0)), -jnp.inf)
    log_e = combine_log(state.parts.within, state.parts.log_softplus) + log_alpha
    log_block = _masked_lse(log_e, jnp.isfinite(log_e), axis=0)
    if not with_grad:
        return log_block, None
    ref = jnp.where(jnp.isfinite(log_block), log_block, 0.0)
    dX = excess_cotangent(inputs, state, log_alpha - ref)
    dZ, dR, dtau = pullback(dX)
    d_alpha = jnp.where(a > 0, jnp.exp(log_e - log_alpha - ref), 0.0)            # e_i / E_block
    return log_block, _Grads(dZ, dR, dtau, d_alpha)


#: On a CPU the kernel works in blocks of anchors even without a ``chunk_size``: a block's (c, m)
#: intermediates stay in cache instead of being written to fresh memory. Blocks are sized so that
#: c * m * itemsize ~ BLOCK_BYTES, with at least MIN_BLOCK_BYTES / itemsize rows (32 float64, 64
#: float32: fewer rows make the products inefficient and the per-block work on the (m, d) gradient
#: count). Measured on 2 cores, k = d = 10, loss + gradient: float64 n = 5000, one block 0.51 s,
#: blocks of 52 (the default) 0.13 s; n = 20000, blocks of 32 (the default) 2.74 s, of 64 3.15 s;
#: float32 n = 20000, blocks of 64 (the default) 1.27-1.36 s, of 32 1.33-1.41 s. On a GPU the
#: default is one block (its parallelism wants the whole matrix).
BLOCK_BYTES = 2 * 2 ** 20
MIN_BLOCK_BYTES = 256


def default_block(width: int, itemsize: int) -> int:
    """Anchors per block when no chunk size is given (see BLOCK_BYTES)."""
    if jax.default_backend() != "cpu":
        return width
    return max(MIN_BLOCK_BYTES // itemsize, BLOCK_BYTES // max(width * itemsize, 1))


def _blocks(rows: int, chunk_size: int | None, width: int, itemsize: int) -> jnp.ndarray:
    """(nb, c) anchor offsets 0 .. nb c - 1 (past ``rows``: padding) of ``rows`` anchors against a batch
    of ``width`` rows."""
    c = default_block(width, itemsize) if chunk_size is None else int(chunk_size)
    c = max(1, min(c, rows))
    return jnp.arange(-(-rows // c) * c, dtype=jnp.int32).reshape(-1, c)


def _merge(log_a, a: _Grads, log_b, b: _Grads):
    """Gradients of log(E_a + E_b) from those of log E_a and log E_b (running log-sum-exp)."""
    total = jnp.logaddexp(log_a, log_b)
    wa, wb = _share(log_a, total), _share(log_b, total)
    return total, _Grads(*(wa * x + wb * y for x, y in zip(a, b)))


def _share(log_part, log_total):
    """E_part / E_total from their logs; 0 where either is not finite (an empty part or sum)."""
    safe = jnp.isfinite(log_total) & jnp.isfinite(log_part)
    return jnp.where(safe, jnp.exp(log_part - jnp.where(safe, log_total, 0.0)), 0.0)


def _evaluate_blocks(Z, R, labels, member, is_anchor, alpha, tau, blocks, num_classes, unit_rows, with_grad):
    """(log E, grads or None) of the anchors in ``blocks`` (nb, c) (row indices; m or more: padding),
    one block at a time, merged as a running log-sum-exp."""
    m = Z.shape[0]
    step = partial(_block, Z, R, labels, member, is_anchor, alpha, tau,
                   num_classes=num_classes, unit_rows=unit_rows, with_grad=with_grad)

    def placed(rows, g: _Grads) -> _Grads:
        # alpha's gradient lives on the block's own rows (padding rows are dropped)
        return g._replace(alpha=jnp.zeros(m, Z.dtype).at[rows].set(g.alpha, mode="drop"))
    if blocks.shape[0] == 1:
        log_b, g_b = step(blocks[0])
        return log_b, (None if g_b is None else placed(blocks[0], g_b))

    def body(carry, rows):
        log_b, g_b = step(rows)
        if not with_grad:
            return jnp.logaddexp(carry, log_b), None
        log_a, g_a = carry
        return _merge(log_a, g_a, log_b, placed(rows, g_b)), None

    if not with_grad:
        total, _ = jax.lax.scan(body, jnp.asarray(-jnp.inf, Z.dtype), blocks)
        return total, None
    zero = _Grads(jnp.zeros_like(Z), jnp.zeros_like(R), jnp.zeros_like(tau), jnp.zeros(m, Z.dtype))
    (total, grads), _ = jax.lax.scan(body, (jnp.asarray(-jnp.inf, Z.dtype), zero), blocks)
    return total, grads


def _evaluate(Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size, unit_rows, with_grad,
              mesh=None):
    if mesh is None:
        m = Z.shape[0]
        return _evaluate_blocks(Z, R, labels, member, is_anchor, alpha, tau,
                                _blocks(m, chunk_size, m, Z.dtype.itemsize), num_classes, unit_rows, with_grad)
    return _evaluate_sharded(mesh, Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size,
                             unit_rows, with_grad)


def _evaluate_sharded(mesh, Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size, unit_rows,
                      with_grad):
    """Row-sharded over the devices of ``mesh`` (one axis): every device holds all rows (gathered at
    the boundary), takes the anchors of its own block of ceil(m / p) rows, and the devices' logs and
    gradients combine as one more log-sum-exp (an all-gather of p scalars and one psum)."""
    axis = mesh.axis_names[0]
    p = mesh.shape[axis]
    m = Z.shape[0]
    per = -(-m // p)
    local_blocks = _blocks(per, chunk_size, m, Z.dtype.itemsize)    # (nb, c) offsets within a device

    def local(Z, R, labels, member, is_anchor, alpha, tau):
        first = jax.lax.axis_index(axis) * per
        rows = first + local_blocks
        rows = jnp.where((local_blocks < per) & (rows < m), rows, m)   # past the device's rows: padding
        log_p, g_p = _evaluate_blocks(Z, R, labels, member, is_anchor, alpha, tau, rows, num_classes,
                                      unit_rows, with_grad)
        logs = jax.lax.all_gather(log_p, axis)
        total = _masked_lse(logs, jnp.isfinite(logs), axis=0)
        if not with_grad:
            return total, None
        w = _share(log_p, total)
        return total, jax.tree_util.tree_map(lambda x: jax.lax.psum(w * x, axis), g_p)

    spec = jax.sharding.PartitionSpec()
    out_specs = (spec, None if not with_grad else _Grads(spec, spec, spec, spec))
    fn = jax.shard_map(local, mesh=mesh, in_specs=(spec,) * 7, out_specs=out_specs, check_vma=False)
    return fn(Z, R, labels, member, is_anchor, alpha, tau)


@partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9, 10))
def batch_log_excess(Z: jnp.ndarray, R: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray,
                     is_anchor: jnp.ndarray, alpha: jnp.ndarray, tau: jnp.ndarray, num_classes: int,
                     chunk_size: int | None = None, unit_rows: bool = True,
                     mesh: jax.sharding.Mesh | None = None) -> jnp.ndarray:
    """log sum_i alpha_i e_i over one batch (module docstring); -inf when it is 0.

    Z, R (m, d) the batch's rows and their class representatives, labels (m,) in [0, num_classes),
    member, is_anchor (m,) bool, alpha (m,) >= 0, tau (). Static: ``num_classes``, ``chunk_size``
    (anchors per block; None: :func:`default_block`), ``unit_rows`` (the rows stand for points of the sphere:
    their norm error is removed as in ``ufm.excess.row_inputs``). Its derivative with respect to
    Z, R, tau and alpha is computed with the value (a custom VJP). ``mesh``: None, or a one-axis
    ``jax.sharding.Mesh`` whose devices split the anchors by rows (:func:`_evaluate_sharded`; the
    same value and gradient, summed in another order)."""
    return _evaluate(Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size, unit_rows, False,
                     mesh)[0]


def _forward(Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size, unit_rows, mesh):
    value, grads = _evaluate(Z, R, labels, member, is_anchor, alpha, tau, num_classes, chunk_size,
                             unit_rows, True, mesh)
    return value, (grads, jnp.isfinite(value))


def _backward(num_classes, chunk_size, unit_rows, mesh, residual, cotangent):
    grads, finite = residual
    g = jnp.where(finite, cotangent, 0.0)
    return (g * grads.Z, g * grads.R, None, None, None, g * grads.alpha, g * grads.tau)


batch_log_excess.defvjp(_forward, _backward)


def log_excess_packed(H, labels, rep, tau, index, valid, num_classes: int, prototypes=None,
                      prototype_labels=None, prototype_anchors: bool = True,
                      chunk_size: int | None = None, mesh: jax.sharding.Mesh | None = None) -> jnp.ndarray:
    """log E over a packed batching, on the fused kernel: the value of
    :func:`ufm.excess.log_excess_packed` (its arguments, plus the static ``num_classes``, labels of
    examples and prototypes in [0, num_classes)) with the gradient computed alongside. The objective
    of gradient descent. ``mesh``: rows sharded over its devices (:func:`batch_log_excess`)."""
    Z, R, row_labels, member, is_anchor = batch_rows(H, labels, rep, index, valid, prototypes,
                                                     prototype_labels, prototype_anchors)
    alpha = jnp.ones(member.shape, Z.dtype)
    logs = jax.vmap(lambda *a: batch_log_excess(*a, tau, num_classes, chunk_size, True, mesh))(
        Z, R, row_labels, member, is_anchor, alpha)
    return _masked_lse(logs, jnp.isfinite(logs), axis=0)
