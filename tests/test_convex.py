"""The convex relaxation (solvers/convex.py, solvers/reduced.py) against independent values only:
the closed forms of docs/theory.md section 2 (tests/reference.py), docs/theory.md's printed check values, the
per-anchor bound of docs/theory.md section 2 ("Why the ReLU case is symmetric"), and the brute-force loop
scl_loop.

Tolerances: Clarabel runs at 1e-10; the n x n programs with ReLU or prototypes can stop at
Clarabel's "AlmostSolved" with the value ~1e-7 absolute (< 1e-8 relative) from the optimum, so values
are compared at 1e-6 relative (the requirement). Gram entries are less accurate than values: the loss
is flat to second order at the optimum, so a value right to 1e-10 can come with entries ~1e-5 off
(seen on the k x k program at tau = 1); Grams are compared at 1e-4. docs/theory.md's printed values are
compared at half a unit of their last printed digit.
"""

import math

import numpy as np
import pytest

from reference_mp import step_optimum_mp
from reference import collapsed_embeddings, etf_loss, etf_vectors, orthogonal_frame_loss, scl_loop
from solvers import cvx_common, gd
from solvers.bound import linearization_bound
from solvers.convex import (_dual_candidates, _relu_mask, build_relaxation, certify, prototype_lift,
                            relaxation_loss, solve_reduced, solve_relaxation)
from ufm import Batching, Problem, ProblemError, Prototypes, Solution
from ufm.geometry import etf_gram

REL = 1e-6      # the requirement: closed forms to 1e-6 relative
GRAM = 1e-4     # Gram entries: see the module docstring


def per_anchor_bound(counts, batches, tau):
    """docs/theory.md section 2: each anchor with positives is bounded below by
    log(|P| + |N| exp(-1/tau)), attained by collapse + orthogonal frame. Sum over batches and anchors."""
    labels = np.repeat(np.arange(len(counts)), counts)
    total = 0.0
    for batch in batches:
        present = labels[np.asarray(list(batch))]
        for y in present:
            same = int((present == y).sum())
            if same >= 2:
                total += math.log((same - 1) + (len(present) - same) * math.exp(-1 / tau))
    return total


# ------------------------------------------------------------------ closed forms (docs/theory.md section 2)
@pytest.mark.parametrize("counts", [(4, 4, 4), (10, 5, 3, 2)])
def test_relu_orthogonal_frame_both_programs(counts):
    problem = Problem.from_counts(counts, tau=0.5, relu=True)
    want = orthogonal_frame_loss(counts, 0.5)
    for sol in (solve_relaxation(problem), solve_reduced(problem),
                solve_reduced(problem, program="general")):
        assert sol.status in ("optimal", "optimal_inaccurate"), sol.message
        assert sol.lower_bound == pytest.approx(want, rel=REL), sol.method
        np.testing.assert_allclose(sol.class_mean_gram, np.eye(len(counts)), atol=GRAM)
        # the recovered embeddings are an exact orthogonal frame: their loss is the closed form
        emb_loss = sol.loss if sol.method == "convex" else sol.info.embedding_loss
        assert emb_loss == pytest.approx(want, rel=1e-9)
        assert (sol.embeddings >= 0).all()


@pytest.mark.parametrize("k,m,tau", [(3, 4, 0.5), (4, 5, 1.0)])
def test_no_relu_balanced_etf_both_programs(k, m, tau):
    problem = Problem.balanced(k, m, tau=tau)
    want = etf_loss([m] * k, tau)
    for sol in (solve_relaxation(problem), solve_reduced(problem), solve_reduced(problem, program="general")):
        # what the toolkit guarantees, not Clarabel's word: a valid bound below the closed form, a
        # feasible point within REL of it, and the right geometry (Clarabel's own status changes with
        # the CPU at the edge of its tolerance; the certificate then decides)
        assert sol.status in ("optimal", "optimal_inaccurate"), sol.message
        assert sol.lower_bound <= want * (1 + 1e-14)
        assert sol.loss == pytest.approx(want, rel=REL)
        np.testing.assert_allclose(sol.class_mean_gram, etf_gram(k), atol=GRAM)
    assert solve_reduced(problem).status == "optimal"     # the factored path: our own certificate


