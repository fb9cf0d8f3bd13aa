"""Trained features against the theory (``ufm compare``; docs/theory.md section 6): the neural-collapse
metrics of features H (n, d) with labels (n,), and their class-mean geometry beside the certified UFM
optimum for the same class counts, temperature, ReLU and batching.

Conventions (mu_c the mean of class c's rows, mu_G the mean of the class means, k classes):

- the rows are normalised first, as SCL does (``normalize=False`` keeps them);
- ``nc1`` = tr(Sigma_W pinv(Sigma_B)) / k (Papyan et al. 2020; :func:`ufm.geometry.nc1`), and
  ``within_class`` = tr(Sigma_W) / mean ||h_i||^2, which also sees spread orthogonal to the means
  (:func:`ufm.geometry.within_class_spread`);
- NC2: ``equinorm`` (coefficient of variation of ||mu_c - mu_G||) and ``equiangularity`` (standard
  deviation of the cosines between the centred means), :func:`ufm.geometry.equinorm` and
  :func:`ufm.geometry.equiangularity` on the centred class-mean Gram;
- ``class_mean_gram``: the cosines between the raw class means (the Gram of the normalised means), the
  geometry the UFM predicts; ``distance``: normalised Frobenius distances of it to the simplex ETF,
  the orthogonal frame and the predicted optimum (:func:`ufm.geometry.normalized_distance`);
- NC3 ``self_duality`` with classifier rows W (k, d): || W/||W||_F - C/||C||_F ||_F, C the centred
  means (k, d);
- NC4 ``ncc_agreement``: the share of rows whose nearest class mean (Euclidean) is their own class's.

The features are read in row blocks of ``CHUNK_BYTES`` (in float64), two passes (the means, then the
deviations), so memory is O(CHUNK_BYTES + d^2) besides the array itself (a memory-mapped ``.npy``
stays on disk; the pages read count towards the process's resident memory but can be reclaimed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ufm.batching import Batching
from ufm.errors import ProblemError
from ufm.geometry import (cosines, equiangularity, equinorm, etf_gram, nc1_from_moments, normalized_distance,
                          orthogonal_frame_gram)
from ufm.objectives import Capability, has, objective_of
from ufm.problem import Problem, require_problem

#: A batching drawn anew each epoch is predicted on this many epochs' batches (:func:`predicted_optimum`).
PREDICTION_EPOCHS = 8
#: Bytes of one block (float64 rows) of the two passes over the features.
CHUNK_BYTES = 32 * 2 ** 20


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_features` measured (module docstring for the conventions)."""

    problem: Problem
    n: int
    dim: int
    nc1: float
    within_class: float
    equinorm: float
    equiangularity: float
    ncc_agreement: float
    self_duality: float | None
    class_mean_gram: np.ndarray
    predicted_geometry: str
    predicted_gram: np.ndarray
    predicted_status: str
    distance: dict[str, float]

    def to_dict(self) -> dict:
        p = self.problem
        return {"counts": list(p.counts), "tau": p.tau, "relu": p.relu, "n": self.n, "dim": self.dim,
                "nc1": self.nc1, "within_class": self.within_class, "equinorm": self.equinorm,
                "equiangularity": self.equiangularity, "ncc_agreement": self.ncc_agreement,
                **({} if self.self_duality is None else {"self_duality": self.self_duality}),
                "class_mean_gram": self.class_mean_gram.tolist(),
                "predicted": {"geometry": self.predicted_geometry, "class_mean_gram": self.predicted_gram.tolist(),
                              "status": self.predicted_status},
                "distance": dict(self.distance)}


