"""A lower bound that does not rest on the solver's word (docs/theory.md section 3: "never trust a status
alone").

For a convex f, any G0 and any feasible G: f(G) >= f(G0) + <C, G - G0> with C = grad f(G0). The
feasible set is {G PSD, diag(G) = 1, G_fixed-block = F, G >= 0 on a mask}; for any multipliers
y (m,), Z (symmetric, on the fixed block) and N >= 0 (on the mask) with S = C - Diag(y) - Z - N PSD,

    <C, G> = sum(y) + <Z, F> + <N, G> + <S, G> >= sum(y) + <Z, F>,

so  f* >= f(G0) - <C, G0> + sum(y) + <Z, F>.  Any y, Z, N are made valid by lowering y by
lambda_min(S) when it is negative (a cost of m |lambda_min|); a poor guess only loosens the bound, it
never invalidates it. Multipliers come from the solver's duals (both sign conventions tried) and from
a dual-free estimate; the best valid bound is kept. Floating-point error of the eigenvalue is covered
by a margin of 1e-12 * ||S||_F * m.
"""

from __future__ import annotations

import numpy as np


def slack(C: np.ndarray, G0: np.ndarray, y: np.ndarray, Z: np.ndarray | None = None,
          fixed: tuple[int, np.ndarray] | None = None, N: np.ndarray | None = None,
          T: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """``(sum(y) + <Z, F> - <C, G0>, S)`` for one choice of multipliers (arguments as in
    :func:`linearization_bound`): the bound is f(G0) plus the first entry plus trace * min(0, lambda_min(S))."""
    C = (C + C.T) / 2
    value = float(np.sum(y)) - float(np.sum(C * G0))
    A = C
    if N is not None:
        Ns = np.maximum((N + N.T) / 2, 0.0)
        np.fill_diagonal(Ns, 0.0)        # the diagonal is already an equality
        A = C - Ns
    S = A if T is None else T.T @ A @ T
    S = S - np.diag(y)
    if Z is not None and fixed is not None:
        start, F = fixed
        Zs = (Z + Z.T) / 2
        S[start:, start:] -= Zs
        value += float(np.sum(Zs * F))
    return value, (S + S.T) / 2


def linearization_bound(f0: float, C: np.ndarray, G0: np.ndarray, y: np.ndarray,
                        Z: np.ndarray | None = None, fixed: tuple[int, np.ndarray] | None = None,
                        N: np.ndarray | None = None, T: np.ndarray | None = None) -> float:
    """The bound of the module docstring for one choice of multipliers.

    C, G0 (m, m); y (m,); ``fixed = (start, F)``: the block G[start:, start:] = F (p, p) with its
    multiplier Z (p, p); N (m, m), clipped to >= 0 (zero outside the ReLU mask).

    ``T`` (m, q): the program is posed over M (q, q) with G = T M T^T (the facially reduced prototype
    program, solvers/convex.py); then y (q,), and ``fixed``/Z refer to blocks of M. Since
    <C, G> = <T^T C T, M>, the same argument holds with S = T^T (C - N) T - Diag(y) - Z on M, whose
    trace is q (unit diagonal), and the bound is f(G0) - <C, G0> + sum(y) + <Z, F>.
    """
    return bound_from_slack(f0, *slack(C, G0, y, Z, fixed, N, T))[0]


def bound_from_slack(f0: float, value: float, S: np.ndarray) -> tuple[float, float]:
    """``(bound, lambda_min(S))`` from :func:`slack`'s ``(value, S)``: f(G0) + value + trace *
    min(0, lambda_min) less the rounding margin 1e-12 ||S||_F m (one eigendecomposition for both)."""
    m = len(S)
    lam = float(np.linalg.eigvalsh(S).min())
    margin = 1e-12 * float(np.linalg.norm(S)) * m
    return f0 + value + m * min(lam, 0.0) - margin, lam


def active_multiplier(C: np.ndarray, G0: np.ndarray, relu_mask: np.ndarray | None,
                       active_tol: float) -> np.ndarray | None:
    """N = max(C, 0) on the active ReLU entries (G0_ij <= active_tol off the diagonal, inside the
    mask, and so also G0_ji: a computed G0 need not be exactly symmetric), 0 elsewhere; None without
    ReLU. C symmetric (m, m), so N is symmetric too, as the Cholesky and eigenvalue bounds assume."""
    if relu_mask is None:
        return None
    active = relu_mask & (G0 <= active_tol)
    np.fill_diagonal(active, False)
    active &= active.T
    return np.where(active, np.maximum(C, 0.0), 0.0)


def dual_free_multipliers(C: np.ndarray, G0: np.ndarray, relu_mask: np.ndarray | None,
                          active_tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray | None]:
    """Multipliers guessed from complementarity S G0 = 0 (no solver duals needed).

    With ReLU, N = max(C, 0) on the active entries (G0_ij <= active_tol, off the diagonal);
    then y_i = ((C - N) G0 G0)_ii / (G0 G0)_ii, the least-squares solution of (C - N - Diag(y)) G0 = 0.
    """
    C = (C + C.T) / 2
    N = active_multiplier(C, G0, relu_mask, active_tol)
    A = C - (N if N is not None else 0.0)
    GG = G0 @ G0
    y = np.diag(A @ GG) / np.maximum(np.diag(GG), 1e-300)
    return y, N


def dual_free_multipliers_lifted(C: np.ndarray, V0: np.ndarray, T: np.ndarray, n: int,
                                 relu_mask: np.ndarray | None = None, active_tol: float = 1e-6) -> dict:
    """:func:`dual_free_multipliers` for a program posed over V (q, q) with G = T V T^T (m, m), unit
    diagonal on V[:n, :n] and the fixed block V[n:, n:] = I (the facially reduced prototype program).

    N as in :func:`dual_free_multipliers` at G0 = T V0 T^T; with A = T^T (C - N) T and B = A V0,
    complementarity S V0 = 0 for S = A - Diag(y) - blockdiag(0, Z) gives, in least squares,
    y_i = <B_i, V0_i> / ||V0_i||^2 (i < n; 0 beyond) and Z = B[n:] X^T (X X^T)^{-1}, X = V0[n:]
    (X X^T >= I: invertible), symmetrised. Returns the keyword arguments of
    :func:`linearization_bound`.
    """
    C = (C + C.T) / 2
    V0 = (V0 + V0.T) / 2
    q = len(V0)
    N = None if relu_mask is None else active_multiplier(C, T @ V0 @ T.T, relu_mask, active_tol)
    A = T.T @ (C - (N if N is not None else 0.0)) @ T
    B = A @ V0
    y = np.zeros(q)
    y[:n] = np.sum(B[:n] * V0[:n], axis=1) / np.maximum(np.sum(V0[:n] ** 2, axis=1), 1e-300)
    X = V0[n:]
    Z = np.linalg.solve(X @ X.T, X @ B[n:].T).T
    return {"y": y, "Z": (Z + Z.T) / 2, "fixed": (n, np.eye(q - n)), "N": N, "T": T}


def best_multipliers(f0: float, C: np.ndarray, G0: np.ndarray,
                     candidates: list[dict]) -> tuple[float, dict | None]:
    """``(bound, candidate)``: the largest finite :func:`linearization_bound` over candidate multiplier
    sets (dicts of y, Z, fixed, N, T) and the set that gives it; ``(-inf, None)`` if none is finite."""
    best, best_cand = -np.inf, None
    for cand in candidates:
        value = linearization_bound(f0, C, G0, **cand)
        if np.isfinite(value) and value > best:
            best, best_cand = value, cand
    return best, best_cand


def feasible_point(V: np.ndarray, n: int, nonnegative: bool) -> np.ndarray:
    """An exactly feasible matrix near a solver's slightly infeasible V (q, q), for an upper bound.

    The set: V PSD, V_ii = 1 for i < n, V[n:, n:] = I (the prototype block of the facially reduced
    program; absent when n = q), and with ``nonnegative`` V[:n, :n] >= 0. Steps, each keeping what the
    earlier ones fixed: (n = q only) negative eigenvalues clipped to 0; V[n:, n:] := I;
    V := D^{-1/2} V D^{-1/2} (unit diagonal); with
    ``nonnegative``, V := (1 - s) V + s E, E = blockdiag(1 1^T, I), the smallest s making V[:n, :n]
    >= 0; V := (1 - t) V + t I, the smallest t (plus a margin of 1e-14 q) making lambda_min >= 0.
    E and I are feasible, so the mixtures stay feasible for the constraints already met.
    """
    V = (np.asarray(V, dtype=float) + np.asarray(V, dtype=float).T) / 2
    q = len(V)
    if n == q:
        # no fixed block: clip the negative eigenvalues first (a change only along their eigenvectors,
        # far smaller in the objective than the mixture with I below, which is then ~1e-14)
        lam, U = np.linalg.eigh(V)
        V = (U * np.maximum(lam, 0.0)) @ U.T
        V = (V + V.T) / 2
    V[n:, n:] = np.eye(q - n)
    d = np.sqrt(np.clip(np.diag(V), 1e-300, None))
    V = V / np.outer(d, d)
    if nonnegative:
        low = min(float(V[:n, :n].min()), 0.0)
        if low < 0:
            s = -low / (1.0 - low)
            E = np.eye(q)
            E[:n, :n] = 1.0
            V = (1 - s) * V + s * E
            V[:n, :n] = np.maximum(V[:n, :n], 0.0)      # rounding of exact zeros
    lam = float(np.linalg.eigvalsh(V).min()) - 1e-14 * q
    if lam < 0:
        t = -lam / (1.0 - lam)
        V = (1 - t) * V + t * np.eye(q)
    np.fill_diagonal(V, 1.0)
    return V
