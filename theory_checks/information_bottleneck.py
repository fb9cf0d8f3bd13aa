"""The Gaussian information-bottleneck view of embeddings (docs/theory.md section 10) [IB].

NumPy/SciPy only, float64. Shapes: embeddings ``X`` (n, d), one row per example; ``labels`` (n,)
integer class ids; covariances (d, d).

With Y the class label and all covariances frequency weighted (the maximum-likelihood, 1/n
convention), the law of total covariance holds exactly:

    Sigma_X     = (1/n) sum_i (x_i - xbar)(x_i - xbar)^T
    Sigma_W     = Sigma_{X|Y} = (1/n) sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T
    Sigma_B     = sum_c pi_c (mu_c - xbar)(mu_c - xbar)^T,   pi_c = n_c / n,  xbar = sum_c pi_c mu_c
    Sigma_X     = Sigma_W + Sigma_B.

(Note: this Sigma_B is weighted by class frequency around the global mean; the NC1 metric of
docs/theory.md section 6 in ``ufm.geometry.nc1`` uses an unweighted Sigma_B around the mean of the means.
The two agree for balanced classes.)

The Gaussian IB (Chechik et al. 2005) eigenvalues are ``lambda_i = eig(Sigma_W Sigma_X^{-1})`` in
ascending order, ``lambda_i = 1 - rho_i^2`` with ``rho_i`` the canonical correlations between X and
the one-hot Y, and the critical trade-off values are ``beta_i = 1 / (1 - lambda_i)`` (``inf`` where
``lambda_i = 1``). Since ``rank Sigma_B <= k - 1``, at most ``k - 1`` of them are finite.

Singular Sigma_X: everything is computed in the span of the data, i.e. on the eigenvectors of
Sigma_X whose eigenvalue exceeds ``rtol * (largest eigenvalue)`` (default ``rtol = 1e-10``);
directions with less relative variance are treated as absent (they carry no information).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.linalg

from ufm.errors import ProblemError

__all__ = [
    "IBAnalysis", "NoisyEmbeddings", "analyze", "critical_betas", "gaussian_mutual_information",
    "ib_curve", "ib_eigenvalues", "ib_from_covariances", "noisy_collapsed_embeddings", "sigma_b",
    "sigma_x", "sigma_x_given_y", "span_basis",
]

RTOL = 1e-10   # relative eigenvalue tolerance of Sigma_X defining the span of the data
ZTOL = 1e-12   # squared canonical correlations rho^2 <= ZTOL count as 0 (lambda = 1, beta = inf)


# --------------------------------------------------------------------------------------------------
# covariances

def _check(X, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ProblemError(f"embeddings must be a non-empty (n, d) array, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ProblemError("embeddings contain NaN or inf")
    if labels is None:
        return X, None
    labels = np.asarray(labels)
    if labels.shape != (X.shape[0],):
        raise ProblemError(f"labels must have shape ({X.shape[0]},) to match the embeddings, "
                           f"got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise ProblemError("labels must be integer class ids")
        labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise ProblemError("labels must be nonnegative class ids")
    return X, labels


def _means(X: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(present class means (k, d), their counts (k,)) over the classes that occur in ``labels``."""
    present, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(present), X.shape[1]))
    np.add.at(sums, inverse, X)
    return sums / counts[:, None], counts


def sigma_x(X: np.ndarray) -> np.ndarray:
    """Total covariance ``Sigma_X = (1/n) sum_i (x_i - xbar)(x_i - xbar)^T``, (d, d), for X (n, d)."""
    X, _ = _check(X)
    Xc = X - X.mean(axis=0)
    return (Xc.T @ Xc) / len(X)


