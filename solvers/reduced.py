"""The reduced convex program over the k x k class-mean Gram M (THEORY.md section 3): exact for the
full-batch optimum, where the embeddings collapse (h_i = m_{y_i}). Counts only enter as weights, so
the size is k whatever n is.

    minimise  sum_c n_c log( (n_c - 1) + sum_{c' != c} n_c' exp((M_cc' - 1)/tau) )
            = sum_c n_c logsumexp_{c'} ( (M_cc' - 1)/tau + log w_cc' ),   w_cc' = n_c' - [c = c']
    subject to M PSD, diag(M) = 1, [ReLU: M >= 0]

(on the diagonal (M_cc - 1)/tau = 0, so the c' = c entry is log(n_c - 1)).

Block fast path (:func:`solve_block`): classes with equal counts form groups g (k_g classes of n_g
examples). By symmetry and convexity some optimum is constant on the blocks: a_g within group g,
b_gh between groups g and h. Its eigenvalues are 1 - a_g (k_g - 1 times each) and those of the q x q
matrix T with T_gg = 1 + (k_g - 1) a_g and T_gh = b_gh sqrt(k_g k_h), so the program becomes

    minimise  sum_g k_g n_g log( (n_g - 1) + (k_g - 1) n_g e^{(a_g - 1)/tau}
                                 + sum_{h != g} k_h n_h e^{(b_gh - 1)/tau} )
    subject to a_g <= 1, T PSD, [ReLU: a, b >= 0].

For STEP imbalance (two groups) this is THEORY.md's program over the three scalars a, b, c.
"""

from __future__ import annotations

import time
from typing import Any

import cvxpy as cp
import numpy as np
from scipy.special import logsumexp, softmax

from solvers import cvx_common
from solvers.bound import best_bound, dual_free_multipliers
from solvers.factor import eigen_factor, nonnegative_factor
from ufm.errors import ProblemError
from ufm.loss import problem_loss
from ufm.problem import Problem
from ufm.solution import Solution

#: Above this many examples the collapsed embeddings' loss is computed from the reduced formula
#: instead of the full n x n JAX loss.
EMBEDDING_LOSS_MAX_N = 4000


def log_weights(counts) -> np.ndarray:
    """log w (k, k) with w_cc' = n_c' - [c = c']: how many others of class c' an anchor of class c sees."""
    n = np.asarray(counts, dtype=float)
    return np.log(n[None, :] - np.eye(len(n)))


def reduced_loss(M: np.ndarray, counts, tau: float) -> tuple[float, np.ndarray]:
    """The reduced objective at M (k, k) and its gradient (k, k), NumPy float64.

    Equals the full-batch SCL loss of collapsed unit embeddings whose class means have Gram M."""
    n = np.asarray(counts, dtype=float)
    Z = (np.asarray(M, dtype=float) - 1.0) / tau + log_weights(counts)
    value = float(n @ logsumexp(Z, axis=1))
    C = n[:, None] * softmax(Z, axis=1) / tau
    return value, C


def _check(problem: Problem) -> None:
    if not problem.is_full_batch:
        raise ProblemError(f"the reduced program assumes full-batch collapse; this problem uses "
                           f"{problem.batching.scheme!r} batching: use the n x n program "
                           "(solve_relaxation / --method convex)")
    if problem.prototypes is not None:
        raise ProblemError("the reduced program has no prototype rows; with prototypes use the n x n "
                           "program (solve_relaxation / --method convex)")


def count_groups(counts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group of each class (k,), sizes k_g (q,), counts n_g (q,))`` grouping classes of equal count,
    groups in order of first appearance."""
    counts = [int(c) for c in counts]
    values = list(dict.fromkeys(counts))
    group = np.array([values.index(c) for c in counts])
    return group, np.bincount(group), np.array(values)


def build_reduced(counts, tau: float, relu: bool) -> tuple[cp.Problem, cp.Variable, dict]:
    """The general k x k program: ``(program, M, named constraints)``."""
    n = np.asarray(counts, dtype=float)
    k = len(n)
    M = cp.Variable((k, k), symmetric=True, name="M")
    loss = n @ cp.log_sum_exp((M - 1) / tau + log_weights(counts), axis=1)
    constraints = {
        "psd": M >> 0,
        "unit_diagonal": cp.diag(M) == 1,
    }
    if relu:
        constraints["nonnegative"] = M >= 0
    return cp.Problem(cp.Minimize(loss), list(constraints.values())), M, constraints


def build_block(counts, tau: float, relu: bool) -> tuple[cp.Problem, cp.Variable, cp.Variable]:
    """The block program (module docstring): ``(program, a (q,), b (q, q) symmetric)``."""
    group, k_g, n_g = count_groups(counts)
    q = len(k_g)
    a = cp.Variable(q, name="a")                        # within group g (unused when k_g = 1)
    b = cp.Variable((q, q), symmetric=True, name="b")   # between groups (off-diagonal used)
    T = cp.Variable((q, q), PSD=True, name="T")
    loss = 0
    for g in range(q):
        logits = [np.log(n_g[g] - 1.0)]
        if k_g[g] >= 2:
            logits.append(np.log((k_g[g] - 1) * n_g[g]) + (a[g] - 1) / tau)
        logits += [np.log(k_g[h] * n_g[h]) + (b[g, h] - 1) / tau for h in range(q) if h != g]
        loss += k_g[g] * n_g[g] * cp.log_sum_exp(cp.hstack(logits))
    constraints = [a <= 1]
    constraints += [T[g, g] == 1 + (k_g[g] - 1) * a[g] for g in range(q)]
    constraints += [T[g, h] == b[g, h] * np.sqrt(k_g[g] * k_g[h]) for g in range(q) for h in range(g + 1, q)]
    constraints += [cp.diag(b) == 0]                    # b's diagonal is not used
    constraints += [a[g] == 0 for g in range(q) if k_g[g] == 1]
    if relu:
        constraints += [a >= 0, b >= 0]
    return cp.Problem(cp.Minimize(loss), constraints), a, b


def block_to_gram(counts, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The k x k block-constant M from the block values a (q,) and b (q, q)."""
    group, _, _ = count_groups(counts)
    M = np.asarray(b, dtype=float)[np.ix_(group, group)].copy()
    same = group[:, None] == group[None, :]
    M[same] = np.asarray(a, dtype=float)[group][np.nonzero(same)[0]]
    np.fill_diagonal(M, 1.0)
    return M