# ------------------------------------------------------------------ reduced = n x n, check values
@pytest.mark.parametrize("counts,tau,relu", [
    ((6, 3, 2), 0.5, False), ((6, 3, 2), 0.5, True), ((5, 4, 2, 2), 1.0, False),
    ((7, 2, 3), 0.3, False), ((5, 4, 2, 2), 0.7, True)])
def test_reduced_equals_relaxation(counts, tau, relu):
    problem = Problem.from_counts(counts, tau=tau, relu=relu)
    full, reduced = solve_relaxation(problem), solve_reduced(problem, program="general")
    assert reduced.loss == pytest.approx(full.loss, abs=1e-5)
    np.testing.assert_allclose(reduced.class_mean_gram, full.class_mean_gram, atol=GRAM)


def test_theory_check_value_10_5_3_2():
    problem = Problem.from_counts([10, 5, 3, 2], tau=0.5)
    for sol in (solve_relaxation(problem), solve_reduced(problem)):
        assert abs(sol.loss - 35.714086) <= 5e-7              # printed to 6 decimals
        assert sol.lower_bound <= sol.loss


def test_theory_check_value_8_8_2_2():
    problem = Problem.from_counts([8, 8, 2, 2], tau=0.5)
    for sol in (solve_reduced(problem), solve_reduced(problem, program="general"), solve_relaxation(problem)):
        assert abs(sol.loss - 35.98345) <= 5e-6               # printed to 5 decimals
        assert sol.lower_bound <= float(step_optimum_mp(2, 8, 2, 2, 0.5)["loss"]) * (1 + 1e-15)
        M = sol.class_mean_gram
        assert abs(M[0, 1] - (-0.497)) <= 5e-4                # maj-maj, printed to 3 decimals
        assert abs(M[0, 2] - (-0.349)) <= 5e-4                # maj-min
        assert abs(M[2, 3] - (-0.033)) <= 5e-4                # min-min


# ------------------------------------------------------------------ STEP block form
@pytest.mark.parametrize("counts,tau", [((8, 8, 8, 2, 2, 2), 0.5), ((9, 9, 3, 3, 3), 1.0)])
def test_step_three_values_rank_and_fast_path(counts, tau):
    problem = Problem.from_counts(counts, tau=tau)
    general = solve_reduced(problem, program="general")
    assert general.info.program == "general"
    M = general.class_mean_gram
    k_maj = sum(c == counts[0] for c in counts)
    k_min = len(counts) - k_maj
    maj, mino = np.arange(k_maj), np.arange(k_maj, len(counts))
    off = ~np.eye(len(counts), dtype=bool)
    a_vals = M[np.ix_(maj, maj)][off[:k_maj, :k_maj]]
    b_vals = M[np.ix_(maj, mino)].ravel()
    c_vals = M[np.ix_(mino, mino)][off[k_maj:, k_maj:]]
    for vals in (a_vals, b_vals, c_vals):          # exactly three off-diagonal values (to GRAM)
        assert np.ptp(vals) < GRAM
    a, b, c = a_vals.mean(), b_vals.mean(), c_vals.mean()
    # docs/theory.md's 2 x 2 matrix; its determinant is 0 at the optimum (rank k - 1)
    T = np.array([[1 + (k_maj - 1) * a, b * math.sqrt(k_maj * k_min)],
                  [b * math.sqrt(k_maj * k_min), 1 + (k_min - 1) * c]])
    assert abs(np.linalg.det(T)) < GRAM
    eig = np.linalg.eigvalsh(M)
    assert eig[0] < 1e-6 and eig[1] > 1e-3                   # rank exactly k - 1
    fast = solve_reduced(problem, program="block")
    assert fast.info.program == "block"
    assert fast.loss == pytest.approx(general.loss, rel=1e-8)
    np.testing.assert_allclose(fast.class_mean_gram, M, atol=GRAM)
    assert abs(fast.info.block.determinant) < 1e-6


