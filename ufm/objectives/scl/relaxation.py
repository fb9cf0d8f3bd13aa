"""SCL as a cvxpy expression of the Gram matrix (docs/theory.md section 3), for the n x n program of
:mod:`solvers.convex`:

    L(G) = sum_B sum_{i in B, P_B(i) nonempty}
                      [ logsumexp_{a in A_B(i)} G_ia / tau  -  (1/|P_B(i)|) sum_{j in P_B(i)} G_ij / tau ]

G is (m, m), m = n + p: the n examples then the p prototype rows; the batches are the problem's at
epoch 0. Prototypes join every batch; they are anchors when ``problem.prototype_anchors``."""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from ufm.errors import ProblemError
from ufm.problem import Problem


@dataclass(frozen=True)
class AnchorTerm:
    """One anchor term of one batch: anchor ``i``, ``others`` A_B(i), ``positives`` P_B(i)
    (indices into the enlarged Gram)."""

    i: int
    others: np.ndarray
    positives: np.ndarray


def anchor_terms(problem: Problem) -> list[AnchorTerm]:
    """The anchor terms of the problem's batching at epoch 0 (anchors without positives dropped:
    they contribute 0). Prototypes get indices n..n+p-1."""
    _, w_labels = problem.prototype_rows()
    n = problem.n
    labels = problem.labels if w_labels is None else np.concatenate([problem.labels, w_labels])
    proto = np.arange(n, len(labels))
    terms = []
    for batch in problem.batches(0):
        members = np.concatenate([np.asarray(batch, dtype=int), proto])
        anchors = members if problem.prototype_anchors else np.asarray(batch, dtype=int)
        for i in anchors:
            others = members[members != i]
            positives = others[labels[others] == labels[i]]
            if len(positives):
                terms.append(AnchorTerm(int(i), others, positives))
    return terms


def relaxation_expression(problem: Problem, G: cp.Expression) -> cp.Expression:
    """The loss L(G) (module docstring) of a cvxpy G (m, m); convex in G."""
    terms = anchor_terms(problem)
    if not terms:
        raise ProblemError("no batch (epoch 0) holds two examples of one class: no anchor has a positive, so "
                           "the loss is 0 for every embedding; use larger batches")
    tau = problem.tau
    return cp.sum(cp.hstack([
        cp.log_sum_exp(G[t.i, t.others] / tau) - cp.sum(G[t.i, t.positives]) / (tau * len(t.positives))
        for t in terms]))
