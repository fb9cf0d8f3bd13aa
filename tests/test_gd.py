"""solvers.gd against independent values: the closed forms of docs/theory.md section 2 (tests/reference.py),
docs/theory.md's check values for STEP imbalance without ReLU, and a plain double-loop loss (scl_loop) at
hand-built optimal embeddings. Nothing here compares the solver with itself, except where the point is
consistency (solve_many versus separate solves).

Tolerances: the solver stops at relative loss change 1e-10 and Riemannian gradient norm
sqrt(1e-10 |L|) (module docstring), i.e. a loss error of order 1e-10 relative; 1e-6 relative on the
loss (the brief's requirement) and 1e-4 on the normalised mean-Gram distance therefore leave two or more
orders of margin on every problem here (measured errors: ~1e-10 and ~1e-8).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reference import collapsed_embeddings, etf_loss, orthogonal_frame_loss, scl_loop
from solvers import gd
from ufm import Batching, Problem, ProblemError, Prototypes
from ufm.geometry import etf_gram, normalized_distance

LOSS_RTOL = 1e-6     # required agreement with the closed forms
GRAM_TOL = 1e-4      # normalised Frobenius distance of the class-mean Gram to the predicted one


def _fresh_programs():
    """Forget gradient descent's compiled runs (held in memory; with the ``fresh_runs`` fixture none is
    on disk), so that the next solve traces again and a monkeypatched ``gd._run`` is seen."""
    gd._compiled.cache_clear()
    gd._RUNS.clear()


@pytest.fixture
def fresh_runs(monkeypatch):
    """Gradient descent's runs kept in memory only for one test (a run loaded from the suite's compile
    cache would not be traced): for the tests that count traces."""
    monkeypatch.setattr(gd._RUNS, "_path", lambda key, static: None)
    yield
    _fresh_programs()


def of_distance(sol):
    return normalized_distance(sol.class_mean_gram, np.eye(len(sol.class_mean_gram)))


def assert_unit_rows(sol, relu):
    H = sol.embeddings
    assert H.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(H, axis=1), 1.0, atol=1e-12)
    if relu:
        assert (H >= 0).all()


# ---------------------------------------------------------------- ReLU: orthogonal frame, any counts
@pytest.mark.parametrize("problem", [
    Problem.step(6, 20, 10, relu=True, tau=0.5),                 # STEP, ratio 10, counts 20,20,20,2,2,2
    Problem.step(6, 20, 10, relu=True, tau=0.2, seed=3),
    Problem.long_tail(8, 40, 20, relu=True, tau=0.2),             # long tail, ratio 20: 40,26,...,3,2
    Problem.long_tail(5, 20, 10, relu=True, tau=1.0, seed=7),
], ids=["step-k6-tau0.5", "step-k6-tau0.2", "longtail-k8-tau0.2", "longtail-k5-tau1"])
def test_relu_imbalanced_reaches_orthogonal_frame(problem):
    sol = gd.solve(problem)
    assert sol.method == "gd" and sol.status == "optimal", sol.message
    assert_unit_rows(sol, relu=True)
    want = orthogonal_frame_loss(problem.counts, problem.tau)
    assert sol.loss == pytest.approx(want, rel=LOSS_RTOL)
    assert sol.loss >= want * (1 - 1e-12)        # the closed form is the global minimum
    assert of_distance(sol) < GRAM_TOL
    assert sol.info.direction_norm <= sol.info.grad_tol


# ---------------------------------------------------------------- no ReLU
@pytest.mark.parametrize("k,m,tau", [(5, 6, 0.5), (4, 5, 1.0), (3, 4, 0.2)])
def test_balanced_no_relu_reaches_simplex_etf(k, m, tau):
    problem = Problem.balanced(k, m, tau=tau)
    sol = gd.solve(problem)
    assert sol.status == "optimal", sol.message
    assert_unit_rows(sol, relu=False)
    assert sol.loss == pytest.approx(etf_loss(problem.counts, tau), rel=LOSS_RTOL)
    assert normalized_distance(sol.class_mean_gram, etf_gram(k)) < GRAM_TOL


def test_step_no_relu_is_not_etf_and_matches_theory_check_values():
    problem = Problem.from_counts((8, 8, 2, 2), tau=0.5)
    sol = gd.solve(problem)
    assert sol.status == "optimal", sol.message
    # docs/theory.md section 2 states 35.98345 (7 digits): agreement to its rounding, 5e-6
    assert sol.loss == pytest.approx(35.98345, abs=5e-6)
    # the ETF is feasible, so the optimum is below its loss; strictly here
    assert sol.loss < etf_loss(problem.counts, problem.tau) - 1e-3
    M = sol.class_mean_gram
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-8)           # collapse: unit-norm means
    # off-diagonals stated to 3 decimals: within rounding (5e-4)
    assert M[0, 1] == pytest.approx(-0.497, abs=5e-4)
    assert M[2, 3] == pytest.approx(-0.033, abs=5e-4)
    for a in (0, 1):
        for b in (2, 3):
            assert M[a, b] == pytest.approx(-0.349, abs=5e-4)
    assert normalized_distance(M, etf_gram(4)) > 0.1                # far from the ETF (tolerance 1e-4)


# ---------------------------------------------------------------- batching
def collapsed_of_loss(problem, epoch=0):
    """Independent value: double-loop SCL of collapsed orthogonal-frame embeddings over the batching."""
    H = collapsed_embeddings(np.eye(problem.k, problem.dim), problem.counts)
    return scl_loop(H, problem.labels, problem.tau, problem.batches(epoch))


@pytest.mark.parametrize("batching", [Batching.binding(10), Batching.random(8)], ids=["binding", "random"])
def test_relu_minibatch_reaches_orthogonal_frame(batching):
    problem = Problem.balanced(4, 8, relu=True, tau=0.5, batching=batching)
    sol = gd.solve(problem, steps=2000)
    assert sol.status == "optimal", sol.message
    assert_unit_rows(sol, relu=True)
    assert of_distance(sol) < GRAM_TOL
    # the orthogonal frame minimises every batch's loss: the reported loss (epoch-0 batching) is its value
    assert sol.loss == pytest.approx(collapsed_of_loss(problem), rel=LOSS_RTOL)


def test_classes_that_never_meet_are_not_an_orthogonal_frame():
    # docs/theory.md section 4: 4 classes x 4 examples, tau 0.5, batches {classes 0, 1} and {classes 2, 3}
    batches = [list(range(0, 8)), list(range(8, 16))]
    problem = Problem.balanced(4, 4, relu=True, tau=0.5, batching=Batching.from_lists(batches))
    sol = gd.solve(problem)
    assert sol.status == "optimal", sol.message
    M = sol.class_mean_gram
    # within each batch the bound is reached: (0, 1) and (2, 3) orthogonal, loss = the OF value
    assert abs(M[0, 1]) < 1e-5 and abs(M[2, 3]) < 1e-5
    assert sol.loss == pytest.approx(collapsed_of_loss(problem), rel=LOSS_RTOL)
    # but the unmet pairs are unconstrained: from a random nonnegative start they stay far from 0
    unmet = [abs(M[a, b]) for a in (0, 1) for b in (2, 3)]
    assert max(unmet) > 0.1
    assert of_distance(sol) > 10 * GRAM_TOL


@pytest.mark.parametrize("scheme, batch_size", [("random", 4), ("balanced", 4), ("binding", 5)])
def test_random_epochs_drawn_in_the_loop_are_the_reported_batches(scheme, batch_size, monkeypatch,
                                                                  fresh_runs):
    """The compiled loop draws each epoch itself; every epoch it steps on is problem.batches(epoch)."""
    problem = Problem.from_counts((7, 5, 3), relu=True, tau=0.5, seed=2,
                                  batching=getattr(Batching, scheme)(batch_size))
    seen = []
    real_draw = gd.draw

    def recording_draw(*args):
        index, valid = real_draw(*args)
        jax.debug.callback(lambda i, v: seen.append((np.asarray(i), np.asarray(v))), index, valid)
        return index, valid
    monkeypatch.setattr(gd, "draw", recording_draw)
    _fresh_programs()
    try:
        sol = gd.solve(problem, steps=4, certify=False)
    finally:
        _fresh_programs()
    assert sol.iterations == 4 and len(seen) == 4
    for epoch, (index, valid) in enumerate(seen):
        got = [row[mask] for row, mask in zip(index, valid)]
        want = problem.batches(epoch)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


# ---------------------------------------------------------------- many starts, many problems
def test_solve_many_matches_separate_solves_in_one_compiled_call(monkeypatch, fresh_runs):
    problem = Problem.step(4, 8, 4, relu=True, tau=0.5)
    traces = []
    run = gd._run
    monkeypatch.setattr(gd, "_run", lambda cfg, data: traces.append(1) or run(cfg, data))
    _fresh_programs()
    many = gd.solve_many(problem, [0, 1, 2])
    assert len(traces) == 1              # vmap: one trace and one compiled program for all seeds
    for seed, sol in zip([0, 1, 2], many):
        one = gd.solve(problem, seed=seed)
        assert sol.status == one.status == "optimal"
        assert sol.iterations == one.iterations
        # same start, same arithmetic: equal up to round-off of batched versus single matmuls
        assert sol.loss == pytest.approx(one.loss, rel=1e-12)
        np.testing.assert_allclose(sol.embeddings, one.embeddings, atol=1e-9)
        assert sol.loss == pytest.approx(orthogonal_frame_loss(problem.counts, 0.5), rel=LOSS_RTOL)
    _fresh_programs()


@pytest.mark.slow       # the grouping (lanes < runs) also runs in test_padded_sweep_in_groups_matches_own_solves
def test_solve_many_in_groups_matches_separate_solves(monkeypatch, fresh_runs):
    """lanes < starts: groups of vmapped starts run in sequence (jax.lax.map) in one compiled call;
    each start must still be exactly its own solve, and a second call must not retrace."""
    problem = Problem.step(4, 6, 3, relu=True, tau=0.5)
    seeds = [3, 4, 5, 6, 7]
    traces = []
    run = gd._run
    monkeypatch.setattr(gd, "_run", lambda cfg, data: traces.append(1) or run(cfg, data))
    _fresh_programs()
    many = gd.solve_many(problem, seeds, lanes=2)
    first = len(traces)
    gd.solve_many(problem, seeds, lanes=2)
    assert len(traces) == first             # compiled once, reused
    for seed, sol in zip(seeds, many):
        one = gd.solve(problem, seed=seed)
        assert sol.status == one.status == "optimal"
        assert sol.iterations == one.iterations
        assert sol.loss == pytest.approx(one.loss, rel=1e-12)
        np.testing.assert_allclose(sol.embeddings, one.embeddings, atol=1e-9)
    _fresh_programs()
    with pytest.raises(ProblemError, match="lanes"):
        gd.solve_many(problem, seeds, lanes=0)


def test_default_lanes_follows_the_memory_budget():
    """On a CPU: lanes * width^2 * 8 bytes within the budget, between 1 and 16, never above the
    number of starts (the widths here: n = 20 and n = 1000, full batch)."""
    if gd.jax.default_backend() != "cpu":
        pytest.skip("the CPU rule")
    small, large = Problem.step(4, 8, 4, tau=0.5), Problem.balanced(10, 100, tau=0.5)
    assert gd.default_lanes(small, 64) == min(gd.CPU_MAX_LANES, gd.CPU_LANE_BUDGET_BYTES // (20 * 20 * 8))
    assert gd.default_lanes(small, 3) == 3
    assert gd.default_lanes(large, 64) == max(1, gd.CPU_LANE_BUDGET_BYTES // (1000 * 1000 * 8))


def test_solve_batched_over_temperatures():
    taus = (0.2, 0.5, 1.0)
    problems = [Problem.step(4, 8, 4, relu=True, tau=t) for t in taus]
    sols = gd.solve_batched(problems)
    for tau, sol in zip(taus, sols):
        assert sol.status == "optimal", sol.message
        assert sol.loss == pytest.approx(orthogonal_frame_loss(problems[0].counts, tau), rel=LOSS_RTOL)
        assert of_distance(sol) < GRAM_TOL


def test_solve_batched_rejects_unequal_shapes():
    with pytest.raises(ProblemError, match="equal shape"):
        gd.solve_batched([Problem.balanced(3, 4), Problem.balanced(3, 5)])


# ---------------------------------------------------------------- status, precision, options
def test_too_few_steps_is_not_converged():
    sol = gd.solve(Problem.step(6, 20, 10, relu=True, tau=0.5), steps=2)
    assert sol.status == "not_converged" and sol.iterations == 2
    assert "raise steps" in sol.message
    assert math.isfinite(sol.loss)


def test_absurd_learning_rate_is_an_error_not_a_number():
    sol = gd.solve(Problem.step(6, 20, 10, relu=True, tau=0.5), optimizer="adam", learning_rate=1e300)
    assert sol.status == "error" and not sol.ok
    assert "non-finite" in sol.message
    assert math.isnan(sol.loss)


def test_float32_is_finite_at_small_tau():
    problem = Problem.long_tail(6, 20, 10, relu=True, tau=0.05)
    sol = gd.solve(problem, dtype=jnp.float32)
    assert sol.status != "error", sol.message
    assert sol.info.dtype == "float32"
    assert np.isfinite(sol.embeddings).all() and math.isfinite(sol.loss)
    # float32 logits |G|/tau <= 20 keep ~6 digits (the float32 stopping tolerance is 1e-8, near its floor)
    assert sol.loss == pytest.approx(orthogonal_frame_loss(problem.counts, 0.05), rel=1e-4)


@pytest.mark.parametrize("optimizer", ["adam", optax.adam(optax.exponential_decay(0.05, 100, 0.5))],
                         ids=["adam-name", "optax-transformation"])
def test_optax_optimizers(optimizer):
    problem = Problem.step(4, 8, 4, relu=True, tau=0.5)
    sol = gd.solve(problem, optimizer=optimizer, steps=3000)
    assert sol.status == "optimal", sol.message
    assert sol.loss == pytest.approx(orthogonal_frame_loss(problem.counts, 0.5), rel=LOSS_RTOL)


def test_history_and_diagnostics():
    sol = gd.solve(Problem.balanced(3, 4, tau=0.5))
    hist = sol.info.loss_history
    assert len(hist) == sol.iterations and all(map(math.isfinite, hist))
    assert sol.info.value_change <= 1e-10


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"learning_rate": -1.0}, {"learning_rate": math.inf},
                                    {"tol": 0.0}, {"optimizer": "newton"}, {"dtype": jnp.int32}])
def test_bad_arguments(kwargs):
    with pytest.raises(ProblemError):
        gd.solve(Problem.balanced(3, 4), **kwargs)


def test_relu_with_orthonormal_prototypes_pins_every_row_to_its_prototype():
    # docs/theory.md section 5: ReLU + nonnegative orthonormal prototypes force h_i = w_{y_i}, any batching
    problem = Problem.from_counts((10, 10, 2, 2), relu=True, tau=0.5, prototypes=Prototypes("of", 2),
                                  batching=Batching.random(6))
    sol = gd.solve(problem, steps=1000)
    assert sol.status == "optimal", sol.message
    # rows converge at the square root of the loss accuracy (gradient test sqrt(1e-10 |L|)): 1e-3
    np.testing.assert_allclose(sol.embeddings, np.eye(4, problem.dim)[problem.labels], atol=1e-3)
    assert of_distance(sol) < GRAM_TOL


# ---------------------------------------------------------------- scale: chunked loss, padded sweeps, compiles
def test_chunked_solve_equals_plain_solve():
    problem = Problem.step(4, 12, 3, tau=0.5)            # no ReLU: docs/theory.md's reduced program is the optimum
    plain = gd.solve(problem)
    chunked = gd.solve(problem, chunk_size=7)
    assert chunked.status == plain.status == "optimal"
    assert chunked.iterations == plain.iterations
    assert chunked.loss == pytest.approx(plain.loss, rel=1e-10)
    np.testing.assert_allclose(chunked.embeddings, plain.embeddings, atol=1e-8)


def test_padded_ratio_sweep_is_each_problems_own_solve_in_one_compiled_call(monkeypatch, fresh_runs):
    from solvers.reduced import solve_reduced
    traces = []
    run = gd._run
    monkeypatch.setattr(gd, "_run", lambda cfg, data: traces.append(1) or run(cfg, data))
    _fresh_programs()
    # STEP imbalance over ratios 1, 2, 4, 6 at n_max = 12: n = 48, 36, 30, 28, padded to 48
    problems = [Problem.step(4, 12, r, tau=0.5) for r in (1, 2, 4, 6)]
    sweep = gd.solve_batched(problems, pad=True)
    assert len(traces) == 1
    # a second sweep of as many problems (other ratios, taus) at the same padded size: no recompile
    gd.solve_batched([Problem.step(4, 12, r, tau=t) for r, t in ((3, 0.3), (6, 1.0), (2, 0.3), (1, 2.0))],
                     pad=True,
                     pad_to=48)
    assert len(traces) == 1
    for p, sol in zip(problems, sweep):
        assert sol.status == "optimal", sol.message
        assert sol.embeddings.shape == (p.n, p.dim)
        # independent value: the reduced convex program (Clarabel) of docs/theory.md section 3
        assert sol.loss == pytest.approx(solve_reduced(p, program="general").loss, rel=LOSS_RTOL)
    for p, sol in zip(problems[::3], sweep[::3]):      # and each is that problem's own solve
        assert sol.loss == pytest.approx(gd.solve(p).loss, rel=1e-10)
    _fresh_programs()


def test_padded_sweep_in_groups_matches_own_solves():
    """solve_batched(lanes=3) over 4 padded problems: a group of 3 vmapped, then 1; each result must
    be that problem's own solve (checked on one problem of each group: separate solves compile apiece)."""
    problems = [Problem.step(4, 12, r, tau=t) for r, t in ((1, 0.5), (2, 0.3), (3, 1.0), (6, 0.5))]
    sweep = gd.solve_batched(problems, pad=True, lanes=3)
    assert all(sol.status == "optimal" for sol in sweep)
    for p, sol in ((problems[1], sweep[1]), (problems[3], sweep[3])):
        one = gd.solve(p)
        assert sol.status == one.status == "optimal", sol.message
        assert sol.iterations == one.iterations
        assert sol.loss == pytest.approx(one.loss, rel=1e-10)


