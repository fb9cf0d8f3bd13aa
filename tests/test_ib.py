"""Information-bottleneck view (docs/theory.md section 10) against independent computations.

Independent references used here: ``np.linalg.eigvals(Sigma_W @ inv(Sigma_X))`` (nonsymmetric, no
span handling), canonical correlations from the SVD of ``Q_X^T Q_Y`` (QR of the centred data and
the centred one-hot labels), per-class ``np.cov`` loops, log-determinants, hand-written closed forms
and the explicit Chechik et al. (2005) optimal projection ``T = A X + xi``.

Tolerances: closed forms on population covariances 1e-12 relative; sample eigenvalues against the
nonsymmetric eigen-solver 1e-10 absolute (its own accuracy is ~cond(Sigma_X) * eps); curve values
1e-9 relative.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory_checks import information_bottleneck as ib
from ufm.errors import ProblemError
from ufm.geometry import etf_gram, factor_gram


# ---------------------------------------------------------------------------------------- helpers

def _gaussian_data(counts, d, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    means = spread * rng.standard_normal((len(counts), d))
    labels = np.repeat(np.arange(len(counts)), counts)
    X = means[labels] + rng.standard_normal((len(labels), d)) @ rng.standard_normal((d, d)) * 0.5
    return X, labels


def _direct_lambdas(X, labels):
    """Ascending real eigenvalues of Sigma_W Sigma_X^{-1}, covariances by per-class np.cov loops."""
    n = len(X)
    sw = sum((np.sum(labels == c) / n) * np.cov(X[labels == c].T, bias=True)
             for c in np.unique(labels))
    sx = np.cov(X.T, bias=True)
    lam = np.linalg.eigvals(sw @ np.linalg.inv(sx))
    assert np.max(np.abs(lam.imag)) < 1e-10
    return np.sort(lam.real), sw, sx


def _canonical_correlations(X, labels):
    """Canonical correlations of X and one-hot Y (last column dropped) via QR + SVD, descending."""
    k = int(labels.max()) + 1
    Y = np.eye(k)[labels][:, :-1]
    Qx, _ = np.linalg.qr(X - X.mean(axis=0))
    Qy, _ = np.linalg.qr(Y - Y.mean(axis=0))
    return np.linalg.svd(Qx.T @ Qy, compute_uv=False)


def _etf(k, d):
    return factor_gram(etf_gram(k), d)


def _of(k, d):
    return np.eye(k, d)


# --------------------------------------------------------------------------------- covariances

def test_total_covariance_decomposes_into_within_and_between():
    X, labels = _gaussian_data([7, 12, 30], 4, seed=0)
    n = len(X)
    xbar = X.mean(axis=0)
    sw = np.zeros((4, 4))
    sb = np.zeros((4, 4))
    for c in range(3):
        Xc = X[labels == c]
        mu = Xc.mean(axis=0)
        sw += sum(np.outer(x - mu, x - mu) for x in Xc) / n
        sb += len(Xc) / n * np.outer(mu - xbar, mu - xbar)
    np.testing.assert_allclose(ib.sigma_x_given_y(X, labels), sw, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ib.sigma_b(X, labels), sb, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ib.sigma_x(X), np.cov(X.T, bias=True), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ib.sigma_x(X), sw + sb, rtol=1e-12, atol=1e-14)
    assert np.linalg.matrix_rank(sb) == 2


# ---------------------------------------------------------------------------------- eigenvalues

@pytest.mark.parametrize("counts,d,seed", [([40, 40, 40], 3, 1), ([10, 25, 60, 15], 6, 2),
                                           ([30] * 5, 4, 3), ([50, 8], 5, 4)])
def test_lambdas_match_direct_eigenvalues(counts, d, seed):
    X, labels = _gaussian_data(counts, d, seed)
    want, _, _ = _direct_lambdas(X, labels)
    got = ib.ib_eigenvalues(X, labels)
    assert got.shape == (d,)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    k = len(counts)
    assert np.sum(got < 1) <= k - 1
    assert np.all((got >= 0) & (got <= 1))


@pytest.mark.parametrize("counts,d,seed", [([40, 40, 40], 3, 5), ([10, 25, 60, 15], 6, 6),
                                           ([30] * 5, 7, 7)])
def test_lambdas_are_one_minus_squared_canonical_correlations(counts, d, seed):
    X, labels = _gaussian_data(counts, d, seed)
    k = len(counts)
    rho = _canonical_correlations(X, labels)
    want = np.sort(np.concatenate([1 - rho ** 2, np.ones(d - len(rho))]))
    res = ib.analyze(X, labels)
    np.testing.assert_allclose(res.lambdas, want, rtol=0, atol=1e-12)
    # rho^2 is reported without cancellation: relative accuracy
    np.testing.assert_allclose(res.rho2[:k - 1], rho ** 2, rtol=1e-10)
    np.testing.assert_allclose(res.canonical_correlations[:k - 1], rho, rtol=1e-10)
    np.testing.assert_allclose(res.critical_betas[:k - 1], 1 / rho ** 2, rtol=1e-10)
    assert np.all(np.isinf(res.critical_betas[k - 1:]))


def test_singular_sigma_x_is_handled_in_the_span():
    # 3-dimensional data placed by an isometry into 8 dimensions: Sigma_X has rank 3
    X3, labels = _gaussian_data([20, 30, 25, 40], 3, seed=8)
    Q, _ = np.linalg.qr(np.random.default_rng(9).standard_normal((8, 3)))
    X8 = X3 @ Q.T + 5.0
    res = ib.analyze(X8, labels)
    assert res.basis.shape == (8, 3)
    want, _, _ = _direct_lambdas(X3, labels)
    np.testing.assert_allclose(res.lambdas, want, rtol=0, atol=1e-10)
    rho = _canonical_correlations(X3, labels)
    np.testing.assert_allclose(res.rho2, rho ** 2, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(2, 20), min_size=2, max_size=5), st.integers(1, 6), st.integers(0, 10**6))
def test_lambda_properties_on_random_data(counts, d, seed):
    X, labels = _gaussian_data(counts, d, seed)
    res = ib.analyze(X, labels)
    k = len(counts)
    assert np.all(np.diff(res.lambdas) >= 0)
    assert np.all((res.lambdas >= 0) & (res.lambdas <= 1))
    np.testing.assert_allclose(res.lambdas + res.rho2, 1, atol=1e-12)
    assert len(res.finite_betas) <= k - 1
    assert np.all(res.finite_betas >= 1)


# ----------------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize("geometry,s_hand", [(_etf, lambda k: 1 / (k - 1)), (_of, lambda k: 1 / k)])
@pytest.mark.parametrize("k", [2, 3, 5, 8])
@pytest.mark.parametrize("sigma", [0.05, 0.7, 3.0])
def test_balanced_transitions_coincide_at_one_plus_sigma2_over_s(geometry, s_hand, k, sigma):
    d = k + 2
    means = geometry(k, d)
    emb = ib.noisy_collapsed_embeddings(means, [4] * k, sigma, seed=0)
    # s computed independently: Sigma_B of the balanced means, by a loop
    centred = means - means.mean(axis=0)
    sb = sum(np.outer(m, m) for m in centred) / k
    vals = np.sort(np.linalg.eigvalsh(sb))[::-1]
    s = vals[0]
    np.testing.assert_allclose(vals[:k - 1], s, rtol=1e-12)   # common nonzero eigenvalue
    assert s == pytest.approx(s_hand(k), rel=1e-12)             # unit ETF: 1/(k-1); OF: 1/k
    res = emb.population_analysis()
    assert len(res.finite_betas) == k - 1
    np.testing.assert_allclose(res.finite_betas, 1 + sigma ** 2 / s, rtol=1e-12)
    np.testing.assert_allclose(res.lambdas[:k - 1], sigma ** 2 / (sigma ** 2 + s), rtol=1e-12)
    np.testing.assert_allclose(res.sigma_b, sb, atol=1e-15)


@pytest.mark.parametrize("scale,sigma", [(1e-5, 1.0), (1.0, 1e-7)])
def test_weak_separation_and_near_collapse_keep_relative_accuracy(scale, sigma):
    # rho^2 ~ 5e-11 (weak): beta_i relative accuracy needs rho^2 computed without 1 - lambda;
    # lambda ~ 2e-14 (near collapse): lambda itself is needed to relative accuracy
    k = 3
    emb = ib.noisy_collapsed_embeddings(scale * _etf(k, 5), [7] * k, sigma, seed=0)
    s = scale ** 2 / (k - 1)                     # unit ETF: Sigma_B eigenvalue 1/(k-1), scaled
    res = emb.population_analysis()
    np.testing.assert_allclose(res.finite_betas, 1 + sigma ** 2 / s, rtol=1e-12)
    np.testing.assert_allclose(res.rho2[:k - 1], s / (sigma ** 2 + s), rtol=1e-12)
    np.testing.assert_allclose(res.lambdas[:k - 1], sigma ** 2 / (sigma ** 2 + s), rtol=1e-10)


@pytest.mark.parametrize("means,counts", [
    (_etf(4, 5), [10, 20, 30, 40]),                 # imbalanced ETF
    (_of(3, 4), [5, 50, 500]),                      # imbalanced OF
    (np.diag([1.0, 2.0, 3.0]), [10, 10, 10]),       # balanced, asymmetric (unequal norms)
])
def test_imbalanced_or_asymmetric_geometries_split_the_transitions(means, counts):
    sigma = 0.4
    emb = ib.noisy_collapsed_embeddings(means, counts, sigma, seed=1)
    res = emb.population_analysis()
    k = len(counts)
    betas = res.finite_betas
    assert len(betas) == k - 1
    assert np.min(np.diff(betas)) > 1e-3 * betas[0]          # distinct values
    # against the direct nonsymmetric eigen-computation on the (full-rank) population covariances
    pi = np.asarray(counts) / np.sum(counts)
    mbar = pi @ means
    sb = sum(p * np.outer(m - mbar, m - mbar) for p, m in zip(pi, means))
    sx = sigma ** 2 * np.eye(means.shape[1]) + sb
    lam = np.sort(np.linalg.eigvals(sigma ** 2 * np.linalg.inv(sx)).real)
    np.testing.assert_allclose(res.lambdas, lam, rtol=0, atol=1e-12)
    np.testing.assert_allclose(betas, 1 / (1 - lam[:k - 1]), rtol=1e-10)


@pytest.mark.parametrize("means,counts", [(_etf(5, 7), [6] * 5), (_of(4, 6), [3, 9, 2, 20]),
                                          (_etf(3, 3), [4, 8, 16])])
def test_exact_collapse_puts_all_transitions_at_one(means, counts):
    k = len(counts)
    emb = ib.noisy_collapsed_embeddings(means, counts, 0.0, seed=2)
    for res in (emb.population_analysis(), emb.sample_analysis()):
        assert res.basis.shape[1] == k - 1                    # span of the centred means
        assert len(res.finite_betas) == k - 1
        np.testing.assert_allclose(res.finite_betas, 1.0, rtol=0, atol=1e-12)
        assert np.all(res.lambdas <= 1e-12)
        assert res.mutual_information > 10                     # I(X;Y) -> inf at exact collapse


def test_sample_covariances_approach_population_ones():
    emb = ib.noisy_collapsed_embeddings(_etf(3, 4), [4000] * 3, 0.5, seed=3)
    pop, smp = emb.population_analysis(), emb.sample_analysis()
    np.testing.assert_allclose(smp.finite_betas, pop.finite_betas, rtol=0.05)
    np.testing.assert_allclose(emb.X[emb.labels == 1].mean(axis=0), emb.means[1], atol=0.05)


# ------------------------------------------------------------------------------------ the curve

def _analysis_for_curve():
    emb = ib.noisy_collapsed_embeddings(_etf(4, 6), [15, 30, 45, 60], 0.6, seed=4)
    return emb, emb.sample_analysis()


def test_curve_monotone_ordered_zero_below_first_transition():
    _, res = _analysis_for_curve()
    b1 = res.finite_betas[0]
    grid = np.concatenate([[0.5, 1.0, b1], np.geomspace(b1 * (1 + 1e-9), 1e8, 400)])
    itx, ity = res.curve(grid)
    assert itx.shape == ity.shape == grid.shape
    np.testing.assert_array_equal(itx[:3], 0.0)
    np.testing.assert_array_equal(ity[:3], 0.0)
    assert np.all(ity <= itx + 1e-12)
    assert np.all(np.diff(itx) >= -1e-12) and np.all(np.diff(ity) >= -1e-12)
    # continuous across each transition
    for b in res.finite_betas:
        lo = res.curve(b * (1 - 1e-10))
        hi = res.curve(b * (1 + 1e-10))
        assert abs(hi[0] - lo[0]) < 1e-6 and abs(hi[1] - lo[1]) < 1e-6


def test_curve_value_against_hand_formula():
    emb, res = _analysis_for_curve()
    lam, _, _ = _direct_lambdas(emb.X, emb.labels)
    b = 1 / (1 - lam[:3])
    beta = 0.5 * (b[1] + b[2])                               # two directions active
    itx = 0.5 * (math.log((beta - 1) * (1 - lam[0]) / lam[0])
                 + math.log((beta - 1) * (1 - lam[1]) / lam[1]))
    ity = 0.5 * (math.log((beta - 1) / (beta * lam[0])) + math.log((beta - 1) / (beta * lam[1])))
    got = ib.ib_curve(res.lambdas, beta)
    assert got[0].shape == ()
    assert float(got[0]) == pytest.approx(itx, rel=1e-9)
    assert float(got[1]) == pytest.approx(ity, rel=1e-9)
    assert res.curve(beta)[0] == pytest.approx(itx, rel=1e-9)


def test_curve_matches_the_explicit_optimal_projection():
    """Chechik et al. (2005): T = A X + xi, xi ~ N(0, I), A's rows alpha_i v_i^T with v_i the left
    eigenvectors of Sigma_W Sigma_X^{-1} and alpha_i^2 = (beta (1 - lambda_i) - 1) / (lambda_i r_i),
    r_i = v_i^T Sigma_X v_i. Then I(T;X) = 1/2 logdet(A Sx A^T + I) and
    I(T;Y) = I(T;X) - 1/2 logdet(A Sw A^T + I)."""
    emb, res = _analysis_for_curve()
    _, sw, sx = _direct_lambdas(emb.X, emb.labels)
    lam, V = np.linalg.eig(np.linalg.inv(sx) @ sw)          # columns: Sx^{-1} Sw v = lambda v
    lam, V = lam.real, V.real
    for beta in [1.2, 1.7, 3.0, 40.0]:
        rows = []
        for li, v in zip(lam, V.T):
            if beta * (1 - li) > 1 + 1e-12:
                rows.append(math.sqrt((beta * (1 - li) - 1) / (li * (v @ sx @ v))) * v)
        if not rows:
            want = (0.0, 0.0)
        else:
            A = np.array(rows)
            tx = 0.5 * np.linalg.slogdet(A @ sx @ A.T + np.eye(len(A)))[1]
            want = (tx, tx - 0.5 * np.linalg.slogdet(A @ sw @ A.T + np.eye(len(A)))[1])
        got = res.curve(beta)
        assert float(got[0]) == pytest.approx(want[0], rel=1e-9, abs=1e-12)
        assert float(got[1]) == pytest.approx(want[1], rel=1e-9, abs=1e-12)


def test_relevant_information_bounded_by_gaussian_mutual_information():
    emb, res = _analysis_for_curve()
    _, sw, sx = _direct_lambdas(emb.X, emb.labels)
    # I(X;Y) = h(X) - h(X|Y) = 1/2 (logdet Sigma_X - logdet Sigma_W), by log-determinants
    mi = 0.5 * (np.linalg.slogdet(sx)[1] - np.linalg.slogdet(sw)[1])
    assert res.mutual_information == pytest.approx(mi, rel=1e-10)
    assert ib.gaussian_mutual_information(res.lambdas) == pytest.approx(mi, rel=1e-10)
    betas = np.geomspace(1.0, 1e12, 200)
    _, ity = res.curve(betas)
    assert np.all(ity <= mi + 1e-12)
    # the gap at large beta is -1/2 sum log(1 - 1/beta) ~ (k - 1) / (2 beta)
    assert mi - ity[-1] == pytest.approx(3 / (2 * 1e12), rel=1e-3)


def test_critical_betas_function():
    lam = np.array([0.0, 0.25, 0.5, 1.0])
    np.testing.assert_array_equal(ib.critical_betas(lam), [1.0, 4 / 3, 2.0, np.inf])
    np.testing.assert_array_equal(ib.critical_betas(lam, one_minus_lambdas=1 - lam),
                                  [1.0, 4 / 3, 2.0, np.inf])


# ----------------------------------------------------------------------------- input and layering

def test_bad_input_raises_problem_error():
    X = np.zeros((4, 2))
    with pytest.raises(ProblemError):
        ib.ib_eigenvalues(X, np.array([0, 1, 1]))
    with pytest.raises(ProblemError):
        ib.ib_eigenvalues(np.zeros(4), np.array([0, 1, 1, 0]))
    with pytest.raises(ProblemError):
        ib.noisy_collapsed_embeddings(np.eye(3), [1, 2], 0.1, seed=0)
    with pytest.raises(ProblemError):
        ib.noisy_collapsed_embeddings(np.eye(3), [1, 2, 3], -1.0, seed=0)


def test_all_equal_embeddings_give_an_empty_spectrum():
    res = ib.analyze(np.ones((6, 3)), np.array([0, 0, 1, 1, 2, 2]))
    assert res.lambdas.shape == (0,) and res.finite_betas.shape == (0,)
    assert res.curve(5.0) == (0.0, 0.0)


def test_module_imports_neither_solvers_nor_front_ends():
    tree = ast.parse(Path(ib.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    assert not any(n.split(".")[0] == "solvers" for n in names)
    assert not any(n in ("ufm.app.cli", "ufm.app.plots", "ufm.app.explore", "ufm.__main__") for n in names)
    assert not any(n.split(".")[0] in ("jax", "torch", "matplotlib") for n in names)
