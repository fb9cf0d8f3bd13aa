"""Sweeps: how the optimal geometry moves with the imbalance ratio, the temperature, or the batching.

Each sweep returns a :class:`SweepResult` (JSON-ready numbers; ``ufm.plots.sweep_figure`` draws it).
Full-batch points use the reduced k x k program (fast: counts only enter as weights); ``check_gd``
cross-checks each point with gradient descent from several random starts in one vmapped call and
records the relative gap of the best start to the reduced optimum.

Cosines between class means are reported per block: for STEP imbalance ``maj-maj``, ``maj-min`` and
``min-min`` (averaged over the block; the optimum is block-constant, docs/theory.md section 3); for
long-tail, ``head-head`` (classes 0, 1), ``head-tail`` (0, k-1) and ``tail-tail`` (k-2, k-1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ufm.errors import ProblemError
from ufm.geometry import cosines, etf_gram, nc1, normalized_distance, orthogonal_frame_gram
from ufm.problem import Problem
from ufm.progress import progress


@dataclass
class SweepResult:
    """``x``: the swept values; ``series``: name (e.g. ``"ReLU"``) -> quantity -> values over x.

    Quantities: ``cos:<block>`` (cosines), ``dist:ETF`` and ``dist:OF`` (normalised Frobenius distances
    of the mean Gram), ``loss`` (optimal loss, sum reduction), ``gd_gap`` (with ``check_gd``).
    """

    kind: str
    x: list[float]
    xlabel: str
    series: dict[str, dict[str, list[float]]]
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "x": self.x, "xlabel": self.xlabel, "series": self.series, "meta": self.meta}


def step_counts(k: int, n_max: int, ratio: float, minority_fraction: float = 0.5) -> list[int]:
    """STEP counts with ``n_min = max(2, round(n_max / ratio))`` (rounded so any ratio can be swept)."""
    k_min = int(round(minority_fraction * k))
    return [n_max] * (k - k_min) + [max(2, int(round(n_max / ratio)))] * k_min


def long_tail_counts(k: int, n_max: int, ratio: float) -> list[int]:
    """``n_c = max(2, round(n_max * ratio^(-c/(k-1))))``."""
    return [max(2, int(round(n_max * ratio ** (-c / (k - 1))))) for c in range(k)]


def block_cosines(M: np.ndarray, counts: Sequence[int], profile: str) -> dict[str, float]:
    """Mean cosine between class means per block (see the module docstring)."""
    C = cosines(M)
    k = len(counts)
    if profile == "long-tail":
        return {"head-head": float(C[0, 1]), "head-tail": float(C[0, k - 1]), "tail-tail": float(C[k - 2, k - 1])}
    counts = np.asarray(counts)
    major = counts == counts.max()
    if major.all():  # ratio 1: every pair is majority-majority
        major = np.arange(k) < k - int(round(k / 2))
    off = ~np.eye(k, dtype=bool)
    blocks = {"maj-maj": np.outer(major, major) & off, "maj-min": np.outer(major, ~major),
              "min-min": np.outer(~major, ~major) & off}
    return {name: float(C[mask].mean()) if mask.any() else float("nan") for name, mask in blocks.items()}


def _geometry_row(M: np.ndarray, loss: float, counts, profile: str) -> dict[str, float]:
    k = len(counts)
    row = {f"cos:{name}": value for name, value in block_cosines(M, counts, profile).items()}
    row["dist:ETF"] = normalized_distance(M, etf_gram(k))
    row["dist:OF"] = normalized_distance(M, orthogonal_frame_gram(k))
    row["loss"] = float(loss)
    return row


def _reduced_point(problem: Problem, profile: str, check_gd: bool, gd_starts: int) -> dict:
    """One full-batch sweep point: the reduced program's geometry row, its status, and with
    ``check_gd`` the relative gap of the best of ``gd_starts`` vmapped GD starts."""
    from solvers.convex import solve_reduced

    sol = solve_reduced(problem)
    row = _geometry_row(sol.class_mean_gram, sol.lower_bound, problem.counts, profile)
    row["status"] = sol.status
    if check_gd:
        row["gd_gap"] = _gd_gap(problem, sol.lower_bound, gd_starts)
    return row


def _gd_gap(problem: Problem, optimum: float, starts: int) -> float:
    from solvers.gd import solve_many

    best = min(s.loss for s in solve_many(problem, list(range(starts))))
    return float((best - optimum) / abs(optimum))


def _append(series: dict, name: str, row: dict) -> None:
    target = series.setdefault(name, {})
    for key, value in row.items():
        target.setdefault(key, []).append(value)


def sweep_imbalance(ratios: Sequence[float], *, profile: str = "step", k: int = 4, n_max: int = 20,
                    minority_fraction: float = 0.5, tau: float = 0.5, relu_options=(False, True),
                    check_gd: bool = False, gd_starts: int = 4, show_progress: bool = True) -> SweepResult:
    """Optimal geometry against the imbalance ratio R, with and without ReLU (reduced program)."""
    if min(ratios) < 1:
        raise ProblemError(f"imbalance ratios must be >= 1 (got {min(ratios):g}); R = n_max / n_min")
    series: dict = {}
    counts_used = []
    points = [(r, relu) for r in ratios for relu in relu_options]
    for ratio, relu in progress(points, label="sweep imbalance", enabled=show_progress):
        counts = (step_counts(k, n_max, ratio, minority_fraction) if profile == "step"
                  else long_tail_counts(k, n_max, ratio))
        problem = Problem.from_counts(counts, tau=tau, relu=relu)
        _append(series, "ReLU" if relu else "no ReLU", _reduced_point(problem, profile, check_gd, gd_starts))
        if not relu or len(relu_options) == 1:
            counts_used.append(counts)
    return SweepResult("imbalance", [float(r) for r in ratios], "imbalance ratio R", series,
                       {"profile": profile, "k": k, "n_max": n_max, "tau": tau, "counts": counts_used,
                        "minority_fraction": minority_fraction})


def sweep_temperature(taus: Sequence[float], counts: Sequence[int], *, relu_options=(False, True),
                      check_gd: bool = False, gd_starts: int = 4, show_progress: bool = True) -> SweepResult:
    """Optimal geometry against the temperature tau for fixed counts (reduced program)."""
    series: dict = {}
    profile = "step" if len(set(counts)) <= 2 else "long-tail"
    points = [(t, relu) for t in taus for relu in relu_options]
    for tau, relu in progress(points, label="sweep temperature", enabled=show_progress):
        problem = Problem.from_counts(counts, tau=tau, relu=relu)
        _append(series, "ReLU" if relu else "no ReLU", _reduced_point(problem, profile, check_gd, gd_starts))
    return SweepResult("temperature", [float(t) for t in taus], "temperature tau", series,
                       {"counts": list(counts)})


def batching_for(scheme: str, batch_size: int, counts: Sequence[int], seed: int):
    """A :class:`~ufm.batching.Batching` by name; ``"fixed-random"`` is one random partition drawn once
    (the same batches every epoch), which can break docs/theory.md section 4's conditions."""
    from ufm.batching import Batching

    if scheme == "fixed-random":
        return Batching.from_lists(Batching.random(batch_size).batches(counts, seed=seed))
    return Batching(scheme, batch_size=batch_size)