def test_repeated_solves_at_one_shape_compile_once(monkeypatch, fresh_runs):
    traces = []
    run = gd._run
    monkeypatch.setattr(gd, "_run", lambda cfg, data: traces.append(1) or run(cfg, data))
    _fresh_programs()
    for tau, seed in ((0.2, 0), (0.5, 1), (1.0, 2), (2.0, 3)):     # a temperature sweep, new starts
        gd.solve(Problem.step(4, 8, 4, tau=tau), seed=seed)
    assert len(traces) == 1
    problems = [Problem.step(4, 8, 4, tau=t) for t in (0.3, 0.7)]
    gd.solve_batched(problems)
    gd.solve_batched([p.with_(tau=2 * p.tau) for p in problems])
    assert len(traces) == 2                                        # one more for the vmapped program
    _fresh_programs()


def test_padded_sweep_rejects_minibatches_and_small_pad():
    with pytest.raises(ProblemError, match="full-batch"):
        gd.solve_batched([Problem.balanced(3, 4, batching=Batching.random(4)),
                          Problem.balanced(3, 5, batching=Batching.random(4))], pad=True)
    with pytest.raises(ProblemError, match="pad_to"):
        gd.solve_batched([Problem.balanced(3, 4), Problem.balanced(3, 5)], pad=True, pad_to=12)


