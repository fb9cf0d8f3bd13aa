"""Sweeps: how the optimal geometry moves with the imbalance ratio, the temperature, or the batching.

Each sweep returns a :class:`SweepResult` (JSON-ready numbers; ``ufm.app.plots.sweep_figure`` draws it).
Full-batch points use the reduced k x k program (fast: counts only enter as weights); ``check_gd``
cross-checks every point with gradient descent from several random starts, all points and starts in
one vmapped call (:func:`solvers.gd.solve_batched` with padding), and records the relative gap of the
best start to the reduced optimum.

Cosines between class means are reported per block: for STEP imbalance ``maj-maj``, ``maj-min`` and
``min-min`` (averaged over the block; the optimum is block-constant, docs/theory.md section 3); for
long-tail, ``head-head`` (classes 0, 1), ``head-tail`` (0, k-1) and ``tail-tail`` (k-2, k-1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ufm.errors import ProblemError
from ufm.geometry import cosines, etf_gram, nc1, normalized_distance, orthogonal_frame_gram
from ufm.objectives import OBJECTIVES, Capability, ObjectiveOptions
from ufm.problem import DEFAULT_OBJECTIVE, Problem, uses_tau
from theory_checks.check import Progress, each

if TYPE_CHECKING:
    from ufm.batching import Batching


@dataclass
class SweepResult:
    """``x``: the swept values; ``series``: name (e.g. ``"ReLU"``) -> quantity -> values over x.

    Quantities: ``cos:<block>`` (cosines), ``dist:ETF`` and ``dist:OF`` (normalised Frobenius distances
    of the mean Gram), ``loss`` (optimal loss, sum reduction) and ``loss_per_example`` (loss / n: a sum
    falls with n alone), ``excess_per_example`` (the excess E / n of docs/theory.md "The excess form",
    SCL full batch: what carries the geometry at small tau; 0 where it underflows) and
    ``log10_excess_per_example`` (from log E: finite at any tau; NaN where the solver gave no excess),
    ``gd_gap`` (with ``check_gd``).
    """

    kind: str
    x: list[float]
    xlabel: str
    series: dict[str, dict[str, list[float]]]
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "x": self.x, "xlabel": self.xlabel, "series": self.series, "meta": self.meta}


def block_cosines(M: np.ndarray, counts: Sequence[int], profile: str,
                  minority_fraction: float | None = None) -> dict[str, float]:
    """Mean cosine between class means per block (see the module docstring). STEP: the minority
    classes are the last ``round(minority_fraction * k)`` (the profile's own split, so ratio 1 has the
    same blocks), or without a fraction the classes below the largest count; a block without a pair
    (one minority class has no min-min pair) is left out rather than reported as NaN."""
    C = cosines(M)
    k = len(counts)
    if profile == "long-tail":
        return {"head-head": float(C[0, 1]), "head-tail": float(C[0, k - 1]), "tail-tail": float(C[k - 2, k - 1])}
    counts = np.asarray(counts)
    if minority_fraction is not None:
        major = np.arange(k) < k - int(round(minority_fraction * k))
    else:
        major = counts == counts.max()
        if major.all():  # equal counts: split as the default profile does
            major = np.arange(k) < k - int(round(k / 2))
    off = ~np.eye(k, dtype=bool)
    blocks = {"maj-maj": np.outer(major, major) & off, "maj-min": np.outer(major, ~major),
              "min-min": np.outer(~major, ~major) & off}
    return {name: float(C[mask].mean()) for name, mask in blocks.items() if mask.any()}


def _geometry_row(M: np.ndarray, loss: float, counts, profile: str, minority_fraction: float | None = None,
                  log_excess: float | None = None, scl_full_batch: bool = False) -> dict[str, float]:
    k = len(counts)
    n = float(sum(counts))
    row = {f"cos:{name}": value for name, value in block_cosines(M, counts, profile, minority_fraction).items()}
    row["dist:ETF"] = normalized_distance(M, etf_gram(k))
    row["dist:OF"] = normalized_distance(M, orthogonal_frame_gram(k))
    row["loss"] = float("nan") if loss is None else float(loss)      # NaN: no certified value
    row["loss_per_example"] = row["loss"] / n
    if scl_full_batch:
        # from log E, so it keeps its value where E / n underflows (tau below ~0.002); NaN: not known
        log_e = float("nan") if log_excess is None else float(log_excess)
        row["log10_excess_per_example"] = (log_e - float(np.log(n))) / float(np.log(10.0))
        row["excess_per_example"] = float(np.exp(log_e - np.log(n)))
    return row


def _reduced_points(problems: Sequence[Problem], profile: str, check_gd: bool, gd_starts: int,
                    minority_fraction: float | None, label: str, progress: Progress | None) -> list[dict]:
    """The full-batch sweep points: each point's reduced program (geometry row and status), and with
    ``check_gd`` the relative gap of the best of ``gd_starts`` gradient-descent starts to the reduced
    optimum, every point and start in one vmapped call (:func:`_gd_gaps`).

    The reduced points run one after another: each is a few milliseconds of compiled descent
    (:func:`solvers.reduced.solve_factored`), counts and tau traced, so a sweep compiles once per
    (k, ReLU) and vmapping them would save nothing worth another compile."""
    from solvers.convex import solve_reduced

    if not by_reduced_program(problems[0].objective):
        return _objective_points(problems, profile, minority_fraction, label, progress)
    rows, optima = [], []
    for problem in each(problems, label, progress):
        sol = solve_reduced(problem)
        row = _geometry_row(sol.class_mean_gram, sol.lower_bound, problem.counts, profile, minority_fraction,
                            sol.log_excess, scl_full_batch=True)
        row["status"] = str(sol.status)
        rows.append(row)
        optima.append(sol.lower_bound)
    if check_gd:
        for row, gap in zip(rows, _gd_gaps(problems, optima, gd_starts, progress)):
            row["gd_gap"] = gap
    return rows


def _objective_points(problems: Sequence[Problem], profile: str, minority_fraction: float | None,
                      label: str, progress: Progress | None) -> list[dict]:
    """Sweep points of an objective without the reduced program (cross-entropy): each point is
    :func:`solvers.gd.solve`, whose status its proved bound decides (:mod:`solvers.generic`); the row
    holds its geometry, loss and status."""
    from solvers.gd import solve

    rows = []
    for problem in each(problems, label, progress):
        sol = solve(problem)
        row = _geometry_row(sol.class_mean_gram, sol.loss, problem.counts, profile, minority_fraction)
        row["status"] = str(sol.status)
        rows.append(row)
    return rows


def by_reduced_program(objective: ObjectiveOptions) -> bool:
    """Whether a sweep's points of this loss are its reduced program's (capability ``REDUCED``);
    otherwise each point is a certified gradient-descent solve."""
    return objective.name in OBJECTIVES and Capability.REDUCED in OBJECTIVES.capabilities(objective.name)


def _check_objective(objective, check_gd: bool, sweep: str) -> None:
    """Refuse what a sweep over an objective without the reduced program cannot do, before anything runs."""
    if by_reduced_program(objective):
        return
    if check_gd:
        raise ProblemError("check_gd cross-checks the reduced program with gradient descent; with the "
                           f"{objective.name} objective every point is a certified gradient-descent solve "
                           "already (drop check_gd)")
    if sweep == "temperature" and not uses_tau(objective):
        raise ProblemError(f"{objective.describe()} has no temperature; sweep the imbalance instead, "
                           "or use an objective with one (for CE a fixed classifier, etf or of)")


def _loss_label(objective: ObjectiveOptions) -> str:
    """The sweep's ``loss`` field: the default objective by its name, another by its description."""
    return objective.name if objective == DEFAULT_OBJECTIVE else objective.describe()


