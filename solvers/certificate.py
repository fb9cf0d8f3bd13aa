"""A certificate behind every solution: a lower bound on the optimal excess E* by weak duality, from
the solution alone (docs/theory.md, "Certificates"). Nothing here trusts a solver's word.

E is convex in the Gram G (it differs from the loss by a constant). For a point G0 = X X^T and
C = grad_G log E(G0) (so grad E = E(G0) C), convexity gives, for every feasible G,

    E(G) >= E(G0) + E(G0) <C, G - G0>.

The feasible set is {G PSD, G_ii = 1 on the n embedding rows, G_WW = W W^T on the p prototype rows,
[ReLU: G_ij >= 0 on a mask]}. With the lift G = T M T^T (T = blockdiag(I_n, L), L L^T = W W^T,
M = [[G_HH, A], [A^T, I_r]] PSD, solvers/convex.py) and multipliers y (n,), Z (r, r) symmetric and
N >= 0 on the active ReLU entries, the slack S = T^T (C - N) T - Diag(y, 0) - blockdiag(0, Z) gives
<C, G> >= sum(y) + tr(Z) + q min(0, lambda_min(S)) (q = n + r = tr M), hence

    E* >= E(G0) (1 - rgap),   rgap = tr(X_l^T S X_l) + <N, G0> + q max(0, -lambda_min(S))

with X_l = [H; Q^T] the lifted factor (W = L Q^T). Everything is in units of E(G0), so the relative
gap keeps full precision however small E is. The multipliers come from complementarity S X_l = 0 in
least squares: y_i = <B_i, X_i> / ||X_i||^2, Z = sym(B_r Q) with B = T^T (C - N) T X_l; with ReLU
N = max(C, 0) on the entries with G0_ij <= ``ACTIVE_TOL``.

C is never formed as a product of two n x n matrices: each batch contributes a dense (w, w) block
computed from the rows of H (w the batch width), kept as a dense matrix (one batch) or a sparse one
(many). lambda_min(S) is bounded densely up to ``DENSE_MAX`` rows (from ``CHOLESKY_MIN_ROWS`` on first by
one Cholesky factorisation of S + eta I, :func:`_cholesky_lower_bound`; else ``eigvalsh``), beyond by Lanczos
(``scipy.sparse.linalg.eigsh``) on the matrix-free operator, lowered by its residual norm. A
rounding margin is subtracted: ``10 sqrt(q) eps ||S||_F`` from the dense eigenvalue, ``10 q eps
|lambda_max|`` from the Lanczos bound, and the Cholesky path's own backward-error bound
(:func:`_cholesky_lower_bound`). A full batch without prototypes keeps its dense block and the dense
path at any n. (Lanczos from a random start finds the
smallest eigenvalue with probability one; its residual bounds the distance to an eigenvalue.)

Where the rows of a class are numerically equal and the bound at H does not already prove it, the
bound is also taken at the collapsed point (rows replaced by their normalised class mean, exactly
equal), where the within-class part of C is exactly 0; the best valid bound is kept. Any G0 gives a
valid bound. For a full batch without prototypes that collapsed point is tried first, in its k x k
form (:func:`_collapsed_rgap`: the same bound from k x k blocks, no n x n matrix; ``method``
"collapsed").
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse
import scipy.sparse.linalg

from solvers.bound import active_multiplier, bound_from_slack, dual_free_multipliers, slack
from solvers.defaults import GAP_TOL
from ufm.solution import Certificate  # noqa: F401  (re-exported: solvers.certificate.Certificate)
from solvers.factor import pivoted_cholesky
from solvers.sizing import CACHE_BYTES, certificate_bytes
from ufm.constraint_sets import EUCLIDEAN, SPHERE
from ufm.batching import pack
from ufm.errors import ProblemError
from ufm.objectives import Capability, Evaluation, excess_constant, has, objective_of, require
from ufm.problem import Problem, require_problem
from ufm.programs import compile_seconds

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

#: ReLU: an off-diagonal Gram entry at most this is treated as active (its multiplier may be > 0).
ACTIVE_TOL = 1e-6
#: Up to this many rows lambda_min is computed densely, beyond by Lanczos.
DENSE_MAX = 1500
#: Lanczos: relative tolerance and restarts (the bound only needs lambda_min to a few digits: it is
#: lowered by the residual norm, and a positive lambda_min costs nothing).
LANCZOS_TOL = 1e-4
LANCZOS_MAXITER = 300
#: The dense bound's Cholesky test may spend this share of the tolerance (relative gap) on its shift:
#: a point it cannot prove within that goes on to the smallest eigenvalue (:func:`_cholesky_lower_bound`).
CHOLESKY_SHARE = 1e-2
#: ... which is this relative gap at the default tolerance.
CHOLESKY_SHIFT_GAP = CHOLESKY_SHARE * GAP_TOL
#: Below this many rows the smallest eigenvalue costs a few milliseconds and gives the tightest bound:
#: the Cholesky test is used from here up.
CHOLESKY_MIN_ROWS = 256
#: Rows of a class within this distance of their mean are also tried collapsed.
SNAP_TOL = 1e-3


# ---------------------------------------------------------------- the dual bound (any operator)
def relative_dual_gap(apply_A: Callable[[np.ndarray], np.ndarray], X: np.ndarray, n_free: int,
                      n_g0: float = 0.0, dense_A: np.ndarray | None = None,
                      seed: int = 0, shift_gap: float = CHOLESKY_SHIFT_GAP) -> tuple[float, float, str]:
    """``(rgap, lambda_min, method)`` of the module docstring for a symmetric operator A (q, q)
    (``apply_A`` maps (q, c) to (q, c); ``dense_A`` the same matrix, exactly symmetric, where it is
    cheap to have),
    the factor X (q, d) (first ``n_free`` rows with unit diagonal, the rest orthonormal: the fixed
    block M_rr = I) and ``n_g0`` = <N, G0>. Densely, lambda_min(S) is first bounded by a Cholesky
    factorisation that may spend up to ``shift_gap`` of relative gap (:func:`_cholesky_lower_bound`),
    and computed only where that fails."""
    q = X.shape[0]
    B = apply_A(X)
    y = np.zeros(q)
    norms = np.sum(X[:n_free] ** 2, axis=1)
    y[:n_free] = np.sum(B[:n_free] * X[:n_free], axis=1) / np.maximum(norms, 1e-300)
    Xr = X[n_free:]
    Z = None
    if q > n_free:
        Z = B[n_free:] @ Xr.T
        Z = (Z + Z.T) / 2

    def slack(V: np.ndarray) -> np.ndarray:
        out = apply_A(V) - y[:, None] * V
        if Z is not None:
            out[n_free:] -= Z @ V[n_free:]
        return out

    SX = B - y[:, None] * X
    if Z is not None:
        SX[n_free:] -= Z @ Xr
    trace_term = float(np.sum(SX * X))
    spent = trace_term + float(n_g0)
    if dense_A is not None or q <= DENSE_MAX:
        if dense_A is None:
            S = slack(np.eye(q))
            S = (S + S.T) / 2
        else:       # symmetric as given: one copy
            S = dense_A.copy()
            S[np.diag_indices(q)] -= y
            if Z is not None:
                S[n_free:, n_free:] -= Z
        lam_low, method = _dense_lower_bound(S, spent / q, shift_gap / q)
    else:
        lam, margin = _lanczos_lower_bound(slack, X, seed)
        lam_low, method = lam - margin, "lanczos"
        if not np.isfinite(lam):
            lam_low, method = np.nan, "failed (Lanczos: non-finite)"
    if not np.isfinite(lam_low):
        return np.nan, np.nan, method
    return spent + q * max(-lam_low, 0.0), lam_low, method


def _dense_lower_bound(S: np.ndarray, spent: float, widest: float) -> tuple[float, str]:
    """``(lower bound on lambda_min(S), method)`` for a dense symmetric S (q, q): first one Cholesky
    factorisation (~4x cheaper than the smallest eigenvalue at q = 1000; :func:`_cholesky_lower_bound`,
    from ``CHOLESKY_MIN_ROWS`` rows), which proves S >= -eta I where the point is certified; the
    smallest eigenvalue less a rounding margin 10 sqrt(q) eps ||S||_F only where it fails. NaN and a
    ``failed (...)`` method where S is not finite or the eigensolver fails."""
    q = len(S)
    if not np.isfinite(S).all():
        return np.nan, "failed (non-finite gradient of log E)"
    lam_low = _cholesky_lower_bound(S, spent, widest) if q >= CHOLESKY_MIN_ROWS else None
    if lam_low is not None:
        return lam_low, "cholesky"
    try:        # the smallest eigenvalue alone (LAPACK's MRRR, dsyevr): ~1.5x faster than all of them
        lam = float(scipy.linalg.eigh(S, eigvals_only=True, subset_by_index=[0, 0], driver="evr")[0])
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return np.nan, "failed (eigenvalues did not converge)"
    return lam - 10 * np.sqrt(q) * np.finfo(float).eps * float(np.linalg.norm(S)), "dense"


def _cholesky_lower_bound(S: np.ndarray, spent: float, widest: float) -> float | None:
    """A proved lower bound on lambda_min(S) for a symmetric S (q, q) by one LAPACK Cholesky
    factorisation (``dpotrf``) of A = S + eta I, or None where it does not prove
    lambda_min(S) >= -2 ``widest`` (the caller then computes the eigenvalue).

    If the factorisation of A completes in floating point with finite positive pivots, then
    A + dA = R^T R is PSD with |dA_ij| <= gamma |r_i| |r_j| (Higham, Accuracy and Stability, Thm 10.3;
    gamma = (q + 2) u / (1 - (q + 2) u), u the unit roundoff: one rounding more than the theorem's
    q + 1 for a BLAS that scales a column by a reciprocal) and ||r_j||^2 = a_jj + dA_jj, so
    ||dA||_2 <= ||dA||_F <= gamma / (1 - gamma) tr(A) (Rump's bound); forming the diagonal of A rounds
    by at most u max|a_jj|. Hence lambda_min(S) >= -eta - gamma / (1 - gamma) tr(A) - u max|a_jj|,
    whose magnitude is rounded up by a factor (1 + 2 (q + 2) u).
    The shifts: ``widest`` first (where it fails, a smaller shift does not succeed in practice: None
    at the cost of one factorisation), then, where smaller, the tight eta = max(``spent``, 4 gamma
    |tr(S)|) (``spent`` = the gap already spent by the trace term / q, so the bound at most doubles
    it); the tight bound where it succeeds, else the widest. Either costs at most ``widest`` plus the
    rounding margin per row; where that margin exceeds ``widest`` the result is None."""
    q = len(S)
    u = np.finfo(float).eps / 2
    gamma = (q + 2) * u / (1 - (q + 2) * u)
    tight = min(max(spent, 4 * gamma * abs(float(np.trace(S))), np.finfo(float).tiny), widest)

    def proved(eta: float) -> float | None:
        A = S.copy(order="F")               # LAPACK's order: factorised in place, no second copy
        A[np.diag_indices(q)] += eta
        R, info = scipy.linalg.lapack.dpotrf(A, lower=1, clean=0, overwrite_a=1)
        pivots = np.diagonal(R)
        if info != 0 or not (np.isfinite(pivots).all() and (pivots > 0).all()):
            return None                     # a NaN pivot (overflow) passes LAPACK's test: refused here
        diag = np.diag(S) + eta
        bound = eta + gamma / (1 - gamma) * float(np.sum(diag)) + u * float(np.max(np.abs(diag)))
        return -bound * (1 + 2 * (q + 2) * u) if bound <= 2 * widest else None

    best = proved(widest)
    if best is None or tight >= widest:
        return best
    return proved(tight) or best


def _lanczos_lower_bound(slack: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                         seed: int) -> tuple[float, float]:
    """``(lower bound on lambda_min(S), rounding margin)`` for a symmetric S (q, q) given by ``slack``,
    whose near-null space is span(X) (complementarity S X ~ 0).

    With U an orthonormal basis of span(X) and P = I - U U^T, every unit v = a u + b w (u in span U,
    w orthogonal to it) has v^T S v >= lambda_min([[l_U, rho], [rho, l_P]]) with l_U = lambda_min(U^T S U),
    rho = ||P S U||_2 and l_P = lambda_min of S on the complement. l_P comes from Lanczos on
    P S P + c U U^T (c above l_P, so span(X) is out of the way), lowered by the residual norm; away from
    the cluster at 0 Lanczos converges in a few dozen steps."""
    q = X.shape[0]
    U, sing, _ = np.linalg.svd(X, full_matrices=False)
    U = U[:, sing > 1e-12 * sing[0]]
    SU = slack(U)
    l_u = float(np.linalg.eigvalsh((U.T @ SU + SU.T @ U) / 2)[0])
    PSU = SU - U @ (U.T @ SU)
    rho = float(np.linalg.norm(PSU, 2)) if PSU.size else 0.0

    def project(V):
        return V - U @ (U.T @ V)

    v0 = project(np.random.default_rng(seed).standard_normal((q, 1)))[:, 0]
    plain = scipy.sparse.linalg.LinearOperator((q, q), matvec=lambda v: slack(v.reshape(q, 1)).ravel(),
                                               matmat=slack, dtype=float)
    top = abs(float(scipy.sparse.linalg.eigsh(plain, k=1, which="LM", tol=1e-3, v0=v0, maxiter=50 * q,
                                              return_eigenvectors=False)[0])) * 1.01 + 1e-300
    shift = 2 * top

    def deflated(V):
        return project(slack(project(V))) + shift * (U @ (U.T @ V))

    op = scipy.sparse.linalg.LinearOperator((q, q), matvec=lambda v: deflated(v.reshape(q, 1)).ravel(),
                                            matmat=deflated, dtype=float)
    lam = -np.inf
    try:
        vals, vecs = scipy.sparse.linalg.eigsh(op, k=2, which="SA", tol=LANCZOS_TOL, v0=v0,
                                               maxiter=LANCZOS_MAXITER, ncv=min(q, 64))
        resid = np.linalg.norm(deflated(vecs) - vecs * vals[None, :], axis=0)
        l_p = float(np.min(vals - resid))
        lam = float(np.linalg.eigvalsh(np.array([[l_u, rho], [rho, l_p]]))[0])
    except scipy.sparse.linalg.ArpackNoConvergence:
        pass
    # away from a stationary point span(X) is no near-null space and the 2 x 2 coupling is loose:
    # Lanczos on S itself (same residual rule), the better of the two
    try:
        vals, vecs = scipy.sparse.linalg.eigsh(plain, k=2, which="SA", tol=LANCZOS_TOL, v0=v0,
                                               maxiter=LANCZOS_MAXITER, ncv=min(q, 64))
        resid = np.linalg.norm(slack(vecs) - vecs * vals[None, :], axis=0)
        lam = max(lam, float(np.min(vals - resid)))
    except scipy.sparse.linalg.ArpackNoConvergence:
        pass
    if lam == -np.inf:
        lam = -top
    return lam, 10 * q * np.finfo(float).eps * top


# ---------------------------------------------------------------- SCL over a batching
class _BatchRows(NamedTuple):
    """The padded rows of every batch (the objective's ``problem_batches``): Z, R (nb, w, d), labels,
    member, is_anchor (nb, w); ``index`` (nb, w) the row of [H; W] of each (prototypes n..n+p-1)."""

    Z: np.ndarray
    R: np.ndarray
    labels: np.ndarray
    member: np.ndarray
    is_anchor: np.ndarray
    index: np.ndarray


def _batch_rows(problem: Problem, H: np.ndarray, packed, W) -> _BatchRows:
    s = objective_of(problem).problem_batches(problem, packed)
    rows = H if W is None else np.vstack([H, W])
    index, rep = np.asarray(s.index), np.asarray(s.rep)
    return _BatchRows(rows[index], rows[rep[index]], np.asarray(s.labels)[index], np.asarray(s.member),
                      np.asarray(s.is_anchor), index)


def _chunk_rows(width: int) -> int:
    """Anchors per row block, so that a block's (c, w) temporaries stay near 64 MB."""
    return max(1, min(width, (8 * 2 ** 20) // max(width, 1)))


def _bucket(size: int, low: int) -> int:
    """The next power of two >= size (at least ``low``): padded shapes share compiled code."""
    return max(low, 1 << (max(size, 1) - 1).bit_length())


def _log_excess_and_gradient(problem: Problem, rows: _BatchRows) -> tuple[float, np.ndarray]:
    """``(log E, C (nb, w, w))`` with C_b = grad_G log E on batch b (not symmetrised): the objective's
    ``anchor_gradient_rows`` (SCL: its one formula differentiated by JAX) and ``weight_gradient_rows``
    (the batches' log E and gradients weighted into the whole's). Batches are padded to
    a power-of-two width and dimension (rows outside the batch, zero coordinates) and evaluated in
    groups of a fixed number, so problems of many sizes share a few compiled shapes."""
    nb, w = rows.labels.shape
    d = rows.Z.shape[2]
    wp, dp = _bucket(w, 32), _bucket(d, 8)
    group = min(_bucket(nb, 1), max(1, 2 ** 20 // (wp * wp)))
    padded = -(-nb // group) * group
    Z, R = np.zeros((padded, wp, dp)), np.zeros((padded, wp, dp))
    Z[:nb, :w, :d], R[:nb, :w, :d] = rows.Z, rows.R
    labels = np.zeros((padded, wp), dtype=np.int32)
    member, anchor = np.zeros((padded, wp), dtype=bool), np.zeros((padded, wp), dtype=bool)
    labels[:nb, :w], member[:nb, :w], anchor[:nb, :w] = rows.labels, rows.member, rows.is_anchor
    log_rows, C = np.empty((nb, w)), np.empty((nb, w, w))
    tau = np.float64(problem.tau)
    objective = objective_of(problem)
    for start in range(0, nb, group):
        part = slice(start, start + group)
        log_e, D = objective.anchor_gradient_rows(Z[part], R[part], labels[part], member[part], anchor[part],
                                                  tau,
                                        chunk_size=_chunk_rows(wp))
        take = min(group, nb - start)
        log_rows[start:start + take] = np.asarray(log_e)[:take, :w]
        C[start:start + take] = np.asarray(D)[:take, :w, :w]
    return objective.weight_gradient_rows(log_rows, C), C


def _relu_multipliers(rows: _BatchRows, blocks: np.ndarray, relu_rows: int) -> tuple[np.ndarray, float]:
    """Per batch b: A_b = sym(C_b) - N_b (w, w) (in place of ``blocks``), and sum_b <N_b, G0_b>.
    ``relu_rows``: 0 without ReLU; else the number of leading rows of a batch on which G >= 0 is a
    constraint (N = max(sym C, 0) on its active entries, G0_ij <= ``ACTIVE_TOL``)."""
    nb, w = rows.labels.shape
    ng0 = 0.0
    for b in range(nb):
        A = (blocks[b] + blocks[b].T) / 2
        if relu_rows:
            ok = (np.arange(w) < relu_rows) & rows.member[b]
            gram = rows.Z[b] @ rows.Z[b].T
            N = active_multiplier(A, gram, ok[:, None] & ok[None, :], ACTIVE_TOL)
            ng0 += float(np.sum(N * gram))
            A -= N
        blocks[b] = A
    return blocks, ng0


def _relu_rows(problem: Problem, packed, W: np.ndarray | None) -> int:
    """The leading rows of a batch on which G >= 0 is a constraint (:func:`_relu_multipliers`): 0
    without ReLU; else the batch width, plus the prototype rows where they are nonnegative."""
    if not problem.relu:
        return 0
    return packed.index.shape[1] + (len(W) if W is not None and (W >= 0).all() else 0)


def certificate_fits(problem: Problem) -> bool:
    """Whether the certificate's gradient blocks fit ``CACHE_BYTES`` (solvers skip it otherwise, and
    say so; :func:`certify_embeddings` refuses)."""
    return certificate_bytes(problem) <= CACHE_BYTES


def collapsed_rows(problem: Problem, H: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(V (q, d), tie (n,))`` with every class whose rows lie within ``SNAP_TOL`` of their
    normalised mean tied to that mean (one row of V; with ReLU clipped at 0 first), the other rows
    kept as they are: H' = V[tie] has exactly equal rows within each tied class. None if no class
    qualifies."""
    labels = problem.labels
    rows: list[np.ndarray] = []
    tie = np.zeros(problem.n, dtype=np.int32)
    any_tied = False
    for c in range(problem.k):
        members = np.flatnonzero(labels == c)
        mean = H[members].mean(axis=0)
        if problem.relu:
            mean = np.maximum(mean, 0.0)
        norm = np.linalg.norm(mean)
        if norm > 0 and np.max(np.linalg.norm(H[members] - mean / norm, axis=1)) <= SNAP_TOL:
            tie[members] = len(rows)
            rows.append(mean / norm)
            any_tied = True
        else:
            tie[members] = len(rows) + np.arange(len(members))
            rows.extend(H[members])
    return (np.array(rows), tie) if any_tied else None


def _snapped(problem: Problem, H: np.ndarray) -> np.ndarray | None:
    """H with its numerically collapsed classes made exactly equal (:func:`collapsed_rows`)."""
    tied = collapsed_rows(problem, H)
    return None if tied is None else tied[0][tied[1]]


def collapsed_form_applies(problem: Problem) -> bool:
    """Whether the certificate has its k x k form at a collapsed point (:func:`_collapsed_rgap`): a
    full batch without prototypes, for an objective with the batch-block certificate (``BATCHED``)
    and the ``REDUCED`` capability (its ``collapsed_gram_gradient``)."""
    objective = objective_of(problem)
    return (problem.is_full_batch and problem.prototypes is None
            and has(objective, Capability.BATCHED) and has(objective, Capability.REDUCED))


def exactly_collapsed(problem: Problem, H: np.ndarray) -> np.ndarray | None:
    """V (k, d), the row of each class, if every row of H (n, d) equals its class's first row
    exactly, else None."""
    labels = problem.labels
    V = H[np.unique(labels, return_index=True)[1]]
    return V if np.array_equal(V[labels], H) else None


class CollapsedSlack(NamedTuple):
    """The certificate's slack at an exactly collapsed G0 in k x k form (:func:`collapsed_slack`):
    S = Y A Y^T + Diag(t[labels]) (n, n), Y the class indicator; ``A`` (k, k) = sym(B) - N, ``t`` (k,),
    ``n_g0`` = <N, G0>, ``trace`` = tr(X^T S X) (0 but for rounding), ``log_excess`` = log E(G0)."""

    log_excess: float
    A: np.ndarray
    t: np.ndarray
    n_g0: float
    trace: float


def collapsed_slack(problem: Problem, V: np.ndarray) -> CollapsedSlack:
    """The slack of the module docstring at the exactly collapsed G0 = X X^T, X = V[labels] (V (k, d)
    one unit row per class; a full batch without prototypes, :func:`collapsed_form_applies`), on k x k
    blocks: exactly the n x n slack.

    There C = grad_G log E is constant on each class block off the diagonal: C_ij = B[c, c'] for i
    of class c, j != i of class c' (the objective's ``collapsed_gram_gradient``), C_ii = 0. With
    A = sym(B) - N (ReLU: N = max(sym B, 0) where M_cc' <= ``ACTIVE_TOL``), every row of a class gets
    the same multiplier y_c = (sum_c' n_c' A_cc' M_cc' - A_cc M_cc) / M_cc (complementarity in least
    squares), so S = Y A Y^T + Diag(t[labels]) with t_c = -y_c - A_cc."""
    k = problem.k
    counts = np.asarray(problem.counts, dtype=np.float64)
    M = V @ V.T
    log_e, B = objective_of(problem).collapsed_gram_gradient(M, problem.counts, problem.tau)
    A = (B + B.T) / 2
    n_g0 = 0.0
    if problem.relu:
        N = active_multiplier(A, M, np.ones((k, k), dtype=bool), ACTIVE_TOL)
        n_g0 = float(counts @ (N * M) @ counts)
        A = A - N
    within, norms = np.diag(A).copy(), np.diag(M).copy()
    reads = (A * M) @ counts - within * norms          # <(A X)_i, x_i> for a row of each class
    y = reads / norms
    t = -y - within
    trace = float(counts @ (reads - y * norms))
    return CollapsedSlack(float(log_e), A, t, n_g0, trace)


def _collapsed_rgap(problem: Problem, V: np.ndarray) -> tuple[float, float, float]:
    """``(log E(G0), rgap, lower bound on lambda_min(S))`` of the module docstring from
    :func:`collapsed_slack`: the eigenvalues of S = Y A Y^T + Diag(t[labels]) are t_c on the vectors
    that sum to 0 within class c (n_c - 1 of them) and those of D^1/2 A D^1/2 + Diag(t)
    (D = Diag(n_c)) on span Y, so rgap = tr(X^T S X) + <N, G0> + n max(0, -lambda_min(S)), with
    lambda_min lowered by the dense path's margin 10 sqrt(n) eps ||S||_F (||S||_F from the blocks).
    NaN where the gradient is not finite."""
    n = problem.n
    counts = np.asarray(problem.counts, dtype=np.float64)
    sl = collapsed_slack(problem, V)
    A, t = sl.A, sl.t
    if not (np.isfinite(sl.log_excess) and np.isfinite(A).all() and np.isfinite(t).all()):
        return sl.log_excess, np.nan, np.nan
    root = np.sqrt(counts)
    K = root[:, None] * A * root[None, :] + np.diag(t)
    lam = min(float(np.linalg.eigvalsh(K)[0]), float(t.min()))
    within = np.diag(A)
    frobenius = np.sqrt(float(counts @ (A * A) @ counts - counts @ (within * within) + counts @ (within + t) ** 2))
    lam_low = lam - 10 * np.sqrt(n) * np.finfo(float).eps * frobenius
    return sl.log_excess, sl.trace + sl.n_g0 + n * max(-lam_low, 0.0), lam_low


def _collapsed_point(problem: Problem, H: np.ndarray) -> tuple[float, float, float, bool] | None:
    """``(log E(G0), rgap at G0, lambda bound, exact)`` from the k x k form (:func:`_collapsed_rgap`)
    at G0 = H itself where H is exactly collapsed (``exact``: then it is the n x n bound at H, nothing
    more to try), else at H's collapsed point (every class within ``SNAP_TOL`` of its mean); None
    where the form does not apply or its numbers are not finite."""
    if not collapsed_form_applies(problem):
        return None
    V = exactly_collapsed(problem, H)
    exact = V is not None
    if not exact:
        tied = collapsed_rows(problem, H)
        if tied is None or len(tied[0]) != problem.k:
            return None
        V = tied[0]
    with np.errstate(invalid="ignore", over="ignore"):
        log_e0, rgap0, lam = _collapsed_rgap(problem, V)
    if not (np.isfinite(log_e0) and np.isfinite(rgap0)):
        return None
    return log_e0, rgap0, lam, exact


def _relative_gap_at(log_e: float, log_e0: float, rgap0: float) -> float:
    """The relative gap of a point with log E = ``log_e`` from the bound E* >= E(G0) (1 - rgap0)
    taken at G0 (log E(G0) = ``log_e0``): 1 - e^{log_e0 - log_e} (1 - rgap0)."""
    return 1.0 - np.exp(log_e0 - log_e) * (1.0 - rgap0)


def _scl_rgap(problem: Problem, H: np.ndarray, rows: _BatchRows, blocks: np.ndarray, packed, W,
              lift, shift_gap: float = CHOLESKY_SHIFT_GAP) -> tuple[float, float, str]:
    """The relative dual gap at G0 = Gram of H (n, d) (plus prototypes; ``rows`` its batch rows and
    ``blocks`` grad_G log E on each batch, :func:`_log_excess_and_gradient`), in units of E(H)."""
    n = problem.n
    blocks, ng0 = _relu_multipliers(rows, blocks, _relu_rows(problem, packed, W))
    p = 0 if W is None else len(W)
    m = n + p
    gidx = rows.index
    gvalid = rows.member
    if len(blocks) == 1 and gvalid.all() and np.array_equal(np.sort(gidx[0]), np.arange(m)):
        order = np.argsort(gidx[0])
        A = blocks[0] if np.array_equal(order, np.arange(m)) else blocks[0][np.ix_(order, order)]
        apply_full = lambda V: A @ V                                   # noqa: E731
        dense_full = A
    else:
        A = _scatter(blocks, rows, m)
        apply_full = lambda V: A @ V                                   # noqa: E731
        dense_full = None
    if lift is None:
        X = H
        apply_A = apply_full
        dense = dense_full if dense_full is not None or n > DENSE_MAX else None
        if dense is None and n <= DENSE_MAX:
            dense = A.toarray()
            dense = (dense + dense.T) / 2       # the sparse sum's order can leave ~1e-19 of asymmetry
    else:
        L, Q = lift
        X = np.vstack([H, Q.T])

        def apply_A(V):
            TV = np.vstack([V[:n], L @ V[n:]])
            out = apply_full(TV)
            return np.vstack([out[:n], L.T @ out[n:]])
        dense = None
    return relative_dual_gap(apply_A, X, n, ng0, dense, seed=problem.seed, shift_gap=shift_gap)


class Slack(NamedTuple):
    """The certificate's slack at G0 = H H^T on the n embedding rows, in units of E(H) (module
    docstring): ``apply`` maps V (n, c) to S_HH V with S = sym(C) - N - Diag(y) (C = grad_G log E,
    N the ReLU multipliers on the active entries, y from complementarity), ``dense`` the same (n, n)
    where it is cheap (n <= ``DENSE_MAX``), else None. ``apply_lift`` maps V to (sym(C) - Diag(y0)) V,
    y0 the multipliers without N: for a direction u (n,), u^T (sym(C) - Diag(y0)) u is the derivative
    of log E along the lift h_i -> (h_i, t u_i) / ||(h_i, t u_i)|| with respect to s = t^2
    (docs/theory.md, "Escaping a stall"). ``log_excess``: log E(H)."""

    log_excess: float
    apply: Callable[[np.ndarray], np.ndarray]
    dense: np.ndarray | None
    apply_lift: Callable[[np.ndarray], np.ndarray]


def _scatter(blocks: np.ndarray, rows: _BatchRows, m: int) -> scipy.sparse.csr_matrix:
    """The (m, m) sparse sum of the batch blocks (nb, w, w) at their rows of [H; W]."""
    gidx, keep1 = rows.index, rows.member
    row_of = np.repeat(gidx[:, :, None], gidx.shape[1], axis=2)
    col_of = np.repeat(gidx[:, None, :], gidx.shape[1], axis=1)
    keep = keep1[:, :, None] & keep1[:, None, :]
    return scipy.sparse.csr_matrix((blocks[keep], (row_of[keep], col_of[keep])), shape=(m, m))


def _slack_of(A, stacked: np.ndarray, H: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """``(V -> (A_HH - Diag(y)) V, y)`` for A (m, m) over [H; W] = ``stacked``: y_i = <(A [H; W])_i, h_i>
    (complementarity in least squares for unit rows h_i)."""
    n = len(H)
    y = np.sum(np.asarray(A @ stacked)[:n] * H, axis=1)
    A_HH = A[:n, :n]
    return (lambda V: np.asarray(A_HH @ V) - y[:, None] * V), y


def certificate_slack(problem: Problem, H: np.ndarray) -> Slack:
    """The certificate's slack at H (n, d) (:class:`Slack`), for an objective with the ``BATCHED``
    or the ``GRAM`` capability: what the staircase (:mod:`solvers.staircase`) escapes along."""
    require_problem(problem, "certificate_slack")
    objective = objective_of(problem)
    if not has(objective, Capability.BATCHED):
        require(objective, Capability.GRAM, "certificate_slack")
    H = feasible_embeddings(problem, H)
    W, _ = problem.prototype_rows()
    stacked = H if W is None else np.vstack([H, W])
    m, n = len(stacked), problem.n
    if has(objective, Capability.BATCHED):
        packed = pack(problem.batches(0))
        rows = _batch_rows(problem, H, packed, W)
        log_e, blocks = _log_excess_and_gradient(problem, rows)
        plain = (blocks + np.transpose(blocks, (0, 2, 1))) / 2
        with_n, _ = _relu_multipliers(rows, blocks, _relu_rows(problem, packed, W))
        A, A0 = _scatter(with_n, rows, m), _scatter(plain, rows, m)
    else:
        G0 = stacked @ stacked.T
        value, C = objective.gram_value_and_grad(problem, G0)
        excess = float(value) - excess_constant(problem)
        if not excess > 0:
            raise ProblemError("the slack is in units of the excess, which is 0 here: the point is optimal")
        log_e = float(np.log(excess))
        A0 = (np.asarray(C) + np.asarray(C).T) / (2 * excess)
        N = active_multiplier(A0, G0, np.ones((m, m), dtype=bool) if problem.relu else None, ACTIVE_TOL)
        A = A0 if N is None else A0 - N
    apply, y = _slack_of(A, stacked, H)
    apply_lift, _ = _slack_of(A0, stacked, H)
    dense = None
    if n <= DENSE_MAX:
        A_HH = A[:n, :n]
        dense = (A_HH.toarray() if scipy.sparse.issparse(A_HH) else np.array(A_HH)) - np.diag(y)
        dense = (dense + dense.T) / 2
    return Slack(float(log_e), apply, dense, apply_lift)


def _prototype_lift(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L (p, r), Q (d, r)): L L^T = W W^T (pivoted Cholesky, as the convex program), W Q = L, Q
    orthonormal (Q = pinv(W) L)."""
    L = pivoted_cholesky(W @ W.T)
    Q = np.linalg.pinv(W) @ L
    return L, Q


#: How far a row's norm may be from 1 (and, with ReLU, an entry below 0) for H to count as feasible.
FEASIBLE_TOL = 1e-9


def feasible_embeddings(problem: Problem, H: ArrayLike) -> np.ndarray:
    """H as a float64 (n, d) array, its rows normalised exactly, if it is feasible for ``problem`` (unit
    rows within :data:`FEASIBLE_TOL`, nonnegative with ReLU), else :class:`ProblemError`: the dual bound
    holds for the optimum over feasible points only, so an infeasible H would give a bound that is not
    one."""
    if not isinstance(problem, Problem):
        raise ProblemError(f"the certificate needs a ufm.Problem (got {type(problem).__name__})")
    try:
        array = np.asarray(H)
    except (TypeError, ValueError):
        array = None
    if array is None or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ProblemError("H must be a real (n, d) array of embeddings")
    array = array.astype(np.float64)
    if array.shape != (problem.n, problem.dim):
        raise ProblemError(f"H must have shape (n, d) = ({problem.n}, {problem.dim}) (got {array.shape})")
    if not np.isfinite(array).all():
        raise ProblemError("H holds NaN or infinite entries")
    worst = float(SPHERE.violation(array))
    if worst > FEASIBLE_TOL:
        raise ProblemError(f"H's rows must have unit norm (the farthest is off by {worst:.3g}); normalise them")
    if problem.relu and array.min() < -FEASIBLE_TOL:
        raise ProblemError(f"with ReLU H must be nonnegative (its smallest entry is {array.min():.3g})")
    # the rows normalised exactly: the loss is that of the exactly normalised rows (its formula's norm
    # term), so the gradient, the multipliers and the trace term must be taken there too; at rows off
    # unit by 1e-9 they were not, and at tau = 1e-3 that moved the bound by ~2 delta / tau (2e-6 of E,
    # above the optimum: a false certificate)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def certify_embeddings(problem: Problem, H: np.ndarray, tolerance: float = GAP_TOL) -> Certificate:
    """The certificate of embeddings H (n, d) for ``problem`` (its batching at epoch 0): a lower
    bound on the optimal loss that holds whatever produced H. By the objective's capability
    (``ufm.objectives.base.Capability``): ``BATCHED`` the batch-block certificate of the module
    docstring, ``GRAM`` the same dual bound on the dense n x n gradient (:func:`gram_certificate`),
    ``OWN_BOUND`` the objective's own proved bound; otherwise one line saying it cannot be certified."""
    require_problem(problem, "certify_embeddings")
    t0 = _started()
    objective = objective_of(problem)
    if not any(has(objective, c) for c in (Capability.BATCHED, Capability.GRAM, Capability.OWN_BOUND)):
        require(objective, Capability.GRAM, "certify_embeddings")
    own_set = getattr(objective, "constraint_set", None)
    if not has(objective, Capability.BATCHED) and own_set is not None and own_set(problem.shape) is EUCLIDEAN:
        raise ProblemError(f"certify_embeddings certifies unit-row embeddings; a point of {problem.objective.describe()} "
                           "is more than its embeddings: certify the Solution of gd.solve instead")
    H = feasible_embeddings(problem, H)
    if not (isinstance(tolerance, (int, float, np.floating)) and 0 < tolerance < 1):
        raise ProblemError(f"the certificate's tolerance must lie in (0, 1) (got {tolerance!r})")
    if has(objective, Capability.BATCHED):
        return _batched_certificate(problem, H, tolerance, t0)
    if has(objective, Capability.GRAM):
        return _dense_gram_bound(problem, H, tolerance, t0)
    return evaluation_certificate(objective.evaluate(problem, H), tolerance, t0)


def evaluation_certificate(ev: Evaluation, tolerance: float = GAP_TOL,
                           t0: tuple[float, float] | None = None) -> Certificate:
    """The certificate of an objective's own proved bound (capability ``OWN_BOUND``: its ``evaluate``
    gives the lower bound and the relative gap on the excess)."""
    return _certificate_of(ev.log_excess, ev.loss - ev.excess, ev.relative_gap, tolerance,
                           _started() if t0 is None else t0, ev.method, float("nan"))


def _batched_certificate(problem: Problem, H: np.ndarray, tolerance: float, t0: tuple[float, float]) -> Certificate:
    """The certificate of the module docstring (an objective with batched kernels: SCL)."""
    const = excess_constant(problem)
    collapsed = _collapsed_point(problem, H)
    if collapsed is not None:
        log_e0, rgap0, lam0, exact = collapsed
        if exact:
            return _certificate_of(log_e0, const, rgap0, tolerance, t0, "collapsed", lam0)
        if rgap0 <= tolerance or not certificate_fits(problem):
            # the bound at the collapsed point may prove H: E(H) from one evaluation of the loss
            # (where it cannot, the n x n path below weighs it with its own E(H))
            log_e_h = float(objective_of(problem).log_excess(problem, H))
            rel = _relative_gap_at(log_e_h, log_e0, rgap0)
            if np.isfinite(log_e_h) and rel <= tolerance:
                return _certificate_of(log_e_h, const, rel, tolerance, t0, "collapsed", lam0)
    need = certificate_bytes(problem)
    if need > CACHE_BYTES:
        raise ProblemError(f"the certificate needs about {need / 2 ** 30:.1f} GB for its gradient blocks "
                           f"(batches of width {max(len(b) for b in problem.batches(0))}); use batches, or "
                           "solve without a certificate (--no-certify)")
    packed = pack(problem.batches(0))
    W, _ = problem.prototype_rows()
    lift = None if W is None else _prototype_lift(W)
    rows = _batch_rows(problem, H, packed, W)
    log_e, blocks = _log_excess_and_gradient(problem, rows)
    if log_e == -np.inf:           # E = 0 <= E*: optimal outright
        return Certificate(0.0, -np.inf, const, 0.0, 0.0, 0.0, True, tolerance, _since(t0)[0], "exact", 0.0,
                           _since(t0)[1])
    best_rel, lam, method = np.inf, np.nan, "dense"
    if collapsed is not None:       # the bound at the collapsed point, already taken in k x k form
        best_rel, lam, method = _relative_gap_at(log_e, collapsed[0], collapsed[1]), collapsed[2], "collapsed"

    def candidates():
        yield H, rows, log_e, blocks
        snapped = None if collapsed is not None else _snapped(problem, H)
        if snapped is not None and not np.array_equal(snapped, H):
            snapped_rows = _batch_rows(problem, snapped, packed, W)
            yield (snapped, snapped_rows, *_log_excess_and_gradient(problem, snapped_rows))
    for G0_H, G0_rows, log_e0, G0_blocks in candidates():
        if not np.isfinite(log_e0):
            continue
        with np.errstate(invalid="ignore", over="ignore"):   # non-finite blocks: reported as "failed"
            rgap0, lam0, method0 = _scl_rgap(problem, G0_H, G0_rows, G0_blocks, packed, W, lift,
                                              CHOLESKY_SHARE * tolerance)
        rel = _relative_gap_at(log_e, log_e0, rgap0)
        if rel < best_rel:
            best_rel, lam, method = rel, lam0, method0
        if best_rel <= tolerance:        # proved at H: the collapsed point is not needed
            break
    return _certificate_of(log_e, const, best_rel, tolerance, t0, method, lam)


#: The dense Gram certificate holds a few (n, n) float64 matrices: up to this many rows.
GRAM_MAX_ROWS = 4000


def gram_certificate(problem: Problem, H: np.ndarray, tolerance: float = GAP_TOL,
                     t0: tuple[float, float] | None = None) -> Certificate:
    """The dual bound of :mod:`solvers.bound` for an objective f convex in the Gram matrix
    (capability ``GRAM``): at G0 = H H^T with C = grad f(G0) (dense, n x n), for every feasible G
    (PSD, unit diagonal, G >= 0 with ReLU) f(G) >= f(G0) - <C, G0> + sum(y) + n min(0, lambda_min(S)),
    S = C - N - Diag(y), with the dual-free multipliers of :func:`solvers.bound.dual_free_multipliers`.
    The relative gap is on the excess f - constant; ``lambda_min`` is that of S in the units of f."""
    require_problem(problem, "gram_certificate")
    require(objective_of(problem), Capability.GRAM, "gram_certificate")
    return _dense_gram_bound(problem, feasible_embeddings(problem, H), tolerance, _started() if t0 is None else t0)


def _dense_gram_bound(problem: Problem, H: np.ndarray, tolerance: float, t0: tuple[float, float]) -> Certificate:
    """:func:`gram_certificate` of H, already checked feasible, for an objective with ``GRAM``."""
    n = problem.n
    if n > GRAM_MAX_ROWS:
        raise ProblemError(f"the dense Gram certificate holds n x n matrices; n = {n} exceeds {GRAM_MAX_ROWS}")
    G0 = H @ H.T
    value, C = objective_of(problem).gram_value_and_grad(problem, G0)
    C = (np.asarray(C, dtype=np.float64) + np.asarray(C, dtype=np.float64).T) / 2
    const = excess_constant(problem)
    excess = float(value) - const
    mask = np.ones((n, n), dtype=bool) if problem.relu else None
    y, N = dual_free_multipliers(C, G0, mask, ACTIVE_TOL)
    lower, lam = bound_from_slack(float(value), *slack(C, G0, y, N=N))
    if not np.isfinite(excess) or not np.isfinite(lower):
        return _certificate_of(np.log(max(excess, 0.0)) if np.isfinite(excess) else np.nan, const, np.nan, tolerance, t0,
                       "dense", lam)
    if excess <= 0:
        return _certificate_of(-np.inf, const, 0.0, tolerance, t0, "exact", lam)
    rel = (excess - min(max(lower - const, 0.0), excess)) / excess
    return _certificate_of(float(np.log(excess)), const, rel, tolerance, t0, "dense", lam)


def _started() -> tuple[float, float]:
    """The wall clock and the compile seconds so far (:func:`_since` measures from them)."""
    return time.perf_counter(), compile_seconds()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    """``(wall seconds, of which compile seconds)`` since :func:`_started`."""
    return time.perf_counter() - start[0], compile_seconds() - start[1]


def _certificate_of(log_e: float, const: float, rel: float, tolerance: float, t0: tuple[float, float], method: str,
            lam: float) -> Certificate:
    rel = float(min(max(rel, 0.0), 1.0)) if not np.isnan(rel) else 1.0   # E* >= 0: never above 1
    excess = float(np.exp(log_e))
    low_e = excess * max(1.0 - rel, 0.0)
    gap = excess - low_e
    seconds, compiling = _since(t0)
    return Certificate(excess, float(log_e), const + low_e, low_e, gap, rel, bool(rel <= tolerance),
                       tolerance, seconds, method, float(lam), compiling)


# ---------------------------------------------------------------- the reduced k x k program
def certify_mean_gram(problem: Problem, V: np.ndarray, tolerance: float = GAP_TOL) -> Certificate:
    """The certificate of the problem's reduced program (docs/theory.md section 3; the objective's
    ``REDUCED`` capability) at M = V V^T, V (k, r) unit rows (nonnegative with ReLU): a lower bound on
    its optimum, which is the full-batch optimum. The same dual bound as :func:`certify_embeddings`, on
    the dense k x k gradient of log E(M) (``reduced_excess``)."""
    t0 = _started()
    objective = objective_of(problem)
    require(objective, Capability.REDUCED, "certify_mean_gram")
    relu = problem.relu
    V = np.asarray(V, dtype=float)
    M = V @ V.T
    ex = objective.reduced_excess(M, problem.counts, problem.tau)
    const = objective.reduced_constant(problem.counts)
    if ex.log_value == -np.inf:
        return Certificate(0.0, -np.inf, const, 0.0, 0.0, 0.0, True, tolerance, _since(t0)[0], "exact", 0.0,
                           _since(t0)[1])
    A = (ex.grad_log + ex.grad_log.T) / 2
    n_g0 = 0.0
    if relu:
        N = active_multiplier(A, M, np.ones(M.shape, dtype=bool), ACTIVE_TOL)
        n_g0 = float(np.sum(N * M))
        A = A - N
    rgap, lam, method = relative_dual_gap(lambda X: A @ X, V, len(V), n_g0, dense_A=A,
                                          shift_gap=CHOLESKY_SHARE * tolerance)
    return _certificate_of(ex.log_value, const, rgap, tolerance, t0, method, lam)