def sweep_batching(batch_sizes: Sequence[int], counts: Sequence[int], *, tau: float = 0.5,
                   schemes: Sequence[str] = ("fixed-random", "random", "binding"), relu: bool = True,
                   seed: int = 0, show_progress: bool = True) -> SweepResult:
    """Geometry reached by gradient descent under mini-batching, against the batch size, per scheme
    (``random`` and ``balanced`` reshuffle every epoch, ``binding`` is batch-binding, ``fixed-random``
    keeps one random partition): distance of the mean Gram to the orthogonal frame and to the ETF,
    NC1, and whether the epoch-0 batches meet docs/theory.md section 4's conditions."""
    from ufm.batching import check_conditions
    from solvers.gd import solve

    series: dict = {}
    k = len(counts)
    points = [(b, s) for b in batch_sizes for s in schemes]
    skipped = []
    for size, scheme in progress(points, label="sweep batching", enabled=show_progress):
        try:
            problem = Problem.from_counts(counts, tau=tau, relu=relu, seed=seed,
                                          batching=batching_for(scheme, size, counts, seed))
        except ProblemError as err:   # e.g. batch-binding needs batch size > k: a gap in the line
            skipped.append({"batch_size": size, "scheme": scheme, "reason": str(err)})
            _append(series, scheme, {"dist:OF": float("nan"), "dist:ETF": float("nan"), "nc1": float("nan"),
                                     "loss": float("nan"), "conditions_met": None, "status": "skipped"})
            continue
        sol = solve(problem, seed=seed)
        M = sol.class_mean_gram
        _append(series, scheme, {"dist:OF": normalized_distance(M, orthogonal_frame_gram(k)),
                                 "dist:ETF": normalized_distance(M, etf_gram(k)),
                                 "nc1": nc1(sol.embeddings, problem.labels)[0], "loss": sol.loss,
                                 "conditions_met": check_conditions(problem.labels, problem.batches()).orthogonal_frame,
                                 "status": sol.status})
    return SweepResult("batching", [float(b) for b in batch_sizes], "batch size", series,
                       {"counts": list(counts), "tau": tau, "relu": relu, "skipped": skipped})