def _gd_gaps(problems: Sequence[Problem], optima: Sequence[float], starts: int,
             progress: Progress | None) -> list[float]:
    """For each problem the relative gap (best of ``starts`` starts, seeds 0 .. starts - 1) to its
    optimum, absolute where the optimum is 0. The problems and starts of one shape (k, dim, ReLU) run
    in one :func:`solvers.gd.solve_batched` call, padded to their largest n (``pad=True``: one
    compiled program per shape for the whole sweep)."""
    from solvers.gd import solve_batched

    shapes: dict[tuple, list[int]] = {}
    for i, problem in enumerate(problems):
        shapes.setdefault((problem.k, problem.dim, problem.relu), []).append(i)
    losses: dict[int, list[float]] = {}
    for members in each(list(shapes.values()), "gd cross-check (vmapped per shape)", progress):
        runs = [replace(problems[i], seed=seed) for i in members for seed in range(starts)]
        sols = solve_batched(runs, pad=True)
        for j, i in enumerate(members):
            losses[i] = [s.loss for s in sols[j * starts:(j + 1) * starts]]
    return [float((min(losses[i]) - optimum) / (abs(optimum) if optimum != 0 else 1.0))
            for i, optimum in enumerate(optima)]


def _append(series: dict, name: str, row: dict) -> None:
    target = series.setdefault(name, {})
    for key, value in row.items():
        target.setdefault(key, []).append(value)


def _problems(points, make) -> list[Problem]:
    """Every point's Problem, built (so validated) before anything is solved: a sweep runs exactly the
    points it is asked for, or refuses them all with the first point's :class:`ProblemError`."""
    problems = []
    for point in points:
        try:
            problems.append(make(*point))
        except ProblemError as err:
            raise ProblemError(f"sweep point {', '.join(map(_label, point))}: {err}") from None
    return problems


