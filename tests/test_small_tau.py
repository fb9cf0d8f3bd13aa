"""Small temperatures (docs/theory.md "Small tau"): predict, the reduced program and gradient descent
against docs/theory.md's check values for (8, 8, 2, 2), computed to 30+ digits by the mpmath reference
(tests/reference_mp.py: the block program solved by Newton's method from the formula alone), and
against each other on random imbalanced counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference_mp as R
from solvers import gd
from solvers.convex import solve_reduced
from theory_checks.catalogue import SMALL_TAU_VALUES
from theory_checks.predictions import predict
from ufm import Problem

TAUS = (0.5, 0.1, 0.05, 0.02, 0.01)


@pytest.fixture(scope="module")
def references():
    return {tau: R.step_optimum_mp(2, 8, 2, 2, tau) for tau in TAUS}


@pytest.mark.parametrize("tau", TAUS)
def test_reduced_and_predict_match_the_check_values(tau, references):
    ref = references[tau]
    problem = Problem.from_counts([8, 8, 2, 2], tau=tau)
    for M in (solve_reduced(problem).class_mean_gram, predict(problem).class_mean_gram):
        np.testing.assert_allclose(M, ref["M"], atol=1e-6)
    # docs/theory.md's printed values (4 decimals) agree with the reference
    a, b, c = SMALL_TAU_VALUES[tau]
    assert abs(float(ref["a"]) - a) <= 5e-5 and abs(float(ref["b"]) - b) <= 5e-5 and abs(float(ref["c"]) - c) <= 5e-5
    sol = solve_reduced(problem)
    assert sol.status == "optimal"
    assert sol.excess == pytest.approx(float(ref["E"]), rel=1e-9)
    assert sol.certificate.excess_lower_bound <= float(ref["E"]) * (1 + 1e-12)


@pytest.mark.parametrize("tau", TAUS)
def test_gradient_descent_matches_the_check_values(tau, references):
    problem = Problem.from_counts([8, 8, 2, 2], tau=tau)
    sol = gd.solve(problem)
    assert sol.status == "optimal", sol.message
    np.testing.assert_allclose(sol.class_mean_gram, references[tau]["M"], atol=1e-5)
    assert sol.excess == pytest.approx(float(references[tau]["E"]), rel=1e-6)


def test_the_geometry_approaches_the_etf_as_tau_shrinks(references):
    etf = -1.0 / 3.0
    spreads = [max(abs(float(references[t][x]) - etf) for x in "abc") for t in TAUS]
    assert all(later < earlier for earlier, later in zip(spreads, spreads[1:]))


@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(counts=st.lists(st.integers(2, 9), min_size=3, max_size=4).filter(lambda c: len(set(c)) > 1),
       tau=st.sampled_from([0.1, 0.05, 0.02, 0.01]))
def test_random_imbalanced_counts_gd_agrees_with_the_reduced_program(counts, tau):
    """Two formulations (n x n gradient descent; the k x k factored program) and two certificates."""
    problem = Problem.from_counts(counts, tau=tau)
    reduced, descent = solve_reduced(problem), gd.solve(problem)
    assert reduced.status == "optimal" and descent.status == "optimal", descent.message
    np.testing.assert_allclose(descent.class_mean_gram, reduced.class_mean_gram, atol=1e-5)
    assert descent.excess == pytest.approx(reduced.excess, rel=1e-6)
