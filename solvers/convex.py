"""The convex relaxation of the UFM over the n x n Gram (THEORY.md section 3), in cvxpy.

    minimise   L(G) = sum_B sum_{i in B, P_B(i) nonempty}
                      [ logsumexp_{a in A_B(i)} G_ia / tau  -  (1/|P_B(i)|) sum_{j in P_B(i)} G_ij / tau ]
    subject to G PSD,  diag(G) = 1,  [ReLU: G >= 0],  [prototypes: G_WW = W W^T]

Shapes: G is (m, m) with m = n + p: the n examples (class by class) then the p prototype rows W (p, d),
whose block is fixed. The batches are the problem's batches at epoch 0. Prototypes join every batch;
they are anchors when ``problem.prototypes.anchors``. With ReLU the nonnegativity applies to the
example block, and to the whole enlarged Gram when W >= 0 (then H W^T >= 0 too).

The optimum is a lower bound on the UFM loss for every d, tight when d >= rank of the solution.
:func:`certify` sets that bound on a gradient-descent solution. The reduced k x k program lives in
:mod:`solvers.reduced` (re-exported here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import cvxpy as cp
import numpy as np
from scipy.special import logsumexp, softmax

from solvers import cvx_common
from solvers.bound import best_bound, dual_free_multipliers
from solvers.factor import eigen_factor, nonnegative_factor, unit_rows
from solvers.reduced import solve_reduced, solve_block, reduced_loss  # noqa: F401  (re-exported)
from ufm.geometry import mean_gram_from_gram
from ufm.loss import problem_loss
from ufm.problem import Problem
from ufm.solution import Solution

__all__ = ["AnchorTerm", "anchor_terms", "relaxation_loss", "build_relaxation", "solve_relaxation",
           "solve_reduced", "solve_block", "certify"]


@dataclass(frozen=True)
class AnchorTerm:
    """One anchor term of one batch: anchor ``i``, ``others`` A_B(i), ``positives`` P_B(i)
    (indices into the enlarged Gram)."""

    i: int
    others: np.ndarray
    positives: np.ndarray


def anchor_terms(problem: Problem) -> tuple[list[AnchorTerm], np.ndarray | None]:
    """The anchor terms of the problem's batching at epoch 0 (anchors without positives dropped:
    they contribute 0) and the prototype rows W (p, d) or None. Prototypes get indices n..n+p-1."""
    W, w_labels = problem.prototype_rows()
    n = problem.n
    labels = problem.labels if W is None else np.concatenate([problem.labels, w_labels])
    proto = np.arange(n, len(labels))
    proto_anchors = problem.prototypes is not None and problem.prototypes.anchors
    terms = []
    for batch in problem.batches(0):
        members = np.concatenate([np.asarray(batch, dtype=int), proto])
        anchors = members if proto_anchors else np.asarray(batch, dtype=int)
        for i in anchors:
            others = members[members != i]
            positives = others[labels[others] == labels[i]]
            if len(positives):
                terms.append(AnchorTerm(int(i), others, positives))
    return terms, W


def relaxation_loss(G: np.ndarray, terms: list[AnchorTerm], tau: float) -> tuple[float, np.ndarray]:
    """L(G) and its gradient C (m, m) (not symmetrised; <C, G> equals <sym C, G> for symmetric G),
    in NumPy float64, from the same anchor terms as the cvxpy program."""
    G = np.asarray(G, dtype=float)
    C = np.zeros_like(G)
    total = 0.0
    for t in terms:
        z = G[t.i, t.others] / tau
        total += logsumexp(z) - G[t.i, t.positives].sum() / (tau * len(t.positives))
        C[t.i, t.others] += softmax(z) / tau
        C[t.i, t.positives] -= 1.0 / (tau * len(t.positives))
    return float(total), C


def _relu_mask(problem: Problem, W: np.ndarray | None) -> np.ndarray | None:
    if not problem.relu:
        return None
    m = problem.n + (0 if W is None else len(W))
    mask = np.zeros((m, m), dtype=bool)
    if W is not None and (W >= 0).all():
        mask[:] = True
    else:
        mask[:problem.n, :problem.n] = True
    return mask


def build_relaxation(problem: Problem) -> tuple[cp.Problem, cp.Variable, dict[str, cp.Constraint],
                                                list[AnchorTerm], np.ndarray | None]:
    """The cvxpy program of the module docstring: ``(program, G, named constraints, terms, W)``."""
    terms, W = anchor_terms(problem)
    tau = problem.tau
    m = problem.n + (0 if W is None else len(W))
    G = cp.Variable((m, m), symmetric=True, name="G")
    loss = cp.sum(cp.hstack([
        cp.log_sum_exp(G[t.i, t.others] / tau) - cp.sum(G[t.i, t.positives]) / (tau * len(t.positives))
        for t in terms]))
    constraints = {
        "psd": G >> 0,
        "unit_diagonal": cp.diag(G) == 1,
    }
    # Entries above the diagonal only: G is symmetric, and repeating an equality for both triangles
    # (or the diagonal, already fixed) makes the constraints linearly dependent, which interior-point
    # solvers handle badly.
    n = problem.n
    if W is not None:
        upper_w = np.triu_indices(len(W), 1)
        constraints["prototype_block"] = G[n:, n:][upper_w] == (W @ W.T)[upper_w]
    mask = _relu_mask(problem, W)
    if mask is not None:
        upper = np.triu_indices(m if mask.all() else n, 1)
        constraints["nonnegative"] = G[upper] >= 0
    return cp.Problem(cp.Minimize(loss), list(constraints.values())), G, constraints, terms, W


def _align_prototypes(X: np.ndarray, W: np.ndarray, n: int) -> np.ndarray:
    """Rotate the factor X (n + p, d) so its prototype rows match W (p, d) (orthogonal Procrustes)."""
    U, _, Vt = np.linalg.svd(X[n:].T @ W)
    return X @ (U @ Vt)


def _dual_candidates(constraints: dict, C: np.ndarray, G0: np.ndarray, mask: np.ndarray | None,
                     n: int, W: np.ndarray | None) -> list[dict]:
    """Multiplier guesses for :func:`solvers.bound.best_bound` (solver duals, both signs, and a
    dual-free estimate)."""
    fixed = None if W is None else (n, W @ W.T)
    cands = []
    y = constraints["unit_diagonal"].dual_value
    if y is not None:
        Z = None
        if W is not None and constraints["prototype_block"].dual_value is not None:
            Z = np.zeros((len(W), len(W)))
            Z[np.triu_indices(len(W), 1)] = np.asarray(constraints["prototype_block"].dual_value) / 2
            Z = Z + Z.T
        N = None
        if mask is not None and constraints["nonnegative"].dual_value is not None:
            size = len(G0) if mask.all() else n
            N = np.zeros_like(G0)
            N[np.triu_indices(size, 1)] = np.asarray(constraints["nonnegative"].dual_value) / 2
            N = N + N.T
        for s in (1.0, -1.0):
            cands.append({"y": s * np.asarray(y).ravel(), "Z": None if Z is None else s * Z,
                          "fixed": fixed, "N": None if N is None else s * N})
    if W is None:
        y0, N0 = dual_free_multipliers(C, G0, mask)
        cands.append({"y": y0, "N": N0})
    return cands


def solve_relaxation(problem: Problem, solver: str | None = None,
                     solver_options: dict[str, Any] | None = None, certified: bool = True) -> Solution:
    """Solve the n x n relaxation (module docstring) for ``problem``.

    ``solver``: ``"CLARABEL"`` (default, tolerances 1e-10) or ``"SCS"``; ``solver_options`` are
    passed to cvxpy. Returns a :class:`~ufm.solution.Solution` with ``method="convex"``:

    - ``gram`` (n, n) example block of the optimal Gram; ``lower_bound`` the optimum: L(G*)
      recomputed in NumPy at the returned G*, capped by ``loss`` (the recovered embeddings are
      feasible, so the optimum cannot exceed their loss); ``class_mean_gram`` from the Gram
      (``mean_gram_from_gram``);
    - ``embeddings`` (n, dim): top-``dim`` eigenpairs (prototypes: rotated onto W), or with ReLU a
      nonnegative factor (:func:`solvers.factor.nonnegative_factor`); rows unit norm;
      ``loss = ufm.problem_loss(problem, embeddings)`` (equals the optimum when the relaxation is tight);
    - ``status`` ``optimal`` / ``optimal_inaccurate`` / ``error``: inaccurate solver statuses, and
      residuals above 1e-6, give ``optimal_inaccurate``;
    - ``extra``: ``residuals`` (``min_eigenvalue``, ``max_diag_error``, ``min_entry`` with ReLU,
      ``max_asymmetry``), ``solver``, ``solver_status`` (cvxpy's), ``solver_value``, ``rank``
      (eigenvalues above 1e-6 * largest), ``tight`` (rank <= dim), ``factor`` (how embeddings were
      made), ``certified_lower_bound`` (a bound that does not trust the solver, :mod:`solvers.bound`;
      rigorous, but it can be ~1e-4 loose where the optimum is smooth), ``feasible_upper_bound``.
    """
    t0 = time.perf_counter()
    program, G, constraints, terms, W = build_relaxation(problem)
    status, raw, message = cvx_common.solve(program, solver, solver_options)
    name = cvx_common.solver_call(solver, solver_options)[0]
    extra: dict[str, Any] = {"solver": name, "solver_status": raw, "anchor_terms": len(terms)}
    n, k = problem.n, problem.k
    if G.value is None:
        return Solution(method="convex", class_mean_gram=np.full((k, k), np.nan), loss=float("nan"),
                        status="error", iterations=cvx_common.iterations(program),
                        seconds=time.perf_counter() - t0, message=message or f"{name} returned no Gram",
                        extra=extra)
    Gfull = (G.value + G.value.T) / 2
    mask = _relu_mask(problem, W)
    residuals = cvx_common.gram_residuals(G.value, mask)
    status, message = cvx_common.finish_status(status, message, residuals)
    value, C = relaxation_loss(Gfull, terms, problem.tau)
    extra.update(residuals=residuals, solver_value=float(program.value))
    if certified:
        extra["certified_lower_bound"] = best_bound(
            value, C, Gfull, _dual_candidates(constraints, C, Gfull, mask, n, W))

    vals = np.linalg.eigvalsh(Gfull)
    rank = int((vals > 1e-6 * vals.max()).sum())
    extra.update(rank=rank, tight=rank <= problem.dim)
    if problem.relu and W is None:
        X, info = nonnegative_factor(Gfull, problem.dim, seed=problem.seed)
        extra["factor"] = info
    else:
        X = eigen_factor(Gfull, problem.dim)
        if W is not None:
            X = _align_prototypes(X, W, n)
        extra["factor"] = {"method": "eigen", "factor_residual": float(np.abs(X @ X.T - Gfull).max())}
    H = X[:n]
    if problem.relu:                     # exactly feasible: nonnegative unit rows
        H = unit_rows(np.maximum(H, 0.0))
    loss = problem_loss(problem, H)
    # H is feasible for the relaxation (unit rows, nonnegative with ReLU), so the relaxation optimum
    # is at most loss(H): the solver's value is capped by it (an interior-point G* a little
    # infeasible can sit above the optimum; the raw value stays in extra["solver_value"]).
    feasible = bool(np.allclose(np.linalg.norm(H, axis=1), 1.0, atol=1e-9))
    extra["feasible_upper_bound"] = loss if feasible else None
    bound = min(value, loss) if feasible else value
    if certified and status != "optimal":
        message += (f"; certified bracket for the optimum: [{extra['certified_lower_bound']:.12g}, "
                    f"{bound:.12g}]")
    return Solution(
        method="convex", class_mean_gram=mean_gram_from_gram(Gfull[:n, :n], problem.labels),
        loss=loss, status=status, embeddings=H, gram=Gfull[:n, :n],
        lower_bound=bound, iterations=cvx_common.iterations(program),
        seconds=time.perf_counter() - t0, message=message.lstrip("; "), extra=extra)


def certify(solution: Solution, problem: Problem, solver: str | None = None) -> Solution:
    """A copy of ``solution`` (typically gradient descent) with ``lower_bound`` set to the convex
    optimum: the reduced k x k program when the problem is full batch without prototypes, else the
    n x n program. ``extra`` gains ``certificate_gap = loss - lower_bound`` (>= 0 up to solver
    tolerance; ~0 certifies a global minimum), ``certificate_method`` and ``certificate_status``."""
    if problem.is_full_batch and problem.prototypes is None:
        bound = solve_reduced(problem, solver=solver)
    else:
        bound = solve_relaxation(problem, solver=solver)
    extra = dict(solution.extra)
    extra.update(certificate_gap=float(solution.loss - bound.lower_bound),
                 certificate_method=bound.method, certificate_status=bound.status,
                 certified_lower_bound=bound.extra.get("certified_lower_bound"))
    return replace(solution, lower_bound=bound.lower_bound, extra=extra)
