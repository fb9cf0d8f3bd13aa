"""The Riemannian staircase (solvers.staircase, docs/theory.md section 8a): the lift's derivative
against finite differences of the loss kernel, the eigensolver against dense eigh, every escape
decreasing E, and every start proved optimal where plain descent stalls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from solvers import gd
from solvers.certificate import certificate_slack, certify_embeddings
from solvers.staircase import escape, lifted, smallest_eigenpair
from ufm import Batching, Problem, Prototypes
from ufm.objectives import embeddings_log_excess
from ufm.solution import Staircase

from ufm.app.cli import main


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("relu, batching", [(False, None), (True, None),
                                             (False, Batching.from_lists([[0, 1, 4, 5, 7, 8], [2, 3, 6, 9]]))])
def test_lift_derivative_is_the_slack_quadratic_form(relu, batching):
    """d log E / d(t^2) at t = 0 along h_i -> (h_i, t u_i)/norm equals u^T (sym C - Diag(y0)) u
    (docs/theory.md 8a), against a central difference of log E evaluated by the loss kernel."""
    problem = Problem.from_counts([4, 3, 3], tau=0.5, relu=relu, dim=3,
                                  **({} if batching is None else {"batching": batching}))
    rng = np.random.default_rng(3)
    H = _unit(np.abs(rng.standard_normal((problem.n, 3))) if relu else rng.standard_normal((problem.n, 3)))
    u = rng.random(problem.n) if relu else rng.standard_normal(problem.n)
    slack = certificate_slack(problem, H)
    assert slack.log_excess == pytest.approx(embeddings_log_excess(problem, H), rel=1e-12)
    model = float(u @ slack.apply_lift(u[:, None])[:, 0])
    up = problem.with_(dim=4)
    t = 1e-3
    f = [embeddings_log_excess(up, lifted(H, u, s)) for s in (t, 2 * t)]
    # log E(s) = f0 + a s + b s^2: two points in s = t^2 remove the quadratic term
    f0 = slack.log_excess
    slope = (16 * (f[0] - f0) - (f[1] - f0)) / (12 * t * t)
    assert slope == pytest.approx(model, rel=1e-5, abs=1e-9)


def test_slack_smallest_eigenvalue_is_the_certificates():
    problem = Problem.from_counts([8, 8, 2, 2], tau=0.5, relu=True, dim=4)
    sol = gd.solve(problem, seed=1, escape=False)
    assert sol.status == "stationary"                 # a known stall: classes 0 and 3 share a coordinate
    lam = np.linalg.eigvalsh(certificate_slack(problem, sol.embeddings).dense)[0]
    assert lam == pytest.approx(sol.certificate.lambda_min, abs=1e-10)
    assert lam < -0.1


def test_lanczos_eigenpair_agrees_with_dense_eigh_and_is_deterministic():
    """The matrix-free path (above DENSE_MAX rows) on a matrix small enough to hold densely."""
    from solvers.certificate import Slack

    rng = np.random.default_rng(0)
    n = 300
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    vals = np.concatenate([[-0.37, -0.2], np.linspace(0.0, 5.0, n - 2)])
    A = (Q * vals) @ Q.T
    slack = Slack(0.0, lambda V: A @ V, None, lambda V: A @ V)
    lam, v, matvecs, converged = smallest_eigenpair(slack, n, seed=7)
    dense_vals, dense_vecs = np.linalg.eigh(A)
    assert converged and matvecs > 0
    assert lam == pytest.approx(dense_vals[0], abs=1e-9)
    assert abs(v @ dense_vecs[:, 0]) == pytest.approx(1.0, abs=1e-8)
    again = smallest_eigenpair(slack, n, seed=7)
    assert again[0] == lam and np.array_equal(again[1], v)         # a fixed start vector: the same pair
    warm = smallest_eigenpair(slack, n, start=v)
    assert warm[0] == pytest.approx(lam, abs=1e-9) and abs(warm[1] @ v) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("seed", [1, 3])
def test_every_escape_decreases_e(seed):
    problem = Problem.from_counts([8, 8, 2, 2], tau=0.5, relu=True, dim=4)
    stalled = gd.solve(problem, seed=seed, escape=False)
    assert stalled.status == "stationary"
    level, X, _ = escape(problem, stalled.embeddings)
    assert level.escaped and level.lifted == 1 and X.shape == (problem.n, 5)
    assert X.min() >= 0 and np.allclose(np.linalg.norm(X, axis=1), 1.0)
    before = embeddings_log_excess(problem, stalled.embeddings)
    after = embeddings_log_excess(problem.with_(dim=5), X)      # evaluated afresh, not the search's value
    assert after < before and after == pytest.approx(level.log_excess_after, rel=1e-12)
    assert level.kind in ("positive part", "negative part", "absolute value")


def test_relu_at_d_equal_k_every_start_is_optimal():
    """(8, 8, 2, 2) at tau 0.5, d = k = 4: every one of 32 starts is proved optimal (plain descent
    stalls from some), at the orthogonal frame with one coordinate per class."""
    problem = Problem.from_counts([8, 8, 2, 2], tau=0.5, relu=True, dim=4)
    plain = gd.solve_many(problem, range(32), escape=False)
    assert any(s.status == "stationary" for s in plain)        # the stalls the staircase escapes
    sols = gd.solve_many(problem, range(32))
    assert [s.status for s in sols] == ["optimal"] * 32
    for s in sols:
        assert s.embeddings.shape == (problem.n, 4) and s.embeddings.min() >= 0
        assert np.abs(s.class_mean_gram - np.eye(4)).max() < 1e-6
        assert certify_embeddings(problem, s.embeddings).certified          # judged again, independently
    assert sum(s.info.staircase is not None and s.info.staircase.escapes > 0 for s in sols) == \
        sum(s.status == "stationary" for s in plain)


def _random_problems(count: int) -> list[Problem]:
    rng = np.random.default_rng(20261207)
    problems = []
    for _ in range(count):
        k = int(rng.integers(3, 7))
        counts = [int(c) for c in rng.integers(2, 14, size=k)]
        problems.append(Problem.from_counts(counts, tau=float(rng.choice([0.1, 0.25, 0.5, 1.0])), relu=True,
                                            dim=k))
    return problems


def _all_optimal_at_the_frame(problem: Problem, starts: int) -> None:
    sols = gd.solve_many(problem, range(starts))
    assert [s.status for s in sols] == ["optimal"] * starts, [s.message for s in sols]
    for s in sols:
        assert np.abs(s.class_mean_gram - np.eye(problem.k)).max() < 1e-6


@pytest.mark.parametrize("problem", _random_problems(8), ids=lambda p: ",".join(map(str, p.counts)))
def test_relu_random_problems_at_d_equal_k_are_optimal_from_every_start(problem):
    _all_optimal_at_the_frame(problem, 4)


@pytest.mark.slow
@pytest.mark.parametrize("problem", _random_problems(8), ids=lambda p: ",".join(map(str, p.counts)))
def test_relu_random_problems_at_d_equal_k_are_optimal_from_32_starts(problem):
    _all_optimal_at_the_frame(problem, 32)


def test_no_relu_imbalanced_at_d_equal_k_minus_1_every_start_is_optimal():
    problem = Problem.from_counts([12, 6, 3, 3, 2], tau=0.05, dim=4)
    sols = gd.solve_many(problem, range(8))
    assert [s.status for s in sols] == ["optimal"] * 8


def test_prototypes_report_the_rank_the_optimum_needs():
    """The issue's case: at --dim 3 the staircase's certified optimum has rank 15 > 3; the report says
    so (status stationary, never optimal), and at dim 18 the solve is optimal with the same excess."""
    problem = Problem.from_counts([6, 5, 4], tau=0.192, prototypes=Prototypes("of", anchors=False), dim=3)
    sol = gd.solve(problem)
    assert sol.status == "stationary" and sol.embeddings.shape == (problem.n, 3)
    assert "rank 15 > dim = 3" in sol.message and "solve with dim >= 15" in sol.message
    assert sol.info.staircase.stop == "certified" and sol.info.staircase.rank == 15
    assert [(level.rank, level.lifted) for level in sol.info.staircase.levels] == [(3, 8), (11, 4)]   # theory 8a
    high = gd.solve(problem.with_(dim=18))
    assert high.status == "optimal" and high.excess == pytest.approx(0.05454, rel=1e-3)


def test_dim_one_two_classes_is_solved_and_three_classes_say_why():
    pair = gd.solve(Problem.from_counts([3, 3], dim=1))
    assert pair.status == "optimal" and pair.class_mean_gram[0, 1] == pytest.approx(-1.0, abs=1e-9)
    three = gd.solve(Problem.from_counts([3, 3, 3], dim=1))
    assert three.status == "stationary" and "d = 1 cannot hold it" in three.message


def test_no_escape_keeps_the_plain_descent_and_bad_values_are_refused():
    problem = Problem.from_counts([8, 8, 2, 2], tau=0.5, relu=True, dim=4)
    plain = gd.solve(problem, seed=1, escape=False)
    assert plain.status == "stationary" and plain.info.staircase is None
    from ufm.errors import ProblemError
    with pytest.raises(ProblemError, match="escape must be True or False"):
        gd.solve(problem, escape="no")


def test_command_reports_the_staircase_and_refuses_no_escape_where_it_does_not_apply(capsys):
    code, out, _ = run_cli(capsys, ["solve", "--counts", "8,8,2,2", "--relu", "--dim", "4", "--tau", "0.5", "--seed", "1",
                            "--json"])
    report = json.loads(out)
    assert code == 0 and report["status"] == "optimal"
    staircase = report["staircase"]
    assert staircase["escapes"] == 1 and staircase["stop"] == "certified"
    level = staircase["levels"][0]
    assert {"rank", "lambda_min", "escaped", "matvecs", "seconds"} <= set(level)
    assert level["rank"] == 4 and level["escaped"] and level["lambda_min"] < 0
    code, out, _ = run_cli(capsys, ["solve", "--counts", "8,8,2,2", "--relu", "--dim", "4", "--tau", "0.5",
                                    "--seed", "1", "--json", "--no-escape"])
    assert code == 1 and json.loads(out)["status"] == "stationary" and "staircase" not in json.loads(out)
    for extra in (["--method", "convex"], ["--no-certify"], ["--loss", "ce", "--classifier", "etf"]):
        code, _, err = run_cli(capsys, ["solve", "--counts", "4,4", "--no-escape", *extra])
        assert code == 2 and "--no-escape" in err and len(err.strip().splitlines()) == 1


def test_staircase_record_round_trips_to_json():
    sol = gd.solve(Problem.from_counts([8, 8, 2, 2], tau=0.5, relu=True, dim=4), seed=1)
    assert isinstance(sol.info.staircase, Staircase)
    json.dumps(sol.info.staircase.to_dict())


@pytest.mark.slow
def test_peers_problem_relu_d_equal_k_every_start_is_optimal():
    """The peers benchmark's problem (160 x 5, 40 x 5 at tau 0.5, d = k = 10): 32 starts, all proved."""
    problem = Problem.from_counts([160] * 5 + [40] * 5, tau=0.5, relu=True, dim=10)
    sols = [gd.solve(problem, seed=s) for s in range(32)]
    assert [s.status for s in sols] == ["optimal"] * 32


