"""The NumPy retraction onto the constraint sets."""

import numpy as np

from ufm.constraints import retract


def test_rows_land_on_the_sphere_and_the_nonnegative_sphere():
    X = np.random.default_rng(0).standard_normal((6, 4))
    S = retract(X, relu=False)
    np.testing.assert_allclose(np.linalg.norm(S, axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(S * np.linalg.norm(X, axis=1, keepdims=True), X, rtol=1e-14)
    P = retract(X, relu=True)
    assert (P >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(P, axis=1), 1.0, rtol=1e-15)


def test_a_row_without_positive_entry_becomes_its_largest_coordinate():
    X = np.array([[-3.0, -1.0, -2.0], [1.0, -1.0, 0.0]])
    np.testing.assert_array_equal(retract(X, relu=True), [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
