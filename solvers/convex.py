"""The convex relaxation of the UFM over the n x n Gram (docs/theory.md section 3), in cvxpy, for any
objective that is a convex function of the Gram (capabilities ``RELAXATION`` and ``GRAM``):

    minimise   L(G)   (the objective's ``relaxation_expression``; for SCL, ufm.objectives.scl.relaxation:
                       sum_B sum_{i in B, P_B(i) nonempty} [ logsumexp_{a in A_B(i)} G_ia / tau
                                                        -  (1/|P_B(i)|) sum_{j in P_B(i)} G_ij / tau ])
    subject to G PSD,  diag(G) = 1,  [ReLU: G >= 0],  [prototypes: G_WW = W W^T]

Shapes: G is (m, m) with m = n + p: the n examples (class by class) then the p prototype rows W (p, d),
whose block is fixed. The batches are the problem's batches at epoch 0. Prototypes join every batch;
they are anchors when ``problem.prototypes.anchors``. With ReLU the nonnegativity applies to the
example block, and to the whole enlarged Gram when W >= 0 (then H W^T >= 0 too).

Prototypes, facial reduction: the fixed block W W^T is usually singular (an ETF has rank k - 1, and
repeated prototypes repeat rows), so no G with that block is positive definite and interior-point
solvers lose accuracy (Clarabel stops at "AlmostSolved"). The program is therefore posed over

    M = [[G_HH, A], [A^T, I_r]]  PSD  ((n + r) x (n + r)),   G = T M T^T,   T = blockdiag(I_n, W Q)

with Q (d, r) an orthonormal basis of the row space of W (rank r), chosen so that W Q is the pivoted
Cholesky factor of W W^T (:func:`prototype_lift`): A (n, r) holds the coordinates of the rows of H on
that row space, so G_HW = A (W Q)^T and G_WW = W Q Q^T W^T = W W^T. By the Schur
complement every PSD G with G_WW = W W^T is T M T^T for such an M, and M = I is strictly feasible.

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

from solvers import cvx_common
from solvers.bound import (best_multipliers, dual_free_multipliers, dual_free_multipliers_lifted,
                           feasible_point, linearization_bound, slack)
from solvers.factor import eigen_factor, nonnegative_factor, pivoted_cholesky
from ufm.constraint_sets import unit_sphere
from solvers.reduced import solve_reduced, solve_block  # noqa: F401  (re-exported)
from ufm.geometry import mean_gram_from_gram
from ufm.objectives import Capability, embeddings_log_excess, embeddings_loss, objective_of, require
from solvers.certificate import GAP_TOL, certify_embeddings
from solvers import sizing
from solvers.defaults import check_gap_tol
from ufm.problem import Problem, require_problem
from ufm.solution import DualBracket, ProgramInfo, Solution, certified_status, join

__all__ = ["Relaxation", "prototype_lift", "relaxation_loss",
           "build_relaxation", "solve_relaxation", "solve_reduced", "solve_block", "convex_optimum",
           "certify"]


def relaxation_loss(G: np.ndarray, problem: Problem) -> tuple[float, np.ndarray]:
    """The objective's loss L(G) and its gradient C (m, m) (not necessarily symmetrised) at a symmetric
    G (m, m) over the rows [H; W], float64: its ``gram_value_and_grad`` (capability ``GRAM``; for SCL
    :func:`ufm.objectives.scl.gram.gram_value_and_grad`, over the batching at epoch 0)."""
    return objective_of(problem).gram_value_and_grad(problem, G)


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


@dataclass(frozen=True)
class Relaxation:
    """The cvxpy program of the module docstring and what is needed to read its solution.

    ``variable``: the Gram G (m, m), or M ((n + r) x (n + r)) with prototypes; ``lift``: None, or T
    (m, n + r) with G = T M T^T; ``constraints``: named cvxpy constraints; ``W``: the prototype rows
    (p, d) or None.
    """

    program: cp.Problem
    variable: cp.Variable
    lift: np.ndarray | None
    constraints: dict[str, cp.Constraint]
    W: np.ndarray | None

    def gram(self) -> np.ndarray | None:
        """The enlarged Gram G (m, m) at the solver's point (symmetrised), or None if it has none."""
        V = self.variable.value
        if V is None:
            return None
        V = (V + V.T) / 2
        return V if self.lift is None else self.lift @ V @ self.lift.T


