"""Independent arbitrary-precision (mpmath) reference for the SCL tests.

Written from the formulas alone; nothing here imports the project's packages (ufm, solvers,
theory_checks).  Conventions:

* Inputs given as float64 (numpy arrays, Python floats, tau) are converted to ``mpmath.mpf``
  EXACTLY (``mpf(float)`` is exact), so the results are the exact-arithmetic values of the float64
  inputs up to the working precision.  A string (e.g. ``tau="0.01"``) is parsed in mp precision,
  an ``mpf`` is used as is.
* Every function computes under ``mp.workdps(...)`` and leaves the global mpmath precision alone.

Definitions (for a batch B, anchor i in B): P(i) = {j in B, j != i, y_j = y_i}, A(i) = B \\ {i},
N(i) = A(i) \\ P(i);  l(i) = mean_{j in P(i)} [lse_{a in A(i)} G_ia/tau - G_ij/tau]  (0 if P(i) empty);
L = sum_B sum_{i in B} l(i).  Excess: l(i) = log|P(i)| + within(i) + softplus(lse_N - lse_P),
E = L - sum_{anchors with positives} log|P(i)|.

Reduced (collapsed, full batch) form over the k x k class-mean Gram M with counts n_c:
x_c(M) = sum_{c' != c} n_c'/(n_c - 1) exp((M_cc' - 1)/tau);  E(M) = sum_c n_c log1p(x_c(M)).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from mpmath import mp, mpf

__all__ = [
    "to_mpf", "gram_mp", "loss_mp", "excess_mp", "log_positive_count_sum",
    "reduced_excess_mp", "reduced_loss_mp", "reduced_constant_mp",
    "etf_excess_mp", "of_excess_mp", "step_objective_mp", "step_optimum_mp",
]

EXTRA_DPS = 80      # digits added to the requested precision to absorb the L - sum log|P| cancellation


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def to_mpf(x):
    """Exact conversion: float / numpy float / int -> mpf exactly; str parsed; mpf kept."""
    if isinstance(x, mpmath.mpf):
        return x
    if isinstance(x, str):
        return mpf(x)
    if isinstance(x, (int, np.integer)):
        return mpf(int(x))
    return mpf(float(x))


def _lse(values):
    m = max(values)
    return m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in values))


def _softplus(x):
    # log(1 + e^x), no cancellation in either tail at mp precision
    if x > 0:
        return x + mpmath.log1p(mpmath.exp(-x))
    return mpmath.log1p(mpmath.exp(x))


def _rows_and_labels(H, labels, prototypes, prototype_labels):
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2:
        raise ValueError("H must be (n, d)")
    rows = [[to_mpf(v) for v in H[i]] for i in range(H.shape[0])]
    row_labels = [int(y) for y in labels]
    if len(row_labels) != len(rows):
        raise ValueError("labels must have one entry per row of H")
    proto_ids = []
    if prototypes is not None:
        W = np.asarray(prototypes, dtype=np.float64).reshape(-1, H.shape[1])
        if prototype_labels is None or len(prototype_labels) != len(W):
            raise ValueError("prototype_labels must have one entry per prototype row")
        for w, y in zip(W, prototype_labels):
            proto_ids.append(len(rows))
            rows.append([to_mpf(v) for v in w])
            row_labels.append(int(y))
    return rows, row_labels, H.shape[0], proto_ids


class _Gram:
    """Lazy, cached mp Gram entries (computed at the precision active on first use)."""

    def __init__(self, rows):
        self.rows = rows
        self.cache = {}

    def __call__(self, i, j):
        key = (i, j) if i <= j else (j, i)
        g = self.cache.get(key)
        if g is None:
            g = mpmath.fsum(a * b for a, b in zip(self.rows[i], self.rows[j]))
            self.cache[key] = g
        return g


def _anchor_sets(batches, n, proto_ids, prototype_anchors, row_labels):
    """Yield (i, positives, negatives) for every anchor of every batch (prototypes appended)."""
    if batches is None:
        batches = [list(range(n))]
    for batch in batches:
        batch = [int(i) for i in batch]
        for i in batch:
            if not 0 <= i < n:
                raise ValueError(f"batch index {i} out of range for n={n}")
        members = batch + list(proto_ids)
        anchors = batch + (list(proto_ids) if prototype_anchors else [])
        for i in anchors:
            others = [a for a in members if a != i]
            pos = [j for j in others if row_labels[j] == row_labels[i]]
            neg = [a for a in others if row_labels[a] != row_labels[i]]
            yield i, pos, neg


def gram_mp(H, dps=60):
    """The exact Gram matrix H H^T of the float64 rows as an mpmath matrix (rounded to dps)."""
    H = np.asarray(H, dtype=np.float64)
    with mp.workdps(dps):
        rows = [[to_mpf(v) for v in r] for r in H]
        n = len(rows)
        G = mpmath.matrix(n, n)
        for i in range(n):
            for j in range(i, n):
                G[i, j] = G[j, i] = mpmath.fsum(a * b for a, b in zip(rows[i], rows[j]))
        return G


# ----------------------------------------------------------------------------------------------
# full loss and excess by plain loops
# ----------------------------------------------------------------------------------------------
def loss_mp(H, labels, tau, batches=None, prototypes=None, prototype_labels=None,
            prototype_anchors=True, dps=60):
    """L = sum_B sum_{i in B} mean_{j in P(i)} [lse_{a in A(i)} G_ia/tau - G_ij/tau], in mp."""
    rows, row_labels, n, proto_ids = _rows_and_labels(H, labels, prototypes, prototype_labels)
    with mp.workdps(dps + 20):
        t = to_mpf(tau)
        G = _Gram(rows)
        total = []
        for i, pos, neg in _anchor_sets(batches, n, proto_ids, prototype_anchors, row_labels):
            if not pos:
                continue
            lse_a = _lse([G(i, a) / t for a in pos + neg])
            total.append(lse_a - mpmath.fsum(G(i, j) for j in pos) / (t * len(pos)))
        L = mpmath.fsum(total)
    with mp.workdps(dps):
        return +L


def log_positive_count_sum(labels, batches=None, prototype_labels=None, prototype_anchors=True,
                           dps=60):
    """sum over anchors with positives of log|P(i)| (the constant separating L from E)."""
    row_labels = [int(y) for y in labels]
    n = len(row_labels)
    proto_ids = []
    if prototype_labels is not None:
        for y in prototype_labels:
            proto_ids.append(len(row_labels))
            row_labels.append(int(y))
    with mp.workdps(dps):
        return mpmath.fsum(mpmath.log(len(pos))
                           for _, pos, _ in _anchor_sets(batches, n, proto_ids, prototype_anchors,
                                                         row_labels) if pos)


def excess_mp(H, labels, tau, batches=None, prototypes=None, prototype_labels=None,
              prototype_anchors=True, dps=60, extra_dps=EXTRA_DPS, return_terms=False, unit=False):
    """E = L - sum log|P(i)| by plain loops, via the decomposition
    E = sum_{anchors with positives} [ within(i) + softplus(lse_N(i) - lse_P(i)) ],
    within(i) = lse_P - mean_P G_ij/tau - log|P| (>= 0), softplus term 0 if N(i) is empty.

    Computed at dps + extra_dps digits (the float64 entries are converted exactly, the Gram entries
    are then exact up to that precision), so E keeps ~dps correct digits even when E/L ~ 1e-56.
    With return_terms=True also returns (sum within, sum softplus). With unit=True every row is first
    divided by its norm in mp precision: E on the sphere at the points the float64 rows stand for
    (whose norms are 1 only to ~1e-16, which at small tau moves a collapsed class's within-class
    term by ~(1e-16/tau)^2, comparable to E itself)."""
    rows, row_labels, n, proto_ids = _rows_and_labels(H, labels, prototypes, prototype_labels)
    with mp.workdps(dps + extra_dps):
        if unit:
            rows = [[v / mpmath.sqrt(mpmath.fsum(x * x for x in r)) for v in r] for r in rows]
        t = to_mpf(tau)
        G = _Gram(rows)
        within_terms, split_terms = [], []
        for i, pos, neg in _anchor_sets(batches, n, proto_ids, prototype_anchors, row_labels):
            if not pos:
                continue
            gp = [G(i, j) / t for j in pos]
            lse_p = _lse(gp)
            within_terms.append(lse_p - mpmath.fsum(gp) / len(pos) - mpmath.log(len(pos)))
            if neg:
                lse_n = _lse([G(i, a) / t for a in neg])
                split_terms.append(_softplus(lse_n - lse_p))
        W = mpmath.fsum(within_terms)
        S = mpmath.fsum(split_terms)
        E = W + S
    with mp.workdps(dps):
        if return_terms:
            return +E, +W, +S
        return +E


# ----------------------------------------------------------------------------------------------
# reduced (collapsed, full-batch) form
# ----------------------------------------------------------------------------------------------
def _matrix_entries(M):
    """k x k entries of M (numpy float / nested lists / mpmath.matrix) converted exactly to mpf."""
    if isinstance(M, mpmath.matrix):
        k = M.rows
        return [[to_mpf(M[r, s]) for s in range(k)] for r in range(k)]
    if isinstance(M, np.ndarray) and M.dtype == object:
        return [[to_mpf(v) for v in row] for row in M]
    if isinstance(M, (list, tuple)):
        return [[to_mpf(v) for v in row] for row in M]
    A = np.asarray(M, dtype=np.float64)
    return [[to_mpf(v) for v in row] for row in A]


def reduced_excess_mp(M, counts, tau, dps=60, unit_diagonal=True):
    """E(M) = sum_c n_c log1p(x_c(M)), x_c = sum_{c' != c} n_c'/(n_c - 1) exp((M_cc' - 1)/tau).

    unit_diagonal=False uses M_cc in place of 1, i.e. exp((M_cc' - M_cc)/tau): this is what the
    full-batch excess of collapsed embeddings h_i = v_{y_i} equals when the float64 rows v_c are not
    exactly unit norm (M = V V^T computed exactly)."""
    counts = [int(c) for c in counts]
    if any(c < 2 for c in counts):
        raise ValueError("every class needs n_c >= 2 (the reduced form assumes positives)")
    with mp.workdps(dps + 20):
        Mm = _matrix_entries(M)
        k = len(counts)
        if len(Mm) != k:
            raise ValueError("M must be k x k with k = len(counts)")
        t = to_mpf(tau)
        terms = []
        for c in range(k):
            diag = mpf(1) if unit_diagonal else Mm[c][c]
            x = mpmath.fsum(mpf(counts[o]) / (counts[c] - 1) * mpmath.exp((Mm[c][o] - diag) / t)
                            for o in range(k) if o != c)
            terms.append(counts[c] * mpmath.log1p(x))
        E = mpmath.fsum(terms)
    with mp.workdps(dps):
        return +E


def reduced_constant_mp(counts, dps=60):
    """sum_c n_c log(n_c - 1)."""
    with mp.workdps(dps):
        return mpmath.fsum(int(c) * mpmath.log(int(c) - 1) for c in counts)


def reduced_loss_mp(M, counts, tau, dps=60, unit_diagonal=True):
    """sum_c n_c log(n_c - 1) + E(M)."""
    with mp.workdps(dps + 10):
        L = reduced_constant_mp(counts, dps + 10) + reduced_excess_mp(M, counts, tau, dps + 10,
                                                                      unit_diagonal)
    with mp.workdps(dps):
        return +L


def etf_excess_mp(counts, tau, dps=60):
    """Reduced excess at the simplex ETF: M_cc = 1, M_cc' = -1/(k-1)."""
    k = len(counts)
    with mp.workdps(dps + 20):
        off = mpf(-1) / (k - 1)
        M = [[mpf(1) if r == s else off for s in range(k)] for r in range(k)]
        E = reduced_excess_mp(M, counts, tau, dps + 20)
    with mp.workdps(dps):
        return +E


def of_excess_mp(counts, tau, dps=60):
    """Reduced excess at the orthogonal frame: M = I."""
    k = len(counts)
    with mp.workdps(dps + 20):
        M = [[mpf(1) if r == s else mpf(0) for s in range(k)] for r in range(k)]
        E = reduced_excess_mp(M, counts, tau, dps + 20)
    with mp.workdps(dps):
        return +E


# ----------------------------------------------------------------------------------------------
# step-count optimum of the reduced program (no ReLU)
# ----------------------------------------------------------------------------------------------
def _step_b(a, c, k1, k2):
    """b on the rank-(k-1) boundary: det [[P, b sqrt(k1 k2)], [., Q]] = 0, b < 0."""
    P = 1 + (k1 - 1) * a
    Q = 1 + (k2 - 1) * c
    return -mpmath.sqrt(P * Q / (k1 * k2)), P, Q


def step_objective_mp(a, b, c, k_maj, n_maj, k_min, n_min, tau, dps=50):
    """Block objective in excess form (the constant k1 n1 log(n1-1) + k2 n2 log(n2-1) removed):
    k1 n1 log1p(((k1-1) n1 e^{(a-1)/t} + k2 n2 e^{(b-1)/t}) / (n1-1))
  + k2 n2 log1p((k1 n1 e^{(b-1)/t} + (k2-1) n2 e^{(c-1)/t}) / (n2-1)).
    a (c) is ignored when k_maj (k_min) is 1."""
    k1, n1, k2, n2 = int(k_maj), int(n_maj), int(k_min), int(n_min)
    with mp.workdps(dps + 20):
        t = to_mpf(tau)
        a = to_mpf(a) if k1 > 1 else mpf(0)
        c = to_mpf(c) if k2 > 1 else mpf(0)
        b = to_mpf(b)
        ea, eb, ec = (mpmath.exp((v - 1) / t) for v in (a, b, c))
        x1 = ((k1 - 1) * n1 * ea + k2 * n2 * eb) / (n1 - 1)
        x2 = (k1 * n1 * eb + (k2 - 1) * n2 * ec) / (n2 - 1)
        E = k1 * n1 * mpmath.log1p(x1) + k2 * n2 * mpmath.log1p(x2)
    with mp.workdps(dps):
        return +E


def _step_scaled_gradient(vars_, k1, n1, k2, n2, t):
    """Gradient of F(a, c) = objective(a, b(a, c), c) divided by dF/db (> 0), so it is O(1) at any
    tau.  Returns (list of components for the free variables, dF/db, a, b, c)."""
    it = iter(vars_)
    a = next(it) if k1 > 1 else mpf(0)
    c = next(it) if k2 > 1 else mpf(0)
    b, P, Q = _step_b(a, c, k1, k2)
    # exponentials relative to e^{(b-1)/t}: no scale problems at small tau
    ra = mpmath.exp((a - b) / t)              # e^{(a-1)/t} / e^{(b-1)/t}
    rc = mpmath.exp((c - b) / t)
    eb = mpmath.exp((b - 1) / t)
    S1 = (n1 - 1) + ((k1 - 1) * n1 * ra + k2 * n2) * eb
    S2 = (n2 - 1) + (k1 * n1 + (k2 - 1) * n2 * rc) * eb
    # dF/db = k1 n1 k2 n2 e_b (1/S1 + 1/S2) / t ; dF/da|_b = k1 n1 (k1-1) n1 e_a / (t S1); same for c
    w = 1 / S1 + 1 / S2
    Fb = k1 * n1 * k2 * n2 * eb * w / t
    comps = []
    if k1 > 1:
        Fa_over_Fb = (k1 - 1) * n1 * ra / (k2 * n2) * (1 / S1) / w
        comps.append(Fa_over_Fb + b * (k1 - 1) / (2 * P))
    if k2 > 1:
        Fc_over_Fb = (k2 - 1) * n2 * rc / (k1 * n1) * (1 / S2) / w
        comps.append(Fc_over_Fb + b * (k2 - 1) / (2 * Q))
    return comps, Fb, a, b, c


def _float_start(k1, n1, k2, n2, tau):
    """Coarse float64 minimiser of log F(a, c) (log domain, so tiny tau is fine)."""
    from scipy.optimize import minimize

    tau = float(tau)

    def logF(z):
        it = iter(z)
        a = next(it) if k1 > 1 else 0.0
        c = next(it) if k2 > 1 else 0.0
        P = 1 + (k1 - 1) * a
        Q = 1 + (k2 - 1) * c
        if P <= 0 or Q <= 0:
            return 1e300
        b = -math.sqrt(P * Q / (k1 * k2))

        def log_x(terms):          # log of sum w e^{(v-1)/tau}, terms = [(w, v)]
            ls = [math.log(wt) + (v - 1) / tau for wt, v in terms if wt > 0]
            m = max(ls)
            return m + math.log(sum(math.exp(s - m) for s in ls))

        lx1 = log_x([((k1 - 1) * n1, a), (k2 * n2, b)]) - math.log(n1 - 1)
        lx2 = log_x([(k1 * n1, b), ((k2 - 1) * n2, c)]) - math.log(n2 - 1)

        def log_log1p(lx):
            if lx < -30:
                return lx          # log(log1p(x)) = log x + O(x)
            return math.log(math.log1p(math.exp(lx)))

        parts = [math.log(k1 * n1) + log_log1p(lx1), math.log(k2 * n2) + log_log1p(lx2)]
        m = max(parts)
        return m + math.log(sum(math.exp(p - m) for p in parts))

    k = k1 + k2
    x0 = []
    bounds = []
    if k1 > 1:
        x0.append(-1.0 / (k - 1))
        bounds.append((-1.0 / (k1 - 1) + 1e-9, 1.0))
    if k2 > 1:
        x0.append(-1.0 / (k - 1))
        bounds.append((-1.0 / (k2 - 1) + 1e-9, 1.0))
    best = None
    for start in (x0, [0.5 * (lo + hi) for lo, hi in bounds]):
        r = minimize(logF, start, method="L-BFGS-B", bounds=bounds,
                     options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000})
        r = minimize(logF, r.x, method="Nelder-Mead",
                     options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20000})
        if best is None or r.fun < best.fun:
            best = r
    return [float(v) for v in best.x]


def _mp_jacobian(fun, x, h):
    n = len(x)
    J = mpmath.matrix(n, n)
    for j in range(n):
        xp = list(x)
        xm = list(x)
        xp[j] += h
        xm[j] -= h
        fp, fm = fun(xp), fun(xm)
        for i in range(n):
            J[i, j] = (fp[i] - fm[i]) / (2 * h)
    return J


def step_optimum_mp(k_maj, n_maj, k_min, n_min, tau, dps=50, start=None, return_diagnostics=True):
    """Optimum of the reduced program for STEP counts (k_maj classes of n_maj, then k_min of n_min),
    no ReLU, with block values a (majority-majority), b (majority-minority), c (minority-minority).

    At the optimum the 2x2 block matrix [[1 + (k1-1) a, b sqrt(k1 k2)], [., 1 + (k2-1) c]] is
    singular (rank k-1) with b < 0 (the objective increases in b, so the constraint is active: the
    KKT multiplier is dF/db > 0), and (a, c) solves grad F(a, b(a, c), c) = 0; it is found by
    Newton's method in mp precision from a float64 start and checked (Hessian PD, a, c < 1,
    1 + (k-1) a > 0, ...).  The program is convex, so this stationary point is the global optimum.

    Returns a dict: a, b, c, E (mpf; a is None if k_maj == 1, c is None if k_min == 1), 'loss'
    (constant + E), 'constant', 'M' (k x k float64 numpy), 'M_mp' (mpmath matrix) and, when
    return_diagnostics, 'residual', 'hessian_eigs' (of the scaled Hessian = Hessian / (dF/db)),
    'kkt_multiplier' (dF/db), 'iterations'."""
    k1, n1, k2, n2 = int(k_maj), int(n_maj), int(k_min), int(n_min)
    if k1 < 1 or k2 < 1 or n1 < 2 or n2 < 2:
        raise ValueError("need k_maj, k_min >= 1 and n_maj, n_min >= 2")
    k = k1 + k2
    wdps = dps + 30
    nfree = (k1 > 1) + (k2 > 1)
    diag = {}
    with mp.workdps(wdps):
        t = to_mpf(tau)
        if nfree == 0:
            x = []
            iters = 0
            resid = mpf(0)
        else:
            x0 = list(start) if start is not None else _float_start(k1, n1, k2, n2, tau)
            x = [to_mpf(v) for v in x0]

            def g(v):
                return _step_scaled_gradient(v, k1, n1, k2, n2, t)[0]

            h = mpf(10) ** (-(wdps // 3))
            tol = mpf(10) ** (-(dps + 10))
            iters = 0
            for iters in range(1, 200):
                r = g(x)
                J = _mp_jacobian(g, x, h)
                step = mpmath.lu_solve(J, mpmath.matrix(r))
                # damped Newton: stay inside P > 0, Q > 0, a, c <= 1
                lam = mpf(1)
                while True:
                    xn = [x[i] - lam * step[i] for i in range(nfree)]
                    it_ = iter(xn)
                    an = next(it_) if k1 > 1 else mpf(0)
                    cn = next(it_) if k2 > 1 else mpf(0)
                    ok = (1 + (k1 - 1) * an > 0 and 1 + (k2 - 1) * cn > 0 and an <= 1 and cn <= 1)
                    if ok and mpmath.norm(mpmath.matrix(g(xn)), "inf") <= \
                            mpmath.norm(mpmath.matrix(r), "inf") * (1 - lam / 4) + tol:
                        break
                    lam /= 2
                    if lam < mpf(10) ** -12:
                        raise RuntimeError("step_optimum_mp: damped Newton stalled")
                x = xn
                if max(abs(s) for s in step) < mpf(10) ** (-(dps + 10)):
                    break
            else:
                raise RuntimeError("step_optimum_mp: Newton did not converge")
            resid = mpmath.norm(mpmath.matrix(g(x)), "inf")
            if resid > mpf(10) ** (-(dps + 5)):
                raise RuntimeError(f"step_optimum_mp: residual {resid} too large")
        comps, Fb, a, b, c = _step_scaled_gradient(x, k1, n1, k2, n2, t)
        # ---- checks: feasibility, active rank-(k-1) boundary (KKT sign), Hessian PD -------------
        P, Q = 1 + (k1 - 1) * a, 1 + (k2 - 1) * c
        if not (P > 0 and Q > 0 and a < 1 and c < 1 and b < 0):
            raise RuntimeError("step_optimum_mp: optimum outside the expected region")
        det = P * Q - k1 * k2 * b * b
        if abs(det) > mpf(10) ** (-(dps + 5)):
            raise RuntimeError("step_optimum_mp: determinant not 0")
        if not Fb > 0:
            raise RuntimeError("step_optimum_mp: KKT multiplier of the rank constraint not positive")
        eigs = []
        if nfree:
            def g2(v):
                return _step_scaled_gradient(v, k1, n1, k2, n2, t)[0]
            Jh = _mp_jacobian(g2, x, mpf(10) ** (-(wdps // 3)))
            Hs = (Jh + Jh.T) / 2
            eigs = sorted(mpmath.eigsy(Hs)[0]) if nfree > 1 else [Hs[0, 0]]
            asym = mpmath.norm(Jh - Jh.T, "inf")
            if min(eigs) <= 0:
                raise RuntimeError(f"step_optimum_mp: Hessian not positive definite: {eigs}")
            diag["hessian_asymmetry"] = asym
        E = step_objective_mp(a, b, c, k1, n1, k2, n2, t, dps=wdps)
        const = k1 * n1 * mpmath.log(n1 - 1) + k2 * n2 * mpmath.log(n2 - 1)
        Mmp = mpmath.matrix(k, k)
        for r_ in range(k):
            for s in range(k):
                if r_ == s:
                    Mmp[r_, s] = mpf(1)
                elif r_ < k1 and s < k1:
                    Mmp[r_, s] = a
                elif r_ >= k1 and s >= k1:
                    Mmp[r_, s] = c
                else:
                    Mmp[r_, s] = b
    with mp.workdps(dps):
        out = {
            "a": +a if k1 > 1 else None,
            "b": +b,
            "c": +c if k2 > 1 else None,
            "E": +E,
            "constant": +const,
            "loss": const + E,
            "M": np.array([[float(Mmp[r_, s]) for s in range(k)] for r_ in range(k)]),
            "M_mp": Mmp.apply(lambda v: +v),
            "counts": [n1] * k1 + [n2] * k2,
        }
        if return_diagnostics:
            out.update({
                "residual": +resid,
                "hessian_eigs": [+e for e in eigs],
                "kkt_multiplier": +Fb,
                "determinant": +det,
                "iterations": iters,
                **{key: +v for key, v in diag.items()},
            })
        return out
