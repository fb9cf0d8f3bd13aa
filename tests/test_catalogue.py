"""Every check of the catalogue can fail: each is fed a wrong prediction or a broken solver.

The broken tools return hand-made Solutions (fast); the real tools run in tests/test_programs.py (``ufm verify``) and the README's quick start.
"""

import dataclasses

import numpy as np
import pytest

from theory_checks.catalogue import CATALOGUE
from theory_checks.check import Tools
from theory_checks.predictions import Prediction, predict
from ufm import Solution
from ufm.geometry import etf_gram, factor_gram

CHECKS = {c.name: c for c in CATALOGUE}


def fake_solution(problem, M, loss, status="converged", method="gd"):
    """Collapsed embeddings with mean Gram M (k, k) and a stated loss."""
    means = factor_gram(M, problem.dim)
    H = means[problem.labels]
    return Solution(method, np.asarray(M, dtype=float), float(loss), status, embeddings=H, lower_bound=float(loss))


def solver_returning(gram_of, loss_of=lambda p: 1.0, status="converged"):
    return lambda problem, *a, **kw: fake_solution(problem, gram_of(problem), loss_of(problem), status)


def true_loss(problem):
    return predict(problem).loss


ETF = lambda p: etf_gram(p.k)
EYE = lambda p: np.eye(p.k)


def wrong_prediction(geometry_gram):
    def fake_predict(problem):
        right = predict(problem)
        return Prediction(right.geometry, right.loss, geometry_gram(problem), "deliberately wrong")
    return fake_predict


def run(name, **tools):
    return CHECKS[name].run(quick=True, tools=Tools(**tools))


def test_every_check_is_covered_here():
    covered = {"relu-orthogonal-frame", "balanced-etf", "imbalanced-not-etf", "imbalanced-reduced-program",
               "step-block-form", "relaxation-tight", "landscape-benign", "landscape-needs-dim", "relu-landscape-needs-2k",
               "relu-staircase-escapes",
               "batch-binding-sufficient", "batching-conditions-necessary", "prototypes-relu-exact",
               "prototypes-approach-ce-limit", "ib-critical-betas", "small-tau-geometry", "small-tau-etf-limit",
               "certified-large-n",
               "ce-fixed-classifier-closed-form", "ce-learned-etf-self-duality"}
    assert covered == set(CHECKS)


def test_relu_orthogonal_frame_fails_on_wrong_prediction_and_on_a_broken_solver():
    good = solver_returning(EYE, true_loss)
    assert not run("relu-orthogonal-frame", predict=wrong_prediction(ETF), gd=good, convex=good).passed
    assert not run("relu-orthogonal-frame", gd=solver_returning(ETF, true_loss), convex=good).passed
    off_loss = solver_returning(EYE, lambda p: true_loss(p) * (1 + 1e-5))
    assert not run("relu-orthogonal-frame", gd=good, convex=off_loss).passed
    assert not run("relu-orthogonal-frame", gd=solver_returning(EYE, true_loss, "not_converged"), convex=good).passed
    assert run("relu-orthogonal-frame", gd=good, convex=good).passed   # the fakes themselves are right


def test_balanced_etf_fails_on_wrong_prediction():
    good = solver_returning(ETF, true_loss)
    assert not run("balanced-etf", predict=wrong_prediction(EYE), gd=good, convex=good).passed
    assert run("balanced-etf", gd=good, convex=good).passed


def test_not_etf_fails_when_gd_returns_the_etf():
    assert not run("imbalanced-not-etf", gd=solver_returning(ETF)).passed


def test_reduced_program_check_fails_on_disagreement():
    reduced = solver_returning(lambda p: 0.9 * etf_gram(p.k) + 0.1 * np.eye(p.k), lambda p: 30.0)
    assert not run("imbalanced-reduced-program", reduced=reduced, gd=solver_returning(ETF, lambda p: 30.0),
                   convex=solver_returning(ETF, lambda p: 30.0)).passed


def test_block_form_fails_on_a_gram_without_blocks():
    def uneven(p):
        M = etf_gram(p.k)
        M[0, 2] = M[2, 0] = M[0, 2] + 0.05   # one majority-minority entry off its block value
        return M
    assert not run("step-block-form", reduced=solver_returning(uneven)).passed


def test_tightness_fails_on_a_gap_and_on_a_bound_above_a_feasible_point():
    assert not run("relaxation-tight", gd=solver_returning(ETF, lambda p: 31.0),
                   reduced=solver_returning(ETF, lambda p: 30.0), convex=solver_returning(ETF, lambda p: 30.0)).passed
    assert not run("relaxation-tight", gd=solver_returning(ETF, lambda p: 30.0),
                   reduced=solver_returning(ETF, lambda p: 30.0 + 1e-6),
                   convex=solver_returning(ETF, lambda p: 30.0 + 1e-6)).passed


def test_landscape_fails_when_one_start_is_stuck():
    def many(problem, seeds, **kw):
        sols = [fake_solution(problem, etf_gram(problem.k), 30.0) for _ in seeds]
        sols[-1] = fake_solution(problem, np.eye(problem.k), 30.5)
        return sols
    assert not run("landscape-benign", gd_many=many, reduced=solver_returning(ETF, lambda p: 30.0)).passed


def test_small_dim_check_fails_if_gd_reaches_the_bound():
    many = lambda problem, seeds, **kw: [fake_solution(problem, etf_gram(problem.k), 30.0) for _ in seeds]
    assert not run("landscape-needs-dim", gd_many=many, convex=solver_returning(ETF, lambda p: 30.0)).passed


