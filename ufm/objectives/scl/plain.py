"""The SCL excess in its plain form, fused: the cheap objective of gradient descent's first phase
(docs/architecture.md "Two phases").

For one batch of m rows Z (m, d) (unit rows: points of the sphere), with members M, labels y and
anchors i (``is_anchor``, members with |P(i)| >= 1), G = Z Z^T:

    e_i = lse_i - mean_{p in P(i)} G_ip / tau - log|P(i)|,
    lse_i = 1/tau + log D_i,    D_i = sum_{a in M, a != i} exp((G_ia - 1) / tau),
    E_b = sum_i e_i,

the same excess as :mod:`ufm.objectives.scl.formula` (there lse_i is split as lse_P + softplus(lse_N - lse_P)), here
as a difference of terms of size 1/tau + log m. Unit rows make G_ia - 1 <= 0 (to rounding), so the
shift 1/tau replaces a row maximum, and D_i >= exp(-2/tau) (an anchor has a positive) never
underflows for tau above :func:`min_tau` (0.003 in float64, 0.024 in float32). The positives enter
through class sums: sum_{p in P(i)} G_ip = <z_i, C_y> - |z_i|^2 with C_y the sum of class y's member
rows.

Precision: each e_i is a difference of O(1/tau + log m) terms, so the rounding of E_b is about
eps * anchors * (2/tau + log m) (:func:`rounding_estimate`), relative to E: at tau 0.5, n = 1000 about
4e-15 in float64 (E is ~0.7 per anchor); for counts (8, 8, 2, 2) at tau 0.05 about 8e-4 at the
optimum (E = 2.5e-10). An estimate, not a worst-case bound (:func:`rounding_estimate`). It is the
fast path only where that estimate is far below what a step changes; the precise excess
(:mod:`ufm.objectives.scl.precise`) takes over from there (:mod:`solvers.gd`), and the reported value, the
certificate and the gradient half of the stopping test are always the precise one.

Gradient (closed form, computed with the value, blocks of c anchors, O(c m) memory): with
w_i = 1/D_i on anchors (0 elsewhere), W_ia = w_i exp((G_ia - 1)/tau) the masked softmax,

    dE/dz_j = (sum_a W_ja z_a + sum_i W_ij z_i) / tau - [b_j (C_y - 2 z_j) + B_y],
    b_j = 1 / (tau |P(j)|) on anchors (0 elsewhere),  B_y = sum_{i in y} b_i z_i  (j a member of y),
    dE/dtau = sum_i [ mean_{p in P(i)} G_ip / tau^2 - sum_a W_ia G_ia / tau^2 ].

Per block: one product Z_b Z^T, one exponential per entry, ent [Z, 1] (row sums and the anchor side)
and (w Z_b)^T ent, (d, m) (the column side, :func:`ufm.objectives.scl.precise.rows_product`): the benchmark
floor's two products plus one.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from ufm.objectives.scl.formula import batch_rows, over_batches
from ufm.blocks import block_size, plain_default_block as default_block
from ufm.objectives.scl.precise import rows_product

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

#: e_i's terms are exp((G - 1)/tau) >= exp(-2/tau): above this many units of -log(tiny) in the exponent
#: an entry could underflow; :func:`min_tau` keeps 2/tau within MIN_TAU_REACH of the dtype's range.
MIN_TAU_REACH = 0.95

def min_tau(dtype: DTypeLike) -> float:
    """The smallest tau at which no entry exp((G - 1)/tau), G >= -1, underflows in ``dtype``."""
    return 2.0 / (MIN_TAU_REACH * -math.log(float(jnp.finfo(dtype).tiny)))


def rounding_estimate(tau: float | jnp.ndarray, anchors: int, width: int, dtype: DTypeLike) -> jnp.ndarray | float:
    """An estimate (not a worst-case bound) of the absolute rounding of E computed plainly:
    eps * anchors * (2/tau + log width), each e_i being a difference of terms of size 1/tau + log
    width. Worst-case bounds would add factors d (dot products) and log m, log N (sums); rounding
    errors average out instead, and the tests hold the estimate against mpmath (n = 18) and an
    80-bit reference at n = 1000 (float64 and float32)."""
    return float(jnp.finfo(dtype).eps) * anchors * (2.0 / tau + math.log(max(width, 2)))


def _row_terms(Z, labels, member, is_anchor, num_classes: int):
    """Per-row quantities of one batch: (anchor (m,) bool, n_pos (m,), pos_sum (m,) = sum_P G_i.,
    class sums C (k, d), class of each row (m,))."""
    dtype = Z.dtype
    lab = jnp.clip(labels, 0, num_classes - 1)
    memf = member.astype(dtype)
    C = jax.ops.segment_sum(Z * memf[:, None], lab, num_segments=num_classes)
    counts = jax.ops.segment_sum(memf, lab, num_segments=num_classes)
    n_pos = jnp.where(member, counts[lab] - 1.0, 0.0)
    anchor = is_anchor & member & (n_pos > 0)
    pos_sum = jnp.sum(Z * C[lab], axis=1) - jnp.sum(Z * Z, axis=1)
    return anchor, n_pos, pos_sum, C, lab


def _partial(Z, labels, member, owned, tau, num_classes: int, c: int, starts, pad: int, with_grad: bool):
    """(E over the anchors in ``owned``, dE/dZ, dE/dtau) of one batch, blocks of c anchors from the
    row offsets ``starts`` (every owned anchor in one of them; a block ends at most ``pad`` rows past
    the batch)."""
    m, d = Z.shape
    dtype = Z.dtype
    anchor, n_pos, pos_sum, C, lab = _row_terms(Z, labels, member, owned, num_classes)
    npos = jnp.maximum(n_pos, 1.0)
    Zp = jnp.concatenate([Z, jnp.zeros((pad, d), dtype)])
    anchor_p = jnp.concatenate([anchor, jnp.zeros(pad, bool)])
    right = jnp.concatenate([Z, jnp.ones((m, 1), dtype)], axis=1)          # [Z, 1] (m, d + 1)
    cols = jnp.arange(m, dtype=jnp.int32)[None, :]
    inv_tau = 1.0 / tau

    def body(carry, b0):
        col, eg_sum = carry
        Zb = jax.lax.dynamic_slice_in_dim(Zp, b0, c)
        ab = jax.lax.dynamic_slice_in_dim(anchor_p, b0, c)
        rows = b0 + jnp.arange(c, dtype=jnp.int32)[:, None]
        keep = ab[:, None] & member[None, :] & (rows != cols)
        ent = jnp.where(keep, jnp.exp((Zb @ Z.T - 1.0) * inv_tau), 0.0)       # one exponential per entry
        A = ent @ right                                                      # (c, d + 1)
        D = jnp.where(ab, A[:, d], 1.0)
        log_D = jnp.where(ab, jnp.log(D), 0.0)
        if not with_grad:
            return (col, eg_sum), (log_D, None)
        w = jnp.where(ab, 1.0 / D, 0.0)
        col = col + rows_product(w[:, None] * Zb, ent)                      # sum_i W_ia z_i, (d, m)
        row_b = w[:, None] * A[:, :d]                                        # sum_a W_ia z_a
        eg_sum = eg_sum + jnp.sum(Zb * row_b)                                # sum_ia W_ia G_ia
        return (col, eg_sum), (log_D, row_b)

    (col, eg_sum), (log_D_blocks, row_blocks) = jax.lax.scan(
        body, (jnp.zeros((d, m), dtype), jnp.zeros((), dtype)), starts)
    # back to rows (blocks may overlap rows they do not own: those are 0)
    block_rows = (starts[:, None] + jnp.arange(c)[None, :]).reshape(-1)
    log_D = jnp.zeros(m + pad, dtype).at[block_rows].add(log_D_blocks.reshape(-1))[:m]
    # e_i = log(D_i / |P(i)|) + mean_P (1 - G_ip) / tau: two small terms per anchor (no difference of
    # sums of size anchors / tau), then a sum of e_i >= 0
    e = jnp.where(anchor, (log_D - jnp.log(npos)) + (n_pos - pos_sum) / npos * inv_tau, 0.0)
    value = jnp.sum(e)
    if not with_grad:
        return value, None, None
    b = jnp.where(anchor, inv_tau / npos, 0.0)
    B = jax.ops.segment_sum(b[:, None] * Z, lab, num_segments=num_classes)
    positives = (b[:, None] * (C[lab] - 2.0 * Z) + B[lab]) * member.astype(dtype)[:, None]
    row = jnp.zeros((m + pad, d), dtype).at[block_rows].add(row_blocks.reshape(-1, d))
    dZ = (row[:m] + col.T) * inv_tau - positives
    # d lse_i / dtau = -sum_a W_ia G_ia / tau^2;  d(-mean_pos_i) / dtau = mean_pos_i / tau
    mean_pos = jnp.where(anchor, pos_sum / npos * inv_tau, 0.0)
    dtau = -eg_sum * inv_tau * inv_tau + jnp.sum(mean_pos) * inv_tau
    return value, dZ, dtau


def _evaluate(Z, labels, member, is_anchor, tau, num_classes, chunk_size, mesh, with_grad):
    m, d = Z.shape
    if mesh is None:
        c = block_size(m, chunk_size, m, Z.dtype.itemsize, default_block)
        starts = jnp.arange(0, m, c, dtype=jnp.int32)
        return _partial(Z, labels, member, is_anchor, tau, num_classes, c, starts, c, with_grad)
    axis = mesh.axis_names[0]
    p = mesh.shape[axis]
    per = -(-m // p)
    c = block_size(per, chunk_size, m, Z.dtype.itemsize, default_block)
    local = jnp.arange(0, per, c, dtype=jnp.int32)

    def on_device(Z, labels, member, is_anchor, tau):
        first = jax.lax.axis_index(axis) * per
        rows = jnp.arange(m)
        owned = is_anchor & (rows >= first) & (rows < first + per)
        value, dZ, dtau = _partial(Z, labels, member, owned, tau, num_classes, c, first + local,
                                   p * per - m + c, with_grad)
        value = jax.lax.psum(value, axis)
        if not with_grad:
            return value, None, None
        return value, jax.lax.psum(dZ, axis), jax.lax.psum(dtau, axis)

    spec = jax.sharding.PartitionSpec()
    out_specs = (spec, None, None) if not with_grad else (spec, spec, spec)
    fn = jax.shard_map(on_device, mesh=mesh, in_specs=(spec,) * 5, out_specs=out_specs, check_vma=False)
    return fn(Z, labels, member, is_anchor, tau)


@partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def batch_excess_plain(Z: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray, is_anchor: jnp.ndarray,
                       tau: jnp.ndarray, num_classes: int, chunk_size: int | None = None,
                       mesh: jax.sharding.Mesh | None = None) -> jnp.ndarray:
    """E of one batch in the plain form (module docstring), with its gradient computed alongside
    (a custom VJP, w.r.t. Z and tau). Z (m, d) unit rows, labels (m,) in [0, num_classes), member,
    is_anchor (m,) bool. Static: ``num_classes``, ``chunk_size`` (anchors per block; None:
    :func:`default_block`), ``mesh`` (anchors split over its devices, one axis)."""
    return _evaluate(Z, labels, member, is_anchor, tau, num_classes, chunk_size, mesh, False)[0]


def _forward(Z, labels, member, is_anchor, tau, num_classes, chunk_size, mesh):
    value, dZ, dtau = _evaluate(Z, labels, member, is_anchor, tau, num_classes, chunk_size, mesh, True)
    return value, (dZ, dtau)


def _backward(num_classes, chunk_size, mesh, residual, cotangent):
    dZ, dtau = residual
    return cotangent * dZ, None, None, None, cotangent * dtau


batch_excess_plain.defvjp(_forward, _backward)


def log_excess_plain_packed(H: jnp.ndarray, labels: jnp.ndarray, rep: jnp.ndarray, tau: float | jnp.ndarray,
                            index: jnp.ndarray, valid: jnp.ndarray, num_classes: int,
                            prototypes: jnp.ndarray | None = None, prototype_labels: jnp.ndarray | None = None,
                            prototype_anchors: bool = True, chunk_size: int | None = None,
                            mesh: jax.sharding.Mesh | None = None) -> jnp.ndarray:
    """log E over a packed batching in the plain form: the arguments of
    :func:`ufm.objectives.scl.precise.log_excess_packed` (``rep`` is unused: the plain form needs no class
    representative), log of the sum of the batches' :func:`batch_excess_plain`. Accurate to
    :func:`rounding_estimate` / E, relative (an estimate); NaN where rounding makes the sum <= 0."""
    Z, _, row_labels, member, is_anchor = batch_rows(H, labels, rep, index, valid, prototypes,
                                                     prototype_labels, prototype_anchors)
    parts = over_batches(lambda *a: batch_excess_plain(*a, tau, num_classes, chunk_size, mesh),
                         Z, row_labels, member, is_anchor)
    total = jnp.sum(parts)
    return jnp.where(total > 0, jnp.log(jnp.where(total > 0, total, 1.0)), jnp.nan)
