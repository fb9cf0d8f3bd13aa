"""The supervised contrastive loss (SCL) in JAX, exactly as docs/theory.md section 1.

For a batch B and an anchor i in B with positives P_B(i) = {j in B, j != i, y_j = y_i} and others
A_B(i) = B minus {i}:

    l_B(i) = (1/|P_B(i)|) sum_{j in P_B(i)} [ logsumexp_{a in A_B(i)} (G_ia / tau) - G_ij / tau ]

(0 when P_B(i) is empty), with G = H H^T. Reductions of a batch loss L_B:

- ``"sum"``: ``sum_{i in B} l_B(i)`` (the toolkit's default);
- ``"mean"``: that sum divided by the number of anchors in B (anchors without positives included);
- ``"mean_with_positives"``: divided by the number of anchors in B that have a positive (0 if none).

The loss of a batching is the sum of its batch losses. Prototypes (fixed labelled rows) join every
batch; with ``prototype_anchors=True`` they are anchors too ((P-b)), otherwise only positives and
negatives ((P-a)).

Implementation: the batching is packed once into padded index arrays plus masks
(:func:`ufm.batching.pack`), and every anchor term is the excess form of :mod:`ufm.objectives.scl.formula` plus its
constant, l(i) = log|P(i)| + within(i) + softplus(delta(i)): SCL is written once in JAX
(:func:`ufm.objectives.scl.formula.anchor_parts`), for the loss, the solver's objective and the certificate's
gradient alike. All anchors of a batch are evaluated at once with masked, max-shifted sums, so the
same jitted function serves every batching and is finite in float32 at small tau.

Memory-bounded evaluation (``chunk_size=c``): each batch's anchors are processed in row blocks of c;
a block forms its (c, m) logits against all m rows of the batch and reduces them at once to the c
anchor terms. The blocks run in a ``jax.lax.map`` whose body is rematerialised (``jax.checkpoint``),
so neither the loss nor its gradient ever holds more than O(c * m) logits: memory O(c * m + m * d)
per batch instead of O(m^2), at the price of recomputing each block's logits once in the backward
pass.
"""

from __future__ import annotations

import math

from functools import partial
from typing import TYPE_CHECKING, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ufm.batching import PackedBatches, checked_batch, pack
from ufm.errors import ProblemError, finite_number
from ufm.objectives import Capability, batched, embeddings_loss, objective_of, require
from ufm.problem import TAU_MAX, TAU_MIN, require_problem
from ufm.programs import bucket, program
from ufm.objectives.scl.formula import batch_parts, batch_rows, class_representatives, over_batches, representatives
from ufm.objectives.scl.precise import batch_log_excess, class_rows_bucket, log_excess_packed as fused_log_excess_packed

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from ufm.problem import Problem

REDUCTIONS = ("sum", "mean", "mean_with_positives")