# ------------------------------------------------------------------ batching (docs/theory.md section 4)
def test_batches_where_classes_never_meet():
    """4 classes x 4, tau 0.5, batches {classes 0, 1} and {classes 2, 3}, ReLU. Robust facts:
    the optimum is the per-anchor bound (each batch reaches its own orthogonal frame); met pairs are
    orthogonal; the unmet pairs are NOT forced to orthogonality: a non-orthogonal configuration with
    mu_0 . mu_3 = 0.91 (docs/theory.md's value) reaches the same optimum, and the interior-point solution (the
    relative interior of the optimal face) has positive unmet inner products."""
    batching = Batching.from_lists([range(0, 8), range(8, 16)])
    problem = Problem.from_counts([4] * 4, tau=0.5, relu=True, batching=batching)
    sol = solve_relaxation(problem)
    want = per_anchor_bound([4] * 4, problem.batches(0), 0.5)
    assert want == pytest.approx(2 * orthogonal_frame_loss([4, 4], 0.5), rel=1e-12)
    assert sol.lower_bound == pytest.approx(want, rel=REL)
    M = sol.class_mean_gram
    assert abs(M[0, 1]) < GRAM and abs(M[2, 3]) < GRAM
    assert max(M[0, 2], M[0, 3], M[1, 2], M[1, 3]) > 1e-2
    # an explicit nonnegative optimum with mu_0 . mu_3 = 0.91: mu_0 = e1, mu_1 = e2,
    # mu_3 = 0.91 e1 + s e3, mu_2 = 0.91 e2 + s e4 (s = sqrt(1 - 0.91^2)): met pairs orthogonal
    s = math.sqrt(1 - 0.91 ** 2)
    means = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0.91, 0, s], [0.91, 0, s, 0]])
    H = collapsed_embeddings(means, [4] * 4)
    assert scl_loop(H, problem.labels, 0.5, problem.batches(0)) == pytest.approx(want, rel=1e-12)
    # the recovered embeddings are feasible and reach the optimum
    assert (sol.embeddings >= 0).all()
    assert sol.loss == pytest.approx(want, rel=REL)


def test_batch_binding_gives_orthogonal_frame():
    problem = Problem.from_counts([4] * 4, tau=0.5, relu=True, batching=Batching.binding(8))
    sol = solve_relaxation(problem)
    want = per_anchor_bound([4] * 4, problem.batches(0), 0.5)
    assert sol.lower_bound == pytest.approx(want, rel=REL)
    np.testing.assert_allclose(sol.class_mean_gram, np.eye(4), atol=GRAM)
    np.testing.assert_allclose(sol.gram, np.eye(4)[problem.labels][:, problem.labels], atol=GRAM)
    assert sol.loss == pytest.approx(want, rel=REL)


# ------------------------------------------------------------------ tightness: cvxpy objective vs JAX loss
@pytest.mark.parametrize("counts,tau,relu,batching", [
    ((6, 4, 3, 2), 0.5, False, None), ((6, 4, 3, 2), 0.5, True, None),
    ((5, 5, 4, 4), 0.8, False, Batching.random(6)), ((4, 4, 3), 0.5, True, Batching.balanced(5))])
def test_recovered_embeddings_reach_the_optimum(counts, tau, relu, batching):
    """Where rank(G*) <= dim, the recovered embeddings' SCL loss (the JAX loss, and the brute-force
    loop) equals the cvxpy optimum: an independent check of the cvxpy objective."""
    problem = Problem.from_counts(counts, tau=tau, relu=relu, batching=batching, dim=12)
    sol = solve_relaxation(problem)
    assert sol.info.tight, sol.info.rank
    assert sol.info.solver_value == pytest.approx(sol.loss, rel=REL)
    brute = scl_loop(sol.embeddings, problem.labels, tau, problem.batches(0))
    assert brute == pytest.approx(sol.loss, rel=1e-10)
    np.testing.assert_allclose(np.linalg.norm(sol.embeddings, axis=1), 1.0, atol=1e-12)