def test_theory_section_8a_quotes_the_measured_stall():
    """docs/theory.md 8a's numbers for (8, 8, 2, 2), tau 0.5, d = 4, seed 1 (plain descent): classes 0
    and 3 share a direction; v = +-0.158 on class 0 and -+0.632 on class 3, 0 elsewhere; the
    derivatives of v+, v- and |v| (max |u_i| = 1) -0.259, -0.259, -0.146; log E falls by 0.139 at t = 1."""
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "theory.md").read_text().split())
    assert "v = +0.158 on class 0, -0.632 on class 3" in text and "-0.259, -0.259 and -0.146" in text
    assert "log E fell by 0.139 at t = 1 against the model's 0.259" in text
    problem = Problem.from_counts([8, 8, 2, 2], tau=0.5, relu=True, dim=4)
    H = gd.solve(problem, seed=1, escape=False).embeddings
    assert H[problem.labels == 0].mean(axis=0) @ H[problem.labels == 3].mean(axis=0) == pytest.approx(1.0, abs=1e-6)
    slack = certificate_slack(problem, H)
    v = np.linalg.eigh(slack.dense)[1][:, 0]
    v = v * np.sign(v[problem.labels == 0][0])
    assert np.round(v[problem.labels == 0], 3).tolist() == [0.158] * 8
    assert np.round(v[problem.labels == 3], 3).tolist() == [-0.632] * 2
    assert np.abs(v[(problem.labels == 1) | (problem.labels == 2)]).max() < 1e-6
    slopes = []
    for u in (np.maximum(v, 0), np.maximum(-v, 0), np.abs(v)):
        u = u / np.abs(u).max()
        slopes.append(round(float(u @ slack.apply_lift(u[:, None])[:, 0]), 3))
    assert slopes == [-0.259, -0.259, -0.146]
    u = np.maximum(v, 0) / np.maximum(v, 0).max()                 # the positive part, as the code scales it
    fall = embeddings_log_excess(problem, H) - embeddings_log_excess(problem.with_(dim=5), lifted(H, u, 1.0))
    assert round(fall, 3) == 0.139