def solve_block(problem: Problem, solver: str | None = None,
                solver_options: dict[str, Any] | None = None) -> Solution:
    """The block fast path only (see :func:`solve_reduced`, which calls it when ``fast_path`` allows);
    ``extra["block"]`` holds the values a (q,), b (q, q), the group sizes and counts, and
    ``extra["block_determinant"]`` det T (0 at a rank k - 1 optimum)."""
    return solve_reduced(problem, solver, solver_options, fast_path=True)


def solve_reduced(problem: Problem, solver: str | None = None,
                  solver_options: dict[str, Any] | None = None,
                  fast_path: bool | None = None, certified: bool = True) -> Solution:
    """Solve the reduced program (module docstring) for a full-batch problem without prototypes.

    ``fast_path``: None (default) uses the block program when some classes share a count (STEP,
    balanced, any repeated counts), True forces it, False forces the general k x k program.
    Returns a :class:`~ufm.solution.Solution` with ``method="reduced"``: ``class_mean_gram`` M (k, k),
    ``lower_bound = loss`` = the optimum (recomputed in NumPy at M), ``embeddings`` (n, dim) the
    collapsed rows h_i = m_{y_i} with the means factored from M (top eigenpairs; with ReLU a
    nonnegative factor), status as :func:`solvers.convex.solve_relaxation`, and ``extra``:
    ``program`` (``"block"`` / ``"general"``), ``residuals``, ``solver_status``,
    ``certified_lower_bound``, ``embedding_loss`` (SCL loss of the recovered embeddings).
    """
    _check(problem)
    t0 = time.perf_counter()
    counts, tau, k = problem.counts, problem.tau, problem.k
    _, k_g, n_g = count_groups(counts)
    use_block = (len(k_g) < k) if fast_path is None else bool(fast_path)
    name = cvx_common.solver_call(solver, solver_options)[0]
    extra: dict[str, Any] = {"solver": name, "program": "block" if use_block else "general"}
    if use_block:
        program, a, b = build_block(counts, tau, problem.relu)
        constraints = None
    else:
        program, Mvar, constraints = build_reduced(counts, tau, problem.relu)
    status, raw, message = cvx_common.solve(program, solver, solver_options)
    extra["solver_status"] = raw
    iters = cvx_common.iterations(program)
    if (use_block and a.value is None) or (not use_block and Mvar.value is None):
        return Solution(method="reduced", class_mean_gram=np.full((k, k), np.nan), loss=float("nan"),
                        status="error", iterations=iters, seconds=time.perf_counter() - t0,
                        message=message or f"{name} returned no solution", extra=extra)
    if use_block:
        M = block_to_gram(counts, a.value, b.value)
        det = float(np.linalg.det(_block_T(k_g, a.value, b.value)))
        extra.update(block={"a": a.value.tolist(), "b": b.value.tolist(), "sizes": k_g.tolist(),
                            "counts": n_g.tolist()}, block_determinant=det)
    else:
        M = (Mvar.value + Mvar.value.T) / 2
    mask = np.ones((k, k), dtype=bool) if problem.relu else None
    residuals = cvx_common.gram_residuals(M, mask)
    status, message = cvx_common.finish_status(status, message, residuals)
    value, C = reduced_loss(M, counts, tau)
    extra.update(residuals=residuals, solver_value=float(program.value))
    if certified:
        cands = [dict(zip(("y", "N"), dual_free_multipliers(C, M, mask)))]
        if constraints is not None and constraints["unit_diagonal"].dual_value is not None:
            y = np.asarray(constraints["unit_diagonal"].dual_value).ravel()
            N = constraints["nonnegative"].dual_value if mask is not None else None
            cands += [{"y": s * y, "N": None if N is None else s * np.asarray(N)} for s in (1.0, -1.0)]
        extra["certified_lower_bound"] = best_bound(value, C, M, cands)

    if problem.relu:
        V, info = nonnegative_factor(M, problem.dim, seed=problem.seed)
    else:
        V = eigen_factor(M, problem.dim)
        info = {"method": "eigen", "factor_residual": float(np.abs(V @ V.T - M).max())}
    extra["factor"] = info
    H = V[problem.labels]
    extra["embedding_loss"] = (problem_loss(problem, H) if problem.n <= EMBEDDING_LOSS_MAX_N
                               else reduced_loss(V @ V.T, counts, tau)[0])
    return Solution(method="reduced", class_mean_gram=M, loss=value, status=status, embeddings=H,
                    lower_bound=value, iterations=iters, seconds=time.perf_counter() - t0,
                    message=message, extra=extra)


def _block_T(k_g: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """T (q, q): T_gg = 1 + (k_g - 1) a_g, T_gh = b_gh sqrt(k_g k_h)."""
    T = np.asarray(b, dtype=float) * np.sqrt(np.outer(k_g, k_g))
    np.fill_diagonal(T, 1 + (k_g - 1) * np.asarray(a, dtype=float))
    return T
