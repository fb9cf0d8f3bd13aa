"""Target geometries and the metrics of docs/theory.md section 6 (NumPy, float64).

Shapes: embeddings ``H`` (n, d), one row per example; ``labels`` (n,) in 0..k-1; class-mean Grams
(k, k).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ufm.errors import ProblemError


def etf_gram(k: int) -> np.ndarray:
    """Gram of the k-class simplex ETF: ``k/(k-1) (I - 11^T/k)`` (unit diagonal, off-diagonal -1/(k-1))."""
    if k < 2:
        raise ProblemError("a simplex ETF needs at least 2 classes")
    return k / (k - 1) * (np.eye(k) - np.ones((k, k)) / k)


def orthogonal_frame_gram(k: int) -> np.ndarray:
    """Gram of the orthogonal frame: the identity ``I_k``."""
    return np.eye(k)


def factor_gram(gram: np.ndarray, dim: int) -> np.ndarray:
    """Rows X (m, dim) with ``X X^T`` the best rank-``dim`` PSD approximation of ``gram`` (m, m).

    Keeps the top ``dim`` eigenpairs (negative eigenvalues clipped to 0); pads with zero columns when
    ``dim`` exceeds m.
    """
    gram = np.asarray(gram, dtype=float)
    m = gram.shape[0]
    vals, vecs = np.linalg.eigh((gram + gram.T) / 2)
    order = np.argsort(vals)[::-1][:min(dim, m)]
    X = vecs[:, order] * np.sqrt(np.clip(vals[order], 0.0, None))
    if dim > X.shape[1]:
        X = np.hstack([X, np.zeros((m, dim - X.shape[1]))])
    return X


def class_means(H: np.ndarray, labels: np.ndarray, k: int | None = None) -> np.ndarray:
    """Class means ``mu_c = mean_{i: y_i = c} h_i``, shape (k, d)."""
    H = np.asarray(H, dtype=float)
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if k is None else k
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros((k, H.shape[1]))
    np.add.at(sums, labels, H)
    return sums / np.maximum(counts, 1)[:, None]


def class_mean_gram(H: np.ndarray, labels: np.ndarray, centered: bool = False) -> np.ndarray:
    """Gram of the class means, ``M = mu mu^T`` (k, k).

    ``centered=False`` (default) uses raw means: the orthogonal frame is a statement about raw means.
    ``centered=True`` subtracts the unweighted average of the means first (the [OF] authors' ETF
    convention).
    """
    mu = class_means(H, labels)
    if centered:
        mu = mu - mu.mean(axis=0, keepdims=True)
    return mu @ mu.T


def mean_gram_from_gram(gram: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class-mean Gram from an example Gram G (n, n): ``M_cc' = mean_{i in c, j in c'} G_ij``."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    onehot = np.eye(k)[labels] / np.bincount(labels, minlength=k)[labels][:, None]
    return onehot.T @ np.asarray(gram, dtype=float) @ onehot


class MeansPicture(NamedTuple):
    """A 2-D (or 3-D) picture of k class means: ``points`` (k, dims), the origin at 0, and ``stress``
    (Kruskal's stress-1 of the picture's distances against the true ones, over the k means and the
    origin: 0 = exact)."""

    points: np.ndarray
    stress: float


def gram_distances(gram: np.ndarray) -> np.ndarray:
    """Distances ||x_a - x_b|| (m, m) between the points whose Gram is ``gram`` (m, m):
    sqrt(G_aa + G_bb - 2 G_ab), clipped at 0 against rounding."""
    G = np.asarray(gram, dtype=float)
    diag = np.diag(G)
    return np.sqrt(np.clip(diag[:, None] + diag[None, :] - 2 * G, 0.0, None))


def means_picture(gram: np.ndarray, dims: int = 2, starts: int = 4, iterations: int = 300,
                  tol: float = 1e-9, seed: int = 0) -> MeansPicture:
    """Metric MDS of the class means and the origin (k + 1 points) from their Gram (k, k), by SMACOF
    (de Leeuw's majorisation; uniform weights), the best of ``starts`` starts: the top-``dims``
    eigen-coordinates, then seeded random ones (symmetric means, such as an orthogonal frame, stay
    stuck together from the eigen start alone).

    Target distances: ||mu_c - mu_c'|| = sqrt(M_cc + M_c'c' - 2 M_cc') and ||mu_c|| = sqrt(M_cc). Unlike
    the top-``dims`` projection (where orthogonal means beyond the first ``dims`` fall on the origin),
    every pair keeps a distance near its true one; the stress says how near:

        stress = sqrt( sum_{a<b} (|x_a - x_b| - D_ab)^2 / sum_{a<b} D_ab^2 ).

    Exact (stress ~ 1e-8 or below) when rank M <= dims. The picture is shifted so the origin is at 0.
    A Gram with a non-finite entry (a failed solve) is a :class:`ProblemError`."""
    M = np.asarray(gram, dtype=float)
    if not np.isfinite(M).all():
        raise ProblemError("the class-mean Gram has non-finite entries (the solve failed); nothing to draw")
    k = M.shape[0]
    m = k + 1
    full = np.zeros((m, m))
    full[:k, :k] = (M + M.T) / 2                       # the origin is the last point (zero row)
    D = gram_distances(full)
    upper = np.triu_indices(m, 1)
    scale = max(float(np.sum(D[upper] ** 2)), 1e-300)

    def distances(X):
        return np.sqrt(np.sum((X[:, None] - X[None, :]) ** 2, axis=-1))

    def stress(d):
        return float(np.sqrt(np.sum((d[upper] - D[upper]) ** 2) / scale))

    def smacof(X):
        d = distances(X)
        s = stress(d)
        for _ in range(iterations):
            ratio = np.where(d > 1e-300, D / np.where(d > 1e-300, d, 1.0), 0.0)
            B = -ratio
            B[np.diag_indices(m)] = 0.0
            B[np.diag_indices(m)] = -B.sum(axis=1)
            X = B @ X / m                               # the Guttman transform (never raises the stress)
            d = distances(X)
            s_new = stress(d)
            done = s - s_new <= tol
            s = s_new
            if done:
                break
        return X, s

    rng = np.random.default_rng(seed)
    spread = max(float(np.sqrt(np.max(np.diag(full)))), 1e-12)
    inits = [factor_gram(full, dims)] + [rng.normal(scale=spread, size=(m, dims)) for _ in range(starts - 1)]
    X, best = min((smacof(X0) for X0 in inits), key=lambda pair: pair[1])
    return MeansPicture(X[:k] - X[k], best)


def normalized_distance(M: np.ndarray, P: np.ndarray) -> float:
    """``|| M/||M||_F - P/||P||_F ||_F``: 0 when M and P have the same shape (up to scale).

    Reference value: ``normalized_distance(etf_gram(k), I) = sqrt(2 - 2 sqrt((k-1)/k))``.
    """
    M = np.asarray(M, dtype=float)
    P = np.asarray(P, dtype=float)
    return float(np.linalg.norm(M / np.linalg.norm(M) - P / np.linalg.norm(P)))


def nc1(H: np.ndarray, labels: np.ndarray, divide_by_k: bool = True,
        rtol: float = 1e-10) -> tuple[float, int]:
    """NC1 within-class variability ``trace(Sigma_W pinv(Sigma_B)) / k`` (Papyan et al.).

    ``Sigma_W = (1/n) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T`` (frequency weighted);
    ``Sigma_B = (1/k) sum_c (mu_c - mu_G)(mu_c - mu_G)^T`` with ``mu_G`` the mean of the class means.
    The pseudo-inverse drops eigenvalues of Sigma_B below ``rtol * max eigenvalue``; returns
    ``(nc1, rank of Sigma_B)``. ``divide_by_k=False`` gives the [OF] authors' convention.
    Never negative: both matrices are PSD.
    """
    H = np.asarray(H, dtype=float)
    labels = np.asarray(labels)
    mu = class_means(H, labels, int(labels.max()) + 1)
    within = H - mu[labels]
    return nc1_from_moments(mu, within.T @ within / len(H), divide_by_k, rtol)


def nc1_from_moments(mu: np.ndarray, sigma_w: np.ndarray, divide_by_k: bool = True,
                     rtol: float = 1e-10) -> tuple[float, int]:
    """:func:`nc1` from the class means mu (k, d) and Sigma_W (d, d) (for rows read in blocks, as
    ``theory_checks.compare`` does): ``(nc1, rank of Sigma_B)``."""
    k = len(mu)
    centred = mu - mu.mean(axis=0)
    sigma_b = centred.T @ centred / k
    vals, vecs = np.linalg.eigh(sigma_b)
    keep = vals > rtol * max(vals.max(), 0.0) if vals.max() > 0 else np.zeros_like(vals, dtype=bool)
    rank = int(keep.sum())
    if rank == 0:
        return (0.0 if np.allclose(sigma_w, 0) else float("inf")), 0
    proj = vecs[:, keep]
    pinv_b = proj @ np.diag(1.0 / vals[keep]) @ proj.T
    value = float(max(np.trace(sigma_w @ pinv_b), 0.0))
    return (value / k if divide_by_k else value), rank


def within_class_spread(H: np.ndarray, labels: np.ndarray) -> float:
    """``trace(Sigma_W) / mean_i ||h_i||^2``: the share of the rows' energy that lies off their class
    means, in [0, 1], 0 exactly when every class is collapsed. Unlike NC1 it sees spread in directions
    the class means do not span (NC1 projects Sigma_W onto the span of Sigma_B). For unit rows it is
    ``1 - sum_c (n_c / n) ||mu_c||^2``, i.e. one minus the mean within-class cosine (self pairs
    included). H (n, d), labels (n,) in 0..k-1."""
    H = np.asarray(H, dtype=float)
    labels = np.asarray(labels)
    mu = class_means(H, labels, int(labels.max()) + 1)
    energy = float(np.mean(np.sum(H * H, axis=1)))
    if energy == 0.0:
        return 0.0
    return float(np.mean(np.sum((H - mu[labels]) ** 2, axis=1)) / energy)


def equinorm(M: np.ndarray) -> float:
    """Coefficient of variation of the class-mean norms ``sqrt(diag M)`` (0 = equal norms)."""
    norms = np.sqrt(np.clip(np.diag(np.asarray(M, dtype=float)), 0.0, None))
    return float(norms.std() / norms.mean()) if norms.mean() > 0 else 0.0


def cosines(M: np.ndarray) -> np.ndarray:
    """Cosines between class means, ``M_cc' / sqrt(M_cc M_c'c')`` (k, k)."""
    M = np.asarray(M, dtype=float)
    norms = np.sqrt(np.clip(np.diag(M), 1e-300, None))
    return M / np.outer(norms, norms)


def equiangularity(M: np.ndarray) -> float:
    """Standard deviation of the off-diagonal cosines between class means (0 = equiangular)."""
    C = cosines(M)
    return float(C[~np.eye(len(C), dtype=bool)].std())


def procrustes_distance(H1: np.ndarray, H2: np.ndarray) -> float:
    """Alignment up to rotation: ``min_{Q orthogonal} ||H1 Q - H2||_F / ||H2||_F``.

    The minimiser is ``Q = U V^T`` from the SVD ``H1^T H2 = U S V^T`` (orthogonal Procrustes).
    H1 and H2 are (n, d) with the same shape.
    """
    H1 = np.asarray(H1, dtype=float)
    H2 = np.asarray(H2, dtype=float)
    U, _, Vt = np.linalg.svd(H1.T @ H2)
    return float(np.linalg.norm(H1 @ (U @ Vt) - H2) / np.linalg.norm(H2))
