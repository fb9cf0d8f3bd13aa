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

Factored fast path (:func:`solve_factored`, the default when all counts differ): the same program in
Burer-Monteiro form M = V V^T, V (k, r) with unit rows (r = k; with ReLU V >= 0 and r = 2k, since a
nonnegative factor at r = k can stall, THEORY.md section 3):

    minimise  f(V) = sum_c n_c logsumexp_{c'} ( (<v_c, v_c'> - 1)/tau + log w_cc' )
    gradient  grad_V f = (C + C^T) V,   C_cc' = n_c softmax_{c'}(...) / tau   (k, k)

by Riemannian Barzilai-Borwein gradient descent with a nonmonotone Armijo search on the product of
spheres (the method of :mod:`solvers.gd`, in NumPy: at k <= 100 a step costs well under a
millisecond and nothing needs compiling). The result is not trusted on its own: M = V V^T is certified
by the convex program's optimality conditions through :func:`solvers.bound.best_bound` (a dual
certificate S = C - Diag(y) [- N] >= 0 gives a valid lower bound on the convex optimum), and if the
certified gap exceeds ``FACTORED_GAP_TOL`` relative the general cvxpy program is solved instead.
"""

from __future__ import annotations

import time
from typing import Any

import cvxpy as cp
import numpy as np

from solvers import cvx_common
from solvers.bound import best_bound, dual_free_multipliers
from solvers.factor import eigen_factor, nonnegative_factor
from ufm.constraints import retract
from ufm.errors import ProblemError
from ufm.loss import full_batch_loss_bucketed
from ufm.problem import Problem
from ufm.solution import Solution

#: Above this many examples the collapsed embeddings' loss is computed from the reduced formula
#: instead of the full n x n JAX loss.
EMBEDDING_LOSS_MAX_N = 4000

#: The default uses the block program only up to this many count groups (cvxpy builds it term by term,
#: slow for many groups: 12 s at k = 100 long tail); beyond, the factored path.
BLOCK_MAX_GROUPS = 6

#: The factored fast path's result stands when (value - certified lower bound) <= this * max(1, value);
#: otherwise the general cvxpy program is solved.
FACTORED_GAP_TOL = 1e-8
FACTORED_MAX_ITER = 20000
FACTORED_GRAD_TOL = 1e-12     # stop when ||Riemannian grad||_F <= this * max(1, f)


def log_weights(counts) -> np.ndarray:
    """log w (k, k) with w_cc' = n_c' - [c = c']: how many others of class c' an anchor of class c sees."""
    n = np.asarray(counts, dtype=float)
    return np.log(n[None, :] - np.eye(len(n)))


def _reduced_value_grad(M: np.ndarray, n: np.ndarray, logw: np.ndarray,
                        tau: float) -> tuple[float, np.ndarray]:
    """The reduced objective sum_c n_c logsumexp_c'((M_cc' - 1) / tau + log w_cc') at M (k, k) and its
    gradient C (k, k), for counts n (k,) and ``logw`` = :func:`log_weights` (max-shifted)."""
    Z = (M - 1.0) / tau + logw
    top = Z.max(axis=1, keepdims=True)
    E = np.exp(Z - top)
    S = E.sum(axis=1, keepdims=True)
    value = float(n @ (top[:, 0] + np.log(S[:, 0])))
    return value, n[:, None] * (E / S) / tau


def reduced_loss(M: np.ndarray, counts, tau: float) -> tuple[float, np.ndarray]:
    """The reduced objective at M (k, k) and its gradient (k, k), NumPy float64.

    Equals the full-batch SCL loss of collapsed unit embeddings whose class means have Gram M."""
    return _reduced_value_grad(np.asarray(M, dtype=float), np.asarray(counts, dtype=float),
                               log_weights(counts), tau)


def _rgrad(V: np.ndarray, G: np.ndarray, relu: bool) -> np.ndarray:
    """Riemannian (ReLU: tangent-cone) gradient on unit rows, as :func:`solvers.gd.riemannian_grad`."""
    radial = np.sum(G * V, axis=1, keepdims=True)
    if not relu:
        return G - radial * V
    return np.where(V > 0, G - radial * V, np.minimum(G, 0.0))


def _factored_value_grad(V: np.ndarray, n: np.ndarray, logw: np.ndarray,
                         tau: float) -> tuple[float, np.ndarray, np.ndarray]:
    """f(V), C (k, k) = grad_M f at M = V V^T, and grad_V f = (C + C^T) V (module docstring)."""
    value, C = _reduced_value_grad(V @ V.T, n, logw, tau)
    return value, C, (C + C.T) @ V


def factored_bb(counts, tau: float, relu: bool, rank: int | None = None, seed: int = 0,
                max_iter: int = FACTORED_MAX_ITER,
                grad_tol: float = FACTORED_GRAD_TOL) -> tuple[np.ndarray, float, int, float]:
    """Minimise the factored reduced objective (module docstring) over V (k, rank) with unit rows
    (nonnegative with ReLU) by Riemannian BB + nonmonotone Armijo from a random start.

    Returns ``(V (k, rank), f(V), iterations, ||Riemannian gradient||_F)``.
    """
    n = np.asarray(counts, dtype=float)
    k = len(n)
    r = (2 * k if relu else k) if rank is None else int(rank)
    logw = log_weights(counts)
    X = np.random.default_rng(seed).standard_normal((k, r))
    V = retract(np.abs(X) if relu else X, relu)
    f, _, G = _factored_value_grad(V, n, logw, tau)
    g, gt = _rgrad(V, G, relu), _rgrad(V, G, False)
    alpha = 1.0
    hist = [f]
    V_prev = g_prev = None
    it = 0
    for it in range(max_iter):
        if np.linalg.norm(g) <= grad_tol * max(1.0, abs(f)):
            break
        if V_prev is not None:
            s, y = V - V_prev, g - g_prev
            sy = float(np.sum(s * y))
            if sy > 0:
                alpha = float(np.sum(s * s)) / sy if it % 2 == 0 else sy / float(np.sum(y * y))
            else:
                alpha = 2 * alpha
        alpha = min(max(alpha, 1e-12), 1e12)
        f_ref = max(hist[-10:])
        for _ in range(60):
            V_t = retract(V - alpha * g, relu)
            f_t, _, G_t = _factored_value_grad(V_t, n, logw, tau)
            dec = float(np.sum(gt * (V_t - V)))
            if np.isfinite(f_t) and dec < 0 and f_t <= f_ref + 1e-4 * dec:
                break
            alpha /= 2
        else:
            break                                     # floating-point floor: no decrease left
        V_prev, g_prev = V, g
        V, f, G = V_t, f_t, G_t
        g, gt = _rgrad(V, G, relu), _rgrad(V, G, False)
        hist.append(f)
    return V, f, it, float(np.linalg.norm(g))


def solve_factored(problem: Problem, rank: int | None = None, seed: int | None = None,
                   fallback: bool = True) -> Solution:
    """The reduced program by its factored form (module docstring), certified.

    Returns a :class:`~ufm.solution.Solution` like :func:`solve_reduced` (``method="reduced"``,
    ``extra["program"] = "factored"``, ``class_mean_gram`` M = V V^T (k, k), ``loss`` = the reduced
    objective at M, ``lower_bound`` = the certified lower bound on the convex optimum,
    ``extra["certified_gap"]``). Status ``"optimal"`` when the certified gap is at most
    ``FACTORED_GAP_TOL * max(1, loss)``; otherwise, with ``fallback``, the general cvxpy program's
    solution is returned (``extra["factored_gap"]`` records why), else status ``"optimal_inaccurate"``.
    """
    _check(problem)
    t0 = time.perf_counter()
    counts, tau, k = problem.counts, problem.tau, problem.k
    seed = problem.seed if seed is None else int(seed)
    V, f, iters, gnorm = factored_bb(counts, tau, problem.relu, rank, seed)
    M = V @ V.T
    np.fill_diagonal(M, 1.0)
    mask = np.ones((k, k), dtype=bool) if problem.relu else None
    value, C = reduced_loss(M, counts, tau)
    bound = best_bound(value, C, M, [dict(zip(("y", "N"), dual_free_multipliers(C, M, mask)))])
    gap = value - bound
    if not gap <= FACTORED_GAP_TOL * max(1.0, abs(value)):
        if fallback:
            sol = solve_reduced(problem, fast_path=False)
            sol.extra["factored_gap"] = float(gap)
            return sol
        status, message = "optimal_inaccurate", f"certified gap {gap:.3g} above tolerance"
    else:
        status, message = "optimal", ""
    residuals = cvx_common.gram_residuals(M, mask)
    extra: dict[str, Any] = {"solver": "factored-bb", "program": "factored", "solver_status": status,
                             "residuals": residuals, "solver_value": f,
                             "certified_lower_bound": float(bound), "certified_gap": float(gap),
                             "riemannian_grad_norm": gnorm, "rank": int(V.shape[1])}
    return _finish(problem, M, value, float(bound), status, message, iters, t0, extra)


def _finish(problem: Problem, M: np.ndarray, value: float, lower_bound: float, status: str,
            message: str, iters: int, t0: float, extra: dict[str, Any]) -> Solution:
    """Factor M into collapsed embeddings and build the Solution (shared by both paths)."""
    counts, tau = problem.counts, problem.tau
    if problem.relu:
        V, info = nonnegative_factor(M, problem.dim, seed=problem.seed)
    else:
        V = eigen_factor(M, problem.dim)
        info = {"method": "eigen", "factor_residual": float(np.abs(V @ V.T - M).max())}
    extra["factor"] = info
    H = V[problem.labels]
    extra["embedding_loss"] = (full_batch_loss_bucketed(H, problem.labels, problem.tau) if problem.n <= EMBEDDING_LOSS_MAX_N
                               else reduced_loss(V @ V.T, counts, tau)[0])
    return Solution(method="reduced", class_mean_gram=M, loss=value, status=status, embeddings=H,
                    lower_bound=lower_bound, iterations=iters, seconds=time.perf_counter() - t0,
                    message=message, extra=extra)


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
    balanced, any repeated counts) with at most ``BLOCK_MAX_GROUPS`` distinct counts, and otherwise, unless a cvxpy ``solver`` is named, the certified
    factored fast path (:func:`solve_factored`, which falls back to the general program when its
    certificate fails); True forces the block program, False the general k x k program,
    ``"factored"`` the factored path.
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
    if fast_path == "factored" or (fast_path is None and solver is None
                                   and not len(k_g) <= min(k - 1, BLOCK_MAX_GROUPS)):
        return solve_factored(problem)
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
    return _finish(problem, M, value, value, status, message, iters, t0, extra)


def _block_T(k_g: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """T (q, q): T_gg = 1 + (k_g - 1) a_g, T_gh = b_gh sqrt(k_g k_h)."""
    T = np.asarray(b, dtype=float) * np.sqrt(np.outer(k_g, k_g))
    np.fill_diagonal(T, 1 + (k_g - 1) * np.asarray(a, dtype=float))
    return T
