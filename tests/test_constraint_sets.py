"""The constraint sets (ufm/constraint_sets.py): one implementation answering NumPy and JAX alike,
each map checked against its defining formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ufm.constraint_sets import (CONSTRAINT_SETS, EUCLIDEAN, NONNEGATIVE_SPHERE, SPHERE, array_module,
                                 unit_sphere)

RNG = np.random.default_rng(0)
H0 = RNG.standard_normal((7, 4))
G0 = RNG.standard_normal((7, 4))


@pytest.mark.parametrize("name", sorted(CONSTRAINT_SETS))
def test_numpy_and_jax_give_the_same_maps(name):
    cset = CONSTRAINT_SETS[name]
    H = cset.point(H0)
    assert array_module(H) is np and array_module(cset.point(jnp.asarray(H0))) is jnp
    for f in (cset.tangent, cset.direction):
        np.testing.assert_allclose(np.asarray(f(jnp.asarray(H), jnp.asarray(G0))), f(H, G0), atol=1e-15)
    np.testing.assert_allclose(np.asarray(cset.retract(jnp.asarray(H0 * 3))), cset.retract(H0 * 3), atol=1e-15)
    assert float(cset.violation(H)) <= 1e-15
    jitted = jax.jit(lambda H, G: cset.direction(cset.retract(H), G))
    np.testing.assert_allclose(np.asarray(jitted(jnp.asarray(H0), jnp.asarray(G0))), cset.direction(cset.retract(H0), G0),
                               atol=1e-15)


def test_rows_land_on_the_sphere_and_the_nonnegative_sphere():
    S = SPHERE.retract(H0)
    np.testing.assert_allclose(np.linalg.norm(S, axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(S * np.linalg.norm(H0, axis=1, keepdims=True), H0, rtol=1e-14)
    P = NONNEGATIVE_SPHERE.retract(H0)
    assert (P >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(P, axis=1), 1.0, rtol=1e-15)
    assert unit_sphere(True) is NONNEGATIVE_SPHERE and unit_sphere(False) is SPHERE


def test_a_row_without_positive_entry_becomes_its_largest_coordinate():
    X = np.array([[-3.0, -1.0, -2.0], [1.0, -1.0, 0.0]])
    np.testing.assert_array_equal(NONNEGATIVE_SPHERE.retract(X), [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(NONNEGATIVE_SPHERE.retract(jnp.asarray(X))), [[0, 1, 0], [1, 0, 0]])


def test_tangent_projection_is_orthogonal_to_each_row_and_idempotent():
    H = SPHERE.point(H0)
    T = SPHERE.tangent(H, G0)
    np.testing.assert_allclose(np.sum(T * H, axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(SPHERE.tangent(H, T), T, atol=1e-15)
    # a brute-force loop over the rows: (I - h h^T) g
    for i in range(len(H)):
        np.testing.assert_allclose(T[i], (np.eye(4) - np.outer(H[i], H[i])) @ G0[i], atol=1e-15)


def test_the_cone_direction_of_the_nonnegative_sphere():
    H = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    G = np.array([[1.0, -1.0, 2.0], [-3.0, 4.0, 0.5]])
    D = NONNEGATIVE_SPHERE.direction(H, G)
    # free coordinates: the tangent projection; active ones (h = 0): min(G, 0)
    radial = np.sum(G * H, axis=1)
    expected = np.array([[1.0 - radial[0] * 0.6, -1.0 - radial[0] * 0.8, 0.0],
                         [-3.0, 0.0, 0.5 - radial[1]]])
    np.testing.assert_allclose(D, expected, atol=1e-15)
    # -D is the projection of -G on the tangent cone: at a KKT point it vanishes
    kkt_G = np.array([[0.6, 0.8, 3.0], [2.0, 1.0, 1.0]])    # radial on the free part, >= 0 on active
    assert np.abs(NONNEGATIVE_SPHERE.direction(np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]), kkt_G)).max() == 0


def test_violation_measures_the_distance_to_the_set():
    assert float(SPHERE.violation(np.array([[2.0, 0.0]]))) == 1.0
    assert float(NONNEGATIVE_SPHERE.violation(np.array([[0.6, -0.8]]))) == pytest.approx(0.8)
    assert EUCLIDEAN.violation(H0) == 0.0
    np.testing.assert_array_equal(EUCLIDEAN.retract(H0), H0)


def test_random_points_lie_on_the_set_and_follow_the_key():
    for cset in (SPHERE, NONNEGATIVE_SPHERE):
        X = cset.random_point(jax.random.PRNGKey(3), (5, 3))
        assert float(cset.violation(X)) <= 1e-15
        np.testing.assert_array_equal(X, cset.random_point(jax.random.PRNGKey(3), (5, 3)))
        assert float(cset.violation(cset.random_point_np(np.random.default_rng(1), (5, 3)))) <= 1e-15


def test_the_direction_is_the_tangent_cone_projection_kkt_conditions():
    rng = np.random.default_rng(0)
    H = np.abs(rng.standard_normal((5, 4)))
    H[:, 0] = 0.0                          # an active bound in every row
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    G = rng.standard_normal((5, 4))
    g = np.asarray(SPHERE.direction(jnp.asarray(H), jnp.asarray(G)))
    np.testing.assert_allclose(np.sum(g * H, axis=1), 0.0, atol=1e-14)
    gc = np.asarray(NONNEGATIVE_SPHERE.direction(jnp.asarray(H), jnp.asarray(G)))
    # -gc is the projection of -G on {v : <v_i, h_i> = 0, v_i0 >= 0}: check the KKT conditions directly
    v = -gc
    assert np.allclose(np.sum(v * H, axis=1), 0.0, atol=1e-14) and (v[:, 0] >= 0).all()
    np.testing.assert_allclose(v[:, 0], np.maximum(-G[:, 0], 0.0))
    free = v[:, 1:] + G[:, 1:]
    np.testing.assert_allclose(free, np.sum(G * H, axis=1, keepdims=True) * H[:, 1:], atol=1e-14)


def test_a_new_constraint_set_is_one_class_and_one_entry(monkeypatch):
    """docs/architecture.md "How to add a constraint set": a class with the ConstraintSet maps and one
    entry in CONSTRAINT_SETS; the checks of every registered set run on it, and solvers.descent
    descends on it (rows of norm 2: the minimiser of -sum_i <h_i, v_i> is h_i = 2 v_i / |v_i|)."""
    import optax

    from solvers import descent
    from solvers.optimizers import OPTIMIZERS
    from ufm.constraint_sets import random_point

    class RadiusTwoSphere:
        """Rows of norm 2."""

        name = "sphere-radius-2"

        def tangent(self, H, G):
            return G - array_module(H).sum(G * H, axis=1, keepdims=True) * H / 4

        def direction(self, H, G):
            return self.tangent(H, G)

        def retract(self, V):
            return 2 * V / array_module(V).linalg.norm(V, axis=1, keepdims=True)

        def point(self, X):
            return self.retract(X)

        def violation(self, H):
            xp = array_module(H)
            return xp.max(xp.abs(xp.linalg.norm(H, axis=1) - 2))

        def random_point(self, key, shape, dtype=jnp.float64):
            return random_point(self, key, shape, dtype)

        def random_point_np(self, rng, shape):
            return self.point(rng.standard_normal(shape))

    cset = RadiusTwoSphere()
    monkeypatch.setitem(CONSTRAINT_SETS, cset.name, cset)                  # the one entry
    test_numpy_and_jax_give_the_same_maps(cset.name)
    assert float(cset.violation(cset.random_point(jax.random.PRNGKey(0), (5, 3)))) <= 1e-12
    V = RNG.standard_normal((6, 3))
    tx = optax.with_extra_args_support(OPTIMIZERS["bb"](0.1, 500, cset, False))
    state = jax.jit(lambda H: descent.run(lambda X: -jnp.sum(X * V), cset, tx, H, max_steps=500, tol=1e-14,
                                          grad_tol=1e-9))(cset.point(jnp.asarray(RNG.standard_normal((6, 3)))))
    assert bool(state.converged)
    np.testing.assert_allclose(np.asarray(state.params), 2 * V / np.linalg.norm(V, axis=1, keepdims=True), atol=1e-9)