def prototype_lift(W: np.ndarray, n: int, rank_tol: float = 1e-10) -> np.ndarray:
    """T = blockdiag(I_n, L) (n + p, n + r) of the module docstring, L (p, r) with L L^T = W W^T.

    L is the pivoted Cholesky factor of W W^T (LAPACK ``dpstrf``, rank r where the pivots fall below
    ``rank_tol``): unlike an SVD basis (arbitrary within repeated singular values, e.g. an ETF), it
    depends on the prototype Gram alone, so the program is the same whatever ``dim`` and rotation.
    L = W Q for an orthonormal Q (d, r) spanning the row space of W, as the module docstring needs.
    """
    L = pivoted_cholesky(W @ W.T, rank_tol)
    r = L.shape[1]
    T = np.zeros((n + len(W), n + r))
    T[:n, :n] = np.eye(n)
    T[n:, n:] = L
    return T


def build_relaxation(problem: Problem) -> Relaxation:
    """The cvxpy program of the module docstring (with prototypes: over M, facially reduced): the
    objective's ``relaxation_expression`` (capability ``RELAXATION``) of the Gram."""
    objective = objective_of(problem)
    for capability in (Capability.RELAXATION, Capability.GRAM):
        require(objective, capability, "the n x n program (solve_relaxation)")
    W, _ = problem.prototype_rows()
    n = problem.n
    constraints: dict[str, cp.Constraint] = {}
    if W is None:
        lift = None
        V = G = cp.Variable((n, n), symmetric=True, name="G")
    else:
        lift = prototype_lift(W, n)
        r = lift.shape[1] - n
        WQ = lift[n:, n:]
        V = cp.Variable((n + r, n + r), symmetric=True, name="M")
        cross = V[:n, n:] @ WQ.T                                             # G_HW = A (W Q)^T
        G = cp.bmat([[V[:n, :n], cross], [cross.T, W @ W.T]])
        # I_r on and above the diagonal (below it is the same entries by symmetry)
        upper_r = np.triu_indices(r)
        constraints["prototype_block"] = V[n:, n:][upper_r] == np.eye(r)[upper_r]
    loss = objective.relaxation_expression(problem, G)
    constraints["psd"] = V >> 0
    constraints["unit_diagonal"] = cp.diag(V)[:n] == 1
    # Entries above the diagonal only: G is symmetric, and repeating an equality for both triangles
    # (or the diagonal, already fixed) makes the constraints linearly dependent, which interior-point
    # solvers handle badly.
    mask = _relu_mask(problem, W)
    if mask is not None:
        upper = np.triu_indices(n, 1)
        parts = [V[:n, :n][upper]]
        if W is not None and mask.all():   # W >= 0: also G_HW = A (W Q)^T >= 0 (G_WW >= 0 is given)
            parts.append(cp.vec(cross, order="C"))
        constraints["nonnegative"] = cp.hstack(parts) >= 0
    program = cp.Problem(cp.Minimize(loss), list(constraints.values()))
    return Relaxation(program, V, lift, constraints, W)


def _align_prototypes(X: np.ndarray, W: np.ndarray, n: int) -> np.ndarray:
    """Rotate the factor X (n + p, d) so its prototype rows match W (p, d) (orthogonal Procrustes)."""
    U, _, Vt = np.linalg.svd(X[n:].T @ W)
    return X @ (U @ Vt)


