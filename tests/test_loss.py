"""scl_loss against a plain double loop (tests/reference.py), the reference SupCon formula, the closed
forms of docs/theory.md section 2, and finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from compiled import small_jit
from reference import (collapsed_embeddings, etf_loss, etf_vectors, orthogonal_frame_loss, scl_loop,
                       supcon_reference)
import ufm
from ufm import ProblemError, Problem, Prototypes, problem_loss, scl_loss

REDUCTIONS = ["sum", "mean", "mean_with_positives"]


def unit_rows(rng, n, d, nonneg=False):
    H = rng.standard_normal((n, d))
    if nonneg:
        H = np.abs(H)
    return H / np.linalg.norm(H, axis=1, keepdims=True)


@st.composite
def loss_cases(draw):
    k = draw(st.integers(2, 4))
    counts = [draw(st.integers(1, 4)) for _ in range(k)]   # classes of 1 test anchors without positives
    n = sum(counts)
    labels = np.repeat(np.arange(k), counts)
    d = draw(st.integers(1, 5))
    tau = draw(st.floats(0.05, 3.0))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((n, d)) * draw(st.sampled_from([0.3, 1.0]))
    n_batches = draw(st.integers(1, 3))
    batches = [np.sort(rng.choice(n, size=draw(st.integers(1, n)), replace=False)) for _ in range(n_batches)]
    if draw(st.booleans()):
        batches = None
    protos = None
    if draw(st.booleans()):
        p = draw(st.integers(1, 3))
        protos = (rng.standard_normal((p, d)), rng.integers(0, k, size=p), draw(st.booleans()))
    return H, labels, tau, batches, protos


@settings(max_examples=16, deadline=None)
@given(case=loss_cases(), reduction=st.sampled_from(REDUCTIONS))
def test_matches_double_loop_float64(case, reduction):
    H, labels, tau, batches, protos = case
    W, wl, anchors = protos if protos else (None, None, True)
    got = float(scl_loss(H, labels, tau, batches, reduction, W, wl, anchors))
    want = scl_loop(H, labels, tau, batches, reduction, W, wl, anchors)
    # float64 round-off over at most ~20 logsumexp terms: 1e-10 relative is ample
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


@settings(max_examples=12, deadline=None)
@given(case=loss_cases(), reduction=st.sampled_from(REDUCTIONS))
def test_matches_double_loop_float32(case, reduction):
    H, labels, tau, batches, protos = case
    W, wl, anchors = protos if protos else (None, None, True)
    H32 = np.asarray(H, dtype=np.float32)
    out = scl_loss(H32, labels, tau, batches, reduction, W, wl, anchors)
    assert out.dtype == jnp.float32
    want = scl_loop(H32.astype(float), labels, tau, batches, reduction,
                    None if W is None else np.asarray(W, np.float32).astype(float), wl, anchors)
    # float32 has ~7 digits; logits up to |h|^2/tau ~ 1e3 lose ~3 more
    assert float(out) == pytest.approx(want, rel=1e-4, abs=1e-3)


@pytest.mark.parametrize("tau,base", [(0.5, 0.5), (0.1, 0.07)])
def test_mean_reduction_is_reference_supcon(tau, base):
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])   # class 3 has no positive
    H = unit_rows(rng, len(labels), 6)
    want = supcon_reference(H, labels, tau, base)
    got = float(scl_loss(H, labels, tau, reduction="mean")) * tau / base
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("counts", [(5, 5, 5), (6, 6, 6, 6), (10, 5, 3, 2), (8, 8, 2, 2), (20, 2)])
@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0, 2.0])
def test_closed_forms(counts, tau):
    k = len(counts)
    labels = np.repeat(np.arange(k), counts)
    H_of = collapsed_embeddings(np.eye(k), counts)
    assert float(scl_loss(H_of, labels, tau)) == pytest.approx(orthogonal_frame_loss(counts, tau), rel=1e-12, abs=1e-10)
    H_etf = collapsed_embeddings(etf_vectors(k), counts)
    assert float(scl_loss(H_etf, labels, tau)) == pytest.approx(etf_loss(counts, tau), rel=1e-12, abs=1e-10)


def test_balanced_etf_closed_form_as_written_in_theory():
    k, m, tau = 4, 6, 0.3
    n = k * m
    labels = np.repeat(np.arange(k), m)
    H = collapsed_embeddings(etf_vectors(k), [m] * k)
    want = n * math.log((m - 1) + (n - m) * math.exp(-(1 + 1 / (k - 1)) / tau))
    assert abs(float(scl_loss(H, labels, tau)) - want) < 1e-10


def test_rotation_invariance_and_problem_loss():
    rng = np.random.default_rng(2)
    problem = Problem.from_counts([4, 3, 2], tau=0.7, dim=5)
    H = unit_rows(rng, problem.n, 5)
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert problem_loss(problem, H @ Q) == pytest.approx(problem_loss(problem, H), rel=1e-12)
    assert problem_loss(problem, H) == pytest.approx(scl_loop(H, problem.labels, 0.7), rel=1e-12)


def test_problem_loss_with_prototypes_uses_them():
    problem = Problem.from_counts([3, 3, 3], tau=0.5, prototypes=Prototypes("etf", 2, anchors=False))
    rng = np.random.default_rng(3)
    H = unit_rows(rng, problem.n, problem.dim)
    W, wl = problem.prototype_rows()
    assert W.shape == (6, 3) and np.allclose(np.linalg.norm(W, axis=1), 1)
    assert problem_loss(problem, H) == pytest.approx(scl_loop(H, problem.labels, 0.5, None, "sum", W, wl, False), rel=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradient_matches_finite_differences(reduction):
    rng = np.random.default_rng(4)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    H = rng.standard_normal((8, 3))
    batches = [np.array([0, 1, 3, 4, 5]), np.array([2, 5, 6, 7, 0])]
    W, wl = rng.standard_normal((2, 3)), np.array([0, 2])
    f = lambda X: scl_loss(X, labels, 0.4, batches, reduction, W, wl)
    grad = np.asarray(small_jit(jax.grad(f))(jnp.asarray(H)))
    eps = 1e-6
    fd = np.zeros_like(H)
    for idx in np.ndindex(H.shape):
        plus, minus = H.copy(), H.copy()
        plus[idx] += eps
        minus[idx] -= eps
        fd[idx] = (scl_loop(plus, labels, 0.4, batches, reduction, W, wl) -
                   scl_loop(minus, labels, 0.4, batches, reduction, W, wl)) / (2 * eps)
    # central differences: truncation O(eps^2) ~ 1e-12, round-off ~ 1e-16/eps ~ 1e-10
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


def test_float32_finite_at_small_tau():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(5), 20)
    H = unit_rows(rng, 100, 8).astype(np.float32)
    value, grad = small_jit(jax.value_and_grad(lambda X: scl_loss(X, labels, 0.01)))(jnp.asarray(H))
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
    want = scl_loop(H.astype(float), labels, 0.01)
    assert float(value) == pytest.approx(want, rel=1e-4)


def test_single_class_batch_is_defined():
    labels = np.array([0, 0, 0, 1, 1])
    H = unit_rows(np.random.default_rng(6), 5, 3)
    batches = [np.array([0, 1, 2])]  # one class: no negatives
    assert float(scl_loss(H, labels, 0.5, batches)) == pytest.approx(scl_loop(H, labels, 0.5, batches), rel=1e-12)


def test_jit_and_tau_do_not_recompile():
    from ufm.objectives.scl.losses import scl_loss_packed
    labels = np.repeat(np.arange(3), 4)
    H = unit_rows(np.random.default_rng(7), 12, 3)
    scl_loss(H, labels, 0.5)
    before = scl_loss_packed._cache_size()
    for tau in (0.3, 0.9, 1.7):
        scl_loss(H, labels, tau)
    assert scl_loss_packed._cache_size() == before


@pytest.mark.parametrize("kwargs,match", [
    (dict(tau=0.0), "tau"),
    (dict(tau=-1.0), "tau"),
    (dict(reduction="avg"), "reduction"),
])
def test_bad_arguments(kwargs, match):
    labels = np.array([0, 0, 1, 1])
    H = np.eye(4)
    args = dict(tau=1.0) | kwargs
    with pytest.raises(ProblemError, match=match):
        scl_loss(H, labels, **args)


def test_bad_shapes():
    with pytest.raises(ProblemError, match="labels"):
        scl_loss(np.eye(4), np.array([0, 1]), 1.0)
    with pytest.raises(ProblemError, match="shape"):
        scl_loss(np.ones(4), np.array([0, 1, 0, 1]), 1.0)


# ---------------------------------------------------------------- memory-bounded (chunked) evaluation
def _grad_loop(H, labels, tau):
    """Full-batch sum-reduction gradient from docs/theory.md's formula by loops (independent of the JAX
    code): dL/dG_ia = softmax_a(G_i. / tau over A(i)) / tau - [a in P(i)] / (tau |P(i)|) for each
    anchor i with positives, then dL/dH = (C + C^T) H since G = H H^T."""
    H = np.asarray(H, dtype=float)
    n = len(H)
    C = np.zeros((n, n))
    for i in range(n):
        others = [a for a in range(n) if a != i]
        positives = [j for j in others if labels[j] == labels[i]]
        if not positives:
            continue
        z = np.array([H[i] @ H[a] for a in others]) / tau
        p = np.exp(z - z.max())
        p /= p.sum()
        for a, pa in zip(others, p):
            C[i, a] += pa / tau
        for j in positives:
            C[i, j] -= 1.0 / (tau * len(positives))
    return (C + C.T) @ H


@settings(max_examples=10, deadline=None)
@given(case=loss_cases(), reduction=st.sampled_from(REDUCTIONS), chunk=st.integers(1, 9))
def test_chunked_matches_double_loop_float64(case, reduction, chunk):
    H, labels, tau, batches, protos = case
    W, wl, anchors = protos if protos else (None, None, True)
    got = float(scl_loss(H, labels, tau, batches, reduction, W, wl, anchors, chunk_size=chunk))
    want = scl_loop(H, labels, tau, batches, reduction, W, wl, anchors)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("chunk,reduction", [(7, "sum"), pytest.param(101, "sum", marks=pytest.mark.slow),
                                             pytest.param(32, "mean", marks=pytest.mark.slow),
                                             (32, "mean_with_positives")])
def test_chunked_value_and_gradient_equal_plain_to_1e12(chunk, reduction):
    rng = np.random.default_rng(11)
    counts = [30, 25, 2, 20, 23]                  # n = 100; a class of 2; chunks that do not divide n
    labels = np.repeat(np.arange(5), counts)
    H = unit_rows(rng, 100, 6)
    batches = [np.sort(rng.choice(100, size=60, replace=False)), np.arange(100)]
    W, wl = unit_rows(rng, 3, 6), np.array([0, 3, 4])
    for args in ((None, None, None), (batches, W, wl)):
        b, w, l = args

        def f(X, c):
            return scl_loss(X, labels, 0.3, b, reduction, w, l, True, chunk_size=c)
        value_and_grad = small_jit(jax.value_and_grad(f), static_argnums=1)
        v0, g0 = value_and_grad(jnp.asarray(H), None)
        v1, g1 = value_and_grad(jnp.asarray(H), chunk)
        assert abs(float(v1) - float(v0)) <= 1e-12 * max(1.0, abs(float(v0)))
        assert float(jnp.max(jnp.abs(g1 - g0))) <= 1e-12 * max(1.0, float(jnp.max(jnp.abs(g0))))


def test_chunked_gradient_matches_loop_gradient():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(3), [7, 5, 4])
    H = unit_rows(rng, 16, 4)
    want = _grad_loop(H, labels, 0.4)
    for chunk in (None, 1, 5, 16):
        got = small_jit(jax.grad(lambda X: scl_loss(X, labels, 0.4, chunk_size=chunk)))(jnp.asarray(H))
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-12 * np.abs(want).max())


def _shapes(jaxpr, out):
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            out.add(tuple(getattr(v.aval, "shape", ())))
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    _shapes(getattr(inner, "jaxpr", inner), out)
    return out


def test_chunked_gradient_never_forms_an_n_by_n_array():
    n, c = 300, 32
    labels = np.repeat(np.arange(3), 100)
    H = jnp.asarray(unit_rows(np.random.default_rng(2), n, 4))

    def big(chunk):
        jaxpr = jax.make_jaxpr(jax.value_and_grad(
            lambda X: scl_loss(X, labels, 0.5, chunk_size=chunk)))(H)
        return [s for s in _shapes(jaxpr.jaxpr, set()) if sum(dim >= n for dim in s) >= 2]
    assert big(n)                        # one block of n anchors does form (n, n) logits
    assert big(c) == []                  # the chunked one only (c, n) blocks
    assert big(None) == []               # nor the default: blocks of at most a quarter of the batch


def test_chunked_tau_and_data_do_not_recompile():
    from ufm.objectives.scl.losses import scl_loss_packed
    labels = np.repeat(np.arange(3), 4)
    rng = np.random.default_rng(3)
    scl_loss(unit_rows(rng, 12, 3), labels, 0.5, chunk_size=5)
    before = scl_loss_packed._cache_size()
    for tau in (0.3, 0.9):
        scl_loss(unit_rows(rng, 12, 3), labels, tau, chunk_size=5)
    assert scl_loss_packed._cache_size() == before


@pytest.mark.parametrize("chunk", [0, -3, 2.5, True])
def test_bad_chunk_size(chunk):
    with pytest.raises(ProblemError, match="chunk_size"):
        scl_loss(np.eye(4), [0, 0, 1, 1], 0.5, chunk_size=chunk)


def test_bucketed_full_batch_loss_is_the_full_batch_loss():
    from ufm.objectives.scl.losses import full_batch_loss_bucketed
    rng = np.random.default_rng(4)
    for counts in ((3, 2), (20, 9, 4, 2), (40, 30, 3)):          # n = 5, 35, 73: buckets 64, 64, 128
        labels = np.repeat(np.arange(len(counts)), counts)
        H = unit_rows(rng, len(labels), 3)
        want = scl_loop(H, labels, 0.7)
        assert full_batch_loss_bucketed(H, labels, 0.7) == pytest.approx(want, rel=1e-12)
        assert full_batch_loss_bucketed(H, labels, 0.7, chunk_size=16) == pytest.approx(want, rel=1e-12)


def test_problem_losses_of_a_stack_match_the_loop():
    from ufm.objectives.scl.losses import problem_losses

    rng = np.random.default_rng(8)
    problem = Problem.from_counts([3, 3, 2], tau=0.4, dim=3, prototypes=Prototypes("etf", 1),
                                  batching=ufm.Batching.random(4))
    Hs = np.stack([unit_rows(rng, problem.n, 3) for _ in range(4)])
    W, wl = problem.prototype_rows()
    want = [scl_loop(H, problem.labels, 0.4, problem.batches(0), "sum", W, wl, True) for H in Hs]
    np.testing.assert_allclose(problem_losses(problem, Hs), want, rtol=1e-12)
    # in groups of 3 (the last group of 1): same values
    np.testing.assert_allclose(problem_losses(problem, Hs, lanes=3), want, rtol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(batches=[[0, 1, 100]]), "example 100, which does not exist"),   # not clamped
    (dict(batches=[[0, 0, 1]]), "twice"),                                 # not a positive pair
    (dict(batches=[]), "non-empty"),
    (dict(labels=np.array([0, 0, 1])), "labels must have shape"),
    (dict(tau=float("nan")), "tau"),
    (dict(H_entry=np.nan), "NaN or infinite"),
    (dict(H_entry=np.inf), "NaN or infinite"),
    (dict(tau=1e-300), "tau must lie in"),
    (dict(batches=[[]]), "empty"),
    (dict(H="abc"), "real"),
    (dict(H=None), "real"),
    (dict(H=np.eye(4, 3) * (1 + 1j)), "real"),
])
def test_scl_loss_refuses_bad_input(kwargs, match):
    H = kwargs.pop("H") if "H" in kwargs else np.eye(4, 3)
    if isinstance(H, np.ndarray) and H.dtype == float:
        H[3] = [1.0, 0.0, 0.0]
    if "H_entry" in kwargs:
        H[0, 0] = kwargs.pop("H_entry")
    labels = kwargs.pop("labels", np.array([0, 0, 1, 1]))
    tau = kwargs.pop("tau", 0.5)
    with pytest.raises(ProblemError, match=match):
        scl_loss(H, labels, tau, **kwargs)
