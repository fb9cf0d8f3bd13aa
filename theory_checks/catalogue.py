"""The theorem catalogue: each result of docs/theory.md as a :class:`~theory_checks.check.Check`.

Building the catalogue loads no solver (the checks import what they measure with when they run), so
``ufm verify --only NAME`` checks its names before JAX or cvxpy load.

Every check compares solver output with ``tools.predict`` (or with the other solver) on small
instances; ``quick=True`` uses fewer or smaller instances. To add a check, append a ``Check`` to
:data:`CATALOGUE` (see the README section "Adding a check").

Tolerances: gradient descent stops at 1e-10 relative loss change in float64 and Clarabel runs at 1e-9
feasibility/gap tolerances, so losses agree to ~1e-8 relative and mean Grams to ~1e-5 (the Gram error
is about the square root of the loss error near a minimum); 1e-6 (loss) and 1e-4 (Gram distance)
leave a margin of 100x and 10x.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from theory_checks.check import Check, Tools
from ufm.batching import Batching, check_conditions
from ufm.geometry import class_mean_gram, cosines, etf_gram, nc1, normalized_distance, procrustes_distance
from ufm.objectives import OBJECTIVES, ObjectiveOptions, embeddings_loss, objective_of
from ufm.problem import Problem, Prototypes

LOSS_RTOL = 1e-6
GRAM_TOL = 1e-4
WHY_LOSS_GRAM = ("solvers stop at ~1e-9 relative accuracy; loss errors are quadratic and Gram errors "
                 "linear in the distance to the optimum, so 1e-6 on losses and 1e-4 on Gram distances "
                 "leave a 100x / 10x margin")


def _cross_entropy(*options) -> ObjectiveOptions:
    """The cross-entropy objective's options (docs/theory.md section 10), from the registry."""
    return OBJECTIVES.options("ce")(*options)


def _rel(a: float, b: float) -> float:
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-300)


def _against_prediction(problem: Problem, tools: Tools, solvers: tuple[str, ...]) -> tuple[float, dict]:
    """Worst of (relative loss error, Gram distance, NC1) of each named solver against the prediction."""
    pred = tools.predict(problem)
    if pred.class_mean_gram is None or pred.loss is None:
        return float("inf"), {"prediction": pred.geometry, "why": pred.why}
    details: dict = {"predicted_geometry": pred.geometry, "predicted_loss": pred.loss}
    worst = 0.0
    for name in solvers:
        sol = getattr(tools, name)(problem)
        loss_err = _rel(sol.loss, pred.loss)
        gram_dist = normalized_distance(sol.class_mean_gram, pred.class_mean_gram)
        collapse = nc1(sol.embeddings, problem.labels)[0] if sol.embeddings is not None else 0.0
        details[name] = {"loss": sol.loss, "loss_rel_error": loss_err, "gram_distance": gram_dist,
                         "nc1": collapse, "status": sol.status}
        if sol.status in ("error", "not_converged"):
            # optimal_inaccurate is surfaced in the details but judged by the measured values
            details[name]["note"] = f"solver status {sol.status}: {sol.message}"
            worst = float("inf")
        worst = max(worst, loss_err / LOSS_RTOL * GRAM_TOL, gram_dist, collapse)
    return worst, details


SCORE_NOTE = ("max over solvers and instances of: Gram distance to the predicted mean Gram, NC1, and the "
              "relative loss error scaled by 1e-4/1e-6 (so the loss must agree to 1e-6)")


def _relu_instances(quick: bool) -> list[Problem]:
    out = [Problem.step(4, 10, 5, tau=0.5, relu=True), Problem.long_tail(5, 12, 6, tau=0.5, relu=True)]
    if not quick:
        out += [Problem.balanced(4, 5, tau=0.5, relu=True), Problem.step(6, 20, 10, tau=1.0, relu=True)]
    return out


def _etf_instances(quick: bool) -> list[Problem]:
    out = [Problem.balanced(4, 5, tau=0.5)]
    if not quick:
        out += [Problem.balanced(5, 4, tau=1.0), Problem.balanced(3, 8, tau=0.3)]
    return out


def _imbalanced_instances(quick: bool) -> list[Problem]:
    out = [Problem.from_counts([8, 8, 2, 2], tau=0.5)]
    if not quick:
        out += [Problem.from_counts([10, 5, 3, 2], tau=0.5), Problem.step(6, 12, 4, tau=1.0)]
    return out