def check_features(H: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H (n, d), labels (n,) int)`` checked: a 2-D real array, labels of the same length, classes
    0..k-1 with none missing and each at least 2 rows; :class:`ProblemError` in one line otherwise.
    Finiteness is checked block by block in the passes."""
    H = np.asarray(H)          # a memory-mapped array stays mapped (a view, no copy)
    if H.ndim != 2 or H.shape[0] == 0 or H.shape[1] == 0:
        raise ProblemError(f"the features must be a 2-D array (n, d) with n, d >= 1 (got shape {H.shape})")
    if not (np.issubdtype(H.dtype, np.floating) or np.issubdtype(H.dtype, np.integer)):
        raise ProblemError(f"the features must be real numbers (got dtype {H.dtype})")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != H.shape[0]:
        raise ProblemError(f"need one label per row: {H.shape[0]} rows of features, labels of shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels))
                and np.all(labels == np.round(labels))):
            raise ProblemError("the labels must be whole numbers 0..k-1")
        labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise ProblemError(f"the labels must be 0..k-1 (got {labels.min()})")
    counts = np.bincount(labels)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise ProblemError(f"class {missing[0]} has no rows: the labels must be 0..k-1 with none missing; "
                           "renumber them")
    if len(counts) < 2:
        raise ProblemError("need at least 2 classes")
    single = np.flatnonzero(counts < 2)
    if len(single):
        raise ProblemError(f"class {single[0]} has {counts[single[0]]} row: every class needs at least 2")
    return H, labels


def _blocks(H: np.ndarray, normalize: bool) -> Callable[[], object]:
    """A generator factory over ``(start, rows float64)`` blocks, normalised, finiteness checked."""
    rows = max(1, CHUNK_BYTES // (8 * H.shape[1]))

    def gen():
        for start in range(0, H.shape[0], rows):
            X = np.asarray(H[start:start + rows], dtype=np.float64)
            if not np.isfinite(X).all():
                bad = start + int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
                raise ProblemError(f"row {bad} of the features holds NaN or infinite values; drop or fix it")
            if normalize:
                norms = np.linalg.norm(X, axis=1, keepdims=True)
                if (norms == 0).any():
                    bad = start + int(np.flatnonzero(norms[:, 0] == 0)[0])
                    raise ProblemError(f"row {bad} of the features is zero and cannot be normalised; drop it "
                                       "or use --no-normalize")
                X = X / norms
            yield start, X
    return gen


def _moments(H: np.ndarray, labels: np.ndarray, k: int, normalize: bool) -> dict:
    """The two passes: class means (k, d), Sigma_W (d, d), the mean squared norm and the share of
    nearest-class-mean agreements."""
    blocks = _blocks(H, normalize)
    d = H.shape[1]
    sums, energy = np.zeros((k, d)), 0.0
    for start, X in blocks():
        np.add.at(sums, labels[start:start + len(X)], X)
        energy += float(np.sum(X * X))
    counts = np.bincount(labels, minlength=k)
    mu = sums / counts[:, None]
    sigma_w, agree = np.zeros((d, d)), 0
    for start, X in blocks():
        y = labels[start:start + len(X)]
        D = X - mu[y]
        sigma_w += D.T @ D
        dist = np.sum(X * X, axis=1)[:, None] - 2 * X @ mu.T + np.sum(mu * mu, axis=1)[None, :]
        agree += int(np.sum(np.argmin(dist, axis=1) == y))
    n = len(labels)
    return {"mu": mu, "sigma_w": sigma_w / n, "energy": energy / n, "ncc": agree / n}


def _self_duality(W: np.ndarray | None, mu: np.ndarray) -> float | None:
    if W is None:
        return None
    W = np.asarray(W, dtype=np.float64)
    if W.shape != mu.shape or not np.isfinite(W).all():
        raise ProblemError(f"the classifier weights must be a finite (k, d) = {mu.shape} array (got shape {W.shape})")
    centred = mu - mu.mean(axis=0)
    return float(np.linalg.norm(W / np.linalg.norm(W) - centred / np.linalg.norm(centred)))


def predicted_optimum(problem: Problem) -> tuple[str, np.ndarray, str]:
    """``(geometry, cosines between the class means (k, k), status)`` of the certified UFM optimum:
    the reduced program where it applies (full batch, no prototypes), else gradient descent with the
    staircase (:func:`solvers.gd.solve`). A batching drawn anew each epoch (random, balanced, binding)
    is predicted on the batches of its first ``PREDICTION_EPOCHS`` epochs pooled and held fixed: the
    loss averaged over that many draws, a sample of the expected loss that a training run sees, and a
    fixed problem that the certificate proves (a descent that redraws the batches every epoch has no
    fixed point to converge to or to certify). One epoch alone is not enough: it is a partition, so
    no batch links the examples of a class that fall in different batches (docs/theory.md section 4's
    first condition fails for every class), and that problem's minimiser is not unique: for random
    batches of 64 over counts (60 x 5, 6 x 5) under ReLU gradient descent ends 0.75 from the
    orthogonal frame on epoch 0's batches, and at 0 with 4 or 8 epochs pooled."""
    from solvers import gd
    from solvers.reduced import solve_reduced

    if problem.is_full_batch and problem.prototypes is None and has(objective_of(problem), Capability.REDUCED):
        sol = solve_reduced(problem)
        name = "reduced-program"
    elif problem.batching.scheme in ("full", "explicit"):
        sol = gd.solve(problem)
        name = "gradient-descent"
    else:
        pooled = [batch for epoch in range(PREDICTION_EPOCHS) for batch in problem.batches(epoch)]
        sol = gd.solve(problem.with_(batching=Batching.from_lists(pooled)))
        name = f"gradient-descent on {PREDICTION_EPOCHS} epochs' batches"
    return name, cosines(np.asarray(sol.class_mean_gram)), str(sol.status)


