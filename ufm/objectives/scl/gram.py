"""SCL as a function of the Gram matrix (docs/theory.md section 3): its value and gradient at any
symmetric G over the rows [H; W], and its geometry-free constant, for a problem's batching at an epoch.

L(G) = constant + E(G) with E the excess; the gradient is written in closed form by
:func:`ufm.objectives.scl.formula.gram_gradient_rows` (the one SCL formula, ``ufm.objectives.scl.formula.anchor_parts``), batch by
batch, then scattered into an (m, m) matrix (m = n + p with p prototype rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ufm.batching import pack
from ufm.objectives.scl.formula import (StackedBatches, excess_constant, gram_gradient_rows, representatives,
                        stacked_batches, weight_gradient_rows)
from ufm.problem import Problem
from ufm.programs import bucket

if TYPE_CHECKING:
    from ufm.batching import PackedBatches


def problem_batches(problem: Problem, packed: PackedBatches) -> StackedBatches:
    """The problem's packed batching (``ufm.batching.pack``) over the stacked rows [H; W]
    (:func:`ufm.objectives.scl.formula.stacked_batches`), for its labels, representatives and prototypes."""
    _, wl = problem.prototype_rows()
    return stacked_batches(np.asarray(problem.labels), representatives(problem.labels),
                           np.asarray(packed.index), np.asarray(packed.valid),
                           None if wl is None else np.asarray(wl), problem.prototype_anchors)


def problem_constant(problem: Problem, epoch: int = 0) -> float:
    """The loss minus the excess for the problem's batching at ``epoch`` (independent of H)."""
    _, wl = problem.prototype_rows()
    return excess_constant(problem.labels, problem.batches(epoch), wl, problem.prototype_anchors)


def gram_value_and_grad(problem: Problem, G: np.ndarray) -> tuple[float, np.ndarray]:
    """L(G) and its gradient C (m, m) (not symmetrised; <C, G> equals <sym C, G> for symmetric G) at
    a symmetric G (m, m) over the rows [H; W], float64, for the problem's batching at epoch 0:
    L = constant + E(G), C = E(G) grad_G log E. G and the batches are padded to powers of two (rows
    outside every batch, entries that are no member) so that programs of nearby sizes share one
    compiled evaluation."""
    batches = problem_batches(problem, pack(problem.batches(0)))
    G = np.asarray(G, dtype=np.float64)
    m, w = G.shape[0], np.shape(batches.index)[1]
    mp, wp = bucket(m, 32), bucket(w, 32)
    G_pad = np.zeros((mp, mp))
    G_pad[:m, :m] = G
    wide = lambda a, fill: np.pad(np.asarray(a), [(0, 0), (0, wp - w)], constant_values=fill)  # noqa: E731
    padded = batches._replace(labels=np.pad(np.asarray(batches.labels), (0, mp - m)),
                              rep=np.concatenate([np.asarray(batches.rep), np.arange(m, mp)]),
                              index=wide(batches.index, 0), member=wide(batches.member, False),
                              is_anchor=wide(batches.is_anchor, False))
    log_rows, D = gram_gradient_rows(G_pad, padded, np.float64(problem.tau))
    log_rows, D = np.asarray(log_rows)[:, :w], np.array(np.asarray(D)[:, :w, :w], dtype=np.float64)
    excess = float(np.exp(weight_gradient_rows(np.asarray(log_rows), D)))
    index = np.asarray(batches.index)
    C = np.zeros_like(G)
    np.add.at(C, (index[:, :, None], index[:, None, :]), D)
    return problem_constant(problem) + excess, excess * C
