"""SCL's predictions (docs/theory.md sections 2-5; capability ``PREDICT``): geometry, optimal loss and
why, for the cases where the theory gives them.

Closed forms (sum reduction):

- ReLU, full batch, any counts [OF]: orthogonal frame M = I and
  ``L* = sum_c n_c log((n_c - 1) + (n - n_c) exp(-1/tau))``.
- ReLU, a batching that meets docs/theory.md section 4's conditions: orthogonal frame and, anchor by anchor,
  ``L* = sum_B sum_{i in B, P_B(i) != {}} log(|P_B(i)| + |N_B(i)| exp(-1/tau))`` (the bound of section 2
  reached in every batch).
- No ReLU, balanced (n_c = m), full batch [LAND]: simplex ETF and
  ``L* = n log((m - 1) + (n - m) exp(-(1 + 1/(k-1))/tau))``.
- No ReLU, imbalanced, full batch [LAND]: the reduced k x k program (capability ``REDUCED``): the
  prediction names it (geometry ``"reduced-program"`` without a Gram) and ``theory_checks.predictions``
  solves it, a solver being a layer above the model.
- ReLU with orthonormal nonnegative prototypes [PROTO]: h_i = w_{y_i} for any batching and counts.
- No ReLU with prototypes [PROTO]: the class means move toward the centred prototype geometry (the limit
  of many prototypes per class); no closed-form loss.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from ufm.batching import check_conditions
from ufm.geometry import etf_gram, orthogonal_frame_gram
from ufm.objectives.base import ObjectivePrediction
from ufm.objectives.scl.losses import problem_loss
from ufm.problem import Problem

#: The small-temperature limit (docs/theory.md "Small tau"): the largest cosine between class means
#: dominates the excess, so the geometry tends to a spherical code: the simplex ETF when d >= k - 1.
TAU_LIMIT = ("As tau -> 0 the excess is dominated by the largest cosine between class means, so the "
             "geometry tends to the simplex ETF for d >= k - 1, whatever the counts (the counts enter "
             "only at order tau log n).")


def _said(geometry: str, loss: float | None, gram: np.ndarray | None, why: str, hypotheses: dict,
          excess: float | None = None) -> ObjectivePrediction:
    return ObjectivePrediction(geometry, gram, loss, why, hypotheses, excess)


def orthogonal_frame_excess(counts: Sequence[int], tau: float) -> float:
    """The excess ``sum_c n_c log1p((n - n_c) / (n_c - 1) exp(-1/tau))`` of the orthogonal frame (full
    batch), to full relative precision at any tau."""
    n = sum(counts)
    return float(sum(c * math.log1p((n - c) / (c - 1) * math.exp(-1.0 / tau)) for c in counts))


def orthogonal_frame_loss(counts: Sequence[int], tau: float) -> float:
    """``sum_c n_c log((n_c - 1) + (n - n_c) exp(-1/tau))`` (full batch): the constant
    sum_c n_c log(n_c - 1) plus :func:`orthogonal_frame_excess`."""
    return float(sum(c * math.log(c - 1) for c in counts)) + orthogonal_frame_excess(counts, tau)


def etf_excess(m: int, k: int, tau: float) -> float:
    """The excess ``n log1p((n - m)/(m - 1) exp(-(1 + 1/(k-1))/tau))`` of the simplex ETF (n = k m)."""
    n = k * m
    return float(n * math.log1p((n - m) / (m - 1) * math.exp(-(1.0 + 1.0 / (k - 1)) / tau)))


def etf_loss(m: int, k: int, tau: float) -> float:
    """``n log((m - 1) + (n - m) exp(-(1 + 1/(k-1))/tau))`` with n = k m (balanced, full batch): the
    constant n log(m - 1) plus :func:`etf_excess`."""
    return float(k * m * math.log(m - 1)) + etf_excess(m, k, tau)


def batched_orthogonal_frame_loss(labels: np.ndarray, batches: Iterable[np.ndarray | Sequence[int]],
                                  tau: float) -> float:
    """The ReLU bound reached in every batch: ``sum_B sum_i log(|P_B(i)| + |N_B(i)| exp(-1/tau))`` over
    anchors with a positive."""
    labels = np.asarray(labels)
    total = 0.0
    for batch in batches:
        batch_labels = labels[np.asarray(batch)]
        per_class = np.bincount(batch_labels)
        positives = per_class[batch_labels] - 1
        negatives = len(batch_labels) - 1 - positives
        with_pos = positives > 0
        total += float(np.sum(np.log(positives[with_pos] + negatives[with_pos] * math.exp(-1.0 / tau))))
    return total




def predict(problem: Problem) -> ObjectivePrediction:
    """SCL's prediction (the module docstring's cases); the imbalanced full-batch case without ReLU
    names the reduced program and leaves its solution to the caller (``theory_checks.predictions``)."""
    k, counts, tau = problem.k, problem.counts, problem.tau
    balanced = len(set(counts)) == 1
    full = problem.is_full_batch
    hyp: dict[str, bool] = {"relu": problem.relu, "full_batch": full, "balanced": balanced,
                            "dim >= k": problem.dim >= k, "dim >= k-1": problem.dim >= k - 1}

    if problem.prototypes is not None:
        return _predict_with_prototypes(problem, hyp)

    if problem.relu:
        if full:
            return _said("orthogonal-frame", orthogonal_frame_loss(counts, tau), orthogonal_frame_gram(k),
                              "[OF] ReLU, full batch, d >= k: neural collapse and an orthogonal frame for any "
                              "class counts", hyp, orthogonal_frame_excess(counts, tau))
        batches = problem.batches(epoch=0)
        conditions = check_conditions(problem.labels, batches)
        hyp["batching meets docs/theory.md section 4"] = conditions.orthogonal_frame
        if problem.batching.scheme == "binding" or conditions.orthogonal_frame:
            loss = batched_orthogonal_frame_loss(problem.labels, batches, tau)
            return _said("orthogonal-frame", loss, orthogonal_frame_gram(k),
                              "[OF] ReLU with a batching that connects every class and meets every class pair "
                              "(docs/theory.md section 4): every minimiser is NC + orthogonal frame; loss given for "
                              "the batches of epoch 0", hyp)
        problems = [f"class {c} splits into {p} pieces" for c, p in conditions.disconnected_classes]
        problems += [f"classes {a} and {b} never meet" for a, b in conditions.unmet_pairs]
        return _said("none", None, None,
                          "no result applies: the batching violates docs/theory.md section 4 (" + "; ".join(problems) +
                          "), so the orthogonal frame is not guaranteed", hyp)

    if not full:
        return _said("none", None, None,
                          "no result applies: without ReLU a batched optimum is in general neither ETF nor NC "
                          "(docs/theory.md section 4); solve it instead", hyp)
    if problem.dim < k - 1:
        return _said("none", None, None,
                          f"no result applies: dim = {problem.dim} < k - 1 = {k - 1}, so the rank k-1 optimum "
                          "does not fit and the relaxation is not tight", hyp)
    if balanced:
        return _said("etf", etf_loss(counts[0], k, tau), etf_gram(k),
                          "[LAND] no ReLU, balanced, full batch, d >= k-1: neural collapse and a simplex ETF", hyp,
                          etf_excess(counts[0], k, tau))
    return _said("reduced-program", None, None,
                 "[LAND] no ReLU, imbalanced, full batch: neural collapse, mean Gram = the unique solution of the "
                 "reduced k x k program in excess form. " + TAU_LIMIT, hyp)


def _predict_with_prototypes(problem: Problem, hyp: dict[str, bool]) -> ObjectivePrediction:
    kind = problem.prototypes.kind
    k = problem.k
    if problem.relu and kind == "of":
        W, _ = problem.prototype_rows()
        H = W[:: problem.prototypes.per_class][problem.labels]
        return _said("prototypes", problem_loss(problem, H), orthogonal_frame_gram(k),
                          "[PROTO] ReLU with orthonormal nonnegative prototypes in every batch: h_i = w_{y_i} "
                          "exactly, for any batching and counts", hyp)
    if problem.relu:
        return _said("none", None, None,
                          "no result applies: ETF prototypes have negative inner products, which nonnegative "
                          "embeddings cannot match", hyp)
    # without ReLU: centred, normalised prototypes: both ETF and orthonormal sets give the ETF
    return _said("prototypes", None, etf_gram(k),
                      "[PROTO] no ReLU with a symmetric prototype set: as prototypes per class grow, the class "
                      "means approach the normalised centred prototypes (a simplex ETF); at finite counts "
                      "the geometry is only approached", hyp)