def _label(value) -> str:
    return ("ReLU" if value else "no ReLU") if isinstance(value, bool) else f"{value:g}" if isinstance(
        value, float) else str(value)


def _check_relu_options(relu_options) -> tuple[bool, ...]:
    options = tuple(relu_options)
    if not options or not all(isinstance(r, bool) for r in options) or len(set(options)) != len(options):
        raise ProblemError(f"relu_options must be (False,), (True,) or (False, True) (got {relu_options!r})")
    return options


def _values(values, name: str) -> list[float]:
    values = list(values)
    if not values:
        raise ProblemError(f"{name} is empty; give at least one value to sweep")
    return values


def imbalance_problems(ratios: Sequence[float], *, profile: str = "step", k: int = 4, n_max: int = 20,
                       minority_fraction: float = 0.5, tau: float | None = 0.5,
                       relu_options: Sequence[bool] = (False, True),
                       objective: ObjectiveOptions = DEFAULT_OBJECTIVE) -> tuple[list[tuple], list[Problem]]:
    """The points ``(R, relu)`` of :func:`sweep_imbalance` and their problems (validated, unsolved).
    ``objective``: the options of a registered loss (one without a temperature takes no tau)."""
    if profile not in ("step", "long-tail"):
        raise ProblemError(f"an imbalance sweep needs profile step or long-tail (got {profile!r})")
    ratios = _values(ratios, "the list of ratios")
    points = [(float(r), relu) for r in ratios for relu in _check_relu_options(relu_options)]
    fraction = minority_fraction if profile == "step" else None
    if not uses_tau(objective):
        tau = None
    return points, _problems(points, lambda r, relu: Problem.from_profile(
        profile, k, n_max, r, fraction, tau=tau, relu=relu, objective=objective))


def temperature_problems(taus: Sequence[float], counts: Sequence[int], *,
                         relu_options: Sequence[bool] = (False, True),
                         objective: ObjectiveOptions = DEFAULT_OBJECTIVE) -> tuple[list[tuple], list[Problem]]:
    """The points ``(tau, relu)`` of :func:`sweep_temperature` and their problems (validated, unsolved)."""
    _check_objective(objective, False, "temperature")
    taus = _values(taus, "the list of temperatures")
    points = [(float(t), relu) for t in taus for relu in _check_relu_options(relu_options)]
    return points, _problems(points, lambda t, relu: Problem.from_counts(counts, tau=t, relu=relu,
                                                                          objective=objective))


def sweep_imbalance(ratios: Sequence[float], *, profile: str = "step", k: int = 4, n_max: int = 20,
                    minority_fraction: float = 0.5, tau: float | None = 0.5,
                    relu_options: Sequence[bool] = (False, True),
                    check_gd: bool = False, gd_starts: int = 4, progress: Progress | None = None,
                    objective: ObjectiveOptions = DEFAULT_OBJECTIVE) -> SweepResult:
    """Optimal geometry against the imbalance ratio R, with and/or without ReLU (reduced program; with a
    cross-entropy ``objective``, its certified gradient-descent solve).

    Each point is ``Problem.from_profile(profile, k, n_max, R, minority_fraction)``: exactly the ratio
    R (``n_max / R`` a whole number), or the sweep is refused before any point is solved."""
    _check_objective(objective, check_gd, "imbalance")
    points, problems = imbalance_problems(ratios, profile=profile, k=k, n_max=n_max,
                                          minority_fraction=minority_fraction, tau=tau, relu_options=relu_options,
                                          objective=objective)
    series: dict = {}
    counts_used = []
    rows = _reduced_points(problems, profile, check_gd, gd_starts,
                           minority_fraction if profile == "step" else None, "sweep imbalance", progress)
    for (ratio, relu), problem, row in zip(points, problems, rows):
        _append(series, "ReLU" if relu else "no ReLU", row)
        if relu == points[0][1]:
            counts_used.append(list(problem.counts))
    meta = {"profile": profile, "k": k, "n_max": n_max,
            "tau": problems[0].tau if uses_tau(objective) else None, "counts": counts_used,
            "loss": _loss_label(objective)}
    if profile == "step":
        meta["minority_fraction"] = minority_fraction
    return SweepResult("imbalance", [float(r) for r in ratios], "imbalance ratio R", series, meta)