def test_prototypes_relu_of_force_the_prototypes():
    """docs/theory.md section 5: ReLU with nonnegative orthonormal prototypes forces h_i = w_{y_i} for any
    batching; the optimum is then the loss of those embeddings (brute-force loop)."""
    protos = Prototypes("of", per_class=2, anchors=True)
    problem = Problem.from_counts([5, 3, 2], tau=0.5, relu=True, prototypes=protos,
                                  batching=Batching.random(4))
    sol = solve_relaxation(problem)
    W, w_labels = problem.prototype_rows()
    H = np.eye(3, problem.dim)[problem.labels]
    want = scl_loop(H, problem.labels, 0.5, problem.batches(0), prototypes=W, prototype_labels=w_labels)
    assert sol.lower_bound == pytest.approx(want, rel=REL)
    assert sol.loss == pytest.approx(want, rel=REL)
    # the point is Clarabel's (factored from its Gram): the loss is flat to second order at the optimum,
    # so a value right to ~1e-8 relative places the point only to ~sqrt(1e-8) = 1e-4; entries that should
    # be 0 were 1.4e-4 on an AMD EPYC and below 1e-4 on an Intel Xeon: 1e-3 bounds the geometry
    np.testing.assert_allclose(sol.embeddings, H, atol=1e-3)


@pytest.mark.parametrize("anchors", [True, False])
def test_prototypes_objective_matches_jax(anchors):
    protos = Prototypes("etf", per_class=1, anchors=anchors)
    problem = Problem.from_counts([4, 3, 2], tau=0.5, prototypes=protos, dim=9)
    sol = solve_relaxation(problem)
    W, w_labels = problem.prototype_rows()
    brute = scl_loop(sol.embeddings, problem.labels, 0.5, prototypes=W, prototype_labels=w_labels,
                     prototype_anchors=anchors)
    assert brute == pytest.approx(sol.lower_bound, rel=REL)


@pytest.mark.parametrize("counts,kind,per_class,anchors", [
    ((8, 8, 2, 2), "etf", 1, True), ((10, 5, 3, 2), "of", 3, False), ((12, 8, 5, 3, 2), "etf", 1, False)])
def test_prototype_program_is_accurate(counts, kind, per_class, anchors):
    """A singular fixed prototype block (ETF: rank k - 1; repeated prototypes) has no positive definite
    completion; posed over G, Clarabel stopped at "AlmostSolved" (optimal_inaccurate) on 62 of 96
    prototype problems (4 count vectors x ETF/OF x 1 or 3 per class x anchors x dim 4/8/12). Posed
    over M (facially reduced, solvers/convex.py) Clarabel itself solves 87 of them to ``optimal``,
    these three among them (the other 9 are certified, see the next test). The optimum must be the SCL loss (brute-force loop) of the recovered embeddings (tight at
    dim 8 >= rank), and the certified bound, from the duals mapped through the lift, must lie below
    it and within 1e-5 relative."""
    protos = Prototypes(kind, per_class=per_class, anchors=anchors)
    problem = Problem.from_counts(counts, tau=0.5, prototypes=protos, dim=8)
    sol = solve_relaxation(problem)
    assert sol.info.tight
    W, w_labels = problem.prototype_rows()
    brute = scl_loop(sol.embeddings, problem.labels, 0.5, prototypes=W, prototype_labels=w_labels,
                     prototype_anchors=anchors)
    assert brute == pytest.approx(sol.loss, rel=1e-12)
    # the bracket [lower bound, loss of a feasible point] within 1e-6 of the excess: Clarabel at 1e-10
    # gives Gram entries to ~1e-5, and the excess is first order accurate in them
    assert sol.lower_bound <= brute
    assert brute - sol.lower_bound <= 1e-6 * sol.excess * 10


def test_prototype_program_certified_where_clarabel_stops_short():
    """ETF prototypes, 3 per class, balanced counts: Clarabel stopped at AlmostSolved here (and the dual
    certificate from its duals was 1e-4 loose). The polished multipliers (one small SDP for the
    best diagonal shift) must bring the certified bracket within 1e-9, so the status is optimal; the
    bound must stay below the brute-force loss of the recovered embeddings (a feasible point)."""
    protos = Prototypes("etf", per_class=3, anchors=True)
    problem = Problem.from_counts([6, 6, 6], tau=0.5, prototypes=protos, dim=8)
    sol = solve_relaxation(problem)
    W, w_labels = problem.prototype_rows()
    brute = scl_loop(sol.embeddings, problem.labels, 0.5, prototypes=W, prototype_labels=w_labels)
    # a valid bracket whatever Clarabel said: bound <= a feasible point's loss, within 1e-5 of the
    # excess (the solver's point is ~1e-5 accurate in its Gram)
    assert sol.lower_bound <= brute
    assert brute - sol.lower_bound <= 1e-5 * sol.excess
    assert sol.status in ("optimal", "optimal_inaccurate")


