"""Cross-entropy, the second objective (ufm/objectives/ce.py, docs/theory.md section 10), against
brute-force minimisers written here in NumPy/SciPy, independently of the toolkit's JAX code."""

import numpy as np
import pytest
from scipy.optimize import minimize

from ufm import CrossEntropy, Problem, ProblemError
from ufm.geometry import etf_gram, normalized_distance
from ufm.objectives import OBJECTIVES, Capability, ce
from solvers.convex import solve_relaxation
from solvers import gd


def brute_force_class_minimum(W, y, tau, relu, starts=6, seed=0):
    """min over unit h of log(1 + sum_{c != y} exp((w_c - w_y) . h / tau)), from several random starts
    (BFGS on x / ||x||; with ReLU, SLSQP on h >= 0, ||h||^2 = 1); returns (f*, h*)."""
    rng = np.random.default_rng(seed)
    D = np.delete(W - W[y], y, axis=0) / tau

    def point(x):
        v = x * x if relu else x
        return v / np.linalg.norm(v)

    def log_f(x):
        z = D @ point(x)
        top = z.max()
        s = np.exp(top) * np.exp(z - top).sum()
        return np.log(np.log1p(s)) if s > 1e-300 else top + np.log(np.exp(z - top).sum())

    best = None
    for _ in range(starts):
        x0 = rng.standard_normal(W.shape[1])
        if relu:
            r = minimize(lambda h: np.log1p(np.exp(D @ h).sum()), np.abs(x0) / np.linalg.norm(x0), method="SLSQP",
                         bounds=[(0, None)] * len(x0), constraints=[{"type": "eq", "fun": lambda h: h @ h - 1}],
                         options={"ftol": 1e-16, "maxiter": 1000})
            r.x = np.sqrt(np.maximum(r.x, 0))      # point() squares it back
        else:
            r = minimize(log_f, x0, method="BFGS", options={"gtol": 1e-12, "maxiter": 5000})
        if best is None or r.fun < best.fun:
            best = r
    h = point(best.x)
    return float(np.log1p(np.exp(D @ h).sum())), h


CASES = [(k, tuple(int(c) for c in np.random.default_rng(k * 10 + j).integers(1, 6, size=k)),
          float(np.random.default_rng(k * 10 + j).uniform(0.05, 1.0)))
         for k in (2, 3, 4, 5) for j in range(2)]


@pytest.mark.parametrize("classifier,relu", [("etf", False), ("of", False), ("of", True)])
@pytest.mark.parametrize("k,counts,tau", CASES[::2] + CASES[1::4])
def test_fixed_classifier_closed_forms_hold_to_1e_9(classifier, relu, k, counts, tau):
    problem = Problem.from_counts(counts, tau=tau, relu=relu, objective=CrossEntropy(classifier))
    pred = ce.predict(problem)
    W = ce.classifier_rows(classifier, k, problem.dim)
    brute = sum(n_c * brute_force_class_minimum(W, c, tau, relu)[0] for c, n_c in enumerate(counts))
    assert pred.loss == pytest.approx(brute, rel=1e-9)
    # tol 1e-14: the default stopping test (||grad log E|| <= 1e-9) places the point only to ~1e-9
    # (1.85e-9 measured on one case, with the loss equal to 1e-16); at 1e-14 the largest deviation
    # over these cases was 4.2e-12, so the 1e-9 check below is on the closed form, not on the stop
    sol = gd.solve(problem, tol=1e-14)
    assert sol.status == "optimal", sol.message
    assert sol.loss == pytest.approx(pred.loss, rel=1e-9)
    assert np.abs(sol.class_mean_gram - pred.class_mean_gram).max() <= 1e-9
    assert sol.lower_bound <= brute * (1 + 1e-12)


def test_fixed_classifier_rows_are_the_predicted_points():
    k = 4
    for classifier, relu, expected in [("etf", False, ce.classifier_rows("etf", k, k)),
                                       ("of", False, (k * np.eye(k) - 1) / np.sqrt(k * (k - 1))),
                                       ("of", True, np.eye(k))]:
        W = ce.classifier_rows(classifier, k, k)
        for y in range(k):
            _, h = brute_force_class_minimum(W, y, 0.3, relu)
            np.testing.assert_allclose(h, expected[y], atol=1e-6)