def _dual_candidates(rel: Relaxation, C: np.ndarray, G0: np.ndarray, mask: np.ndarray | None,
                     n: int) -> list[dict]:
    """Multiplier guesses for :func:`solvers.bound.best_multipliers` (solver duals, both signs, and a
    dual-free estimate). With prototypes they live on M (``lift`` T): y on diag(M_HH), Z on the
    fixed block M_AA = I_r, N on the entries of G under the ReLU constraint."""
    cons = rel.constraints
    r = None if rel.lift is None else rel.lift.shape[1] - n
    fixed = None if r is None else (n, np.eye(r))
    cands = []
    y = cons["unit_diagonal"].dual_value
    if y is not None:
        y = np.asarray(y).ravel()
        Z = None
        if r is not None:
            y = np.concatenate([y, np.zeros(r)])
            if cons["prototype_block"].dual_value is not None:
                # a multiplier z of the equation M_ab = c (a < b) is Z_ab = Z_ba = z / 2; on the diagonal z
                z = np.asarray(cons["prototype_block"].dual_value).ravel()
                Z = np.zeros((r, r))
                Z[np.triu_indices(r)] = z
                Z = (Z + Z.T) / 2
        N = None
        if mask is not None and cons["nonnegative"].dual_value is not None:
            dual = np.asarray(cons["nonnegative"].dual_value).ravel()
            N = np.zeros_like(G0)
            upper = np.triu_indices(n, 1)
            N[upper] = dual[:len(upper[0])] / 2
            if r is not None and mask.all():
                N[:n, n:] = dual[len(upper[0]):].reshape(n, -1) / 2
            N = N + N.T
        # the bound's objective f(T M T^T) sees M_AA through G_WW = W Q M_AA (W Q)^T; the solver's
        # does not (G_WW is a constant there): its multiplier of M_AA = I gains (T^T C T)_AA
        C_AA = 0.0
        if r is not None:
            WQ = rel.lift[n:, n:]
            C_AA = WQ.T @ ((C + C.T) / 2)[n:, n:] @ WQ
        for s in (1.0, -1.0):
            cands.append({"y": s * y, "Z": None if Z is None else s * Z + C_AA, "fixed": fixed,
                          "N": None if N is None else s * N, "T": rel.lift})
    if rel.W is None:
        y0, N0 = dual_free_multipliers(C, G0, mask)
        cands.append({"y": y0, "N": N0})
    else:
        cands.append(dual_free_multipliers_lifted(C, rel.variable.value, rel.lift, n, mask))
    return cands


def _polished_multipliers(cand: dict, C: np.ndarray, G0: np.ndarray, n: int) -> dict | None:
    """The multipliers ``cand`` improved by the best diagonal (and prototype-block) shift: maximise
    sum(delta) + tr(Delta) subject to S - Diag(delta, 0) - blockdiag(0, Delta) PSD, S the slack of
    ``cand`` (:func:`solvers.bound.slack`). This is the inner minimisation of the bound solved as its
    own small SDP (strictly feasible on both sides), so a slightly indefinite S costs about the
    solver's accuracy instead of trace * |lambda_min|. The result is again checked by
    :func:`solvers.bound.linearization_bound`, so an inaccurate solve only loosens the bound. None
    if the solver returns nothing."""
    _, S = slack(C, G0, **cand)
    q = len(S)
    r = q - n
    delta = cp.Variable(n)
    shift = cp.diag(cp.hstack([delta, np.zeros(r)])) if r else cp.diag(delta)
    gain = cp.sum(delta)
    if r:
        Delta = cp.Variable((r, r), symmetric=True)
        shift = shift + cp.bmat([[np.zeros((n, n)), np.zeros((n, r))], [np.zeros((r, n)), Delta]])
        gain = gain + cp.trace(Delta)
    program = cp.Problem(cp.Maximize(gain), [S - shift >> 0])
    status, _, _ = cvx_common.solve(program, None, None)
    if status == "error" or delta.value is None:
        return None
    out = dict(cand, y=np.asarray(cand["y"], dtype=float) + np.concatenate([delta.value, np.zeros(r)]))
    if r:
        out["Z"] = cand["Z"] + (Delta.value + Delta.value.T) / 2
    return out


def _feasible_value(rel: Relaxation, problem: Problem, mask: np.ndarray | None) -> float:
    """The objective at an exactly feasible Gram near the solver's (:func:`solvers.bound.feasible_point`
    on G, or on M with prototypes): an upper bound on the optimum; inf where no such point is built
    (ReLU with nonnegative prototypes: the cross block H W^T >= 0 is not restored)."""
    n = problem.n
    V = feasible_point(rel.variable.value, n, nonnegative=mask is not None)
    G = V if rel.lift is None else rel.lift @ V @ rel.lift.T
    if mask is not None and float(G[mask].min()) < 0:
        return float("inf")
    return float(relaxation_loss(G, problem)[0])


