"""What the theory predicts for a problem (docs/theory.md sections 2-5): geometry, optimal loss, and why.

``predict(problem)`` returns a :class:`Prediction` whose ``why`` names the result that applies and
the hypotheses it needs, or, where no result applies, the hypothesis that failed. The prediction is
the objective's own (capability ``PREDICT``; SCL's cases: :mod:`ufm.objectives.scl.prediction`); where it
names the reduced program (geometry ``"reduced-program"`` without a Gram), it is solved here by
:func:`solvers.reduced.solve_reduced`, certified (capability ``REDUCED``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ufm.objectives import Capability, excess_constant, objective_of, require
from ufm.problem import Problem, require_problem
from solvers.reduced import solve_reduced

GEOMETRIES = ("etf", "orthogonal-frame", "reduced-program", "prototypes", "zero", "none")


@dataclass(frozen=True)
class Prediction:
    """``geometry``: one of :data:`GEOMETRIES`; ``loss``: predicted optimal loss (sum reduction) or None;
    ``class_mean_gram``: predicted (k, k) mean Gram or None; ``why``: the result that applies or the
    hypothesis that failed; ``hypotheses``: each hypothesis checked and whether it holds."""

    geometry: str
    loss: float | None
    class_mean_gram: np.ndarray | None
    why: str
    hypotheses: dict[str, bool] = field(default_factory=dict)
    excess: float | None = None

    def to_dict(self) -> dict:
        return {"geometry": self.geometry, "loss": self.loss, "excess": self.excess,
                "class_mean_gram": None if self.class_mean_gram is None else self.class_mean_gram.tolist(),
                "why": self.why, "hypotheses": dict(self.hypotheses)}


def predict(problem: Problem) -> Prediction:
    """The prediction of docs/theory.md for ``problem``: its objective's own ``predict`` (capability
    ``PREDICT``), with the reduced program solved where the prediction names it; one line where the
    objective has no prediction."""
    require_problem(problem, "predict")
    objective = objective_of(problem)
    require(objective, Capability.PREDICT, "predict")
    own = objective.predict(problem)
    hyp = getattr(own, "hypotheses", None)
    if hyp is None:
        hyp = {"objective": problem.objective.name, "relu": problem.relu,
               "balanced": len(set(problem.counts)) == 1}
    hyp = dict(hyp)
    excess = getattr(own, "excess", None)
    if excess is None and own.loss is not None and excess_constant(problem) == 0.0:
        excess = own.loss                      # a loss without a constant is its own excess
    if own.geometry == "reduced-program" and own.class_mean_gram is None:
        reduced = solve_reduced(problem)
        hyp["reduced program certified"] = reduced.status == "optimal"
        why = (f"{own.why} Reduced program: status {reduced.status}, relative gap "
               f"{reduced.certificate.relative_gap:.2g}.")
        return Prediction("reduced-program", float(reduced.loss), np.asarray(reduced.class_mean_gram), why, hyp,
                          reduced.excess)
    return Prediction(own.geometry, own.loss, own.class_mean_gram, own.why, hyp, excess)