def test_prototype_lift_reproduces_the_fixed_block():
    """T = blockdiag(I_n, W Q): G_WW = (W Q)(W Q)^T must equal W W^T, with r = rank W columns, and the
    same T whatever dim (it depends on the prototype Gram alone)."""
    for kind, per_class, rank in (("etf", 2, 3), ("of", 3, 4)):
        problem = Problem.balanced(4, 2, prototypes=Prototypes(kind, per_class=per_class), dim=6)
        W, _ = problem.prototype_rows()
        T = prototype_lift(W, problem.n)
        assert T.shape == (problem.n + len(W), problem.n + rank)
        WQ = T[problem.n:, problem.n:]
        np.testing.assert_allclose(WQ @ WQ.T, W @ W.T, atol=1e-12)
        np.testing.assert_array_equal(T[:problem.n, :problem.n], np.eye(problem.n))
        W9, _ = problem.with_(dim=9).prototype_rows()
        np.testing.assert_allclose(prototype_lift(W9, problem.n), T, atol=1e-12)


# ------------------------------------------------------------------ statuses, errors, certificate
def test_inaccurate_solver_status_is_reported():
    problem = Problem.from_counts([6, 3, 2], tau=0.5)
    sol = solve_relaxation(problem, solver="SCS", solver_options={"max_iters": 5})
    assert sol.status in ("optimal_inaccurate", "error")
    assert sol.info.solver_status != "optimal"
    assert sol.message
    if sol.status != "error":
        assert set(sol.info.residuals) >= {"min_eigenvalue", "max_diag_error"}


def test_scs_selectable():
    problem = Problem.balanced(3, 3, tau=1.0)
    sol = solve_reduced(problem, solver="SCS", program="general")
    assert sol.info.solver == "SCS"
    assert sol.lower_bound == pytest.approx(etf_loss([3] * 3, 1.0), rel=1e-4)   # first-order: loose


def test_reduced_rejects_batching_and_prototypes():
    with pytest.raises(ProblemError, match="full-batch"):
        solve_reduced(Problem.balanced(3, 4, batching=Batching.random(4)))
    with pytest.raises(ProblemError, match="prototype"):
        solve_reduced(Problem.balanced(3, 4, prototypes=Prototypes("etf")))
    with pytest.raises(ProblemError, match="unknown convex solver"):
        solve_reduced(Problem.balanced(3, 4), solver="NOPE")


def test_certified_lower_bound_is_below_the_closed_form():
    for problem, want in [(Problem.from_counts([6, 3, 2], tau=0.5, relu=True), orthogonal_frame_loss([6, 3, 2], 0.5)),
                          (Problem.balanced(4, 3, tau=0.5), etf_loss([3] * 4, 0.5))]:
        for sol in (solve_relaxation(problem), solve_reduced(problem, program="general"), solve_reduced(problem)):
            assert sol.lower_bound <= want * (1 + 1e-14)
            assert sol.lower_bound >= want - 1e-3


def test_certify_gd_like_solutions():
    """convex.certify: the dual certificate of any embeddings; at the optimum it proves them (status
    optimal), at a worse point it bounds the optimum from below and says stationary."""
    problem = Problem.balanced(4, 3, tau=0.5)
    H = collapsed_embeddings(etf_vectors(4), [3] * 4)            # the global optimum
    at_opt = Solution(method="gd", class_mean_gram=etf_gram(4), loss=etf_loss([3] * 4, 0.5),
                      status="converged", embeddings=H)
    cert = certify(at_opt, problem)
    assert cert.status == "optimal" and cert.certificate.relative_gap < 1e-10
    assert cert.lower_bound <= etf_loss([3] * 4, 0.5) * (1 + 1e-14)
    H_of = collapsed_embeddings(np.eye(4), [3] * 4)
    worse = Solution(method="gd", class_mean_gram=np.eye(4),
                     loss=orthogonal_frame_loss([3] * 4, 0.5), status="converged", embeddings=H_of)
    judged = certify(worse, problem)
    assert judged.status == "stationary" and judged.certificate.relative_gap > 1e-3
    assert judged.lower_bound <= etf_loss([3] * 4, 0.5)


