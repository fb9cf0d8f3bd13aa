"""The report of a solve: the metrics of a solution held against the prediction (the object that
``ufm solve`` prints), and the choice of the start to keep among several."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ufm.lognumber import exact
from ufm.geometry import etf_gram, nc1, normalized_distance, orthogonal_frame_gram, within_class_spread
from ufm.problem import Problem
from ufm.solution import DescentInfo, ProgramInfo, Solution, Starts
from theory_checks.predictions import Prediction


def solution_report(problem: Problem, solution: Solution, prediction: Prediction) -> dict:
    """The JSON-ready report of one solve (the object ``ufm solve --json`` prints, docs/cli.md): the
    solution's loss, excess, certificate, class-mean Gram ``M`` (k, k), NC1, and the normalised
    distances of M to the ETF, the orthogonal frame and the prediction (docs/theory.md section 6)."""

    M = np.asarray(solution.class_mean_gram)
    report = {
        "method": solution.method, "counts": list(problem.counts), "tau": problem.tau,
        "relu": problem.relu, "dim": problem.dim, "batching": problem.batching.scheme,
        "loss": solution.loss, "excess": exact(solution.excess, solution.log_excess),
        "log_excess": solution.log_excess, "lower_bound": solution.lower_bound,
        "certificate": None if solution.certificate is None else _certificate_report(solution.certificate),
        "class_mean_gram": M,
        "nc1": nc1(solution.embeddings, problem.labels)[0] if solution.embeddings is not None else None,
        "within_class": (within_class_spread(solution.embeddings, problem.labels)
                         if solution.embeddings is not None else None),
        "distance": {
            "etf": normalized_distance(M, etf_gram(problem.k)),
            "of": normalized_distance(M, orthogonal_frame_gram(problem.k)),
            "predicted": (None if prediction.class_mean_gram is None
                          else normalized_distance(M, prediction.class_mean_gram)),
        },
        "predicted": {"geometry": prediction.geometry, "loss": prediction.loss, "why": prediction.why},
        "status": solution.status, "message": solution.message,
        "iterations": solution.iterations, "seconds": solution.seconds,
    }
    if solution.starts is not None:
        report["starts"] = solution.starts.to_dict()
    if isinstance(solution.info, DescentInfo) and "self_duality" in solution.info.metrics:
        report["self_duality"] = solution.info.metrics["self_duality"]
    if isinstance(solution.info, DescentInfo) and solution.info.staircase is not None:
        report["staircase"] = solution.info.staircase.to_dict()
    if isinstance(solution.info, ProgramInfo) and solution.info.residuals is not None:
        report["residuals"] = solution.info.residuals
    return report


def _certificate_report(certificate) -> dict:
    """The certificate's fields, its gap and excess bound exact where they fall below float64's range
    (:func:`ufm.lognumber.exact`: gap = relative_gap E, bound = (1 - relative_gap) E, from log E)."""
    out = certificate.to_dict()
    log_e, rgap = certificate.log_excess, certificate.relative_gap
    if log_e is not None and np.isfinite(log_e) and np.isfinite(rgap) and 0 < rgap:
        out["gap"] = exact(out["gap"], log_e + float(np.log(rgap)))
        if rgap < 1:
            out["excess_lower_bound"] = exact(out["excess_lower_bound"], log_e + float(np.log1p(-rgap)))
    return out


def best_start(solutions: Sequence[Solution]) -> tuple[Solution, Starts]:
    """The start to keep: the certified one with the smallest relative gap, else the lowest excess;
    with a count of how the starts ended."""
    def key(sol):
        cert = sol.certificate
        certified = cert is not None and cert.certified
        return (0 if certified else 1, cert.relative_gap if certified else 0.0,
                sol.log_excess if sol.log_excess is not None else np.inf)
    ok = [s for s in solutions if s.status != "error"]
    best = min(ok, key=key) if ok else solutions[0]
    counts = {status: sum(s.status == status for s in solutions)
              for status in ("optimal", "stationary", "converged", "not_converged", "error")}
    kept = next(i for i, s in enumerate(solutions) if s is best)   # identity: Solutions hold arrays
    return best, Starts(len(solutions), kept, counts)
