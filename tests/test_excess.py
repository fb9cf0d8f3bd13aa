"""The excess form (ufm/objectives/scl/formula.py, docs/theory.md "The excess form") against the arbitrary-precision
reference tests/reference_mp.py (written from the formula alone), down to tau = 0.01 (E / L ~ 2e-8
on collapsed rows, below the 1e-9 relative precision asked of E only by the loss's own rounding) and
to tau = 0.001, where E ~ 1e-650 underflows float64 and log E does not."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import reference_mp as R
from reference import collapsed_embeddings, scl_loop
from solvers.certificate import certify_embeddings
from ufm.objectives.scl.gram import problem_constant
from ufm.objectives.scl.losses import problem_log_excess
from ufm import Batching, Problem, Prototypes
from ufm.batching import pack
from ufm.objectives.scl.formula import excess_parts_packed, reference_log_excess_packed, reduced_excess, representatives


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _near_collapse(counts, k_dim, spread, seed):
    """Collapsed rows at random class directions, each row moved by ``spread`` (then unit)."""
    rng = np.random.default_rng(seed)
    means = _unit(rng.standard_normal((len(counts), k_dim)))
    H = collapsed_embeddings(means, counts) + spread * rng.standard_normal((sum(counts), k_dim))
    return _unit(H)


@pytest.mark.parametrize("tau", [0.5, 0.1, 0.05, 0.02, 0.01])
@pytest.mark.parametrize("spread", [0.0, 1e-3, 0.3])
def test_excess_equals_the_mpmath_reference(tau, spread):
    """Full relative precision of E (1e-9 relative) at every tau, collapsed or not. At tau = 0.01
    and spread 0 the excess is ~2e-8 of the loss."""
    counts = [5, 4, 3]
    problem = Problem.from_counts(counts, tau=tau, dim=4)
    H = _near_collapse(counts, 4, spread, seed=1)
    want = R.excess_mp(H, problem.labels, tau)
    # both backends: NumPy (the certificate's) and JAX (gradient descent's objective)
    assert np.exp(problem_log_excess(problem, H)) == pytest.approx(float(want), rel=1e-9)
    packed = pack(problem.batches(0))
    jax_log = reference_log_excess_packed(jnp.asarray(H), jnp.asarray(problem.labels),
                                jnp.asarray(representatives(problem.labels)), tau,
                                jnp.asarray(packed.index), jnp.asarray(packed.valid))
    assert np.exp(float(jax_log)) == pytest.approx(float(want), rel=1e-9)


@pytest.mark.parametrize("tau", [0.02, 0.01])
@pytest.mark.parametrize("spread", [1e-8, 1e-6])
def test_near_collapse_excess_is_that_of_the_normalised_rows(tau, spread):
    """Near collapse at small tau the excess is the within-class term, ~ var(X)/2 with X ~ spread^2/tau
    (the between-class term is ~e^{-1.5/tau}): at spread 1e-8, tau 0.01, within ~ 1e-28 per anchor
    while X ~ 1e-14. Two float64 traps meet here, and the test sees both:

    - float rows have norm 1 only to ~1e-16, which moves X by ~1e-16/tau, as much as X itself: the
      excess of the rows as given differs from that of the points they stand for (the rows
      normalised exactly, which mpmath does in 80 digits) by ~10% at spread 1e-8;
    - a within term formed from e^X carries an absolute error eps |X|, here 1e-2 relative (the
      toolkit's earlier formula was off by 7e-3 in log E at spread 1e-8).

    The toolkit computes the normalised points' excess from the centred logits X - mean X, so its
    error is the rounding of X: 1e-8 in log E (measured 1.8e-9), on every backend that reports it:
    the JAX objective and the certificate's Gram-space pass."""
    counts = [4, 3, 3]
    problem = Problem.from_counts(counts, tau=tau, dim=3)
    means = _unit(np.eye(3) - 1 / 3)
    rng = np.random.default_rng(5)
    H = _unit(collapsed_embeddings(means, counts) + spread * rng.standard_normal((sum(counts), 3)))
    want = float(mpmath.log(R.excess_mp(H, problem.labels, tau, unit=True)))
    assert problem_log_excess(problem, H) == pytest.approx(want, abs=1e-8)
    assert certify_embeddings(problem, H).log_excess == pytest.approx(want, abs=1e-8)
    if spread == 1e-8:
        # the rows as given, norm error kept: a different number, by far more than the tolerance
        assert abs(float(mpmath.log(R.excess_mp(H, problem.labels, tau))) - want) > 1e-3


@pytest.mark.parametrize("tau", [0.5, 0.05, 0.01])
def test_excess_with_batches_and_prototypes(tau):
    counts = [4, 3, 3]
    H = _near_collapse(counts, 5, 1e-2, seed=2)
    batching = Batching.from_lists([[0, 1, 4, 7, 8], [2, 3, 5, 6, 9, 0]])
    for prototypes in (None, Prototypes("etf", 2, anchors=True), Prototypes("of", 1, anchors=False)):
        problem = Problem.from_counts(counts, tau=tau, dim=5, batching=batching, prototypes=prototypes)
        W, wl = problem.prototype_rows()
        want = R.excess_mp(H, problem.labels, tau, batches=problem.batches(0), prototypes=W,
                           prototype_labels=wl, prototype_anchors=problem.prototype_anchors)
        assert np.exp(problem_log_excess(problem, H)) == pytest.approx(float(want), rel=1e-9)
        packed = pack(problem.batches(0))
        jax_log = reference_log_excess_packed(jnp.asarray(H), jnp.asarray(problem.labels),
                                    jnp.asarray(representatives(problem.labels)), tau, jnp.asarray(packed.index),
                                    jnp.asarray(packed.valid), None if W is None else jnp.asarray(W),
                                    None if wl is None else jnp.asarray(wl), problem.prototype_anchors)
        assert np.exp(float(jax_log)) == pytest.approx(float(want), rel=1e-9)
        # and the constant: loss = constant + excess (float64 loop at this tau)
        if tau == 0.5:
            loop = scl_loop(H, problem.labels, tau, problem.batches(0), "sum", W, wl, problem.prototype_anchors)
            assert problem_constant(problem) + float(want) == pytest.approx(loop, rel=1e-12)


def test_log_excess_where_e_underflows():
    """tau = 0.001: E ~ 27 e^{-1500} ~ 1e-650 underflows float64, log E does not; against mpmath's log."""
    counts = [3, 3, 2]
    problem = Problem.from_counts(counts, tau=0.001, dim=3)
    H = collapsed_embeddings(R_etf := _unit(np.eye(3) - 1 / 3), counts)   # noqa: F841
    want = R.excess_mp(H, problem.labels, 0.001, dps=800)   # E ~ 1e-650: resolve it
    import mpmath
    assert problem_log_excess(problem, H) == pytest.approx(float(mpmath.log(want)), rel=1e-12)


@pytest.mark.parametrize("tau", [0.5, 0.02, 0.01, 0.001])
def test_reduced_excess_and_gradient(tau):
    counts = [8, 8, 2, 2]
    rng = np.random.default_rng(3)
    V = _unit(rng.standard_normal((4, 4)))
    M = V @ V.T
    ex = reduced_excess(M, counts, tau)
    import mpmath
    want = R.reduced_excess_mp(M, counts, tau, unit_diagonal=False)
    assert ex.log_value == pytest.approx(float(mpmath.log(want)), rel=1e-12)
    # gradient of log E by central differences in mpmath, one off-diagonal entry at a time
    with mpmath.workdps(60):
        for (i, j) in [(0, 1), (2, 3), (1, 3)]:
            h = mpmath.mpf("1e-20")
            Mp = [[mpmath.mpf(float(x)) for x in row] for row in M]
            up = [row[:] for row in Mp]
            dn = [row[:] for row in Mp]
            up[i][j] += h
            dn[i][j] -= h
            num = (mpmath.log(R.reduced_excess_mp(np.array(up, dtype=object), counts, tau, unit_diagonal=False))
                   - mpmath.log(R.reduced_excess_mp(np.array(dn, dtype=object), counts, tau, unit_diagonal=False))) / (2 * h)
            assert ex.grad_log[i, j] == pytest.approx(float(num), rel=1e-8)


def test_collapsed_excess_is_the_reduced_excess_and_within_is_exactly_zero():
    counts = [5, 3, 2]
    V = _unit(np.random.default_rng(4).standard_normal((3, 3)))
    problem = Problem.from_counts(counts, tau=0.01)
    H = V[problem.labels]
    packed = pack(problem.batches(0))
    within, _ = excess_parts_packed(jnp.asarray(H), jnp.asarray(problem.labels),
                                    jnp.asarray(representatives(problem.labels)), 0.01,
                                    jnp.asarray(packed.index), jnp.asarray(packed.valid))
    assert float(within) == 0.0
    assert problem_log_excess(problem, H) == pytest.approx(reduced_excess(V @ V.T, counts, 0.01).log_value,
                                                           rel=1e-12)


def test_gradient_of_log_excess_is_finite_at_collapse_and_matches_differences():
    counts = [4, 3, 2]
    problem = Problem.from_counts(counts, tau=0.05)
    H = _near_collapse(counts, 3, 1e-2, seed=5)
    packed = pack(problem.batches(0))
    f = lambda X: reference_log_excess_packed(X, jnp.asarray(problem.labels), jnp.asarray(representatives(problem.labels)),  # noqa: E731
                                    0.05, jnp.asarray(packed.index), jnp.asarray(packed.valid))
    g = np.asarray(jax.grad(f)(jnp.asarray(H)))
    rng = np.random.default_rng(6)
    D = rng.standard_normal(H.shape)
    eps = 1e-6
    num = (float(f(jnp.asarray(H + eps * D))) - float(f(jnp.asarray(H - eps * D)))) / (2 * eps)
    assert float(np.sum(g * D)) == pytest.approx(num, rel=1e-6)
    collapsed = collapsed_embeddings(_unit(np.eye(3) - 1 / 3), counts)
    assert np.isfinite(np.asarray(jax.grad(f)(jnp.asarray(collapsed)))).all()


def test_chunked_excess_equals_plain():
    counts = [6, 5, 4]
    problem = Problem.from_counts(counts, tau=0.1, dim=4)
    H = _near_collapse(counts, 4, 0.1, seed=7)
    packed = pack(problem.batches(0))
    args = (jnp.asarray(H), jnp.asarray(problem.labels), jnp.asarray(representatives(problem.labels)), 0.1,
            jnp.asarray(packed.index), jnp.asarray(packed.valid))
    plain = [float(x) for x in excess_parts_packed(*args)]
    chunked = [float(x) for x in excess_parts_packed(*args, chunk_size=4)]
    np.testing.assert_allclose(chunked, plain, rtol=1e-13)


@pytest.mark.parametrize("dtype, rel", [(np.float64, 4e-16), (np.float32, 2.4e-7)])
def test_expm1_pair_against_mpmath(dtype, rel):
    """e^v - 1 and e^v - 1 - v to full relative precision on both sides of the series' switch at
    |v| = 1, near 0 (where the second is ~v^2/2 and expm1(v) - v would lose it all), and far out;
    each against mpmath in 50 digits. ``rel``: 2 ulp (float64), 2 ulp of float32. The float32 series
    is shorter (ufm.objectives.scl.formula.expm1mx_terms: 18 and 10 terms); the test fails with 15 terms in float64
    and 8 in float32 (with 16 or 17 in float64 the omitted terms stay within its 2 ulp at |v| <= 1)."""
    from ufm.objectives.scl.formula import expm1_pair
    grid = [s * x for s in (1, -1) for x in
            (1e-12, 3e-8, 1e-5, 1e-3, 0.01, 0.1, 0.25, 0.4, 0.5, 0.75, 0.9, 0.999, 1.0, 1.0001, 1.5, 3.0,
             20.0)]
    v = np.asarray(grid, dtype=dtype)
    q, r = (np.asarray(a, dtype=np.float64) for a in expm1_pair(jnp.asarray(v)))
    with mpmath.workdps(50):
        for x, got_q, got_r in zip(v.astype(np.float64), q, r):
            e = mpmath.exp(mpmath.mpf(float(x)))
            want_q, want_r = float(e - 1), float(e - 1 - mpmath.mpf(float(x)))
            assert abs(got_q - want_q) <= 4 * rel * abs(want_q), (x, got_q, want_q)
            # the series part (|v| <= 1) to 2 ulp; (exp(v) - 1) - v beyond it loses up to a factor 4
            tol = rel if abs(x) <= 1.0 else 4 * rel
            assert abs(got_r - want_r) <= 2 * tol * abs(want_r), (x, got_r, want_r)