def solve_relaxation(problem: Problem, solver: str | None = None,
                     solver_options: dict[str, Any] | None = None, certified: bool = True,
                     gap_tol: float = GAP_TOL) -> Solution:
    """Solve the n x n relaxation (module docstring) for ``problem``, whose objective has the
    ``relaxation`` and ``gram`` capabilities. ``solver``: ``"CLARABEL"`` (default, tolerances 1e-10) or
    ``"SCS"``; ``solver_options`` are passed to cvxpy.

    Returns a :class:`~ufm.solution.Solution` with ``method="convex"``: ``embeddings`` (n, dim) from
    the optimal Gram (top-``dim`` eigenpairs, prototypes rotated onto W; with ReLU a nonnegative factor,
    :func:`solvers.factor.nonnegative_factor`), unit rows, and their ``loss``, ``class_mean_gram``
    and ``certificate``; ``gram`` the example block of the solver's Gram; ``lower_bound`` the
    certificate's, raised to the dual bracket's where higher (:func:`_judge`). ``status``: ``optimal``
    only where the certificate proves it (whatever the solver said), ``optimal_inaccurate`` where it
    does not or there is none, ``error`` where the solver returned no Gram. ``info``: a
    :class:`~ufm.solution.ProgramInfo` (``program="relaxation"``; its docstring lists the fields),
    with the bracket that rests on no solver's word (:func:`_bracket`).
    """
    require_problem(problem, "solve_relaxation")
    check_gap_tol(gap_tol)
    cvx_common.solver_call(solver, solver_options)        # names and options checked before any work
    t0 = time.perf_counter()
    sizing.require_relaxation(problem, solver)
    rel = build_relaxation(problem)
    program, W = rel.program, rel.W
    status, raw, message = cvx_common.solve(program, solver, solver_options)
    name = cvx_common.solver_call(solver, solver_options)[0]
    record: dict[str, Any] = {"program": "relaxation", "solver": name, "solver_status": raw}
    n, k = problem.n, problem.k
    Gfull = rel.gram()
    if Gfull is None:
        return Solution(method="convex", class_mean_gram=np.full((k, k), np.nan), loss=float("nan"),
                        status="error", iterations=cvx_common.iterations(program),
                        seconds=time.perf_counter() - t0, message=message or f"{name} returned no Gram",
                        info=ProgramInfo(**record))
    mask = _relu_mask(problem, W)
    residuals = cvx_common.gram_residuals(Gfull, mask)
    status, message = cvx_common.finish_status(status, message, residuals)
    record.update(residuals=residuals, solver_value=float(program.value))
    vals = np.linalg.eigvalsh(Gfull)
    rank = int((vals > 1e-6 * vals.max()).sum())
    record.update(rank=rank, tight=rank <= problem.dim)
    H, record["factor"] = _embeddings(problem, Gfull, W)
    loss = embeddings_loss(problem, H)
    # H is feasible for the relaxation (unit rows, nonnegative with ReLU), so the relaxation optimum
    # is at most loss(H): the solver's value is capped by it (an interior-point G* a little
    # infeasible can sit above the optimum; the raw value stays in info.solver_value).
    feasible = bool(unit_sphere(problem.relu).violation(H) <= 1e-9)
    record["feasible_upper_bound"] = loss if feasible else None
    if certified:
        record["bracket"] = _bracket(rel, problem, Gfull, mask, status, loss if feasible else float("inf"))
    status, message, cert = _proved(problem, H, status, message, record, certified and feasible, certified, gap_tol)
    log_e = cert.log_excess if cert is not None else embeddings_log_excess(problem, H)
    return Solution(
        # the class means of the embeddings returned, whose loss is reported (the relaxation's own Gram
        # differs where its rank exceeds d: info.rank, info.tight)
        method="convex", class_mean_gram=mean_gram_from_gram(H @ H.T, problem.labels),
        loss=loss, status=status, embeddings=H, gram=Gfull[:n, :n],
        lower_bound=None if cert is None else cert.lower_bound, iterations=cvx_common.iterations(program),
        seconds=time.perf_counter() - t0, message=message, info=ProgramInfo(**record),
        excess=float(np.exp(log_e)), log_excess=log_e, certificate=cert)


def _embeddings(problem: Problem, Gfull: np.ndarray, W: np.ndarray | None) -> tuple[np.ndarray, dict]:
    """``(H (n, dim), how)``: unit rows (nonnegative with ReLU) factored from the Gram (m, m): with ReLU
    and no prototypes a nonnegative factor, else the top-``dim`` eigenpairs (rotated onto W)."""
    n = problem.n
    if problem.relu and W is None:
        X, how = nonnegative_factor(Gfull, problem.dim, seed=problem.seed)
    else:
        X = eigen_factor(Gfull, problem.dim)
        if W is not None:
            X = _align_prototypes(X, W, n)
        how = {"method": "eigen", "factor_residual": float(np.abs(X @ X.T - Gfull).max())}
    return unit_sphere(problem.relu).retract(X[:n]), how