def test_mean_gram_snapshots_match_runs_stopped_early():
    """The solver's class-mean Gram snapshots (start, epochs 1, 2, 4, ...) equal the Gram of the same run
    stopped at that epoch (an independent solve with steps = epoch)."""
    from ufm.geometry import class_mean_gram

    problem = Problem.from_counts([6, 4, 2], tau=0.5, dim=4)
    snaps = gd.solve(problem, seed=3).info.mean_gram_checkpoints
    assert snaps["epochs"][:4] == [0, 1, 2, 4]
    for epoch, M in zip(snaps["epochs"][1:4], snaps["grams"][1:4]):
        early = gd.solve(problem, seed=3, steps=epoch)
        np.testing.assert_allclose(M, class_mean_gram(early.embeddings, problem.labels), atol=1e-12)


@pytest.mark.parametrize("call,match", [
    (lambda p: gd.solve(p, steps=2, seed=2 ** 70), "at most"),
    (lambda p: gd.solve(p, steps=2, seed=1.5), "integer"),
    (lambda p: gd.solve_many(p, 5, steps=2), "list of integer seeds"),
    (lambda p: gd.solve_many(p, [1.7], steps=2), "integer"),
])
def test_bad_seeds_are_refused(call, match):
    """Seeds are integers in 0..2^32-1 (not truncated, no OverflowError from JAX)."""
    with pytest.raises(ProblemError, match=match):
        call(Problem.balanced(2, 3))