def _not_etf(problem: Problem, tools: Tools) -> tuple[float, dict]:
    sol = tools.gd(problem)
    dist = normalized_distance(sol.class_mean_gram, etf_gram(problem.k))
    return dist, {"gd_distance_to_etf": dist, "status": sol.status}


def _gd_equals_reduced(problem: Problem, tools: Tools) -> tuple[float, dict]:
    reduced = tools.reduced(problem)
    worst, details = 0.0, {"reduced_optimum": reduced.lower_bound}
    for name in ("gd", "convex"):
        sol = getattr(tools, name)(problem)
        dist = normalized_distance(sol.class_mean_gram, reduced.class_mean_gram)
        err = _rel(sol.loss, reduced.lower_bound)
        details[name] = {"loss": sol.loss, "loss_rel_error": err, "gram_distance": dist}
        worst = max(worst, dist, err / LOSS_RTOL * GRAM_TOL)
    return worst, details


def _step_block_form(problem: Problem, tools: Tools) -> tuple[float, dict]:
    """Spread of the mean-Gram entries inside each of the three off-diagonal blocks (0 = block form) of
    the general k x k program (the block fast path has the form by construction, so it is not used),
    and the distance from the fast path's Gram."""
    M = np.asarray(tools.reduced(problem, program="general").class_mean_gram)
    fast = np.asarray(tools.reduced(problem, program="block").class_mean_gram)
    counts = np.asarray(problem.counts)
    major = counts == counts.max()
    off = ~np.eye(len(counts), dtype=bool)
    blocks = {"majority-majority": np.outer(major, major) & off,
              "majority-minority": np.outer(major, ~major) | np.outer(~major, major),
              "minority-minority": np.outer(~major, ~major) & off}
    spreads = {name: float(np.ptp(M[mask])) if mask.any() else 0.0 for name, mask in blocks.items()}
    values = {name: float(M[mask].mean()) if mask.any() else None for name, mask in blocks.items()}
    fast_distance = normalized_distance(M, fast)
    return max(max(spreads.values()), fast_distance), {"block_values": values, "block_spreads": spreads,
                                                       "block_program_distance": fast_distance}


def _certificate_gap(problem: Problem, tools: Tools) -> tuple[float, dict]:
    gd = tools.gd(problem)
    bound = tools.reduced(problem) if problem.is_full_batch and problem.prototypes is None else tools.convex(problem)
    gap = (gd.loss - bound.lower_bound) / abs(bound.lower_bound)
    # a gap below -1e-8 means the "lower bound" is above a feasible point: a bug, so it counts as failure
    score = abs(gap) if gap > -1e-8 else float("inf")
    return score, {"gd_loss": gd.loss, "lower_bound": bound.lower_bound, "relative_gap": gap}


def _landscape(problem: Problem, tools: Tools, n_starts: int) -> tuple[float, dict]:
    sols = tools.gd_many(problem, list(range(n_starts)), escape=False)     # the landscape: plain descent
    bound = tools.reduced(problem).lower_bound
    gaps = [(s.loss - bound) / abs(bound) for s in sols]
    best = min(range(len(sols)), key=lambda i: sols[i].loss)
    aligned = [procrustes_distance(s.embeddings, sols[best].embeddings) for s in sols]
    worst = max(max(abs(g) for g in gaps) / LOSS_RTOL * GRAM_TOL, max(aligned))
    return worst, {"starts": len(sols), "max_relative_gap": max(gaps), "min_relative_gap": min(gaps),
                   "max_procrustes_residual": max(aligned),
                   "optimal": sum(s.status == "optimal" for s in sols)}


def _landscape_small_dim(problem: Problem, tools: Tools) -> tuple[float, dict]:
    """d < k - 1: the rank k-1 optimum does not fit, so the best GD loss stays above the relaxation."""
    sols = tools.gd_many(problem, list(range(8)), escape=False)
    bound = tools.convex(problem).lower_bound
    gaps = [(s.loss - bound) / abs(bound) for s in sols]
    return min(gaps), {"dim": problem.dim, "k": problem.k, "min_relative_gap": min(gaps),
                       "max_relative_gap": max(gaps)}


