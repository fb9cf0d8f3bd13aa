"""The reduced convex program over the k x k class-mean Gram M (docs/theory.md section 3): exact for the
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

For STEP imbalance (two groups) this is docs/theory.md's program over the three scalars a, b, c.

Excess form (docs/theory.md): every path optimises and judges the excess
E(M) = sum_c n_c log1p(x_c(M)), x_c = sum_{c' != c} (n_c'/(n_c - 1)) e^{(M_cc' - 1)/tau}
(for SCL :func:`ufm.objectives.scl.reduced.reduced_excess`; every path asks the problem's objective for its
``REDUCED`` capability), the objective minus its constant sum_c n_c log(n_c - 1): at small
tau the geometry is below the rounding of the full objective.

Factored path (:func:`solve_factored`, the default): the same program in Burer-Monteiro form
M = V V^T, V (k, r) with unit rows (r = k; with ReLU V >= 0 and r = 2k, since a nonnegative factor at
r = k can stall, docs/theory.md section 3), minimising log E:

    f(V) = log E(V V^T),   grad_V f = (C + C^T) V,   C = d log E / dM   (k, k)

by :func:`solvers.descent.run`, the solver of gradient descent, with its default optimiser
(Barzilai-Borwein steps and a nonmonotone Armijo search on the product of spheres,
:mod:`solvers.transforms`), jit-compiled once per (k, rank, ReLU) with counts and tau traced.
The result is not trusted on its own: every path's M is
judged by :func:`solvers.certificate.certify_mean_gram` (weak duality on the excess), which sets the
status: ``optimal`` only when the relative gap on E is within the tolerance. The factored path tries
``FACTORED_STARTS`` starts before it gives up (status ``stationary``). The cvxpy programs (block,
general) are cross-checks: Clarabel's absolute tolerances do not resolve E below tau ~ 0.05, and
there the certificate says so (``optimal_inaccurate``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import optax

from solvers import cvx_common, descent
from solvers.optimizers import OPTIMIZERS
from solvers.bound import feasible_point
from solvers.certificate import certify_mean_gram
from solvers.defaults import GAP_TOL, check_gap_tol, check_reduced_applies
from solvers.factor import eigen_factor, nonnegative_factor
from ufm.constraint_sets import unit_sphere
from ufm.errors import ProblemError
from ufm.objectives import (Capability, ObjectiveOptions, embeddings_loss, implementation, objective_of,
                            require)
from ufm.problem import Problem, require_problem
from ufm.programs import program
from ufm.solution import BlockValues, FactoredRun, ProgramInfo, Solution, certified_status, join

if TYPE_CHECKING:   # cvxpy is imported by the cross-check programs that use it (the default path needs none)
    import cvxpy as cp

#: Above this many examples the collapsed embeddings' loss is computed from the reduced formula
#: instead of the full n x n JAX loss.
EMBEDDING_LOSS_MAX_N = 4000

#: The default uses the block program only up to this many count groups (cvxpy builds it term by term,
#: slow for many groups: 12 s at k = 100 long tail); beyond, the factored path.
BLOCK_MAX_GROUPS = 6

FACTORED_MAX_ITER = 20000
FACTORED_GRAD_TOL = 1e-12     # stop when ||Riemannian grad of log E||_F <= this
FACTORED_STARTS = 4           # starts tried until one is certified


def _factored(V0, counts, tau, *, objective: ObjectiveOptions, relu: bool, max_iter: int, grad_tol: float):
    """:func:`solvers.descent.run` on f(V) = log E(V V^T) (the objective's ``reduced_log_excess``) over
    unit rows (nonnegative with ReLU), by the default optimiser of gradient descent (BB + nonmonotone
    Armijo, :data:`solvers.optimizers.OPTIMIZERS` ``"bb"``); counts and tau are traced, so one compile
    serves every problem of a shape."""
    cset = unit_sphere(relu)
    tx = optax.with_extra_args_support(OPTIMIZERS["bb"](1.0, max_iter, cset, False))
    log_excess = implementation(objective).reduced_log_excess

    def objective_of_factor(V):
        return log_excess(V @ V.T, counts, tau)
    # tol = inf: stop on the gradient test alone (or a stalled search: the floating-point floor)
    return descent.run(objective_of_factor, cset, tx, V0, max_steps=max_iter, tol=float("inf"), grad_tol=grad_tol,
                       keep=True)


#: The compiled factored descent, kept across processes where the compile cache is on (k x k: small).
_factored_run = program(_factored, static_argnames=("objective", "relu", "max_iter", "grad_tol"),
                        cost=lambda *a, **k: 0)


def factored_descent(problem: Problem, rank: int | None = None, seed: int = 0,
                     max_iter: int = FACTORED_MAX_ITER,
                     grad_tol: float = FACTORED_GRAD_TOL) -> tuple[np.ndarray, float, int, float, str]:
    """Minimise log E of the factored reduced program (module docstring) over V (k, rank) with unit
    rows (nonnegative with ReLU) from a random start, by :func:`solvers.descent.run` (the solver of
    gradient descent, BB + nonmonotone Armijo), float64.

    Returns ``(V (k, rank), log E(V V^T), iterations, ||Riemannian gradient||_F, stop)`` with
    ``stop`` one of ``"gradient"`` (below ``grad_tol``), ``"stalled"`` (no decrease left: the
    floating-point floor), ``"failed"`` (non-finite) or ``"max_iter"``.
    """
    k, relu = problem.k, bool(problem.relu)
    r = (2 * k if relu else k) if rank is None else int(rank)
    V0 = unit_sphere(relu).point(np.random.default_rng(seed).standard_normal((k, r)))
    state = _factored_run(np.asarray(V0, np.float64), np.asarray(problem.counts, np.float64),
                          np.asarray(problem.tau, np.float64), objective=problem.objective, relu=relu,
                          max_iter=int(max_iter), grad_tol=float(grad_tol))
    stop = ("failed" if bool(state.failed) else "gradient" if bool(state.converged)
            else "stalled" if bool(state.stalled) else "max_iter")
    return (np.asarray(state.params, dtype=np.float64), float(state.value), int(state.iteration),
            float(state.grad_norm), stop)


def solve_factored(problem: Problem, rank: int | None = None, seed: int | None = None,
                   fallback: bool = False, gap_tol: float = GAP_TOL) -> Solution:
    """The reduced program by its factored form (module docstring), certified.

    Up to ``FACTORED_STARTS`` starts (seeds ``seed``, ``seed + 1``, ...) until the certificate proves
    one; returns a :class:`~ufm.solution.Solution` like :func:`solve_reduced` (``method="reduced"``,
    ``info.program = "factored"``). Status ``"optimal"`` when certified, else ``"stationary"``
    (the best start), or with ``fallback`` the general cvxpy program's solution, judged the same way.
    """
    check_applicable(problem)
    t0 = time.perf_counter()
    seed = problem.seed if seed is None else int(seed)
    best = None
    total_iters = 0
    for start in range(FACTORED_STARTS):
        V, f, iters, gnorm, _ = factored_descent(problem, rank, seed + start)
        total_iters += iters
        cert = certify_mean_gram(problem, V, gap_tol)
        if best is None or cert.relative_gap < best[1].relative_gap:
            best = (V, cert, f, gnorm)
        if cert.certified:
            break
    tried = start + 1
    V, cert, f, gnorm = best
    if not cert.certified and fallback:
        sol = solve_reduced(problem, program="general", gap_tol=gap_tol)
        return replace(sol, info=replace(sol.info, factored=FactoredRun(gnorm, tried, cert.relative_gap)))
    record: dict[str, Any] = {"solver": "factored-descent", "program": "factored", "solver_value": f,
                              "rank": int(V.shape[1]), "factored": FactoredRun(gnorm, tried)}
    return _reduced_solution(problem, V, "converged", "", total_iters, t0, record, gap_tol, cert)


def _reduced_solution(problem: Problem, V: np.ndarray, status: str, message: str, iters: int, t0: float,
            record: dict[str, Any], gap_tol: float, cert=None) -> Solution:
    """Certify M = V V^T (V (k, r) unit rows), factor it into collapsed embeddings and build the
    Solution (shared by every path). A converged solver whose point the certificate does not prove
    is ``stationary``; a cvxpy program's is ``optimal_inaccurate``."""
    counts = problem.counts
    if cert is None:
        cert = certify_mean_gram(problem, V, gap_tol)
    M = V @ V.T
    np.fill_diagonal(M, 1.0)
    status, message = certified_status(status, message, cert, unproved="stationary"
                                       if record["program"] == "factored" else "optimal_inaccurate")
    if problem.relu:
        H_rows, info = nonnegative_factor(M, problem.dim, seed=problem.seed)
    else:
        H_rows = eigen_factor(M, problem.dim)
        info = {"method": "eigen", "factor_residual": float(np.abs(H_rows @ H_rows.T - M).max())}
    record["factor"] = info
    H = H_rows[problem.labels]
    record["embedding_loss"] = embeddings_loss(problem, H) if problem.n <= EMBEDDING_LOSS_MAX_N else None
    record["residuals"] = cvx_common.gram_residuals(M, np.ones_like(M, dtype=bool) if problem.relu else None)
    return Solution(method="reduced", class_mean_gram=M, loss=objective_of(problem).reduced_constant(counts) + cert.excess,
                    status=status, embeddings=H, lower_bound=cert.lower_bound, excess=cert.excess,
                    log_excess=cert.log_excess, certificate=cert, iterations=iters,
                    seconds=time.perf_counter() - t0, message=message, info=ProgramInfo(**record))


def feasible_factor(M: np.ndarray, relu: bool) -> np.ndarray:
    """Unit rows V (k, k) with V V^T an exactly feasible point of the reduced program near a solver's
    M (:func:`solvers.bound.feasible_point`: PSD, unit diagonal, nonnegative with ReLU)."""
    F = feasible_point(M, len(M), nonnegative=relu)
    vals, vecs = np.linalg.eigh((F + F.T) / 2)
    V = vecs * np.sqrt(np.clip(vals, 0.0, None))
    return V / np.linalg.norm(V, axis=1, keepdims=True)


def check_applicable(problem: Problem) -> None:
    """Raise :class:`ProblemError` unless the reduced program applies to ``problem``: full batch, no
    prototypes (:func:`solvers.defaults.check_reduced_applies`), for an objective with the ``REDUCED``
    capability."""
    require(objective_of(problem), Capability.REDUCED, "the reduced k x k program")
    check_reduced_applies(problem.batching.scheme, problem.prototypes is not None)


def count_groups(counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group of each class (k,), sizes k_g (q,), counts n_g (q,))`` grouping classes of equal count,
    groups in order of first appearance."""
    counts = [int(c) for c in counts]
    values = list(dict.fromkeys(counts))
    group = np.array([values.index(c) for c in counts])
    return group, np.bincount(group), np.array(values)


def build_reduced(problem: Problem) -> tuple[cp.Problem, cp.Variable, dict]:
    """The general k x k program of the problem's objective (its ``reduced_expression``):
    ``(program, M, named constraints)``."""
    import cvxpy as cp

    k, relu = problem.k, problem.relu
    M = cp.Variable((k, k), symmetric=True, name="M")
    loss = objective_of(problem).reduced_expression(M, np.ones(k), problem.counts, problem.tau)
    constraints = {
        "psd": M >> 0,
        "unit_diagonal": cp.diag(M) == 1,
    }
    if relu:
        constraints["nonnegative"] = M >= 0
    return cp.Problem(cp.Minimize(loss), list(constraints.values())), M, constraints


def build_block(problem: Problem) -> tuple[cp.Problem, cp.Variable, cp.Variable]:
    """The block program (module docstring) of the problem's objective (its ``reduced_expression``):
    ``(program, a (q,), b (q, q) symmetric)``."""
    import cvxpy as cp

    group, k_g, n_g = count_groups(problem.counts)
    q = len(k_g)
    a = cp.Variable(q, name="a")                        # within group g (unused when k_g = 1)
    b = cp.Variable((q, q), symmetric=True, name="b")   # between groups (off-diagonal used)
    T = cp.Variable((q, q), PSD=True, name="T")
    loss = objective_of(problem).reduced_expression(b + cp.diag(a), k_g, n_g, problem.tau)
    constraints = [a <= 1]
    constraints += [T[g, g] == 1 + (k_g[g] - 1) * a[g] for g in range(q)]
    constraints += [T[g, h] == b[g, h] * np.sqrt(k_g[g] * k_g[h]) for g in range(q) for h in range(g + 1, q)]
    constraints += [cp.diag(b) == 0]                    # b's diagonal is not used
    constraints += [a[g] == 0 for g in range(q) if k_g[g] == 1]
    if problem.relu:
        constraints += [a >= 0, b >= 0]
    return cp.Problem(cp.Minimize(loss), constraints), a, b


def block_to_gram(counts: Sequence[int], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The k x k block-constant M from the block values a (q,) and b (q, q)."""
    group, _, _ = count_groups(counts)
    M = np.asarray(b, dtype=float)[np.ix_(group, group)].copy()
    same = group[:, None] == group[None, :]
    M[same] = np.asarray(a, dtype=float)[group][np.nonzero(same)[0]]
    np.fill_diagonal(M, 1.0)
    return M


def solve_block(problem: Problem, solver: str | None = None,
                solver_options: dict[str, Any] | None = None) -> Solution:
    """The block fast path only (see :func:`solve_reduced`, which calls it for ``program="block"``);
    ``info.block`` (a :class:`~ufm.solution.BlockValues`) holds the values a (q,), b (q, q), the group
    sizes and counts, and det T (0 at a rank k - 1 optimum)."""
    return solve_reduced(problem, solver, solver_options, program="block")


#: The reduced programs: ``"factored"`` (:func:`solve_factored`, descent on the factor, certified),
#: ``"block"`` (cvxpy, constant on the blocks of equal counts), ``"general"`` (cvxpy, k x k), and
#: ``"auto"`` (:func:`choose_program`).
PROGRAMS = ("auto", "factored", "block", "general")


def choose_program(problem: Problem, program: str = "auto", solver: str | None = None) -> str:
    """The reduced program to run: ``program`` itself unless it is ``"auto"``; then ``"factored"``,
    or, when a cvxpy ``solver`` is named, ``"block"`` where some classes share a count and there are
    at most :data:`BLOCK_MAX_GROUPS` distinct counts, else ``"general"``. A cvxpy ``solver`` named
    with ``program="factored"`` does not apply: :class:`ProblemError`."""
    if program not in PROGRAMS:
        raise ProblemError(f"unknown reduced program {program!r}; use one of {', '.join(PROGRAMS)}")
    if program == "factored" and solver is not None:
        raise ProblemError(f"solver {solver!r} does not apply to the factored reduced program (it runs "
                           "gradient descent); drop the solver or choose program 'block' or 'general'")
    if program != "auto":
        return program
    if solver is None:
        return "factored"
    _, k_g, _ = count_groups(problem.counts)
    return "block" if len(k_g) < problem.k and len(k_g) <= BLOCK_MAX_GROUPS else "general"


def solve_reduced(problem: Problem, solver: str | None = None,
                  solver_options: dict[str, Any] | None = None,
                  program: str = "auto", gap_tol: float = GAP_TOL) -> Solution:
    """Solve the reduced program (module docstring) for a full-batch problem without prototypes.

    ``program``: one of :data:`PROGRAMS`, resolved by :func:`choose_program` (the default
    ``"auto"`` is the certified factored path unless a cvxpy ``solver`` is named). Every path is judged
    by the certificate (:func:`solvers.certificate.certify_mean_gram`) at an exactly feasible point
    near its M.
    Returns a :class:`~ufm.solution.Solution` with ``method="reduced"``: ``class_mean_gram`` M (k, k),
    ``loss`` the reduced objective at M (constant + ``excess``), ``lower_bound`` the certificate's,
    ``embeddings`` (n, dim) the collapsed rows h_i = m_{y_i} with the means factored from M (top
    eigenpairs; with ReLU a nonnegative factor), and ``info`` (a :class:`~ufm.solution.ProgramInfo`): ``program`` (``"factored"`` /
    ``"block"`` / ``"general"``), ``residuals``, ``solver_status``, ``embedding_loss`` (SCL loss of
    the recovered embeddings).
    """
    require_problem(problem, "solve_reduced")
    cvx_common.solver_call(solver, solver_options)        # names and options checked before any work
    check_applicable(problem)
    check_gap_tol(gap_tol)
    solution = _solve_reduced(problem, solver, solver_options, choose_program(problem, program, solver), gap_tol)
    if problem.relu or problem.dim >= problem.k - 1 or solution.status != "optimal":
        return solution
    # the reduced program has no rank constraint: at d < k - 1 its optimum (still a valid lower bound)
    # has rank up to k - 1, and the d-dimensional factor below does not attain it
    note = (f"dim = {problem.dim} < k - 1: the reduced optimum (the lower bound) has rank up to k - 1, which "
            f"d-dimensional embeddings cannot attain; loss is that of its rank-{problem.dim} factor")
    return replace(solution, status="optimal_inaccurate", message=join(solution.message, note),
                   loss=embeddings_loss(problem, solution.embeddings))


def _solve_reduced(problem: Problem, solver, solver_options, program: str, gap_tol: float) -> Solution:
    t0 = time.perf_counter()
    counts, k = problem.counts, problem.k
    _, k_g, n_g = count_groups(counts)
    if program == "factored":
        return solve_factored(problem, gap_tol=gap_tol)
    use_block = program == "block"
    name = cvx_common.solver_call(solver, solver_options)[0]
    record: dict[str, Any] = {"solver": name, "program": "block" if use_block else "general"}
    if use_block:
        cvx_program, a, b = build_block(problem)
    else:
        cvx_program, Mvar, _ = build_reduced(problem)
    status, raw, message = cvx_common.solve(cvx_program, solver, solver_options)
    record["solver_status"] = raw
    iters = cvx_common.iterations(cvx_program)
    if (use_block and a.value is None) or (not use_block and Mvar.value is None):
        return Solution(method="reduced", class_mean_gram=np.full((k, k), np.nan), loss=float("nan"),
                        status="error", iterations=iters, seconds=time.perf_counter() - t0,
                        message=message or f"{name} returned no solution", info=ProgramInfo(**record))
    if use_block:
        M = block_to_gram(counts, a.value, b.value)
        det = float(np.linalg.det(_block_T(k_g, a.value, b.value)))
        record["block"] = BlockValues(a.value.tolist(), b.value.tolist(), k_g.tolist(), n_g.tolist(), det)
    else:
        M = (Mvar.value + Mvar.value.T) / 2
    mask = np.ones((k, k), dtype=bool) if problem.relu else None
    record.update(solver_residuals=cvx_common.gram_residuals(M, mask), solver_value=float(cvx_program.value))
    if status == "error":
        return Solution(method="reduced", class_mean_gram=M, loss=float("nan"), status="error",
                        iterations=iters, seconds=time.perf_counter() - t0, message=message, info=ProgramInfo(**record))
    return _reduced_solution(problem, feasible_factor(M, problem.relu), "converged", message, iters, t0, record,
                   gap_tol)


def _block_T(k_g: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """T (q, q): T_gg = 1 + (k_g - 1) a_g, T_gh = b_gh sqrt(k_g k_h)."""
    T = np.asarray(b, dtype=float) * np.sqrt(np.outer(k_g, k_g))
    np.fill_diagonal(T, 1 + (k_g - 1) * np.asarray(a, dtype=float))
    return T
