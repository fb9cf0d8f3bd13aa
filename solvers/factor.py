"""Embeddings from a Gram (docs/theory.md section 3: "embeddings are recovered by factoring G").

- Without ReLU: the top ``dim`` eigenpairs (:func:`ufm.geometry.factor_gram`), rows renormalised.
- With ReLU a nonnegative factor is wanted. The rows are first grouped into *identical* directions
  (``G_ij >= 1 - merge_tol``; under collapse this is one group per class), which shrinks the problem
  to the q x q Gram R of the group directions. If R is (numerically) the identity, the exact
  nonnegative factor is the standard basis (the orthogonal-frame case). Otherwise a symmetric
  nonnegative factor V (q, dim) >= 0 of R is sought by accelerated projected-gradient steps on
  ||V V^T - R||_F^2 from a few starts (|eigen factor|, clipped R^(1/2), random), best kept, rows renormalised; the residual is reported, since a Gram of the
  doubly nonnegative relaxation need not have a nonnegative factor at all.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg.lapack

from ufm.geometry import factor_gram


def pivoted_cholesky(F: np.ndarray, rank_tol: float = 1e-10) -> np.ndarray:
    """L (p, r) with L L^T = F (p, p) PSD: the pivoted Cholesky factor (LAPACK ``dpstrf``, rank r where
    the pivots fall below ``rank_tol``), pivoting undone. It depends on F alone (unlike an SVD basis,
    arbitrary within repeated singular values)."""
    factor, pivots, r, info = scipy.linalg.lapack.dpstrf(np.asarray(F, dtype=float), lower=1, tol=rank_tol)
    if info < 0:
        raise RuntimeError(f"dpstrf failed (info {info})")
    L = np.zeros((len(F), r))
    L[pivots - 1] = np.tril(factor)[:, :r]
    return L


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (zero rows left as they are)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def eigen_factor(G: np.ndarray, dim: int) -> np.ndarray:
    """Unit rows X (m, dim) from the top ``dim`` eigenpairs of G (m, m)."""
    return unit_rows(factor_gram(G, dim))


def group_identical(G: np.ndarray, merge_tol: float = 1e-5) -> np.ndarray:
    """(m,) group index of every row: rows i, j share a group when G_ij >= 1 - merge_tol (for unit
    vectors ||h_i - h_j||^2 = 2 - 2 G_ij). Greedy in row order."""
    m = len(G)
    group = -np.ones(m, dtype=int)
    g = 0
    for i in range(m):
        if group[i] >= 0:
            continue
        members = (group < 0) & (G[i] >= 1 - merge_tol)
        members[i] = True
        group[members] = g
        g += 1
    return group


def _projected_snmf(R: np.ndarray, V: np.ndarray, steps: int, tol: float = 1e-13) -> np.ndarray:
    """Accelerated projected gradient (FISTA with adaptive restart) on
    f(V) = ||V V^T - R||_F^2 over V >= 0; step 1/L with L = 3 ||Y||_2^2 + ||R||_2."""
    def f(X: np.ndarray) -> float:
        return float(np.sum((X @ X.T - R) ** 2))

    Y, prev, t = V.copy(), V.copy(), 1.0
    f_prev = f(prev)
    for _ in range(steps):
        lip = 3 * np.linalg.norm(Y, 2) ** 2 + np.linalg.norm(R, 2)
        new = np.maximum(Y - (Y @ Y.T - R) @ Y / lip, 0.0)
        f_new = f(new)
        if f_new > f_prev:                 # adaptive restart: drop the momentum
            Y, t = prev, 1.0
            continue
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        Y = new + (t - 1) / t_next * (new - prev)
        prev, f_prev, t = new, f_new, t_next
        if f_prev < tol ** 2:
            break
    return prev


def nonnegative_factor(G: np.ndarray, dim: int, merge_tol: float = 1e-5,
                       steps: int = 3000, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Nonnegative unit rows X (m, dim) with X X^T close to G (m, m); see the module docstring.

    Returns ``(X, info)`` with ``info``: ``groups`` (number of distinct directions q),
    ``method`` (``"orthogonal-frame"``, ``"snmf"``), ``factor_residual`` (max |X X^T - G|).
    """
    G = (np.asarray(G, dtype=float) + np.asarray(G, dtype=float).T) / 2
    group = group_identical(G, merge_tol)
    q = int(group.max()) + 1
    onehot = np.eye(q)[group]
    sizes = onehot.sum(axis=0)
    R = (onehot.T @ G @ onehot) / np.outer(sizes, sizes)      # mean Gram of the groups
    scale = np.sqrt(np.clip(np.diag(R), 1e-300, None))
    R = R / np.outer(scale, scale)                               # Gram of unit group directions
    if q <= dim and np.abs(R - np.eye(q)).max() <= merge_tol:
        V, method = np.eye(q, dim), "orthogonal-frame"
    else:
        rng = np.random.default_rng(seed)
        starts = [np.abs(factor_gram(R, dim))]
        if q <= dim:
            vals, vecs = np.linalg.eigh(R)
            root = vecs @ np.diag(np.sqrt(np.clip(vals, 0, None))) @ vecs.T    # R^(1/2), q x q
            starts.append(np.hstack([np.maximum(root, 0.0), np.zeros((q, dim - q))]))
        starts += [rng.random((q, dim)) for _ in range(3)]
        best, best_err = None, np.inf
        for V0 in starts:
            V = unit_rows(_projected_snmf(R, V0, steps))
            err = float(np.abs(V @ V.T - R).max())
            if err < best_err:
                best, best_err = V, err
            if best_err < 1e-12:
                break
        V, method = best, "snmf"
    X = V[group]
    return X, {"groups": q, "method": method, "factor_residual": float(np.abs(X @ X.T - G).max())}