def _relu_dimension(problem: Problem, tools: Tools) -> tuple[float, dict]:
    """Largest distance to the orthogonal frame over 20 starts at d = 2k; the starts at d = k are run
    too and those that stall (distance > 0.1, a spurious configuration) are reported."""
    k = problem.k
    at_k = [normalized_distance(s.class_mean_gram, np.eye(k))
            for s in tools.gd_many(problem.with_(dim=k), list(range(20)), escape=False)]
    at_2k = [normalized_distance(s.class_mean_gram, np.eye(k))
             for s in tools.gd_many(problem.with_(dim=2 * k), list(range(20)), escape=False)]
    stalled = [round(d, 4) for d in at_k if d > 0.1]
    return max(at_2k), {"stalled_at_d_equal_k": len(stalled), "stalled_distances": stalled,
                        "max_distance_at_d_equal_2k": max(at_2k)}


def _relu_staircase(problem: Problem, tools: Tools) -> tuple[float, dict]:
    """20 starts at d = k with ReLU, each climbing the staircase where plain descent stalls: the
    largest distance to the orthogonal frame, infinite for a start the certificate does not prove."""
    k = problem.k
    sols = tools.gd_many(problem, list(range(20)))
    distances = [normalized_distance(s.class_mean_gram, np.eye(k)) if s.status == "optimal" else float("inf")
                 for s in sols]
    escapes = [s.info.staircase.escapes if getattr(s.info, "staircase", None) is not None else 0 for s in sols]
    return max(distances), {"dim": problem.dim, "optimal": sum(s.status == "optimal" for s in sols),
                            "starts_that_escaped": sum(e > 0 for e in escapes), "escapes": escapes}


def violating_batching(counts: Sequence[int]) -> Batching:
    """A batching that breaks condition 2 of docs/theory.md section 4: the classes are split into two
    groups (first half, second half) with one batch each, so the first and last class never meet."""
    k = len(counts)
    starts = np.concatenate([[0], np.cumsum(counts)])
    half = k // 2
    return Batching.from_lists([list(range(starts[0], starts[half])), list(range(starts[half], starts[k]))])