def sweep_temperature(taus: Sequence[float], counts: Sequence[int], *, relu_options: Sequence[bool] = (False, True),
                      check_gd: bool = False, gd_starts: int = 4, progress: Progress | None = None,
                      objective: ObjectiveOptions = DEFAULT_OBJECTIVE) -> SweepResult:
    """Optimal geometry against the temperature tau for fixed counts (reduced program; with a
    fixed-classifier cross-entropy ``objective``, its certified gradient-descent solve)."""
    _check_objective(objective, check_gd, "temperature")
    points, problems = temperature_problems(taus, counts, relu_options=relu_options, objective=objective)
    series: dict = {}
    profile = "step" if len(set(problems[0].counts)) <= 2 else "long-tail"
    rows = _reduced_points(problems, profile, check_gd, gd_starts, None, "sweep temperature", progress)
    for (tau, relu), row in zip(points, rows):
        _append(series, "ReLU" if relu else "no ReLU", row)
    return SweepResult("temperature", [float(t) for t in taus], "temperature tau", series,
                       {"counts": list(problems[0].counts),
                        "loss": _loss_label(objective)})


#: The batching sweep's schemes: ``fixed-random`` is one random partition drawn once (the same batches
#: every epoch), which can break docs/theory.md section 4's conditions; the others are
#: :class:`~ufm.batching.Batching` schemes.
BATCHING_SCHEMES = ("fixed-random", "random", "balanced", "binding")


def batching_for(scheme: str, batch_size: int, counts: Sequence[int], seed: int) -> Batching:
    """A :class:`~ufm.batching.Batching` by name (:data:`BATCHING_SCHEMES`)."""
    from ufm.batching import Batching

    if scheme not in BATCHING_SCHEMES:
        raise ProblemError(f"unknown batching scheme {scheme!r}; use one of {', '.join(BATCHING_SCHEMES)}")
    if batch_size >= sum(counts):
        raise ProblemError(f"a batch size of {batch_size} puts all n = {sum(counts)} examples in one batch: "
                           "that is full batching; use batch sizes below n")
    if scheme == "fixed-random":
        return Batching.from_lists(Batching.random(batch_size).batches(counts, seed=seed))
    return Batching(scheme, batch_size=batch_size)


def batching_problems(batch_sizes: Sequence[int], counts: Sequence[int], *, tau: float = 0.5,
                      schemes: Sequence[str] = ("fixed-random", "random", "binding"), relu: bool = True,
                      seed: int = 0) -> tuple[list[tuple], list[Problem]]:
    """The points ``(batch size, scheme)`` of :func:`sweep_batching` and their problems (validated,
    unsolved)."""
    schemes = _values(schemes, "the list of schemes")
    if len(set(schemes)) != len(schemes):
        raise ProblemError(f"the list of schemes names one twice ({', '.join(schemes)})")
    points = [(b, s) for b in _values(batch_sizes, "the list of batch sizes") for s in schemes]
    return points, _problems(points, lambda size, scheme: Problem.from_counts(
        counts, tau=tau, relu=relu, seed=seed, batching=batching_for(scheme, size, counts, seed)))


def sweep_batching(batch_sizes: Sequence[int], counts: Sequence[int], *, tau: float = 0.5,
                   schemes: Sequence[str] = ("fixed-random", "random", "binding"), relu: bool = True,
                   seed: int = 0, progress: Progress | None = None) -> SweepResult:
    """Geometry reached by gradient descent under mini-batching, against the batch size, per scheme
    (``random`` and ``balanced`` reshuffle every epoch, ``binding`` is batch-binding, ``fixed-random``
    keeps one random partition): distance of the mean Gram to the orthogonal frame and to the ETF,
    NC1, and whether the epoch-0 batches meet docs/theory.md section 4's conditions. Every point's
    problem is built before any is solved; a point that cannot be posed (binding with a batch size
    <= k, batches without a positive pair) refuses the sweep."""
    from ufm.batching import check_conditions
    from solvers.gd import solve

    points, problems = batching_problems(batch_sizes, counts, tau=tau, schemes=schemes, relu=relu, seed=seed)
    series: dict = {}
    k = problems[0].k
    for (size, scheme), problem in each(list(zip(points, problems)), "sweep batching", progress):
        sol = solve(problem, seed=seed)
        M = sol.class_mean_gram
        _append(series, scheme, {"dist:OF": normalized_distance(M, orthogonal_frame_gram(k)),
                                 "dist:ETF": normalized_distance(M, etf_gram(k)),
                                 "nc1": nc1(sol.embeddings, problem.labels)[0], "loss": sol.loss,
                                 "conditions_met": check_conditions(problem.labels, problem.batches()).orthogonal_frame,
                                 "status": sol.status})
    return SweepResult("batching", [float(b) for b in batch_sizes], "batch size", series,
                       {"counts": list(problems[0].counts), "tau": tau, "relu": relu})


def nonfinite_points(result: SweepResult) -> list[str]:
    """'series at x: quantity' for every numeric value of the sweep that is NaN or infinite."""
    return [f"{name} at {x:g}: {quantity}" for name, quantities in result.series.items()
            for quantity, values in quantities.items()
            for x, v in zip(result.x, values)
            if isinstance(v, float) and not np.isfinite(v)]
