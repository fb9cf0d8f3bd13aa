"""The peers' side of benchmarks/peers.py computes what it claims: the plain SupCon loss in JAX is the
brute-force loop's sum reduction, the ReLU parameterisation gives nonnegative unit rows, and the
clock's gap is the relative gap on the excess (against the closed forms of docs/theory.md section 2).
The peers themselves (pymanopt, torch, geoopt) are `bench` extras and are not imported here."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.peers import Clock, Reached, rows_from, supcon_jax
from reference import collapsed_embeddings, etf_loss, etf_vectors, scl_loop


def test_peer_loss_is_the_sum_reduction_scl():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [5, 3, 2, 2])
    H = rng.standard_normal((12, 3))
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    got = float(supcon_jax(jnp.asarray(H), jnp.asarray(labels), 0.4))
    assert got == pytest.approx(scl_loop(H, labels, 0.4), rel=1e-12)


def test_relu_parameterisation_gives_nonnegative_unit_rows():
    X = jnp.asarray(np.random.default_rng(1).standard_normal((7, 4)))
    H = np.asarray(rows_from(X, True))
    assert (H >= 0).all() and np.allclose(np.linalg.norm(H, axis=1), 1.0, atol=1e-15)
    # the start x = sqrt(h) reproduces h
    assert np.allclose(np.asarray(rows_from(jnp.sqrt(jnp.asarray(H)), True)), H, atol=1e-15)


def test_clock_gap_is_relative_to_the_excess():
    counts = [5, 5, 5]
    H = collapsed_embeddings(etf_vectors(3), counts)
    labels = np.repeat(np.arange(3), counts)
    optimum = etf_loss(counts, 0.5)
    constant = sum(c * math.log(c - 1) for c in counts)
    clock = Clock(constant, optimum - constant, 1e-6, cap=60.0).start()
    with pytest.raises(Reached):                        # the ETF itself is at the target
        clock.seen(scl_loop(H, labels, 0.5))
    clock = Clock(constant, optimum - constant, 1e-6, cap=60.0).start()
    clock.seen(optimum + 2e-6 * (optimum - constant))   # 2e-6 of the excess above: not yet
    assert clock.best_gap == pytest.approx(2e-6, rel=1e-6)
