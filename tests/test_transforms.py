"""The optimiser pieces (solvers/transforms.py, solvers/optimizers.py, solvers/descent.py): each
transform against its formula computed by hand, the generic solver on problems with known minimisers,
and any optax transform (``optax.lbfgs`` included) through ``gd.solve``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from compiled import small_jit
from ufm import Problem
from ufm.constraint_sets import EUCLIDEAN, SPHERE
from solvers import descent, gd, optimizers
from solvers.transforms import nonmonotone_armijo, scale_by_barzilai_borwein


def test_barzilai_borwein_branches():
    tx = scale_by_barzilai_borwein(1.0)
    p = [jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0])]
    g = [jnp.array([1.0, 0.0]), jnp.array([3.0, 0.0]), jnp.array([3.0, 2.0])]
    state = tx.init(p[0])
    u0, state = tx.update(g[0], state, p[0])
    np.testing.assert_allclose(u0, -1.0 * np.array(g[0]))     # first step: the initial step
    u1, state = tx.update(g[1], state, p[1])          # count 1 (odd): <s,y>/<y,y>
    s, y = np.array(p[1] - p[0]), np.array(g[1] - g[0])
    np.testing.assert_allclose(u1, -(s @ y) / (y @ y) * np.array(g[1]))
    u2, state = tx.update(g[2], state, p[2])          # count 2 (even): <s,s>/<s,y>
    s, y = np.array(p[2] - p[1]), np.array(g[2] - g[1])
    np.testing.assert_allclose(u2, -(s @ s) / (s @ y) * np.array(g[2]))
    last = float(state.step)
    u3, state = tx.update(jnp.array([2.0, 1.0]), state, jnp.array([2.0, 1.0]))   # <s,y> < 0: twice the last
    assert float(state.step) == pytest.approx(2 * last)


def test_barzilai_borwein_without_curvature_moves_the_largest_coordinate_by_the_set_amount():
    """<s,y> <= 0 after a small first step (a random start of the SCL): the step is
    max(2 a_last, move / max|g|), here move / max|g| = 0.3 / 4e-4 = 750 against 2 a_last = 0.2."""
    tx = scale_by_barzilai_borwein(0.1, negative_curvature_move=0.3)
    p0, g0 = jnp.array([0.0, 0.0]), jnp.array([1e-4, -2e-4])
    state = tx.init(p0)
    _, state = tx.update(g0, state, p0)
    p1, g1 = p0 - 0.1 * g0, jnp.array([3e-4, -4e-4])      # the gradient grew along the move: <s,y> < 0
    assert float(jnp.vdot(p1 - p0, g1 - g0)) < 0
    u1, state = tx.update(g1, state, p1)
    assert float(state.step) == pytest.approx(0.3 / 4e-4, rel=1e-12)
    np.testing.assert_allclose(u1, -(0.3 / 4e-4) * np.array(g1), rtol=1e-12)
    assert float(jnp.max(jnp.abs(u1))) == pytest.approx(0.3, rel=1e-12)   # the largest coordinate moves 0.3


def test_armijo_accepts_the_first_halving_that_satisfies_the_condition():
    f = lambda x: jnp.sum((x - 3.0) ** 2)
    x = jnp.array([0.0])
    g = jax.grad(f)(x)                                   # -6
    tx = nonmonotone_armijo(EUCLIDEAN, memory=1)
    state = tx.init(x)
    u = -4.0 * g                                         # far too long: x + u = 24
    step, state = tx.update(u, state, x, value=f(x), grad=g, value_fn=f)
    # brute force: halve m from 1 until f(x + m u) <= f(x) + 1e-4 <g, m u>
    m = 1.0
    while not float(f(x + m * u)) <= float(f(x)) + 1e-4 * float(g @ (m * u)):
        m /= 2
    np.testing.assert_allclose(step, m * u)
    assert bool(state.accepted) and float(state.scale) == m


def test_armijo_reports_no_step_at_a_minimum():
    f = lambda x: jnp.sum(x ** 2)
    x = jnp.zeros(2)
    tx = nonmonotone_armijo(EUCLIDEAN)
    step, state = tx.update(jnp.zeros(2), tx.init(x), x, value=f(x), grad=jnp.zeros(2), value_fn=f)
    assert not bool(state.accepted) and np.all(np.asarray(step) == 0)


def test_generic_run_finds_the_minimiser_on_the_euclidean_set_and_the_sphere():
    A = jnp.diag(jnp.array([1.0, 2.0, 5.0]))
    b = jnp.array([1.0, -1.0, 2.0])
    quad = lambda x: 0.5 * x @ A @ x - b @ x
    tx = optimizers.OPTIMIZERS["bb"](0.1, 100, EUCLIDEAN, False)
    out = jax.jit(lambda x: descent.run(quad, EUCLIDEAN, tx, x, max_steps=200, tol=1e-15, grad_tol=1e-10))(jnp.zeros(3))
    np.testing.assert_allclose(out.params, np.linalg.solve(np.asarray(A), np.asarray(b)), atol=1e-10)
    assert bool(out.converged)
    # on the sphere: the minimiser of -<c, x> over unit rows is c / ||c||
    c = jnp.array([[3.0, 4.0]])
    lin = lambda X: -jnp.sum(X * c)
    tx = optimizers.OPTIMIZERS["bb"](0.1, 100, SPHERE, False)
    out = descent.run(lin, SPHERE, tx, SPHERE.retract(jnp.array([[1.0, -1.0]])), max_steps=200, tol=1e-15,
                      grad_tol=1e-10)
    np.testing.assert_allclose(out.params, [[0.6, 0.8]], atol=1e-10)


def test_optax_lbfgs_runs_through_solve_and_reaches_the_certified_optimum():
    problem = Problem.from_counts([6, 6, 3, 3], tau=0.5)
    reference = gd.solve(problem)
    sol = gd.solve(problem, optimizer=optax.lbfgs(), steps=500)   # the name "lbfgs" runs in the next test
    assert sol.status == "optimal", sol.message
    assert sol.certificate.relative_gap <= 1e-6
    assert sol.excess == pytest.approx(reference.excess, rel=1e-6)


def test_lbfgs_under_relu_never_claims_more_than_its_certificate_proves():
    # the clipped retraction makes f o R nonsmooth on the nonnegative sphere: L-BFGS is not the tool
    # there, and the status says so instead of claiming optimality
    sol = gd.solve(Problem.from_counts([6, 6, 3, 3], tau=0.5, relu=True), optimizer="lbfgs", steps=200)
    assert sol.status != "optimal" or sol.certificate.relative_gap <= 1e-6


def test_a_new_optimiser_is_one_registration(monkeypatch):
    monkeypatch.setitem(optimizers.OPTIMIZERS, "momentum",
                        lambda lr, steps, cset, stochastic: optax.sgd(lr, momentum=0.5))
    sol = gd.solve(Problem.balanced(3, 4, tau=0.5), optimizer="momentum", steps=3000, learning_rate=0.05)
    assert sol.info.optimizer == "momentum"
    assert sol.status == "optimal", sol.message


def test_one_loss_and_gradient_evaluation_per_step_on_average():
    """The search keeps f and grad f at the point it accepts, and the solver reuses them: counted as
    the run executes (a host callback in the objective: one call per evaluation of the compiled
    run), a run of the default optimiser makes 1 (start) + its searches' trials evaluations and no
    other, and on the SCL excess of an imbalanced problem that is at most 1.5 per step (before: 1
    forward per trial + 1 value and gradient per step), until it converges (past that, at the
    floating-point floor, a search that finds no step tries every halving). The kept value equals a
    fresh evaluation at the new point."""
    from ufm.constraint_sets import unit_sphere
    from ufm.objectives.scl.formula import reference_log_excess_packed, representatives
    from ufm.batching import pack

    problem = Problem.from_counts([6, 6, 2, 2], tau=0.5, relu=True)
    packed = pack(problem.batches(0))
    labels, rep = jnp.asarray(problem.labels), jnp.asarray(representatives(problem.labels))
    calls = []

    def objective(H):
        jax.debug.callback(lambda: calls.append(1))
        return reference_log_excess_packed(H, labels, rep, problem.tau, jnp.asarray(packed.index), jnp.asarray(packed.valid))
    cset = unit_sphere(True)
    tx = optax.with_extra_args_support(optimizers.OPTIMIZERS["bb"](0.1, 100, cset, False))
    H0 = cset.random_point(jax.random.PRNGKey(0), (problem.n, problem.dim))
    state = small_jit(lambda H: descent.run(objective, cset, tx, H, max_steps=200, tol=1e-12, grad_tol=1e-9,
                                            keep=True))(H0)
    jax.effects_barrier()
    assert not bool(state.failed)
    steps = int(state.iteration)
    assert bool(state.converged) and steps > 5
    trials = int(optax.tree_utils.tree_get(state.tx_state, "trials"))
    assert len(calls) == 1 + trials
    assert len(calls) / steps <= 1.5, (len(calls), steps)
    fresh = reference_log_excess_packed(state.params, labels, rep, problem.tau, jnp.asarray(packed.index),
                              jnp.asarray(packed.valid))
    np.testing.assert_allclose(float(state.value), float(fresh), rtol=1e-13)


def test_a_transform_declares_that_it_keeps_its_evaluation_not_its_name():
    """Whether the solver reuses a search's evaluation is the transform's declaration
    (:class:`solvers.transforms.KeepingTransformation`), so a user's own transform gets it too."""
    from solvers import gd
    from solvers.transforms import KeepingTransformation, keeps_evaluation, nonmonotone_armijo, \
        scale_by_barzilai_borwein
    from ufm import Problem
    from ufm.constraint_sets import unit_sphere

    assert keeps_evaluation(optimizers.OPTIMIZERS["bb"](0.1, 100, SPHERE, False))
    assert not keeps_evaluation(optimizers.OPTIMIZERS["bb"](0.1, 100, SPHERE, True))    # batches change
    assert not any(keeps_evaluation(optimizers.OPTIMIZERS[name](0.1, 100, SPHERE, False))
                   for name in ("adam", "sgd", "lbfgs"))
    problem = Problem.from_counts([4, 3, 3], tau=0.5)
    chain = optax.chain(scale_by_barzilai_borwein(0.1), nonmonotone_armijo(unit_sphere(False)))
    named = gd.solve(problem, seed=2)
    declared = gd.solve(problem, seed=2, optimizer=KeepingTransformation(*chain))
    plain = gd.solve(problem, seed=2, optimizer=chain)
    assert declared.iterations == named.iterations
    assert np.abs(declared.embeddings - named.embeddings).max() == 0.0
    # without the declaration the solver evaluates again at each point: the same iterates up to rounding
    assert abs(plain.log_excess - named.log_excess) < 1e-9