def compare_features(H: np.ndarray, labels: np.ndarray, problem: Problem, classifier: np.ndarray | None = None,
                     normalize: bool = True,
                     prediction: tuple[str, np.ndarray, str] | None = None) -> Comparison:
    """The metrics of features H (n, d) with ``labels`` (n,) in 0..k-1 against ``problem`` (its counts
    must be the labels' counts; its tau, ReLU, batching and prototypes describe the run), with
    ``classifier`` (k, d) the last layer's rows for NC3. ``prediction``: :func:`predicted_optimum` of
    ``problem`` where it was computed already (several runs of one problem share it); None computes it.
    Module docstring for the conventions."""
    require_problem(problem, "compare_features")
    H, labels = check_features(H, labels)
    counts = tuple(int(c) for c in np.bincount(labels))
    if counts != tuple(problem.counts):
        raise ProblemError(f"the labels' class counts {list(counts)} differ from the problem's {list(problem.counts)}")
    k = problem.k
    m = _moments(H, labels, k, normalize)
    mu = m["mu"]
    duality = _self_duality(classifier, mu)
    raw, centred = mu @ mu.T, (mu - mu.mean(axis=0)) @ (mu - mu.mean(axis=0)).T
    gram = cosines(raw)
    if prediction is not None and not (isinstance(prediction, tuple) and len(prediction) == 3
                                       and np.shape(prediction[1]) == (k, k)):
        raise ProblemError(f"prediction must be predicted_optimum(problem) for this problem: (geometry, a "
                           f"({k}, {k}) cosine matrix, status)")
    geometry, predicted, status = predicted_optimum(problem) if prediction is None else prediction
    distance = {"etf": normalized_distance(gram, etf_gram(k)), "of": normalized_distance(gram, orthogonal_frame_gram(k)),
                "predicted": normalized_distance(gram, predicted)}
    within = float(np.trace(m["sigma_w"]))            # mean squared distance of a row to its class mean
    return Comparison(problem, int(H.shape[0]), int(H.shape[1]), nc1_from_moments(mu, m["sigma_w"])[0],
                      within / m["energy"] if m["energy"] > 0 else 0.0, equinorm(centred),
                      equiangularity(centred), float(m["ncc"]), duality, gram, geometry, predicted, status, distance)