def test_reduced_scales_to_many_classes():
    problem = Problem.long_tail(30, 40, 10.0)
    sol = solve_reduced(problem, program="general")     # long-tail rounding repeats counts
    assert sol.status in ("optimal", "optimal_inaccurate"), sol.message
    assert sol.lower_bound <= sol.loss and sol.lower_bound == pytest.approx(sol.loss, rel=1e-5)
    assert sol.info.program == "general"
    assert sol.info.embedding_loss == pytest.approx(sol.loss, rel=1e-7)   # rank k - 1 <= dim


@pytest.mark.slow
def test_reduced_k100():
    problem = Problem.long_tail(100, 50, 10.0)
    sol = solve_reduced(problem, program="general")
    assert sol.status in ("optimal", "optimal_inaccurate"), sol.message
    assert sol.info.embedding_loss == pytest.approx(sol.loss, rel=1e-7)


# ---------------------------------------------------------------- the factored (Burer-Monteiro) fast path
@pytest.mark.parametrize("counts,tau,relu", [
    ((10, 5, 3, 2), 0.5, False),                 # docs/theory.md's check value 35.714086
    ((8, 8, 2, 2), 0.5, False),                  # docs/theory.md's STEP check value 35.98345
    ((30, 17, 11, 7, 5, 4, 3, 2), 0.2, False),
    ((40, 31, 23, 17, 12, 9, 7, 5, 3, 2), 1.0, False),
    ((12, 7, 4, 2), 0.3, True),
])
def test_factored_path_agrees_with_the_general_program(counts, tau, relu):
    from solvers.reduced import solve_factored
    problem = Problem.from_counts(counts, tau=tau, relu=relu)
    fast = solve_factored(problem, fallback=False)
    general = solve_reduced(problem, program="general")
    assert fast.status == "optimal" and fast.info.program == "factored"
    assert fast.loss == pytest.approx(general.loss, rel=REL)
    np.testing.assert_allclose(fast.class_mean_gram, general.class_mean_gram, atol=GRAM)
    # the certificate is a valid lower bound, and tight
    assert fast.lower_bound <= fast.loss
    assert fast.loss - fast.lower_bound <= 1e-6 * fast.excess
    assert fast.lower_bound <= general.loss * (1 + 1e-12)
    # the collapsed embeddings have that loss under the brute-force loop
    assert scl_loop(fast.embeddings, problem.labels, tau) == pytest.approx(fast.loss, rel=1e-9)
    if relu:
        np.testing.assert_allclose(fast.class_mean_gram, np.eye(len(counts)), atol=1e-8)


def test_theory_check_value_through_the_default_path():
    sol = solve_reduced(Problem.from_counts((10, 5, 3, 2), tau=0.5))
    assert sol.info.program == "factored"          # all counts differ: the default fast path
    assert sol.loss == pytest.approx(35.714086, abs=5e-7)


def test_factored_path_reports_stationary_when_no_start_is_certified(monkeypatch):
    """Every start fails the certificate (tolerance 0 cannot pass): the best start comes back as
    stationary with its gap, never as optimal; with fallback the general program is judged instead."""
    from dataclasses import replace
    from solvers import reduced
    real = reduced.certify_mean_gram
    monkeypatch.setattr(reduced, "certify_mean_gram", lambda *a, **k: replace(
        real(*a, **k), relative_gap=0.5, certified=False))            # a certificate that never passes
    problem = Problem.from_counts((10, 5, 3, 2), tau=0.5)
    sol = reduced.solve_factored(problem, gap_tol=1e-300)
    assert sol.status == "stationary" and "relative gap" in sol.message
    assert sol.info.factored.starts_tried == reduced.FACTORED_STARTS
    fallback = reduced.solve_factored(problem, gap_tol=1e-300, fallback=True)
    assert fallback.info.program == "general" and fallback.status == "optimal_inaccurate"
    assert fallback.loss == pytest.approx(35.714086, abs=5e-7)


