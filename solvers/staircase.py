"""The Riemannian staircase: escape a stationary point the certificate does not prove, one rank up
(docs/theory.md, "Escaping a stall"; Boumal, Voroninski and Bandeira 2016; SE-Sync, Rosen et al.
2019).

At unit rows H (n, r) the certificate's slack S (:func:`solvers.certificate.certificate_slack`, in
units of E) is positive semidefinite at a global optimum of the Gram program. Where it is not, its
smallest eigenpair (lambda < 0, v) gives a descent direction in one more dimension: the rows

    h_i(t) = (h_i, t u_i) / ||(h_i, t u_i)||      (n, r + 1)

have d log E / d(t^2) = u^T (sym(C) - Diag(y0)) u at t = 0 (C = grad_G log E, y0 the multipliers of
complementarity), which is lambda ||u||^2 < 0 for u = v on the sphere. With ReLU the lifted rows
must stay nonnegative: u is the positive part of v, its negative part or |v|, whichever has the
most negative derivative (the positive and negative parts split a direction that two groups of rows
share, the usual stall); where none is negative a guarded nonnegative random lift is tried. The step
t is found by backtracking from t = 1 (u scaled to max |u_i| = 1) until log E falls by at least half
the model's decrease, ``ARMIJO`` t^2 |slope| (Manopt's staircase notes that a unit step is not safe;
GTSAM added a line search that guarantees the decrease). Every accepted escape decreases E (asserted).
Then gradient descent runs again from the lifted point, and the loop repeats until the certificate
proves the point or the escape cap (each escape adds one dimension).

The smallest eigenpair: dense ``eigh`` up to ``solvers.certificate.DENSE_MAX`` rows, beyond by
Lanczos (``scipy.sparse.linalg.eigsh``, which="SA") from a fixed start vector (seeded by the
problem's seed), warm-started from the previous level's eigenvector; its tolerance ``LANCZOS_TOL``
is relative to the largest eigenvalue's magnitude, and an eigenpair whose residual exceeds
``RESIDUAL_TOL`` times that magnitude is reported as not converged (the staircase stops and says so).

At the top the certified point has rank r > d, the user's dimension: where its Gram has numerical
rank <= d, the embeddings are brought back to d (the Gram's top eigenpairs; with ReLU a nonnegative
factor, the orthogonal frame giving one coordinate per class) and certified again there; otherwise
the report names the rank the optimum needs.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import numpy as np
import scipy.sparse.linalg

from solvers.certificate import Slack, certificate_slack, certify_embeddings, collapsed_rows
from solvers.defaults import GAP_TOL
from solvers.factor import eigen_factor, nonnegative_factor
from ufm.geometry import class_mean_gram
from ufm.objectives import embeddings_log_excess, excess_constant
from ufm.problem import Problem
from ufm.solution import Level, Solution, Staircase, certified_status, join

#: At most this many escapes (each adds one dimension) in one solve.
MAX_ESCAPES = 8
#: A smallest eigenvalue of the slack (units of E) above -this is no negative curvature to escape by.
NEGATIVE_TOL = 1e-9
#: Lanczos: relative tolerance of the smallest eigenpair, and the residual above which it is reported
#: as not converged (both relative to the largest eigenvalue's magnitude).
LANCZOS_TOL = 1e-10
RESIDUAL_TOL = 1e-6
LANCZOS_MAXITER = 2000
#: The line search: accept t when log E falls by at least ARMIJO t^2 |slope|; t halves from 1 at most
#: STEP_HALVINGS times.
ARMIJO = 0.5
STEP_HALVINGS = 40
#: On the sphere, at most this many negative eigenpairs lift together (each into its own new
#: coordinate; dense eigensolves only): a stall whose slack has m negative eigenvalues climbs m ranks
#: in one escape instead of m escapes.
MAX_LIFT = 8
#: A further eigenpair lifts with the smallest only where its eigenvalue is at most this share of the
#: smallest: eigenvalues near 0 are the stationarity residual's (about the gradient test's 1e-9), and
#: a threshold there would count them differently from one CPU to the next (measured: after the first
#: escape of tests/test_staircase.py's prototype case, -1.7e-2 and three at -1.5e-2, then -4.1e-10).
LIFT_SHARE = 1e-2
#: Guarded random lifts tried (ReLU) where no part of the eigenvector has negative slope.
RANDOM_LIFTS = 8
#: Numerical rank of the certified Gram: eigenvalues above this times the largest.
RANK_TOL = 1e-6


def smallest_eigenpairs(slack: Slack, n: int, start: np.ndarray | None = None, seed: int = 0,
                        most: int = 1) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """``(lambdas (m,), unit eigenvectors (n, m), matvecs, converged)``: the slack's smallest
    eigenpair, and with ``most`` > 1 the further ones at most ``LIFT_SHARE`` times the smallest (a
    negative number; at most ``most`` in all). Dense ``eigh`` (one decomposition) where the slack has its dense matrix; else the smallest
    pair alone by Lanczos from ``start`` (the previous level's eigenvector) or a fixed random vector
    of ``seed``, converged when the residual ||S v - lambda v|| is at most ``RESIDUAL_TOL`` times the
    largest |eigenvalue|."""
    if slack.dense is None:
        lam, v, matvecs, converged = _lanczos_pair(slack, n, start, seed)
        return np.array([lam]), v[:, None], matvecs, converged
    vals, vecs = np.linalg.eigh(slack.dense)
    m = min(most, int(np.sum(vals <= LIFT_SHARE * vals[0]))) if vals[0] < 0 else 1
    return vals[:m], vecs[:, :m], 0, True


def smallest_eigenpair(slack: Slack, n: int, start: np.ndarray | None = None,
                       seed: int = 0) -> tuple[float, np.ndarray, int, bool]:
    """``(lambda_min, unit eigenvector (n,), matvecs, converged)`` of the slack S_HH
    (:func:`smallest_eigenpairs` with one pair)."""
    lams, V, matvecs, converged = smallest_eigenpairs(slack, n, start, seed)
    return float(lams[0]), V[:, 0], matvecs, converged


def _lanczos_pair(slack: Slack, n: int, start: np.ndarray | None, seed: int) -> tuple[float, np.ndarray, int, bool]:
    """The smallest eigenpair by Lanczos on the matrix-free slack (:func:`smallest_eigenpairs`)."""
    count = [0]

    def matvec(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        return slack.apply(np.asarray(v, dtype=float).reshape(n, -1)).reshape(np.shape(v))

    operator = scipy.sparse.linalg.LinearOperator((n, n), matvec=matvec, dtype=float)
    fixed = np.random.default_rng(seed).standard_normal(n)
    v0 = fixed if start is None else np.asarray(start, dtype=float)
    top = abs(float(scipy.sparse.linalg.eigsh(operator, k=1, which="LM", tol=1e-3, v0=fixed, maxiter=50 * n,
                                              return_eigenvectors=False)[0])) + 1e-300
    try:
        vals, vecs = scipy.sparse.linalg.eigsh(operator, k=1, which="SA", tol=LANCZOS_TOL, v0=v0,
                                               maxiter=LANCZOS_MAXITER, ncv=min(n, 64))
    except scipy.sparse.linalg.ArpackNoConvergence as failure:
        if len(failure.eigenvalues) == 0:
            return float("nan"), v0 / np.linalg.norm(v0), count[0], False
        vals, vecs = failure.eigenvalues, failure.eigenvectors
    v = vecs[:, 0] / np.linalg.norm(vecs[:, 0])
    residual = float(np.linalg.norm(slack.apply(v[:, None])[:, 0] - vals[0] * v))
    return float(vals[0]), v, count[0], residual <= RESIDUAL_TOL * top


def lifted(H: np.ndarray, U: np.ndarray, t: float) -> np.ndarray:
    """The rows (h_i, t U_i) / ||(h_i, t U_i)||: H (n, r) lifted by the directions U (n,) or (n, m) to
    (n, r + m)."""
    X = np.hstack([H, t * U.reshape(len(H), -1)])
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _directions(slack: Slack, V: np.ndarray, relu: bool) -> list[tuple[str, np.ndarray, float]]:
    """``(kind, U (n, m) scaled to max |U_ij| = 1, slope)`` of each candidate lift with a negative
    slope (d log E / d t^2 at t = 0: the sum over U's columns u of u^T (sym(C) - Diag(y0)) u), most
    negative first. ``V`` (n, m): the eigenvectors to lift along (on the sphere all together; with
    ReLU the first one's parts, one at a time)."""
    v = V[:, 0]
    parts = [("eigenvector" if V.shape[1] == 1 else f"{V.shape[1]} eigenvectors", V)] if not relu else \
        [("positive part", np.maximum(v, 0.0)), ("negative part", np.maximum(-v, 0.0)), ("absolute value", np.abs(v))]
    out = []
    for kind, U in parts:
        U = U.reshape(len(v), -1)
        peak = float(np.max(np.abs(U)))
        if peak == 0.0:
            continue
        U = U / peak
        slope = float(np.sum(U * slack.apply_lift(U)))
        if slope < 0.0:
            out.append((kind, U, slope))
    return sorted(out, key=lambda item: item[2])


def _line_search(problem_up: Problem, H: np.ndarray, U: np.ndarray, slope: float,
                 log_e: float) -> tuple[np.ndarray, float, float] | None:
    """``(lifted rows, log E there, t)`` of the first t = 1, 1/2, ... with log E(t) <= log E + ARMIJO
    t^2 slope (slope < 0), or None."""
    t = 1.0
    for _ in range(STEP_HALVINGS):
        X = lifted(H, U, t)
        value = embeddings_log_excess(problem_up, X)
        if np.isfinite(value) and value <= log_e + ARMIJO * t * t * slope:
            return X, float(value), t
        t /= 2
    return None


def _random_lift(problem_up: Problem, H: np.ndarray, log_e: float,
                 seed: int) -> tuple[np.ndarray, float, float] | None:
    """The guarded nonnegative random lift (ReLU, no negative slope in the eigenvector's parts): a
    few random nonnegative directions, each kept only if log E decreases."""
    rng = np.random.default_rng(seed)
    for _ in range(RANDOM_LIFTS):
        u = rng.random(len(H))
        t = 1.0
        for _ in range(STEP_HALVINGS // 2):
            X = lifted(H, u, t)
            value = embeddings_log_excess(problem_up, X)
            if np.isfinite(value) and value < log_e:
                return X, float(value), t
            t /= 2
    return None


def escape(problem: Problem, H: np.ndarray, start: np.ndarray | None = None
           ) -> tuple[Level, np.ndarray | None, np.ndarray]:
    """One escape from H (n, r): ``(level, lifted rows (n, r + m) or None, eigenvector)``, m the
    directions lifted (on the sphere the negative eigenpairs of a dense slack within ``LIFT_SHARE`` of
    the smallest, at most ``MAX_LIFT``; else 1). The lifted rows have a strictly smaller E (asserted);
    None where no escape was found (the level says why through ``lambda_min`` and ``kind``)."""
    t0 = time.perf_counter()
    n, r = H.shape
    slack = certificate_slack(problem, H)
    # on the sphere every negative pair of a dense slack lifts at once; with ReLU the first one's parts
    lams, V, matvecs, converged = smallest_eigenpairs(slack, n, start, problem.seed,
                                                     most=1 if problem.relu else MAX_LIFT)
    lam, v = float(lams[0]), V[:, 0]
    level = Level(r, lam, False, matvecs, 0.0, slack.log_excess)
    if not converged:
        return replace(level, kind="eigensolver not converged", seconds=time.perf_counter() - t0), None, v
    if not lam < -NEGATIVE_TOL:
        return replace(level, seconds=time.perf_counter() - t0), None, v
    found = None
    for kind, U, slope in _directions(slack, V, problem.relu):
        found = _line_search(problem.with_(dim=r + U.shape[1]), H, U, slope, slack.log_excess)
        if found is not None:
            break
    if found is None and problem.relu:
        kind, found = "random", _random_lift(problem.with_(dim=r + 1), H, slack.log_excess, problem.seed)
    seconds = time.perf_counter() - t0
    if found is None:
        return replace(level, kind="no decrease", seconds=seconds), None, v
    X, after, t = found
    assert after < slack.log_excess, "an escape must decrease E"
    return replace(level, escaped=True, seconds=seconds, log_excess_after=after, step=t, kind=kind,
                   lifted=X.shape[1] - r), X, v


def numerical_rank(H: np.ndarray) -> int:
    """The numerical rank of H H^T (n, n): its eigenvalues (the squared singular values of H) above
    ``RANK_TOL`` times the largest."""
    s = np.linalg.svd(H, compute_uv=False)
    return int(np.sum(s ** 2 > RANK_TOL * s[0] ** 2))


def down_to(problem: Problem, H: np.ndarray) -> np.ndarray | None:
    """Unit rows (n, d) in the problem's dimension d with (nearly) the Gram of H (n, r), r > d, or None
    where that Gram's rank exceeds d. Sphere: the top d eigenpairs of the Gram; ReLU: a nonnegative
    factor (:func:`solvers.factor.nonnegative_factor`) of the distinct rows' Gram (the orthogonal
    frame: one coordinate per class)."""
    d = problem.dim
    if numerical_rank(H) > d:
        return None
    tied = collapsed_rows(problem.with_(dim=H.shape[1]), H)
    V, tie = (H, np.arange(len(H))) if tied is None else tied
    G = V @ V.T
    if problem.relu:
        X, _ = nonnegative_factor(G, d, seed=problem.seed)
    else:
        X = eigen_factor(G, d)
    return X[tie]


def climb(problem: Problem, solution: Solution, descend: Callable[[Problem, np.ndarray], Solution],
          max_escapes: int = MAX_ESCAPES, gap_tol: float = GAP_TOL) -> Solution:
    """The staircase from a ``stationary`` ``solution`` of ``problem``: escape, ``descend(problem at
    rank r + 1, lifted rows)`` (gradient descent from those rows, certified), until certified or a
    cap; then back to the problem's dimension (module docstring). Returns the Solution in the
    problem's dimension, its ``info.staircase`` the account, its status as the certificate decides."""
    levels: list[Level] = []
    current, start, stop = solution, None, "escape cap"
    t0, iterations = time.perf_counter(), solution.iterations
    for _ in range(max_escapes):
        if current.status == "error" or current.certificate is None:
            stop = "descent failed"
            break
        if current.certificate.certified:
            stop = "certified"
            break
        level, X, start = escape(problem.with_(dim=current.embeddings.shape[1]), current.embeddings, start)
        levels.append(level)
        if X is None:
            stop = level.kind or "no negative curvature"
            break
        current = descend(problem.with_(dim=X.shape[1]), X)
        iterations += current.iterations
    else:
        if current.certificate is not None and current.certificate.certified:
            stop = "certified"
    return _settle(problem, solution, current, levels, stop, t0 - solution.seconds, iterations, gap_tol)


def _settle(problem: Problem, first: Solution, top: Solution, levels: list[Level], stop: str, started: float,
            iterations: int, gap_tol: float) -> Solution:
    """The staircase's result in the problem's dimension (module docstring); ``started``: the
    ``time.perf_counter()`` at which the whole solve began (its ``seconds`` are the wall time since)."""
    escapes = sum(level.escaped for level in levels)
    H = top.embeddings
    rank = numerical_rank(H) if H is not None and np.isfinite(H).all() else None
    staircase = Staircase(tuple(levels), escapes, stop, rank)
    if escapes == 0:
        return _with(first, staircase, _why(stop), started, iterations)
    if H.shape[1] == problem.dim:
        H_d = H
    else:
        H_d = down_to(problem, H)
    if H_d is None:
        found = "certified optimum" if stop == "certified" else "best point"
        message = (f"the staircase's {found} at rank {H.shape[1]} (loss {top.loss:.12g}) has a Gram of rank "
                   f"{rank} > dim = {problem.dim}: d = {problem.dim} cannot hold it; solve with dim >= {rank}")
        return _with(replace(first, message=join(first.message, message)), staircase, "", started, iterations)
    cert = certify_embeddings(problem, H_d, gap_tol)
    status, message = certified_status("converged", _why(stop) if stop != "certified" else "", cert)
    excess = cert.excess
    sol = replace(first, embeddings=H_d, class_mean_gram=class_mean_gram(H_d, problem.labels),
                  loss=excess_constant(problem) + excess,
                  excess=excess, log_excess=cert.log_excess, certificate=cert, lower_bound=cert.lower_bound,
                  status=status, message=message)
    return _with(sol, staircase, "", started, iterations)


def _why(stop: str) -> str:
    """The way out a ``stationary`` message names."""
    ways = {"escape cap": f"the staircase stopped at its cap of {MAX_ESCAPES} escapes; raise the dimension "
                          "or try more starts",
            "eigensolver not converged": "the eigensolver of the certificate's slack did not converge; "
                                         "try another seed",
            "no decrease": "no escape direction decreased E (a degenerate stall); try more starts",
            "no negative curvature": "the certificate's slack has no negative eigenvalue: the descent "
                                     "stopped before its tolerance; raise steps",
            "descent failed": "gradient descent failed at a higher rank; lower the learning rate"}
    return ways.get(stop, "")


def _with(sol: Solution, staircase: Staircase, note: str, started: float, iterations: int) -> Solution:
    """``sol`` with the staircase's account in its info, the wall time since ``started`` and all
    iterations, and ``note`` added to its message where it is not proved."""
    info = replace(sol.info, staircase=staircase) if sol.info is not None else sol.info
    message = sol.message if (note == "" or sol.status == "optimal") else join(sol.message, note)
    return replace(sol, info=info, seconds=time.perf_counter() - started, iterations=iterations, message=message)


__all__ = ["Level", "Staircase", "smallest_eigenpair", "smallest_eigenpairs", "lifted", "escape", "climb",
           "down_to", "numerical_rank"]
