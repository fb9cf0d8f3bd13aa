"""Geometry metrics against closed forms (docs/theory.md section 6) and direct computations."""

import math

import numpy as np
import pytest

from ufm import geometry as g


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_etf_gram_and_reference_distance(k):
    E = g.etf_gram(k)
    assert np.allclose(np.diag(E), 1) and np.allclose(E[0, 1], -1 / (k - 1))
    assert np.linalg.matrix_rank(E) == k - 1
    want = math.sqrt(2 - 2 * math.sqrt((k - 1) / k))
    assert g.normalized_distance(E, g.orthogonal_frame_gram(k)) == pytest.approx(want, rel=1e-12)
    assert g.normalized_distance(3 * E, E) == pytest.approx(0, abs=1e-14)


def test_factor_gram_reproduces_a_low_rank_gram():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 3))
    G = X @ X.T
    F = g.factor_gram(G, 3)
    np.testing.assert_allclose(F @ F.T, G, atol=1e-12)
    assert g.factor_gram(G, 8).shape == (6, 8)


def test_class_means_and_mean_gram_from_example_gram():
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 1, 1, 1, 2])
    H = rng.standard_normal((6, 4))
    mu = np.stack([H[labels == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(g.class_means(H, labels), mu)
    np.testing.assert_allclose(g.class_mean_gram(H, labels), mu @ mu.T)
    np.testing.assert_allclose(g.mean_gram_from_gram(H @ H.T, labels), mu @ mu.T, atol=1e-12)
    centred = mu - mu.mean(axis=0)
    np.testing.assert_allclose(g.class_mean_gram(H, labels, centered=True), centred @ centred.T)


def test_nc1_zero_under_collapse_and_matches_direct_formula():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), [4, 3, 5])
    mu = rng.standard_normal((3, 5))
    value, rank = g.nc1(mu[labels], labels)
    assert value == pytest.approx(0, abs=1e-20) and rank == 2
    H = mu[labels] + 0.1 * rng.standard_normal((12, 5))
    means = np.stack([H[labels == c].mean(0) for c in range(3)])
    sw = sum(np.outer(h - means[y], h - means[y]) for h, y in zip(H, labels)) / 12
    sb = sum(np.outer(m - means.mean(0), m - means.mean(0)) for m in means) / 3
    want = np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10)) / 3
    value, rank = g.nc1(H, labels)
    assert value == pytest.approx(want, rel=1e-8) and rank == 2
    assert g.nc1(H, labels, divide_by_k=False)[0] == pytest.approx(3 * want, rel=1e-8)


def test_equinorm_equiangularity():
    E = g.etf_gram(4)
    assert g.equinorm(E) == pytest.approx(0, abs=1e-15)
    assert g.equiangularity(E) == pytest.approx(0, abs=1e-15)
    M = np.diag([1.0, 4.0])
    assert g.equinorm(M) == pytest.approx(np.std([1, 2]) / 1.5)
    M = np.array([[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1.0]])
    assert g.equiangularity(M) == pytest.approx(np.std([0.5, 0, 0, 0.5, 0, 0]))


def test_procrustes_undoes_a_rotation():
    rng = np.random.default_rng(3)
    H = rng.standard_normal((10, 4))
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    assert g.procrustes_distance(H @ Q, H) == pytest.approx(0, abs=1e-12)
    assert g.procrustes_distance(H + 1.0, H) > 0.1