def test_lifted_bound_stays_valid_for_perturbed_multipliers():
    """solvers.bound with a lift T: any multipliers give a valid bound (the lambda_min correction).
    Perturb the solver's duals and check that the bound never exceeds the loss of a feasible point
    (gradient descent's embeddings, loss by the brute-force loop), and that unperturbed it is close."""
    problem = Problem.from_counts([6, 4, 3], tau=0.5, prototypes=Prototypes("etf", per_class=2), dim=6)
    rel = build_relaxation(problem)
    cvx_common.solve(rel.program, None, None)
    G0 = rel.gram()
    f0, C = relaxation_loss(G0, problem)
    cands = _dual_candidates(rel, C, G0, _relu_mask(problem, rel.W), problem.n)
    H = gd.solve(problem).embeddings
    W, w_labels = problem.prototype_rows()
    feasible = scl_loop(H, problem.labels, 0.5, prototypes=W, prototype_labels=w_labels)
    best = max(linearization_bound(f0, C, G0, **c) for c in cands)
    assert feasible - 1e-4 < best <= feasible
    rng = np.random.default_rng(0)
    for c in cands[:2]:
        for scale in (1e-4, 1e-2, 1.0):
            noisy = dict(c, y=c["y"] + scale * rng.standard_normal(len(c["y"])),
                         Z=c["Z"] + scale * rng.standard_normal(c["Z"].shape))
            assert linearization_bound(f0, C, G0, **noisy) <= feasible


def test_feasible_point_restores_every_constraint():
    """solvers.bound.feasible_point: from a feasible Gram perturbed by 1e-8 (asymmetric noise, a wrong
    diagonal, negative entries, a negative eigenvalue) to one that is exactly feasible and close."""
    from solvers.bound import feasible_point
    rng = np.random.default_rng(0)
    X = np.abs(rng.standard_normal((9, 4)))
    X[0, 2:] = X[1, :2] = 0.0                     # rows 0 and 1 orthogonal: an active ReLU constraint ...
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    G = X @ X.T + 1e-8 * rng.standard_normal((9, 9))   # ... pushed below zero by the noise
    assert G[0, 1] + G[1, 0] < 0 and np.linalg.eigvalsh((G + G.T) / 2).min() < 0 and np.diag(G).max() != 1.0
    F = feasible_point(G, 9, nonnegative=True)
    np.testing.assert_array_equal(F, F.T)
    np.testing.assert_array_equal(np.diag(F), 1.0)
    assert F.min() >= 0.0
    assert np.linalg.eigvalsh(F).min() >= 0.0
    assert np.abs(F - X @ X.T).max() < 1e-6
    # the lifted form: V[n:, n:] must come back as exactly I
    V = np.eye(6) + 1e-9 * rng.standard_normal((6, 6))
    F = feasible_point(V, 4, nonnegative=False)
    np.testing.assert_array_equal(F[4:, 4:], np.eye(2))
    assert np.linalg.eigvalsh(F).min() >= 0.0


def test_relu_program_at_the_orthogonal_frame():
    """With ReLU Clarabel usually stops at AlmostSolved on the n x n program; whatever it says, the
    bound is valid and the recovered point is docs/theory.md's orthogonal-frame closed form
    (tests/reference.py), which the certificate proves."""
    problem = Problem.from_counts([6, 4, 3, 2], tau=0.5, relu=True)
    sol = solve_relaxation(problem)
    want = orthogonal_frame_loss([6, 4, 3, 2], 0.5)
    assert sol.lower_bound <= want * (1 + 1e-12)
    assert sol.loss == pytest.approx(want, rel=1e-9)
    np.testing.assert_allclose(sol.class_mean_gram, np.eye(4), atol=1e-6)


def test_the_n_by_n_program_refuses_what_does_not_fit():
    from solvers.sizing import relaxation_bytes
    problem = Problem.balanced(10, 100, tau=0.5)
    assert relaxation_bytes(problem) > 10 * 2 ** 40 / 1000     # (n(n+1)/2)^2 doubles: ~1.9 TB
    with pytest.raises(ProblemError, match="gradient descent"):
        solve_relaxation(problem)


def test_a_batching_without_positive_pairs_is_refused():
    with pytest.raises(ProblemError, match="positive"):
        Problem.from_counts([2, 2], tau=0.5, batching=Batching.from_lists([[0, 2], [1, 3]]))