def test_relu_dimension_check_fails_when_a_start_stalls_at_2k():
    def many(problem, seeds, **kw):
        sols = [fake_solution(problem, np.eye(problem.k), 1.0) for _ in seeds]
        spurious = np.eye(problem.k)
        spurious[0, 1] = spurious[1, 0] = 0.9   # two classes sharing a coordinate
        sols[0] = fake_solution(problem, spurious, 1.0)
        return sols
    result = run("relu-landscape-needs-2k", gd_many=many)
    assert not result.passed and result.instances[0]["stalled_at_d_equal_k"] == 1


def test_staircase_check_fails_on_one_unproved_or_wrong_start():
    """One start left stationary (or optimal but away from the orthogonal frame) fails the check."""
    def many_with(last):
        def many(problem, seeds, **kw):
            sols = [fake_solution(problem, np.eye(problem.k), 1.0, "optimal") for _ in seeds]
            sols[-1] = last(problem)
            return sols
        return many
    stalled = lambda p: fake_solution(p, np.eye(p.k), 1.0, "stationary")      # noqa: E731
    spurious = np.eye(4)
    spurious[0, 1] = spurious[1, 0] = 0.9
    wrong = lambda p: fake_solution(p, spurious, 1.0, "optimal")             # noqa: E731
    assert not run("relu-staircase-escapes", gd_many=many_with(stalled)).passed
    assert not run("relu-staircase-escapes", gd_many=many_with(wrong)).passed
    assert run("relu-staircase-escapes", gd_many=many_with(lambda p: fake_solution(p, np.eye(p.k), 1.0,
                                                                                   "optimal"))).passed


def test_binding_check_fails_on_wrong_prediction():
    good = solver_returning(EYE, true_loss)
    assert not run("batch-binding-sufficient", predict=wrong_prediction(ETF), gd=good, convex=good).passed


def test_prototype_check_fails_on_a_broken_solver():
    good = solver_returning(EYE, true_loss)
    assert not run("prototypes-relu-exact", gd=solver_returning(ETF, true_loss), convex=good).passed


def test_prototype_trend_fails_when_the_distance_does_not_shrink():
    assert not run("prototypes-approach-ce-limit", convex=solver_returning(lambda p: np.eye(p.k))).passed


def test_ib_check_fails_on_wrong_eigenvalues():
    from theory_checks.information_bottleneck import analyze

    def shifted(X, labels):
        right = analyze(X, labels)
        betas = right.critical_betas * 1.01
        return dataclasses.replace(right, critical_betas=betas)
    assert not run("ib-critical-betas", ib=shifted).passed


def test_an_exception_fails_the_check_with_its_message():
    def broken(problem, *a, **kw):
        raise RuntimeError("solver exploded")
    result = run("balanced-etf", gd=broken)
    assert not result.passed and "solver exploded" in result.error


def test_necessity_check_fails_when_the_second_configuration_is_not_certified():
    from dataclasses import replace as _replace
    from solvers.certificate import certify_embeddings

    def refusing(problem, H, *a, **k):
        return _replace(certify_embeddings(problem, H, *a, **k), certified=False, relative_gap=0.5)
    assert run("batching-conditions-necessary").passed
    assert not run("batching-conditions-necessary", certify=refusing).passed


def test_small_tau_check_fails_on_the_etf_and_on_an_uncertified_solver():
    good_gram = lambda p: np.asarray(predict(p).class_mean_gram)   # noqa: E731
    good = solver_returning(good_gram, true_loss, status="optimal")
    assert run("small-tau-geometry", reduced=good, gd=good).passed
    assert not run("small-tau-geometry", reduced=solver_returning(ETF, true_loss, status="optimal"), gd=good).passed
    assert not run("small-tau-geometry", reduced=good, gd=solver_returning(good_gram, true_loss)).passed


def test_certified_large_n_check_fails_without_a_proof():
    stalled = solver_returning(EYE, lambda p: 1.0, status="stationary")
    assert not run("certified-large-n", gd=stalled).passed


def test_ce_fixed_check_fails_on_a_wrong_geometry_and_on_an_unproved_solver():
    assert not run("ce-fixed-classifier-closed-form", gd=solver_returning(EYE, true_loss, status="optimal")).passed
    assert not run("ce-fixed-classifier-closed-form", gd=solver_returning(ETF, true_loss)).passed


def test_ce_learned_check_fails_without_self_duality():
    # collapsed ETF means at the right value, but no classifier: self-duality unmeasured (inf)
    assert not run("ce-learned-etf-self-duality", gd=solver_returning(ETF, true_loss, status="optimal")).passed


def test_small_tau_etf_limit_fails_when_the_geometry_stops_moving_or_is_not_proved():
    """A solver whose optimum does not approach the ETF as tau halves (here always 0.9 ETF + 0.1 I, the
    ratio of distances is 1) fails; so does one whose point is not certified optimal."""
    from solvers.convex import solve_reduced

    frozen = lambda p: 0.9 * etf_gram(p.k) + 0.1 * np.eye(p.k)
    result = run("small-tau-etf-limit", reduced=solver_returning(frozen, status="optimal"))
    assert not result.passed and result.measured == pytest.approx(1.0)
    unproved = lambda problem, *a, **kw: dataclasses.replace(solve_reduced(problem), status="stationary")
    result = run("small-tau-etf-limit", reduced=unproved)
    assert not result.passed and result.measured == float("inf")
    assert run("small-tau-etf-limit", reduced=solve_reduced).passed
