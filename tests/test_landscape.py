"""Landscape tools against finite differences of the brute-force loss (tests/reference.py)."""

import numpy as np
import pytest

from reference import etf_vectors, scl_loop
from theory_checks import landscape as L
from ufm import Problem
from ufm.constraint_sets import unit_sphere


def second_derivative_along(problem, H, xi, eps=1e-4):
    """d^2/dt^2 L(R(H + t xi)) at 0 by central differences of the brute-force loop (the row-normalising
    retraction is second order, so this equals <xi, Hess xi> at any H)."""
    f = lambda t: scl_loop(unit_sphere(problem.relu).retract(H + t * xi), problem.labels, problem.tau)
    return (f(eps) - 2 * f(0.0) + f(-eps)) / eps**2


def collapsed(problem, vectors):
    V = np.zeros((len(vectors), problem.dim))
    V[:, :vectors.shape[1]] = vectors
    return np.repeat(V, problem.counts, axis=0)


def test_hessian_quadratic_form_matches_finite_differences():
    problem = Problem.from_counts([3, 2, 2], tau=0.6, dim=3)
    rng = np.random.default_rng(0)
    H = unit_sphere(False).retract(rng.standard_normal((problem.n, 3)))
    R, B = L.riemannian_hessian(problem, H)
    for _ in range(3):
        c = rng.standard_normal(R.shape[0])
        c /= np.linalg.norm(c)
        xi = (B @ c).reshape(H.shape)
        # FD error ~ eps^2 * L'''' + 1e-16 * L / eps^2 ~ 1e-7
        assert c @ R @ c == pytest.approx(second_derivative_along(problem, H, xi), rel=1e-5, abs=1e-5)


def test_etf_is_a_minimum_and_the_saddle_is_not():
    problem = Problem.balanced(3, 3, tau=0.5, dim=4)
    H = collapsed(problem, etf_vectors(3))   # ETF in a 3-d subspace of R^4
    assert L.riemannian_gradient_norm(problem, H) < 1e-10
    eig = L.riemannian_hessian_eigenvalues(problem, H)
    assert eig.min() > -1e-9                  # no negative direction at the global minimum
    saddle = L.symmetric_saddle(problem)
    assert L.riemannian_gradient_norm(problem, saddle) < 1e-6
    R, B = L.riemannian_hessian(problem, saddle)
    vals, vecs = np.linalg.eigh(R)
    assert vals[0] < -1.0
    xi = (B @ vecs[:, 0]).reshape(saddle.shape)
    assert second_derivative_along(problem, saddle, xi) < -1.0   # confirmed by the brute-force loop
    assert scl_loop(saddle, problem.labels, 0.5) > scl_loop(H, problem.labels, 0.5)


def test_slice_is_feasible_and_centred_on_the_minimum():
    problem = Problem.balanced(3, 3, tau=0.5, dim=3)
    H = collapsed(problem, etf_vectors(3))
    for directions in ("random", "hessian"):
        sl = L.loss_slice(problem, H, directions=directions, resolution=9, radius=0.5)
        centre = sl.loss[4, 4]
        assert centre == pytest.approx(scl_loop(H, problem.labels, 0.5), rel=1e-12)
        assert sl.loss.min() >= centre - 1e-9


def test_landscape_data_and_command(tmp_path, capsys):
    import json

    from solvers.convex import solve_reduced
    from ufm.app.cli import main

    out = tmp_path / "landscape.png"
    assert main(["landscape", "--counts", "4,4,2", "--tau", "0.5", "--dim", "4", "--starts", "6",
                 "--resolution", "7", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert out.exists() and out.stat().st_size > 5000
    from theory_checks.landscape import LANDSCAPE_STAGES
    assert all(stage in captured.err for stage in LANDSCAPE_STAGES)      # progress, stage by stage
    optimum = solve_reduced(Problem.from_counts([4, 4, 2], tau=0.5), program="general").lower_bound
    assert data["optimum"] == pytest.approx(optimum, rel=1e-7)
    assert len(data["gaps"]) == 6 and max(abs(g) for g in data["gaps"]) < 1e-7   # every start is global
    assert min(data["hessian"]["minimum"]) > -1e-7 and min(data["hessian"]["saddle"]) < -0.1
    assert data["curves"]["distance"][-1] < 1e-4 < data["curves"]["distance"][0]
    assert np.asarray(data["slice"]["loss"]).shape == (7, 7)


@pytest.mark.slow
def test_landscape_without_feasible_directions_is_reported_not_crashed(tmp_path, capsys):
    import json

    from ufm.app.cli import main

    assert main(["landscape", "--counts", "3,3", "--relu", "--dim", "2", "--starts", "2", "--out",
                 str(tmp_path / "l.png"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["slice"] is None and any("slice skipped" in note for note in data["notes"])


@pytest.mark.parametrize("relu", [False, True])
def test_convergence_curve_pairs_every_checkpoint_with_a_distance_under_random_batching(relu):
    """Issue 33's `ufm landscape --counts 3,3 --starts 2 --resolution 5 --tau 0.05 --batching random
    --batch-size 3` (with or without --relu) once failed drawing "x and y must have same first
    dimension (16,) and (15,)": the convergence panel's epochs and distances must pair one to one,
    the last at the solve's own last epoch, every one finite. (Reproduced here: a staged run at tau
    0.05 outran its step budget's snapshot slots, and slots a stage never reached were NaN.)"""
    from solvers import gd
    from theory_checks.landscape import _distances_to
    from ufm import Batching, Problem

    problem = Problem.from_counts([3, 3], tau=0.05, relu=relu, batching=Batching.random(3))
    for seed in (0, 1):
        solution = gd.solve(problem, seed=seed, escape=False)
        epochs, distances = _distances_to(np.asarray(solution.class_mean_gram), solution)
        assert len(epochs) == len(distances) >= 2 and epochs[-1] == solution.iterations
        assert epochs == sorted(epochs) and np.isfinite(distances).all()
        assert distances[-1] == pytest.approx(0.0, abs=1e-12)