def sigma_x_given_y(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Within-class covariance ``Sigma_W = Sigma_{X|Y} = (1/n) sum_i (x_i - mu_{y_i})(...)^T`` (d, d).

    Frequency weighted: equal to ``sum_c pi_c Cov(X | Y = c)`` with ``pi_c = n_c / n``.
    """
    X, labels = _check(X, labels)
    mu, _ = _means(X, labels)
    _, inverse = np.unique(labels, return_inverse=True)
    R = X - mu[inverse]
    return (R.T @ R) / len(X)


def sigma_b(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Between-class covariance ``Sigma_B = sum_c pi_c (mu_c - xbar)(mu_c - xbar)^T`` (d, d).

    ``pi_c = n_c / n``, ``xbar`` the global mean; ``sigma_x(X) = sigma_x_given_y(X, y) + sigma_b(X, y)``.
    Rank at most k - 1.
    """
    X, labels = _check(X, labels)
    mu, counts = _means(X, labels)
    pi = counts / counts.sum()
    C = mu - X.mean(axis=0)
    return (C.T * pi) @ C


def span_basis(sigma: np.ndarray, rtol: float = RTOL) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis of the span of a PSD covariance: ``(U (d, r), eigenvalues (r,))``.

    Keeps the eigenvectors of ``sigma`` with eigenvalue ``> rtol * max eigenvalue`` (descending);
    ``r = 0`` when ``sigma`` is zero.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    vals, vecs = np.linalg.eigh((sigma + sigma.T) / 2)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    top = vals[0] if vals.size else 0.0
    keep = vals > rtol * top if top > 0 else np.zeros(vals.shape, dtype=bool)
    return vecs[:, keep], vals[keep]


# --------------------------------------------------------------------------------------------------
# eigenvalues, critical betas, curve

def _pencil(sw: np.ndarray, sb: np.ndarray, k: int, rtol: float,
            ztol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(lambdas, rho2, U, var)`` of the pencil (Sigma_W, Sigma_X = Sigma_W + Sigma_B) in the span.

    Each eigenvalue is taken from the problem in which it is small: ``lambda_i`` from
    ``eigh(Sigma_W, Sigma_X)`` when ``lambda_i <= 1/2``, ``rho_i^2 = 1 - lambda_i`` from
    ``eigh(Sigma_B, Sigma_X)`` otherwise (the two pencils share eigenvectors, with eigenvalues
    ``lambda`` and ``1 - lambda``), so both ``lambda`` and ``1 - lambda`` keep their small values
    accurately. Only the ``min(k - 1, #{rho^2 > ztol})`` largest ``rho^2`` are kept as nonzero; the
    others are set to exactly ``rho^2 = 0`` (``lambda = 1``).
    """
    sw = (sw + sw.T) / 2
    sb = (sb + sb.T) / 2
    U, var = span_basis(sw + sb, rtol)
    r = U.shape[1]
    if r == 0:
        empty = np.zeros(0)
        return empty, empty, U, var
    X_r = np.diag(var)                    # Sigma_X in its own eigenbasis (the span)
    W_r = U.T @ sw @ U
    B_r = U.T @ sb @ U
    lam_w = scipy.linalg.eigh((W_r + W_r.T) / 2, X_r, eigvals_only=True)            # ascending
    rho2_b = scipy.linalg.eigh((B_r + B_r.T) / 2, X_r, eigvals_only=True)[::-1]      # descending
    lam_w = np.clip(lam_w, 0.0, 1.0)
    rho2_b = np.clip(rho2_b, 0.0, 1.0)
    small = lam_w <= 0.5
    rho2 = np.where(small, 1.0 - lam_w, rho2_b)
    lam = np.where(small, lam_w, 1.0 - rho2_b)
    n_finite = min(max(k - 1, 0), int(np.sum(rho2 > ztol)))
    rho2[n_finite:] = 0.0
    lam[n_finite:] = 1.0
    return lam, rho2, U, var


def _n_classes(labels: np.ndarray) -> int:
    return int(np.unique(labels).size)


def ib_eigenvalues(X: np.ndarray, labels: np.ndarray, rtol: float = RTOL,
                   ztol: float = ZTOL) -> np.ndarray:
    """``lambda_i = eig(Sigma_{X|Y} Sigma_X^{-1})`` ascending, shape (r,), r = dim of the data span.

    Computed as the symmetric generalized eigenproblem ``scipy.linalg.eigh(Sigma_W, Sigma_X)``
    restricted to the span of Sigma_X (see the module docstring for ``rtol``). All lie in [0, 1];
    ``lambda_i = 1 - rho_i^2``; at most k - 1 (k = number of classes present) are below 1, and
    squared canonical correlations ``<= ztol`` are reported as exactly ``lambda = 1``.
    """
    X, labels = _check(X, labels)
    lam, _, _, _ = _pencil(sigma_x_given_y(X, labels), sigma_b(X, labels), _n_classes(labels),
                           rtol, ztol)
    return lam


def critical_betas(lambdas: np.ndarray, one_minus_lambdas: np.ndarray | None = None) -> np.ndarray:
    """Critical trade-off values ``beta_i = 1 / (1 - lambda_i)`` (same shape), ``inf`` where
    ``lambda_i >= 1``.

    Pass ``one_minus_lambdas`` (= ``rho_i^2``, e.g. ``IBAnalysis.rho2``) to avoid the cancellation
    in ``1 - lambda_i`` when ``lambda_i`` is close to 1.
    """
    lam = np.asarray(lambdas, dtype=np.float64)
    gap = 1.0 - lam if one_minus_lambdas is None else np.asarray(one_minus_lambdas, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(gap > 0, 1.0 / np.where(gap > 0, gap, 1.0), np.inf)


def ib_curve(lambdas: np.ndarray, betas: np.ndarray | float,
             one_minus_lambdas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian IB curve ``(I(T;X), I(T;Y))`` in nats at each trade-off value ``beta``.

    On the active set ``I(beta) = {i : beta > beta_i}``, ``beta_i = 1 / (1 - lambda_i)``:

        I(T;X) = 1/2 sum_{i in I(beta)} log((beta - 1)(1 - lambda_i) / lambda_i)
        I(T;Y) = 1/2 sum_{i in I(beta)} log((beta - 1) / (beta lambda_i))

    ``lambdas`` (r,), ``betas`` scalar or any shape; returns two arrays of the shape of ``betas``.
    Both are 0 for ``beta <= beta_1``, continuous and nondecreasing in beta, with
    ``I(T;Y) <= I(T;X)`` and ``I(T;Y) -> I(X;Y) = -1/2 sum log lambda_i`` as beta -> inf.
    ``lambda_i = 0`` (exact collapse) makes both infinite once active.
    """
    lam = np.asarray(lambdas, dtype=np.float64).reshape(-1)
    gap = 1.0 - lam if one_minus_lambdas is None else \
        np.asarray(one_minus_lambdas, dtype=np.float64).reshape(-1)
    bcrit = critical_betas(lam, gap)
    beta = np.asarray(betas, dtype=np.float64)
    b = beta.reshape(-1, 1)
    active = b > bcrit[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.log((b - 1.0) * gap[None, :] / lam[None, :])
        ty = np.log((b - 1.0) / (b * lam[None, :]))
    i_tx = 0.5 * np.where(active, tx, 0.0).sum(axis=1)
    i_ty = 0.5 * np.where(active, ty, 0.0).sum(axis=1)
    return i_tx.reshape(beta.shape), i_ty.reshape(beta.shape)


def gaussian_mutual_information(lambdas: np.ndarray) -> float:
    """``I(X;Y) = -1/2 sum_i log lambda_i`` in nats (jointly Gaussian X, Y); ``inf`` if some
    ``lambda_i = 0``. The supremum of ``I(T;Y)`` over the IB curve."""
    lam = np.asarray(lambdas, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return float(-0.5 * np.sum(np.log(lam)))


# --------------------------------------------------------------------------------------------------
# bundled result

@dataclass(frozen=True)
class IBAnalysis:
    """The IB view of one set of embeddings (or of population covariances).

    - ``sigma_x``, ``sigma_w`` (= Sigma_{X|Y}), ``sigma_b``: (d, d), ``sigma_x = sigma_w + sigma_b``;
    - ``basis`` (d, r): orthonormal basis of the span of Sigma_X; ``variances`` (r,) its eigenvalues;
    - ``lambdas`` (r,) ascending in [0, 1]; ``rho2`` (r,) = 1 - lambdas (squared canonical
      correlations, computed without cancellation); ``critical_betas`` (r,) = 1 / rho2 (inf where 0);
    - ``k``: number of classes; ``rtol``, ``ztol``: the tolerances used.
    """

    sigma_x: np.ndarray
    sigma_w: np.ndarray
    sigma_b: np.ndarray
    basis: np.ndarray
    variances: np.ndarray
    lambdas: np.ndarray
    rho2: np.ndarray
    critical_betas: np.ndarray
    k: int
    rtol: float
    ztol: float

    @property
    def finite_betas(self) -> np.ndarray:
        """The finite critical betas, ascending (at most k - 1)."""
        return self.critical_betas[np.isfinite(self.critical_betas)]

    @property
    def canonical_correlations(self) -> np.ndarray:
        """``rho_i = sqrt(1 - lambda_i)``, descending, shape (r,)."""
        return np.sqrt(self.rho2)

    @property
    def mutual_information(self) -> float:
        """``I(X;Y) = -1/2 sum log lambda_i`` (nats)."""
        return gaussian_mutual_information(self.lambdas)

    def curve(self, betas: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """``(I(T;X), I(T;Y))`` at ``betas`` (see :func:`ib_curve`)."""
        return ib_curve(self.lambdas, betas, one_minus_lambdas=self.rho2)


def ib_from_covariances(sigma_w: np.ndarray, sigma_b: np.ndarray, k: int, rtol: float = RTOL,
                        ztol: float = ZTOL) -> IBAnalysis:
    """IB analysis from (population) covariances ``Sigma_W`` and ``Sigma_B`` (d, d) of a k-class
    problem; ``Sigma_X = Sigma_W + Sigma_B``."""
    sw = np.asarray(sigma_w, dtype=np.float64)
    sb = np.asarray(sigma_b, dtype=np.float64)
    if sw.ndim != 2 or sw.shape[0] != sw.shape[1] or sb.shape != sw.shape:
        raise ProblemError(f"Sigma_W and Sigma_B must be square of one shape, got {sw.shape}, {sb.shape}")
    lam, rho2, U, var = _pencil(sw, sb, int(k), rtol, ztol)
    return IBAnalysis(sigma_x=sw + sb, sigma_w=sw, sigma_b=sb, basis=U, variances=var, lambdas=lam,
                      rho2=rho2, critical_betas=critical_betas(lam, rho2), k=int(k), rtol=rtol,
                      ztol=ztol)


def analyze(X: np.ndarray, labels: np.ndarray, rtol: float = RTOL, ztol: float = ZTOL) -> IBAnalysis:
    """IB analysis of embeddings X (n, d) with labels (n,): empirical covariances, lambdas, betas."""
    X, labels = _check(X, labels)
    res = ib_from_covariances(sigma_x_given_y(X, labels), sigma_b(X, labels), _n_classes(labels),
                              rtol, ztol)
    # report the directly computed total covariance (equal to Sigma_W + Sigma_B up to rounding)
    return IBAnalysis(**{**res.__dict__, "sigma_x": sigma_x(X)})


# --------------------------------------------------------------------------------------------------
# noisy collapsed embeddings

@dataclass(frozen=True)
class NoisyEmbeddings:
    """Class means plus isotropic Gaussian within-class noise.

    ``X`` (n, d) = ``means[labels] + sigma * N(0, I_d)``, examples class by class; ``labels`` (n,);
    ``means`` (k, d); ``counts`` (k,); ``sigma`` >= 0.
    """

    X: np.ndarray
    labels: np.ndarray
    means: np.ndarray
    counts: np.ndarray
    sigma: float

    @property
    def frequencies(self) -> np.ndarray:
        """``pi_c = n_c / n`` (k,)."""
        return self.counts / self.counts.sum()

    def population_sigma_w(self) -> np.ndarray:
        """``Sigma_W = sigma^2 I_d``."""
        return self.sigma ** 2 * np.eye(self.means.shape[1])

    def population_sigma_b(self) -> np.ndarray:
        """``Sigma_B = sum_c pi_c (mu_c - mubar)(mu_c - mubar)^T``, ``mubar = sum_c pi_c mu_c``."""
        pi = self.frequencies
        C = self.means - pi @ self.means
        return (C.T * pi) @ C

    def population_analysis(self, rtol: float = RTOL, ztol: float = ZTOL) -> IBAnalysis:
        """IB analysis of the population covariances (closed forms hold exactly)."""
        return ib_from_covariances(self.population_sigma_w(), self.population_sigma_b(),
                                   int(np.count_nonzero(self.counts)), rtol, ztol)

    def sample_analysis(self, rtol: float = RTOL, ztol: float = ZTOL) -> IBAnalysis:
        """IB analysis of the empirical covariances of the sample ``X``."""
        return analyze(self.X, self.labels, rtol, ztol)


def noisy_collapsed_embeddings(mean_vectors: np.ndarray, counts: Sequence[int], sigma: float,
                               seed: int) -> NoisyEmbeddings:
    """Sample ``n_c`` points ``mu_c + sigma * z``, ``z ~ N(0, I_d)``, for each class c.

    ``mean_vectors`` (k, d) (e.g. ``ufm.geometry.factor_gram(etf_gram(k), d)`` for a simplex ETF, or
    ``np.eye(k, d)`` for an orthogonal frame); ``counts`` (k,) positive integers (imbalance: unequal
    counts); ``sigma >= 0`` (0 = exact collapse); ``seed`` for ``numpy.random.default_rng``.
    """
    means = np.asarray(mean_vectors, dtype=np.float64)
    if means.ndim != 2:
        raise ProblemError(f"mean_vectors must be (k, d), got shape {means.shape}")
    counts = np.asarray(counts)
    if counts.shape != (means.shape[0],) or np.any(counts < 1) or np.any(np.mod(counts, 1) != 0):
        raise ProblemError(f"counts must be {means.shape[0]} positive integers, one per class mean")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ProblemError(f"sigma must be a finite number >= 0, got {sigma!r}")
    counts = counts.astype(np.int64)
    labels = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(seed)
    X = means[labels] + float(sigma) * rng.standard_normal((len(labels), means.shape[1]))
    return NoisyEmbeddings(X=X, labels=labels, means=means, counts=counts, sigma=float(sigma))