def numpy_learned_objective(x, labels, k, d, lam):
    """F and its gradient written out by hand (softmax CE, mean over examples, weight decay)."""
    n = len(labels)
    H, W, b = x[:n * d].reshape(n, d), x[n * d:n * d + k * d].reshape(k, d), x[n * d + k * d:]
    U = H @ W.T + b
    U = U - U.max(axis=1, keepdims=True)
    P = np.exp(U)
    P /= P.sum(axis=1, keepdims=True)
    value = -np.mean(np.log(P[np.arange(n), labels])) + lam / 2 * (x @ x)
    R = P.copy()
    R[np.arange(n), labels] -= 1
    R /= n
    grad = np.concatenate([(R @ W).ravel(), (R.T @ H).ravel(), R.sum(axis=0)]) + lam * x
    return value, grad


@pytest.mark.parametrize("k,m,lam", [(3, 4, 0.01), (4, 3, 0.005)])
def test_learned_classifier_reaches_the_etf_with_self_duality(k, m, lam):
    problem = Problem.balanced(k, m, objective=CrossEntropy("learned", lam))
    d, n = problem.dim, problem.n
    labels = problem.labels
    best = None
    for seed in range(3):
        x0 = 0.1 * np.random.default_rng(seed).standard_normal(n * d + k * d + k)
        r = minimize(numpy_learned_objective, x0, args=(labels, k, d, lam), jac=True, method="L-BFGS-B",
                     options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 20000})
        best = r if best is None or r.fun < best.fun else best
    sol = gd.solve(problem)
    assert sol.status == "optimal", sol.message
    assert sol.loss == pytest.approx(best.fun, rel=1e-8)
    assert ce.predict(problem).loss == pytest.approx(best.fun, rel=1e-8)
    assert sol.lower_bound <= best.fun * (1 + 1e-12)
    assert sol.info.metrics["self_duality"] <= 1e-5
    Mc = ce.centred_means(sol.embeddings, labels, k)
    assert normalized_distance(Mc @ Mc.T, etf_gram(k)) <= 1e-5
    np.testing.assert_allclose(sol.info.metrics["bias"], 0.0, atol=1e-5)


def test_the_certificate_of_a_poor_point_is_not_optimal():
    problem = Problem.from_counts([3, 3, 3], tau=0.2, objective=CrossEntropy("of"))
    sol = gd.solve(problem, steps=2)
    assert sol.status != "optimal" and sol.certificate.relative_gap > 1e-6
    assert sol.lower_bound <= ce.predict(problem).loss


def test_learned_lower_bound_is_below_the_optimum_at_any_point():
    problem = Problem.balanced(3, 3, objective=CrossEntropy("learned", 0.02))
    opt = ce.predict(problem).loss
    rng = np.random.default_rng(4)
    for _ in range(20):
        params = ce.LearnedParams(rng.standard_normal((9, 3)), rng.standard_normal((3, 3)), rng.standard_normal(3))
        assert ce.learned_lower_bound(params, problem.labels, 0.02) <= opt + 1e-12


@pytest.mark.parametrize("options,needle", [
    (dict(objective=CrossEntropy("learned")), "needs a weight decay"),
    (dict(objective=CrossEntropy("etf", 0.1)), "learned classifier only"),
    (dict(objective=CrossEntropy("etf"), relu=True), "with ReLU no closed form"),
    (dict(objective=CrossEntropy("learned", 0.1), relu=True), "ReLU does not apply"),
    (dict(objective=CrossEntropy("learned", 0.1), tau=0.5), "no temperature"),
    (dict(objective=CrossEntropy("of"), dim=2), "needs dim >= 3"),
    (dict(objective=CrossEntropy("softmax")), "unknown classifier"),
    (dict(objective=CrossEntropy("learned", 5.0)), "weight decay must lie"),
    (dict(objective="ce"), "objective must be the options"),
])
def test_bad_ce_problems_are_refused_in_one_line(options, needle):
    with pytest.raises(ProblemError, match=needle):
        Problem.from_counts([3, 3, 3], **options)


def test_cross_entropy_is_one_registered_objective():
    assert OBJECTIVES["ce"] is ce
    # what it declares is what the solvers will ask of it, and what it does not is refused
    assert ce.CAPABILITIES == {Capability.DESCENT, Capability.OWN_BOUND, Capability.PREDICT}
    problem = Problem.from_counts([3, 3, 2], tau=0.5, relu=True, objective=CrossEntropy("of"))
    with pytest.raises(ProblemError, match="does not supply"):
        solve_relaxation(problem)