@pytest.mark.parametrize("problem", [
    Problem.from_counts([8, 8, 2, 2], tau=0.5),                             # 20 rows in a family of 32
    Problem.from_counts([6, 6, 3, 3], tau=0.5, relu=True, dim=4),           # ReLU, d = k
    Problem.from_counts([8, 4, 2], tau=0.5, relu=True, prototypes=Prototypes("of", 1)),
])
def test_a_shape_family_runs_the_problems_own_solve(problem, monkeypatch):
    """A small full-batch problem runs padded into its family's program (rows outside every batch,
    zero columns, empty classes): the same statuses and iterations as its own shape, the same point
    to rounding (the padding enters no loss term and gets no gradient)."""
    family = [gd.solve(problem, seed=s) for s in (0, 1)]
    monkeypatch.setattr(gd, "_family", lambda problem, cfg: None)
    own = [gd.solve(problem, seed=s) for s in (0, 1)]
    for a, b in zip(family, own):
        assert a.status == b.status and a.iterations == b.iterations
        assert a.embeddings.shape == (problem.n, problem.dim)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-10)
        assert a.loss == pytest.approx(b.loss, rel=1e-12)
    assert np.asarray(family[0].info.mean_gram_checkpoints["grams"]).shape[1:] == (problem.k, problem.k)


def test_the_tied_polish_runs_in_the_family_program():
    """(8, 8, 2, 2) at tau 0.02: the collapsed classes are tied and solved again (V of fewer rows than
    n, padded to the family's rows): proved optimal, and the reduced program's Gram to 1e-6."""
    from solvers.convex import solve_reduced
    problem = Problem.from_counts([8, 8, 2, 2], tau=0.02)
    sol = gd.solve(problem, seed=0)
    assert sol.status == "optimal" and "tied" in (sol.info.polish or "")
    assert normalized_distance(sol.class_mean_gram, solve_reduced(problem).class_mean_gram) <= 1e-6
