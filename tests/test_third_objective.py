"""A third objective in one file (docs/architecture.md "How to add a loss"): a smooth convex function of
the Gram matrix, with its cvxpy expression and Gram gradient, registered in one line, then solved by
gradient descent, certified, solved by the n x n program, predicted and run by ``ufm solve --loss``,
with no other file changed. Below it, the property test: every public solver and ``certify_embeddings``,
given every registered objective, either works or refuses in one line.

The objective: f(G) = 1/2 ||G - T||_F^2 over the Gram G = H H^T of unit rows (nonnegative with ReLU),
T_ij = +1 for a pair of one class and -1 otherwise. Its optimum, derived here and checked against
the solvers (not against itself):

- ReLU (d >= k): every entry of a unit-row Gram is at most 1 and, under ReLU, at least 0, so each
  term is at least its value at the orthogonal frame (G_ij = 1 within a class, 0 across):
  f* = 1/2 (n^2 - sum_c n_c^2), for any counts.
- No ReLU, balanced (k classes of m), d >= k - 1: f is strictly convex and invariant under the
  permutations within and across classes, so its minimiser over the convex set {G PSD, diag 1} is
  invariant too: G = a within a class, b across. With a = 1 the smallest eigenvalue bound
  1 + (m - 1) a + (k - 1) m b >= 0 gives b >= -1/(k - 1), and lowering a below 1 only raises the
  bound on b, so G* is the simplex ETF: f* = 1/2 (n^2 - sum_c n_c^2) ((k - 2)/(k - 1))^2.
- No ReLU, imbalanced: no closed form here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import jax.numpy as jnp
import numpy as np
import pytest

import ufm
from solvers import convex, gd, reduced
from solvers.certificate import certify_embeddings, gram_certificate
from theory_checks.predictions import predict
from ufm.constraint_sets import unit_sphere
from ufm.errors import ProblemError
from ufm.geometry import etf_gram
from ufm.objectives.base import Capability, Evaluation, ObjectivePrediction

NAME = "gram_target"


@dataclass(frozen=True)
class GramTarget:
    """The options (none): what a Problem holds in ``objective``."""

    name = NAME
    min_class_size = 1
    batched = False

    def validate(self, k: int, dim: int, relu: bool) -> None:
        """Every k, dim and ReLU the Problem accepts."""

    def describe(self) -> str:
        return "Gram target"


def target(problem) -> np.ndarray:
    """T (n, n): +1 within a class, -1 across."""
    same = problem.labels[:, None] == problem.labels[None, :]
    return np.where(same, 1.0, -1.0)


class GramTargetObjective:
    """The implementation: f(G) = 1/2 ||G - T||_F^2 (module docstring)."""

    NAME = NAME
    CAPABILITIES = frozenset({Capability.DESCENT, Capability.GRAM, Capability.RELAXATION, Capability.PREDICT})

    def constraint_set(self, problem):
        return unit_sphere(problem.relu)

    def start(self, problem, key, dtype):
        return unit_sphere(problem.relu).random_point(key, (problem.n, problem.dim), dtype)

    def solver_value(self, shape):
        def value(H, arrays):           # arrays: the problem's labels and tau, traced
            same = arrays.labels[:, None] == arrays.labels[None, :]
            return 0.5 * jnp.sum((H @ H.T - jnp.where(same, 1.0, -1.0).astype(H.dtype)) ** 2)
        return value

    def evaluate(self, problem, H) -> Evaluation:
        H = np.asarray(H, dtype=np.float64)
        value = self.gram_value_and_grad(problem, H @ H.T)[0]
        return Evaluation(H, value, value, float(np.log(value)), None, None, "", {})

    def gram_value_and_grad(self, problem, G):
        D = np.asarray(G, dtype=np.float64) - target(problem)
        return 0.5 * float(np.sum(D * D)), D

    def relaxation_expression(self, problem, G):
        return 0.5 * cp.sum_squares(G - target(problem))

    def predict(self, problem) -> ObjectivePrediction:
        counts, k = np.asarray(problem.counts), problem.k
        across = float(problem.n ** 2 - np.sum(counts ** 2))
        if problem.relu:
            return ObjectivePrediction("orthogonal-frame", np.eye(k), across / 2, "T's signs under G >= 0")
        if len(set(problem.counts)) == 1 and problem.dim >= k - 1:
            return ObjectivePrediction("etf", etf_gram(k), across / 2 * ((k - 2) / (k - 1)) ** 2,
                                       "balanced: symmetry and strict convexity")
        return ObjectivePrediction("none", None, None, "no closed form for imbalanced classes without ReLU")


ufm.register_objective(NAME, GramTarget, GramTargetObjective())          # the one registration line


# ---------------------------------------------------------------- the third objective, end to end
def _optimum(counts, relu: bool) -> float:
    """f* of the module docstring, computed here from the counts alone."""
    counts = np.asarray(counts)
    k, across = len(counts), float(counts.sum() ** 2 - np.sum(counts ** 2))
    return across / 2 if relu else across / 2 * ((k - 2) / (k - 1)) ** 2


BALANCED = dict(counts=(4, 4, 4), relu=False, dim=3)
#: d = 2k, the toolkit's default under ReLU: at d = k plain descent can stall (seed 1 ends at f = 56, and
#: the certificate says so: relative gap 1); the staircase escapes it (test below)
RELU = dict(counts=(5, 3, 2), relu=True, dim=6)


def test_the_staircase_escapes_a_stall_of_the_third_objective():
    """A loss with a Gram gradient gets the staircase (docs/theory.md 8a) with no code of its own: at
    d = k under ReLU seed 1 stalls at f = 56 under plain descent and is proved optimal at 31 with it."""
    problem = ufm.Problem.from_counts((5, 3, 2), relu=True, dim=3, objective=GramTarget())
    plain = gd.solve(problem, seed=1, escape=False)
    assert plain.status == "stationary" and plain.loss == pytest.approx(56.0, rel=1e-9)
    sol = gd.solve(problem, seed=1)
    assert sol.status == "optimal" and sol.loss == pytest.approx(_optimum((5, 3, 2), True), rel=1e-9)
    assert sol.info.staircase.escapes >= 1 and sol.embeddings.shape == (problem.n, 3)
    assert np.abs(sol.class_mean_gram - np.eye(3)).max() < 1e-6


@pytest.mark.parametrize("case", [BALANCED, RELU], ids=["balanced", "relu-imbalanced"])
def test_gradient_descent_reaches_the_derived_optimum_and_proves_it(case):
    problem = ufm.Problem.from_counts(case["counts"], relu=case["relu"], dim=case["dim"], objective=GramTarget())
    want = _optimum(case["counts"], case["relu"])
    sol = gd.solve(problem, seed=1)
    assert sol.status == "optimal", sol.message
    assert sol.loss == pytest.approx(want, rel=1e-9)
    # the certificate's bound is valid (below the derived optimum) and proves the value
    assert sol.certificate.lower_bound <= want * (1 + 1e-12)
    assert sol.certificate.relative_gap <= 1e-6
    M = etf_gram(3) if not case["relu"] else np.eye(3)
    assert np.abs(sol.class_mean_gram - M).max() < 1e-5


def test_certificate_is_valid_at_random_points_and_tight_at_the_optimum():
    problem = ufm.Problem.from_counts((4, 4, 4), dim=3, objective=GramTarget())
    want = _optimum((4, 4, 4), False)
    rng = np.random.default_rng(0)
    for _ in range(5):
        H = rng.standard_normal((12, 3))
        cert = certify_embeddings(problem, H / np.linalg.norm(H, axis=1, keepdims=True))
        assert cert.lower_bound <= want * (1 + 1e-12) and not cert.certified
    # the optimum itself: rows at the ETF directions
    cert = certify_embeddings(problem, _etf_rows(3)[problem.labels])
    assert cert.excess == pytest.approx(want, rel=1e-12) and cert.relative_gap <= 1e-10 and cert.certified


def _etf_rows(k: int) -> np.ndarray:
    """k unit rows in R^k with Gram the simplex ETF: the centred standard basis, normalised."""
    E = np.eye(k) - 1.0 / k
    return E / np.linalg.norm(E, axis=1, keepdims=True)


@pytest.mark.parametrize("case", [BALANCED, RELU], ids=["balanced", "relu-imbalanced"])
def test_the_n_by_n_program_brackets_the_derived_optimum(case):
    problem = ufm.Problem.from_counts(case["counts"], relu=case["relu"], dim=case["dim"], objective=GramTarget())
    want = _optimum(case["counts"], case["relu"])
    sol = convex.solve_relaxation(problem)
    # what the toolkit guarantees, not the solver's word: a valid bracket around the optimum
    assert sol.info.bracket.lower <= want * (1 + 1e-9)
    assert sol.loss == pytest.approx(want, rel=1e-6)
    assert sol.lower_bound is None or sol.lower_bound <= want * (1 + 1e-9)


def test_predict_uses_the_objectives_closed_form():
    balanced = ufm.Problem.from_counts((4, 4, 4), dim=3, objective=GramTarget())
    pred = predict(balanced)
    assert pred.geometry == "etf" and pred.loss == pytest.approx(_optimum((4, 4, 4), False), rel=1e-15)
    imbalanced = ufm.Problem.from_counts((5, 3, 2), dim=3, objective=GramTarget())
    assert predict(imbalanced).geometry == "none"


def test_the_command_runs_it(capsys):
    from ufm.app import cli
    import json

    code = cli.main(["solve", "--loss", NAME, "--counts", "4,4,4", "--dim", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "optimal"
    assert out["loss"] == pytest.approx(_optimum((4, 4, 4), False), rel=1e-9)
    code = cli.main(["predict", "--loss", NAME, "--counts", "5,3,2", "--relu", "--dim", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["geometry"] == "orthogonal-frame"
    assert out["loss"] == pytest.approx(_optimum((5, 3, 2), True), rel=1e-15)


# ---------------------------------------------------------------- every solver, every objective
def _problem(name: str):
    options = {"scl": ufm.SCL(), "ce": ufm.CrossEntropy("of"), NAME: GramTarget()}[name]
    return ufm.Problem.from_counts((3, 3, 2), tau=0.5, relu=True, dim=3, objective=options) if name != NAME else \
        ufm.Problem.from_counts((3, 3, 2), relu=True, dim=3, objective=options)


def _unit_rows(problem) -> np.ndarray:
    return np.eye(problem.dim)[problem.labels % problem.dim]


ENTRY_POINTS = {
    "gd.solve": lambda p: gd.solve(p, steps=50),
    "gd.solve_many": lambda p: gd.solve_many(p, [0, 1], steps=50),
    "gd.solve_batched": lambda p: gd.solve_batched([p], steps=50),
    "convex.solve_relaxation": convex.solve_relaxation,
    "convex.convex_optimum": convex.convex_optimum,
    "convex.certify": lambda p: convex.certify(gd.solve(p, steps=50, certify=False), p),
    "reduced.solve_reduced": reduced.solve_reduced,
    "reduced.solve_factored": reduced.solve_factored,
    "reduced.solve_block": reduced.solve_block,
    "certify_embeddings": lambda p: certify_embeddings(p, _unit_rows(p)),
    "gram_certificate": lambda p: gram_certificate(p, _unit_rows(p)),
    "problem_loss": lambda p: ufm.problem_loss(p, _unit_rows(p)),
    "predict": predict,
}


@pytest.mark.parametrize("who", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("name", ["scl", "ce", NAME])
def test_every_entry_point_works_or_refuses_in_one_line(name, who):
    assert name in ufm.objectives.OBJECTIVES
    problem = _problem(name)
    try:
        result = ENTRY_POINTS[who](problem)
    except ProblemError as error:
        message = str(error)
        assert "\n" not in message and len(message) < 400, message
        return
    assert result is not None


def test_the_property_test_covers_every_registered_objective():
    assert set(ufm.objectives.OBJECTIVES) == {"scl", "ce", NAME}


# ---------------------------------------------------------------- one translation of a problem into arrays
@pytest.mark.parametrize("name", ["scl", "ce", NAME])
def test_a_sweep_over_tau_or_counts_of_one_shape_compiles_once(name):
    """tau, the counts (same n and k) and the labels reach the compiled runs as traced arrays
    (``Problem.arrays``), so after the first solve of a shape the others compile nothing."""
    from ufm import programs

    def compiled() -> int:
        return sum(p._cache_size() for p in programs._PROGRAMS)

    options = {"scl": ufm.SCL(), "ce": ufm.CrossEntropy("etf"), NAME: GramTarget()}[name]
    sweep = [((5, 4, 3), 0.3), ((5, 4, 3), 0.7), ((6, 3, 3), 0.45), ((4, 4, 4), 0.9)]
    before = None
    for counts, tau in sweep:
        problem = ufm.Problem.from_counts(counts, tau=tau, objective=options, dim=3)
        sol = gd.solve(problem, seed=3)
        assert sol.status == "optimal", sol.message
        before = compiled() if before is None else before
    assert compiled() == before