def second_minimiser(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Two collapsed nonnegative configurations (n, dim) for a batching that violates theory.md section 4
    condition 2: the orthogonal frame, and the same frame with every class c in the second half of
    the class list rotated to share a direction with class c - k/2 (which it never meets), at cosine
    1/2 (mu_c = (e_{c - k/2} + sqrt(3) e_c) / 2). Pairs that meet stay orthogonal, so both reach the
    bound of theory.md section 2 in every batch."""
    k, d = problem.k, problem.dim
    half = k // 2
    frame = np.eye(k, d)
    second = frame.copy()
    for c in range(half, k):
        second[c] = 0.5 * frame[c - half] + (np.sqrt(3) / 2) * frame[c]
    return frame[problem.labels], second[problem.labels]


def _necessary(problem: Problem, tools: Tools) -> tuple[float, dict]:
    """theory.md section 4: necessity is shown by exhibiting a second minimiser, not by reading a solver.
    The measured value is the largest |cosine| between class means on the pairs that never meet, for
    a configuration that (a) has the same loss as the orthogonal frame to 1e-12, (b) equals docs/theory.md's
    batched closed form, and (c) is proved optimal by the certificate; 0 if any of these fails."""
    cond = check_conditions(problem.labels, problem.batches())
    if not cond.unmet_pairs:
        return 0.0, {"note": "generated batching unexpectedly meets the conditions"}
    frame, second = second_minimiser(problem)
    bound = objective_of(problem).batched_orthogonal_frame_loss(problem.labels, problem.batches(0), problem.tau)
    losses = [embeddings_loss(problem, H) for H in (frame, second)]
    cert = tools.certify(problem, second)
    cos = cosines(class_mean_gram(second, problem.labels))
    unmet = max(abs(cos[a, b]) for a, b in cond.unmet_pairs)
    same = abs(losses[1] - losses[0]) <= 1e-12 * abs(losses[0]) and abs(losses[1] - bound) <= 1e-12 * abs(bound)
    value = unmet if (same and cert.certified) else 0.0
    return value, {"unmet_pairs": [list(p) for p in cond.unmet_pairs], "orthogonal_frame_loss": losses[0],
                   "second_minimiser_loss": losses[1], "batched_closed_form": bound,
                   "second_minimiser_relative_gap": cert.relative_gap,
                   "max_abs_cosine_on_unmet_pairs": unmet}


#: theory.md section 3 (small tau) check values for counts (8, 8, 2, 2), no ReLU: mean-Gram entries
#: majority-majority / majority-minority / minority-minority.
SMALL_TAU_VALUES = {0.5: (-0.4969, -0.3488, -0.0329), 0.1: (-0.3416, -0.3468, -0.2693),
                    0.05: (-0.3387, -0.3401, -0.3002), 0.02: (-0.3358, -0.3361, -0.3198),
                    0.01: (-0.3346, -0.3347, -0.3265)}


def _small_tau(problem: Problem, tools: Tools) -> tuple[float, dict]:
    """Largest difference between docs/theory.md's 4-decimal check values and the mean Grams of the reduced
    program and of gradient descent (both in excess form), at one temperature."""
    a, b, c = SMALL_TAU_VALUES[problem.tau]
    want = np.array([[1, a, b, b], [a, 1, b, b], [b, b, 1, c], [b, b, c, 1]])
    details: dict = {"check_values": [a, b, c]}
    worst = 0.0
    for name in ("reduced", "gd"):
        sol = getattr(tools, name)(problem)
        err = float(np.abs(np.asarray(sol.class_mean_gram) - want).max())
        details[name] = {"max_entry_error": err, "status": sol.status,
                         "distance_to_etf": normalized_distance(sol.class_mean_gram, etf_gram(4))}
        worst = max(worst, err if sol.status == "optimal" else float("inf"))
    return worst, details


def _etf_limit(counts: tuple, tools: Tools) -> tuple[float, dict]:
    """Distance d(tau) of the reduced optimum's mean Gram to the simplex ETF at tau = 0.04, 0.02, 0.01:
    the measured value is the larger of d(0.02) / d(0.04) and d(0.01) / d(0.02) (0.5 when the distance
    shrinks in proportion to tau; near 1 when it stops shrinking, as toward a limit other than the ETF;
    0 when both distances are at round-off, the ETF itself; inf unless every solve is certified optimal).
    The details hold the linear extrapolation 2 d(0.01) - d(0.02) of d(0), ~0 for the ETF limit."""
    distances, statuses = [], []
    for tau in SMALL_TAU_LIMIT_TAUS:
        sol = tools.reduced(Problem.from_counts(list(counts), tau=tau))
        distances.append(normalized_distance(sol.class_mean_gram, etf_gram(len(counts))))
        statuses.append(str(sol.status))
    ratios = [0.0 if max(a, b) < 1e-9 else (b / a if a > 0 else float("inf"))
              for a, b in zip(distances[:-1], distances[1:])]
    ok = all(status == "optimal" for status in statuses)
    return (max(ratios) if ok else float("inf")), {
        "taus": list(SMALL_TAU_LIMIT_TAUS), "distance_to_etf": distances, "ratios": ratios,
        "extrapolated_distance_at_0": 2 * distances[-1] - distances[-2], "statuses": statuses}


#: The temperatures of the ``small-tau-etf-limit`` check (halving toward 0).
SMALL_TAU_LIMIT_TAUS = (0.04, 0.02, 0.01)


def _certified_large(problem: Problem, tools: Tools) -> tuple[float, dict]:
    """A certified gradient-descent solve at n >= 2000 with batches: the certificate's relative gap
    (the status must be optimal) and the distance of the mean Gram to the orthogonal frame."""
    sol = tools.gd(problem)
    cert = sol.certificate
    dist = normalized_distance(sol.class_mean_gram, np.eye(problem.k))
    value = max(cert.relative_gap, dist) if (cert is not None and sol.status == "optimal") else float("inf")
    return value, {"n": problem.n, "batches": len(problem.batches(0)), "status": sol.status,
                   "relative_gap": None if cert is None else cert.relative_gap,
                   "certificate_seconds": None if cert is None else cert.seconds,
                   "distance_to_of": dist, "seconds": sol.seconds}


def fixed_binding(counts: Sequence[int], batch_size: int, seed: int = 0) -> Batching:
    """The batch-binding batches of epoch 0 as a fixed (explicit) batching: one example of every class
    in every batch, the others dealt into batches of ``batch_size``."""
    return Batching.from_lists(Batching.binding(batch_size).batches(counts, seed=seed, epoch=0))


def _prototype_trend(counts_tau: tuple, tools: Tools) -> tuple[float, dict]:
    """Distance of the mean Gram to the CE-limit geometry (ETF) for growing prototypes per class; the
    measured value is the largest step d(n_w next) - d(n_w), negative when the distance shrinks."""
    counts, tau, per_class = counts_tau
    ce_limit = tools.gd(Problem.from_counts(counts, tau=tau, objective=_cross_entropy("etf")))
    if ce_limit.status != "optimal":
        return float("inf"), {"ce_status": ce_limit.status, "ce_message": ce_limit.message}
    distances = []
    for n_w in per_class:
        problem = Problem.from_counts(counts, tau=tau, prototypes=Prototypes("etf", n_w))
        distances.append(normalized_distance(tools.convex(problem).class_mean_gram, ce_limit.class_mean_gram))
    steps = np.diff(distances)
    return float(steps.max()), {"prototypes_per_class": list(per_class), "distance_to_ce_optimum": distances,
                                "ce_certificate_gap": ce_limit.certificate.relative_gap}


def _ce_fixed(instance: tuple, tools: Tools) -> tuple[float, dict]:
    """The fixed-classifier CE optimum found by gradient descent against its closed form: the larger of
    the relative loss error and the largest mean-Gram entry error (inf unless certified optimal)."""
    counts, tau, classifier, relu = instance
    problem = Problem.from_counts(counts, tau=tau, relu=relu, objective=_cross_entropy(classifier))
    sol, pred = tools.gd(problem), tools.predict(problem)
    err = max(abs(sol.loss / pred.loss - 1.0), float(np.abs(sol.class_mean_gram - pred.class_mean_gram).max()))
    return (err if sol.status == "optimal" else float("inf")), {"status": sol.status, "loss": sol.loss,
                                                                 "predicted_loss": pred.loss, "error": err}


def _ce_learned(instance: tuple, tools: Tools) -> tuple[float, dict]:
    """The learned-classifier UFM on balanced counts: the largest of the centred means' distance to the
    ETF, the self-duality and the relative error of the optimal value (inf unless certified optimal)."""
    k, m, lam = instance
    problem = Problem.balanced(k, m, objective=_cross_entropy("learned", lam))
    sol, pred = tools.gd(problem), tools.predict(problem)
    Mc = objective_of(problem).centred_means(np.asarray(sol.embeddings), problem.labels, k)
    parts = {"distance_to_etf": normalized_distance(Mc @ Mc.T, etf_gram(k)),
             "self_duality": float(sol.info.metrics.get("self_duality", float("inf"))),
             "value_error": abs(sol.loss / pred.loss - 1.0)}
    worst = max(parts.values()) if sol.status == "optimal" else float("inf")
    return worst, dict(parts, status=sol.status)


def _ib_instances(quick: bool) -> list[dict]:
    from ufm.geometry import factor_gram
    k, d = 4, 6
    geometries = {"etf": factor_gram(etf_gram(k), d), "orthogonal-frame": np.eye(k, d)}
    out = [{"geometry": g, "means": m, "counts": [30] * k, "sigma": 0.3} for g, m in geometries.items()]
    out.append({"geometry": "etf-imbalanced", "means": geometries["etf"], "counts": [60, 60, 10, 10], "sigma": 0.3})
    return out[:2] if quick else out


def _ib(instance: dict, tools: Tools) -> tuple[float, dict]:
    """Critical betas from ``theory_checks.information_bottleneck`` against (1) a direct eigen-
    computation of Sigma_W Sigma_X^{-1} on the sample, (2) for balanced geometries the closed form
    1 + sigma^2 / s (population covariances), and (3) the IB curve: I(T;Y) is 0 just below the first
    critical beta and positive just above, and each later transition adds a direction."""
    from theory_checks.information_bottleneck import noisy_collapsed_embeddings

    data = noisy_collapsed_embeddings(instance["means"], instance["counts"], instance["sigma"], seed=0)
    sample = tools.ib(data.X, data.labels)
    # (1) direct: eigenvalues of Sigma_W Sigma_X^{-1} with plain NumPy (full-rank sample covariances)
    X, y = data.X, data.labels
    centred = X - X.mean(0)
    sigma_x = centred.T @ centred / len(X)
    means = np.stack([X[y == c].mean(0) for c in range(len(instance["counts"]))])
    within = X - means[y]
    sigma_w = within.T @ within / len(X)
    direct = np.sort(np.real(np.linalg.eigvals(sigma_w @ np.linalg.inv(sigma_x))))
    k = len(instance["counts"])
    direct_betas = 1.0 / (1.0 - direct[:k - 1])
    errors = {"direct": float(np.max(np.abs(sample.finite_betas - direct_betas) / direct_betas))}
    details = {"critical_betas": sample.finite_betas.tolist(), "direct_betas": direct_betas.tolist()}
    # (2) closed form for balanced geometries: all k-1 transitions at 1 + sigma^2 / s
    population = data.population_analysis()
    if len(set(instance["counts"])) == 1:
        sb = population.sigma_b
        s = float(np.max(np.linalg.eigvalsh(sb)))
        closed = 1.0 + instance["sigma"] ** 2 / s
        errors["closed_form"] = float(np.max(np.abs(population.finite_betas - closed)) / closed)
        details["closed_form_beta"] = closed
    details["population_betas"] = population.finite_betas.tolist()
    # (3) the curve: one more direction becomes active at each critical beta
    curve_errors = 0
    for i, beta in enumerate(population.finite_betas):
        below, above = population.curve(np.array([beta * (1 - 1e-6), beta * (1 + 1e-6)]))[1]
        if i == 0 and (below != 0.0 or above <= 0.0):
            curve_errors += 1
    errors["curve"] = float(curve_errors)
    details["errors"] = errors
    return max(errors.values()), details


CATALOGUE: list[Check] = [
    Check("relu-orthogonal-frame", "[OF]",
          "With ReLU (full batch, d >= k) every optimum is neural collapse + an orthogonal frame, for any "
          "class counts, with loss sum_c n_c log((n_c-1) + (n-n_c) e^{-1/tau})",
          SCORE_NOTE, GRAM_TOL, WHY_LOSS_GRAM, _relu_instances,
          lambda p, t: _against_prediction(p, t, ("gd", "convex"))),
    Check("balanced-etf", "[LAND]",
          "Without ReLU and with balanced classes the optimum is neural collapse + a simplex ETF",
          SCORE_NOTE, GRAM_TOL, WHY_LOSS_GRAM, _etf_instances,
          lambda p, t: _against_prediction(p, t, ("gd", "convex"))),
    Check("imbalanced-not-etf", "[LAND]",
          "Without ReLU, imbalance breaks the symmetry: the optimum is NOT a simplex ETF",
          "smallest distance of the GD mean Gram to the ETF", 0.01,
          "the distance at counts (8,8,2,2), tau 0.5 is ~0.1 (theory.md section 2 values); solver error is "
          "< 1e-4, so 0.01 separates the two without ambiguity",
          _imbalanced_instances, _not_etf, comparison="at_least"),
    Check("imbalanced-reduced-program", "[LAND]",
          "Without ReLU and imbalanced, GD and the n x n relaxation both reach the reduced k x k program's "
          "optimum and mean Gram",
          "max Gram distance to the reduced optimum and relative loss error scaled by 1e-4/1e-6",
          GRAM_TOL, WHY_LOSS_GRAM, _imbalanced_instances, _gd_equals_reduced),
    Check("step-block-form", "[LAND]",
          "Under STEP imbalance the optimal mean Gram has three off-diagonal values (maj-maj, maj-min, min-min)",
          "largest spread (max - min) of the general program's mean-Gram entries within a block, and its "
          "distance to the 3-scalar fast path", 1e-4,
          "Clarabel at 1e-10 gives values to ~1e-10 but Gram entries only to ~1e-5 (errors in the Gram are "
          "about the square root of errors in the value); 1e-4 leaves a 10x margin",
          lambda quick: [Problem.step(4, 8, 4, tau=0.5)] + ([] if quick else [Problem.step(6, 12, 3, tau=0.3)]),
          _step_block_form),
    Check("relaxation-tight", "[LAND]",
          "The convex relaxation is tight: GD's loss equals the convex lower bound (certificate gap ~ 0)",
          "largest |GD loss - lower bound| / |lower bound|", LOSS_RTOL, WHY_LOSS_GRAM,
          lambda quick: [Problem.from_counts([6, 4, 2], tau=0.5), Problem.from_counts([6, 4, 2], tau=0.5, relu=True)]
          + ([] if quick else [Problem.long_tail(5, 10, 5, tau=1.0)]),
          _certificate_gap),
    Check("landscape-benign", "[LAND]",
          "With d > k every local minimum is global and unique up to rotation: 20 random starts (one "
          "vmapped call) all reach the convex optimum and align by Procrustes",
          "max over starts of Procrustes residual and relative gap to the optimum scaled by 1e-4/1e-6",
          GRAM_TOL, WHY_LOSS_GRAM,
          lambda quick: [Problem.from_counts([6, 4, 2], tau=0.5, dim=4)]
          + ([] if quick else [Problem.balanced(4, 4, tau=0.5, dim=6)]),
          lambda p, t: _landscape(p, t, 20)),
    Check("landscape-needs-dim", "[LAND]",
          "The hypothesis matters: with d < k - 1 the rank k-1 optimum does not fit, and the best of 8 GD "
          "starts stays strictly above the convex lower bound",
          "smallest relative gap of GD over the lower bound", 1e-3,
          "at k = 4, d = 2 the gap is of order 1e-1; 1e-3 is 1000x above solver accuracy",
          lambda quick: [Problem.balanced(4, 4, tau=0.5, dim=2)], _landscape_small_dim, comparison="at_least"),
    Check("relu-landscape-needs-2k", "[OF] / theory.md section 3",
          "With ReLU the nonnegative landscape at d = k is not benign in practice (some of 20 starts stall in a "
          "spurious configuration, reported), while at d = 2k every start reaches the orthogonal frame",
          "largest distance to the orthogonal frame over 20 starts at d = 2k", GRAM_TOL, WHY_LOSS_GRAM,
          lambda quick: [Problem.from_counts([6, 6, 3, 3], tau=0.5, relu=True)], _relu_dimension),
    Check("relu-staircase-escapes", "[OF] / theory.md section 8a",
          "With ReLU at d = k the staircase (an escape one rank up along the certificate's eigenvector, "
          "then descent again) proves every one of 20 starts optimal at the orthogonal frame, the starts "
          "where plain descent stalls included",
          "largest distance to the orthogonal frame over 20 starts at d = k (inf for a start not proved optimal)",
          GRAM_TOL, WHY_LOSS_GRAM,
          lambda quick: [Problem.from_counts([6, 6, 3, 3], tau=0.5, relu=True, dim=4)], _relu_staircase),
    Check("batch-binding-sufficient", "[OF]",
          "With ReLU, batch-binding under random mini-batches gives NC + the orthogonal frame",
          SCORE_NOTE, GRAM_TOL, WHY_LOSS_GRAM,
          lambda quick: [Problem.from_counts([6, 6, 3, 3], tau=0.5, relu=True, batching=Batching.binding(8))],
          lambda p, t: _against_prediction(p, t, ("gd", "convex"))),
    Check("batching-conditions-necessary", "[OF] / theory.md section 4",
          "The batching conditions are necessary: for a generated batching in which classes never meet, a "
          "second minimiser exists that is not an orthogonal frame (same loss as the orthogonal frame to "
          "1e-12, equal to the batched closed form, and proved optimal by the certificate)",
          "largest |cosine| between class means of pairs that never meet, in that second minimiser "
          "(0 if it is not a minimiser)", 0.05,
          "the exhibited minimiser has cosine 0.5 on the pairs that never meet; an orthogonal frame has 0",
          lambda quick: [Problem.balanced(4, 4, tau=0.5, relu=True,
                                          batching=violating_batching([4, 4, 4, 4]))],
          _necessary, comparison="at_least"),
    Check("small-tau-geometry", "theory.md section 3 (small tau)",
          "In excess form the reduced program and gradient descent give docs/theory.md's small-tau geometry for "
          "(8, 8, 2, 2), which approaches the simplex ETF as tau -> 0 (E / L ~ 1e-57 at tau = 0.01)",
          "largest |mean-Gram entry - check value| over both solvers (inf unless certified optimal)", 1e-4,
          "the check values are printed to 4 decimals (rounding <= 5e-5); both solvers agree with the mpmath "
          "optimum to ~1e-9 (tests), so 1e-4 leaves room only for the rounding",
          lambda quick: [Problem.from_counts([8, 8, 2, 2], tau=t)
                         for t in ((0.05, 0.01) if quick else (0.1, 0.05, 0.02, 0.01))],
          _small_tau),
    Check("small-tau-etf-limit", "theory.md section 3 (small tau)",
          "As tau -> 0 the optimum without ReLU approaches the simplex ETF whatever the imbalance: the distance "
          "of the mean Gram to the ETF shrinks in proportion to tau (the counts enter at order tau log n)",
          "largest ratio d(tau/2) / d(tau) of the distance to the ETF as tau halves from 0.04 to 0.01, over "
          "the instances (inf unless certified optimal)", 0.6,
          "a distance proportional to tau gives 0.5 (measured 0.50-0.52 on these counts); a limit other than "
          "the ETF gives ratios tending to 1",
          lambda quick: [(8, 8, 2, 2), (20, 10, 5, 2, 2)] + ([] if quick else [(32, 32, 2, 2)]),
          _etf_limit, describe=lambda counts: {"counts": list(counts)}),
    Check("certified-large-n", "[OF] / certificate",
          "A gradient-descent solve at n = 2000 with a fixed batch-binding batching (ReLU) is proved optimal "
          "by the matrix-free certificate, and is the orthogonal frame",
          "largest of the certificate's relative gap and the mean Gram's distance to I (inf unless optimal)",
          1e-6, "the certificate proves ~1e-9 here; gradient descent stops at ~1e-9 in the Gram",
          lambda quick: [Problem.from_counts([200] * 10, tau=0.5, relu=True, dim=20,
                                             batching=fixed_binding([200] * 10, 110))],
          _certified_large),
    Check("prototypes-relu-exact", "[PROTO]",
          "ReLU with orthonormal nonnegative prototypes in every batch: h_i = w_{y_i} for any counts and batching",
          SCORE_NOTE, GRAM_TOL, WHY_LOSS_GRAM,
          lambda quick: [Problem.from_counts([8, 4, 2], tau=0.5, relu=True, prototypes=Prototypes("of", 1),
                                             batching=Batching.random(6))],
          lambda p, t: _against_prediction(p, t, ("gd", "convex"))),
    Check("prototypes-approach-ce-limit", "[PROTO]",
          "Without ReLU, as prototypes per class grow the class means approach the cross-entropy limit with "
          "the fixed classifier (the centred prototype geometry: a simplex ETF)",
          "largest change of the distance to the CE objective's own certified optimum (fixed ETF classifier) "
          "from one prototype count to the next (negative = shrinking)", -0.01,
          "theory.md section 5 reports steps of about -0.03 (0.167, 0.140, 0.111, 0.080); -0.01 demands a "
          "clear decrease while allowing solver error (~1e-5)",
          lambda quick: [((10, 10, 2, 2), 0.5, (1, 2, 4) if quick else (1, 2, 4, 8))],
          _prototype_trend, describe=lambda inst: {"counts": list(inst[0]), "tau": inst[1]}),
    Check("ce-fixed-classifier-closed-form", "[PROTO] CE limit / theory.md section 10",
          "Cross-entropy with a fixed classifier on unit embeddings: the ETF classifier's optimum is its own rows, "
          "the OF classifier's is the centred OF (an ETF) without ReLU and the OF itself with ReLU, on any counts",
          "largest of the relative loss error and the mean-Gram entry error against the closed form "
          "(inf unless certified optimal)", 1e-9,
          "the closed forms are exact; gradient descent stops at a relative change of log L of 1e-12 and the "
          "certificate proves the value; measured errors are ~1e-11",
          lambda quick: [((5, 4, 3), 0.2, "of", False), ((3, 2, 4, 2), 0.1, "of", True)] +
          ([] if quick else [((6, 2, 3), 0.5, "etf", False), ((4, 4, 1, 1), 0.05, "of", False)]),
          _ce_fixed, describe=lambda i: {"counts": list(i[0]), "tau": i[1], "classifier": i[2], "relu": i[3]}),
    Check("ce-learned-etf-self-duality", "[CE] Zhu et al. 2021 / theory.md section 10",
          "Cross-entropy with a learned classifier and weight decay on balanced classes: the centred class "
          "means form a simplex ETF, the classifier is self-dual, and the value is the 1-D closed form",
          "largest of the distance of the centred means to the ETF, the self-duality and the relative value "
          "error (inf unless certified optimal)", 1e-5,
          "the solver stops at a gradient norm of 1e-9 and the nuclear-norm dual proves the value to 1e-6; "
          "measured ~1e-8",
          lambda quick: [(3, 4, 0.01)] + ([] if quick else [(4, 3, 0.005)]),
          _ce_learned, describe=lambda i: {"k": i[0], "per_class": i[1], "weight_decay": i[2]}),
    Check("ib-critical-betas", "[IB]",
          "The Gaussian-IB critical betas 1/(1 - lambda_i), lambda = eig(Sigma_W Sigma_X^-1), match a direct "
          "eigen-computation; balanced ETF/OF with isotropic noise put all k-1 transitions at 1 + sigma^2/s; "
          "the IB curve turns on at the first one",
          "largest relative error of the critical betas (direct and closed form) plus the count of curve "
          "transitions out of place", 1e-8,
          "eigenvalues of 4 x 4 to 6 x 6 well-conditioned matrices are accurate to ~1e-13; 1e-8 leaves room "
          "for conditioning of Sigma_X",
          _ib_instances, _ib, describe=lambda inst: {k: v for k, v in inst.items() if k != "means"}),
]