def test_reduced_program_below_rank_k_minus_1_is_not_called_optimal():
    """Without ReLU at d < k - 1 the reduced optimum (a valid lower bound) is not attainable: the
    solution says optimal_inaccurate and reports its d-dimensional embeddings' own loss."""
    from ufm import problem_loss
    problem = Problem.from_counts([4, 4, 2], tau=0.5, dim=1)
    sol = solve_reduced(problem)
    assert sol.status == "optimal_inaccurate" and "dim = 1 < k - 1" in sol.message
    assert sol.loss == pytest.approx(problem_loss(problem, sol.embeddings), rel=1e-12)
    assert sol.lower_bound < sol.loss - 1.0                    # 13.733 against the rank-1 factor's 15.626


def test_choose_program_names_every_reduced_program():
    """The chooser of the reduced program (solvers.reduced.choose_program): named choices pass through;
    "auto" is the factored path, or with a cvxpy solver named the block program where counts repeat
    (at most BLOCK_MAX_GROUPS groups) and the general one otherwise; the rest is refused."""
    from solvers.reduced import BLOCK_MAX_GROUPS, PROGRAMS, choose_program
    step = Problem.from_counts([6, 6, 2, 2], tau=0.5)
    distinct = Problem.from_counts([2, 3, 4, 5], tau=0.5)
    many_groups = Problem.from_counts(list(range(2, 2 + BLOCK_MAX_GROUPS + 1)) * 2, tau=0.5)
    assert PROGRAMS == ("auto", "factored", "block", "general")
    for name in ("factored", "block", "general"):
        assert choose_program(step, name) == name
    assert choose_program(step) == "factored" and choose_program(distinct) == "factored"
    assert choose_program(step, solver="CLARABEL") == "block"
    assert choose_program(distinct, solver="CLARABEL") == "general"
    assert choose_program(many_groups, solver="CLARABEL") == "general"
    with pytest.raises(ProblemError, match="unknown reduced program"):
        choose_program(step, "fast")
    with pytest.raises(ProblemError, match="does not apply to the factored"):
        solve_reduced(step, solver="SCS", program="factored")


@pytest.mark.parametrize("make", [
    lambda: Problem.from_counts([4, 3, 3], tau=0.3, dim=3),
    lambda: Problem.from_counts([4, 4, 2], tau=0.5, batching=Batching("random", 5), seed=3),
    lambda: Problem.from_counts([3, 2, 2], tau=0.4, prototypes=Prototypes("etf", per_class=1), dim=4),
])
def test_relaxation_loss_is_the_loop_and_its_gradient_the_finite_difference(make):
    """The n x n program's objective in NumPy (the Gram-space SCL of ufm.objectives.scl.formula): its value at the Gram
    of unit rows [H; W] equals the brute-force loop over the formula, and its gradient C matches
    central differences of the value along symmetric directions E_ij + E_ji (the loss is smooth:
    step 1e-5 gives truncation ~1e-10 and rounding ~1e-11 / 1e-5, so 1e-6 absolute)."""
    problem = make()
    W, w_labels = problem.prototype_rows()
    rng = np.random.default_rng(0)
    H = rng.standard_normal((problem.n, problem.dim))
    H /= np.linalg.norm(H, axis=1, keepdims=True)
    rows = H if W is None else np.vstack([H, W])
    G = rows @ rows.T
    value, C = relaxation_loss(G, problem)
    want = scl_loop(H, problem.labels, problem.tau, problem.batches(0), prototypes=W, prototype_labels=w_labels,
                    prototype_anchors=problem.prototype_anchors)
    assert value == pytest.approx(want, rel=1e-12)
    m, h = len(G), 1e-5
    for i, j in [(0, 1), (1, 5), (2, m - 1), (3, 3)]:
        step = np.zeros_like(G)
        step[i, j] += h
        step[j, i] += h
        fd = (relaxation_loss(G + step, problem)[0] - relaxation_loss(G - step, problem)[0]) / (2 * h)
        assert (C + C.T)[i, j] == pytest.approx(fd, abs=1e-6)      # <C, E_ij + E_ji>