def _proved(problem: Problem, H: np.ndarray, status: str, message: str, record: dict, judge: bool,
            certified: bool, gap_tol: float):
    """``(status, message, certificate or None)``: with ``judge`` the certificate of H decides
    (``record["solver_word"]`` keeps the solver's); without one the solver's ``optimal`` proves
    nothing and becomes ``optimal_inaccurate``."""
    cert = None
    if judge:
        cert = _judge(problem, H, record["bracket"].lower if "bracket" in record else -np.inf, gap_tol)
        record["solver_word"] = status
        status, message = certified_status("converged", message, cert, unproved="optimal_inaccurate")
    if cert is None and status == "optimal":        # the solver's word alone proves nothing
        status = "optimal_inaccurate"
        message = join(message, "no certificate (" + ("certified=False" if not certified else
                                                      "the recovered embeddings are not unit rows")
                       + "), so optimality is not proved")
    return status, message, cert


def _bracket(rel: Relaxation, problem: Problem, Gfull: np.ndarray, mask: np.ndarray | None, status: str,
             embeddings_loss: float) -> DualBracket:
    """The bracket on the relaxation's optimum that rests on no solver's word
    (:class:`~ufm.solution.DualBracket`, the record's ``bracket``): below, the best dual bound at the solver's Gram
    (:func:`solvers.bound.best_multipliers`); above, the smaller of the embeddings' loss (their Gram is
    feasible; inf where they are not) and the objective at a feasible Gram near the solver's."""
    n = problem.n
    value, C = relaxation_loss(Gfull, problem)
    lower, best = best_multipliers(value, C, Gfull, _dual_candidates(rel, C, Gfull, mask, n))
    upper = min(_feasible_value(rel, problem, mask), embeddings_loss)
    polished_any = False
    if status != "optimal" and best is not None and \
            upper - lower > cvx_common.CERTIFIED_GAP_TOL * max(1.0, abs(upper)):
        # a loose bracket: polish the best multipliers with one small SDP before judging
        polished = _polished_multipliers(best, C, Gfull, n)
        if polished is not None:
            lower = max(lower, linearization_bound(value, C, Gfull, **polished))
            polished_any = True
    return DualBracket(lower, upper, upper - lower, polished_any)


def _judge(problem: Problem, H: np.ndarray, bracket_lower: float, gap_tol: float):
    """The certificate of the recovered embeddings H (:func:`solvers.certificate.certify_embeddings`),
    its lower bound raised to the dual bracket's where that is higher (both are valid bounds on the
    loss); the relative gap is on the excess."""
    cert = certify_embeddings(problem, H, gap_tol)
    if not (np.isfinite(bracket_lower) and bracket_lower > cert.lower_bound):
        return cert
    const = cert.lower_bound - cert.excess_lower_bound
    low_e = min(max(bracket_lower - const, 0.0), cert.excess)
    rel = (cert.excess - low_e) / cert.excess if cert.excess > 0 else 0.0
    return replace(cert, lower_bound=const + low_e, excess_lower_bound=low_e, gap=cert.excess - low_e,
                   relative_gap=rel, certified=bool(rel <= gap_tol))


def convex_optimum(problem: Problem, solver: str | None = None) -> Solution:
    """The convex optimum of ``problem``: the reduced k x k program when it is full batch without
    prototypes, else the n x n program."""
    if problem.is_full_batch and problem.prototypes is None:
        return solve_reduced(problem, solver=solver)
    return solve_relaxation(problem, solver=solver)


def certify(solution: Solution, problem: Problem, gap_tol: float = GAP_TOL) -> Solution:
    """A copy of ``solution`` (its embeddings) with the certificate of
    :func:`solvers.certificate.certify_embeddings`, ``lower_bound`` set to its bound and the status it
    proves (:func:`ufm.solution.certified_status`)."""
    cert = certify_embeddings(problem, solution.embeddings, gap_tol)
    status, message = certified_status(solution.status, solution.message, cert)
    return replace(solution, certificate=cert, lower_bound=cert.lower_bound, status=status, message=message,
                   excess=cert.excess, log_excess=cert.log_excess)