def _anchor_terms(Z: jnp.ndarray, R: jnp.ndarray, labels: jnp.ndarray, member: jnp.ndarray,
                  is_anchor: jnp.ndarray, tau, chunk_size: int | None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(l (m,), has a positive (m,))``: the anchor terms l(i) of one batch (0 for an anchor without positives): the excess
    pieces of :func:`ufm.objectives.scl.formula.batch_parts` (the one SCL formula, on rows of any norm) plus the constant,
    l(i) = log|P(i)| + within(i) + softplus(delta(i)). Z, R (m, d) the batch's rows and their class
    representatives, labels, member, is_anchor (m,)."""
    parts = batch_parts(Z, R, labels, member, is_anchor, tau, chunk_size, unit_rows=False)
    log_count = jnp.log(jnp.maximum(parts.n_pos, 1).astype(Z.dtype))
    return jnp.where(parts.has_pos, log_count + parts.within + jnp.exp(parts.log_softplus), 0.0), parts.has_pos


def _fused_loss(Z, R, labels, member, is_anchor, tau, reduction: str, chunk_size: int | None,
                num_classes: int, class_rows: int | None) -> jnp.ndarray:
    """The loss over the padded batches (leading axis: batch) on the fused kernel: per batch,
    sum_i alpha_i l(i) = sum_i alpha_i log|P(i)| + exp(log sum_i alpha_i e_i)
    (:func:`ufm.objectives.scl.precise.batch_log_excess`), alpha the reduction's weight of each anchor."""
    counts = jnp.sum((labels[..., None] == jnp.arange(num_classes)) & member[..., None], axis=1)   # (nb, k)
    own = jnp.take_along_axis(counts, jnp.clip(labels, 0, num_classes - 1), axis=1)             # (nb, w)
    n_pos = jnp.where(member, own - 1, 0)
    has_pos = is_anchor & member & (n_pos > 0)
    if reduction == "sum":
        weight = jnp.ones(labels.shape[0], Z.dtype)
    else:
        denom = (is_anchor & member if reduction == "mean" else has_pos).sum(axis=1)
        weight = jnp.where(denom > 0, 1.0 / jnp.maximum(denom, 1), 0.0).astype(Z.dtype)
    alpha = jnp.broadcast_to(weight[:, None], labels.shape)
    logs = over_batches(lambda *a: batch_log_excess(*a, tau, num_classes, chunk_size, False, None, class_rows),
                        Z, R, labels, member, is_anchor, alpha)
    log_count = jnp.log(jnp.maximum(n_pos, 1).astype(Z.dtype))
    return jnp.sum(jnp.where(has_pos, alpha * log_count, 0.0)) + jnp.sum(jnp.exp(logs))


def _packed_cost(H, labels, tau, index, *args, **kwargs) -> int:
    """Work of one evaluation over a packed batching (nb, w): nb w^2 pairs (:mod:`ufm.programs`)."""
    return int(index.shape[0] * index.shape[1] ** 2)


@partial(program, static_argnames=("reduction", "prototype_anchors", "chunk_size", "num_classes", "class_rows"),
         cost=_packed_cost)
def scl_loss_packed(H: jnp.ndarray, labels: jnp.ndarray, tau: float | jnp.ndarray,
                    index: jnp.ndarray, valid: jnp.ndarray, reduction: str = "sum",
                    prototypes: jnp.ndarray | None = None, prototype_labels: jnp.ndarray | None = None,
                    prototype_anchors: bool = True, chunk_size: int | None = None,
                    num_classes: int | None = None, class_rows: int | None = None) -> jnp.ndarray:
    """SCL over a packed batching: ``index``, ``valid`` (n_batches, width) from :func:`pack`.

    H (n, d), labels (n,) int, prototypes (p, d) and prototype_labels (p,) or None. Returns a scalar.
    Jit-compiled once per shape; ``tau`` is traced, so changing it does not recompile.
    ``chunk_size``: an int c evaluates the anchors in row blocks of c (module docstring), memory
    O(c * m) per batch, same value and gradient up to round-off. None (default): the fused kernel
    picks its blocks (``ufm.objectives.scl.precise.default_block``: cache-sized on a CPU, one on a GPU); the
    reference path forms each batch's whole (m, m) logit matrix.
    ``num_classes`` (static): labels lie in [0, num_classes), and the loss runs on the fused kernel
    (``ufm.objectives.scl.precise``: value and gradient in one pass; no forward-mode derivative). None: the
    reference path, JAX's derivative of ``ufm.objectives.scl.formula.anchor_parts`` (Hessians, as the landscape needs).
    ``class_rows`` (static, fused kernel only): at most this many rows of one class in a batch,
    prototypes included (``ufm.objectives.scl.precise.batch_log_excess``; None: any; more gives NaN).
    """
    Z, R, row_labels, member, is_anchor = batch_rows(
        H, labels, class_representatives(labels), index, valid, prototypes, prototype_labels, prototype_anchors)
    chunk = None if chunk_size is None else int(chunk_size)
    if num_classes is not None:
        return _fused_loss(Z, R, row_labels, member, is_anchor, tau, reduction, chunk, num_classes, class_rows)
    terms, has_pos = jax.vmap(lambda *a: _anchor_terms(*a, tau, chunk))(Z, R, row_labels, member, is_anchor)
    anchors = is_anchor & member
    batch_sums = terms.sum(axis=1)
    if reduction == "sum":
        return batch_sums.sum()
    denom = (anchors if reduction == "mean" else has_pos).sum(axis=1)
    return jnp.sum(jnp.where(denom > 0, batch_sums / jnp.maximum(denom, 1), 0.0))


def scl_loss(H: ArrayLike, labels: ArrayLike, tau: float | jnp.ndarray,
             batches: Sequence[Sequence[int]] | PackedBatches | None = None, reduction: str = "sum",
             prototypes: ArrayLike | None = None, prototype_labels: ArrayLike | None = None,
             prototype_anchors: bool = True, chunk_size: int | None = None) -> jnp.ndarray:
    """The SCL loss of embeddings H (n, d) with labels (n,) at temperature ``tau``.

    ``batches``: None (full batch), a list of index arrays, or a :class:`PackedBatches`.
    ``reduction``: ``"sum"`` (default), ``"mean"`` or ``"mean_with_positives"`` (module docstring).
    ``prototypes`` (p, d) with ``prototype_labels`` (p,): fixed rows added to every batch.
    ``chunk_size``: None (default: the kernel's own blocks) or a positive int: evaluate in row blocks
    of that many anchors, memory O(chunk_size * n) (module docstring); same value and gradient.
    Differentiable in H; the returned scalar has H's dtype.
    """
    if reduction not in REDUCTIONS:
        raise ProblemError(f"unknown reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    if not isinstance(tau, jax.core.Tracer):
        tau = finite_number(tau, "temperature tau")
        if not TAU_MIN <= tau <= TAU_MAX:
            raise ProblemError(f"temperature tau must lie in [{TAU_MIN:g}, {TAU_MAX:g}] (got {tau:g}); "
                               "docs/theory.md section 3a")
    if chunk_size is not None and not (isinstance(chunk_size, (int, np.integer))
                                       and not isinstance(chunk_size, bool) and chunk_size >= 1):
        raise ProblemError(f"chunk_size must be None or a positive integer (got {chunk_size!r})")
    H = _checked_embeddings(H, tau)
    labels_np = _checked_labels(labels, H.shape[0])
    packed = _packed_batches(batches, H.shape[0])
    prototypes, prototype_labels = _checked_prototypes(prototypes, prototype_labels, H, tau)
    labels_np, prototype_labels, num_classes = _dense_labels(labels_np, prototype_labels)
    class_rows = _class_rows(packed, labels_np, prototype_labels, num_classes)
    tau = jnp.asarray(tau, dtype=H.dtype) if isinstance(tau, jax.core.Tracer) else np.asarray(tau, dtype=H.dtype)
    return scl_loss_packed(H, labels_np, tau, np.asarray(packed.index), np.asarray(packed.valid), reduction=reduction,
                           prototypes=prototypes, prototype_labels=prototype_labels,
                           prototype_anchors=prototype_anchors,
                           chunk_size=None if chunk_size is None else int(chunk_size), num_classes=num_classes,
                           class_rows=class_rows)


def _checked_embeddings(H, tau):
    """H as a real (n, d) array (NumPy input stays NumPy up to the compiled loss, no eager JAX op;
    JAX arrays and tracers stay JAX), its rows checked (:func:`_check_rows`)."""
    if not isinstance(H, jax.core.Tracer):
        try:
            H = np.asarray(H) if not isinstance(H, jax.Array) else H
        except (ValueError, TypeError):
            H = None
        if H is None or not (np.issubdtype(H.dtype, np.floating) or np.issubdtype(H.dtype, np.integer)) \
                or np.issubdtype(H.dtype, np.bool_):
            raise ProblemError("H must be a real (n, d) array of embeddings")
    xp = jnp if isinstance(H, (jax.Array, jax.core.Tracer)) else np
    H = xp.asarray(H)
    if H.ndim != 2 or H.shape[0] == 0 or H.shape[1] == 0:
        raise ProblemError(f"H must have shape (n, d) with n, d >= 1 (got shape {H.shape})")
    if not np.issubdtype(H.dtype, np.floating):
        H = H.astype(np.float64 if jax.config.jax_enable_x64 else np.float32)
    if not isinstance(H, jax.core.Tracer):
        _check_rows(np.asarray(H), "H", tau)
    return H


def _checked_labels(labels, n: int) -> np.ndarray:
    """labels as an integer (n,) NumPy array; :class:`ProblemError` else."""
    labels_np = np.asarray(labels)
    if labels_np.shape != (n,):
        raise ProblemError(f"labels must have shape ({n},) to match H (got {labels_np.shape})")
    if not np.issubdtype(labels_np.dtype, np.integer):
        raise ProblemError(f"labels must be integers (got dtype {labels_np.dtype})")
    return labels_np


def _packed_batches(batches, n: int) -> PackedBatches:
    """``batches`` (None: one full batch; a list of index lists, checked; or already packed) packed."""
    if batches is None:
        return pack([np.arange(n)])
    if isinstance(batches, PackedBatches):
        return batches
    if isinstance(batches, (str, bytes)) or not hasattr(batches, "__iter__"):
        raise ProblemError("batches must be a non-empty list of lists of example indices, or None")
    batches = list(batches)
    if not batches:
        raise ProblemError("batches must be a non-empty list of lists of example indices, or None")
    checked = [checked_batch(b, i, n) for i, b in enumerate(batches)]
    if any(len(b) == 0 for b in checked):
        raise ProblemError("a batch is empty; every batch needs at least one example")
    return pack(checked)


def _checked_prototypes(prototypes, prototype_labels, H, tau):
    """``(prototypes (p, d) in H's dtype and array module, prototype_labels (p,))``, both None or both
    given and checked."""
    if (prototypes is None) != (prototype_labels is None):
        raise ProblemError("give prototypes and prototype_labels together")
    if prototypes is None:
        return None, None
    xp = jnp if isinstance(H, (jax.Array, jax.core.Tracer)) else np
    prototypes = xp.asarray(prototypes, dtype=H.dtype)
    prototype_labels = np.asarray(prototype_labels)
    if prototypes.ndim != 2 or prototypes.shape[1] != H.shape[1] or prototype_labels.shape != (prototypes.shape[0],):
        raise ProblemError(f"prototypes must have shape (p, {H.shape[1]}) with p labels "
                           f"(got {prototypes.shape} and {prototype_labels.shape} labels)")
    if not np.issubdtype(prototype_labels.dtype, np.integer):
        raise ProblemError(f"prototype_labels must be integers (got dtype {prototype_labels.dtype})")
    if not isinstance(prototypes, jax.core.Tracer):
        _check_rows(np.asarray(prototypes), "prototypes", tau)
    return prototypes, prototype_labels


def _dense_labels(labels: np.ndarray, prototype_labels: np.ndarray | None):
    """``(labels, prototype_labels, k)`` renumbered 0..k-1 together: the loss sees only which labels are
    equal (a stray label 10**9 would size every per-class array by it)."""
    n = labels.shape[0]
    both = labels if prototype_labels is None else np.concatenate([labels, np.asarray(prototype_labels)])
    both = np.unique(both, return_inverse=True)[1].reshape(-1)
    return both[:n], (None if prototype_labels is None else both[n:]), int(both.max()) + 1


def _class_rows(packed: PackedBatches, labels: np.ndarray, prototype_labels: np.ndarray | None,
                num_classes: int) -> int:
    """The most rows of one class in a batch (prototypes included), bucketed
    (:func:`ufm.objectives.scl.precise.class_rows_bucket`)."""
    index, valid = np.asarray(packed.index), np.asarray(packed.valid)
    extra = (np.zeros(num_classes, dtype=int) if prototype_labels is None
             else np.bincount(np.asarray(prototype_labels), minlength=num_classes))
    in_batch = max(np.bincount(labels[index[b][valid[b]]], minlength=num_classes).max() for b in range(index.shape[0]))
    return class_rows_bucket(int(in_batch + extra.max()))


#: Largest |h|^2 / tau whose products h_i . h_j / tau stay far inside float64 (1.8e308).
MAX_SCALED_SQUARED_NORM = 1e300


def _check_rows(rows: np.ndarray, name: str, tau) -> None:
    """Finite rows whose products h_i . h_j / tau do not overflow float64; :class:`ProblemError` else."""
    if not np.isfinite(rows).all():
        raise ProblemError(f"{name} holds NaN or infinite entries; the loss of such embeddings is undefined")
    if isinstance(tau, jax.core.Tracer) or rows.size == 0:
        return
    largest = float(np.max(np.abs(rows)))
    if largest > 0 and 2 * math.log(largest) + math.log(rows.shape[1] / float(tau)) > math.log(MAX_SCALED_SQUARED_NORM):
        raise ProblemError(f"{name} has entries up to {largest:.3g}: the products h_i . h_j / tau overflow "
                           "float64; SCL is meant for unit rows, so normalise them (or scale them down)")


def full_batch_loss_bucketed(H: ArrayLike, labels: ArrayLike, tau: float, chunk_size: int | None = None) -> float:
    """Full-batch SCL (sum) of H (n, d) with labels (n,) in 0..k-1, evaluated on rows padded to the next
    power of two (at least 64; the padding masked out of the batch), zero columns up to a power of two
    (at least 8) and classes up to a power of two (at least 8, the extra ones empty): the value is the
    full-batch loss of H, and problems of nearby sizes share one compiled loss (the catalogue, sweeps
    over class counts, the explorer)."""
    H = np.asarray(H, dtype=np.float64)
    labels = np.asarray(labels)
    n, d = H.shape
    width, dim = bucket(n, 64), bucket(d, 8)
    H_pad = np.zeros((width, dim))
    H_pad[:n, :d] = H
    H_pad[n:, 0] = 1.0
    labels_pad = np.zeros(width, dtype=np.int64)
    labels_pad[:n] = labels
    packed = PackedBatches(np.arange(width, dtype=np.int32)[None], (np.arange(width) < n)[None])
    if labels.min() < 0 or not np.isfinite(H).all():
        return float(scl_loss(H_pad, labels_pad, tau, packed, chunk_size=chunk_size))   # its own message
    return float(scl_loss_packed(H_pad, labels_pad, np.float64(tau), packed.index, packed.valid, reduction="sum",
                                 chunk_size=None if chunk_size is None else int(chunk_size),
                                 num_classes=bucket(int(labels.max()) + 1, 8), class_rows=None))


def problem_loss(problem: Problem, H: ArrayLike, epoch: int = 0, reduction: str = "sum",
                 chunk_size: int | None = None) -> float:
    """The loss of H (n, d) for a :class:`~ufm.problem.Problem`: SCL over its batching at ``epoch``
    (``chunk_size``: see :func:`scl_loss`); for another objective its own loss of the embeddings
    (:func:`ufm.objectives.embeddings_loss`). Full batch without prototypes, sum reduction: evaluated by
    :func:`full_batch_loss_bucketed` (one compiled loss for many sizes)."""
    require_problem(problem, "problem_loss")
    if not batched(problem):        # another objective: its own loss of the embeddings
        if epoch != 0 or reduction != "sum" or chunk_size is not None:
            raise ProblemError(f"epoch, reduction and chunk_size apply to the batched SCL loss; "
                               f"{problem.objective.describe()} takes none of them")
        return embeddings_loss(problem, H)
    if problem.is_full_batch and problem.prototypes is None and reduction == "sum":
        return full_batch_loss_bucketed(H, problem.labels, problem.tau, chunk_size)
    W, w_labels = problem.prototype_rows()
    anchors = problem.prototype_anchors
    return float(scl_loss(H, problem.labels, problem.tau, problem.batches(epoch), reduction,
                          W, w_labels, anchors, chunk_size=chunk_size))


@partial(program, static_argnames=("prototype_anchors", "chunk_size", "lanes"),
         cost=lambda Hs, labels, tau, index, *a, **k: int(Hs.shape[0] * index.shape[0] * index.shape[1] ** 2))
def _stacked_losses(Hs, labels, tau, index, valid, prototypes, prototype_labels, prototype_anchors,
                    chunk_size, lanes):
    def one(H):
        return scl_loss_packed(H, labels, tau, index, valid, "sum", prototypes, prototype_labels,
                               prototype_anchors, chunk_size)
    if lanes is None or lanes >= Hs.shape[0]:
        return jax.vmap(one)(Hs)
    return jax.lax.map(one, Hs, batch_size=lanes)


def problem_losses(problem: Problem, Hs: ArrayLike, epoch: int = 0, chunk_size: int | None = None,
                   lanes: int | None = None) -> np.ndarray:
    """:func:`problem_loss` (sum reduction) of a stack of embeddings Hs (s, n, d) in one compiled call:
    returns (s,) float64 losses over the problem's batching at ``epoch``. ``lanes``: evaluate that
    many side by side (vmapped), the groups in sequence (memory ``lanes`` times one loss); None: all."""
    require_problem(problem, "problem_losses")
    require(objective_of(problem), Capability.BATCHED, "problem_losses")
    Hs = jnp.asarray(np.asarray(Hs, dtype=np.float64))
    packed = pack(problem.batches(epoch))
    W, w_labels = problem.prototype_rows()
    anchors = problem.prototype_anchors
    return np.asarray(_stacked_losses(
        Hs, jnp.asarray(problem.labels), jnp.asarray(problem.tau, dtype=jnp.float64),
        jnp.asarray(packed.index), jnp.asarray(packed.valid),
        None if W is None else jnp.asarray(W), None if w_labels is None else jnp.asarray(w_labels),
        prototype_anchors=anchors, chunk_size=chunk_size, lanes=lanes), dtype=np.float64)


_fused_log_excess = program(fused_log_excess_packed,
                            static_argnames=("num_classes", "prototype_anchors", "chunk_size", "mesh",
                                             "class_rows"),
                            cost=lambda H, labels, rep, tau, index, *a, **k: int(index.shape[0] * index.shape[1] ** 2))


def problem_log_excess(problem: Problem, H: np.ndarray, epoch: int = 0) -> float:
    """log E of embeddings H (n, d) for the problem's batching at ``epoch`` (float64; -inf if E = 0):
    gradient descent's objective (:func:`ufm.objectives.scl.precise.log_excess_packed`, value only), in the
    kernel's blocks of bounded memory."""
    require_problem(problem, "problem_log_excess")
    require(objective_of(problem), Capability.BATCHED, "problem_log_excess")
    packed = pack(problem.batches(epoch))
    W, wl = problem.prototype_rows()
    return float(_fused_log_excess(
        jnp.asarray(H, dtype=jnp.float64), jnp.asarray(problem.labels), jnp.asarray(representatives(problem.labels)),
        jnp.asarray(problem.tau, dtype=jnp.float64), jnp.asarray(packed.index), jnp.asarray(packed.valid),
        problem.k, None if W is None else jnp.asarray(W, dtype=jnp.float64),
        None if wl is None else jnp.asarray(wl), prototype_anchors=problem.prototype_anchors,
        class_rows=class_rows_bucket(problem.class_rows)))
