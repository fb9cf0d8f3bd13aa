"""The result of a solver (ARCHITECTURE.md "Data")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: ``optimal``: a certificate proves the value to its tolerance (relative gap on the excess);
#: ``stationary``: the solver stopped at a point the certificate does not prove global; ``converged``:
#: stopped, no certificate computed; ``optimal_inaccurate``: a convex program whose certified bracket
#: fails; ``not_converged``; ``error``.
STATUSES = ("optimal", "stationary", "converged", "optimal_inaccurate", "not_converged", "error")


@dataclass(frozen=True)
class Solution:
    """What a solver returns.

    - ``method``: ``"gd"``, ``"convex"`` or ``"reduced"``.
    - ``embeddings``: (n, d) unit rows, or None where only a Gram is known.
    - ``gram``: (n, n) example Gram (convex solver) or None.
    - ``class_mean_gram``: (k, k) Gram of the class means of the unit-norm embeddings.
    - ``loss``: SCL loss of the solution, sum reduction, over the problem's batching (epoch 0).
    - ``excess``: the loss minus its geometry-free constant (docs/theory.md "The excess form"), to full
      relative precision (0 where it underflows: see ``log_excess``); ``log_excess``: its logarithm.
    - ``certificate``: a :class:`solvers.certificate.Certificate` (lower bound, gap, relative gap on
      the excess, certified) or None where none was computed.
    - ``lower_bound``: a valid lower bound on the optimal loss: the certificate's, never a feasible
      value; None without a certificate.
    - ``status``: one of :data:`STATUSES`; ``message`` says what went wrong, if anything.
    - ``iterations``, ``seconds``; ``extra``: solver-specific diagnostics (residuals, history, ...).
    """

    method: str
    class_mean_gram: np.ndarray
    loss: float
    status: str
    embeddings: np.ndarray | None = None
    gram: np.ndarray | None = None
    lower_bound: float | None = None
    iterations: int = 0
    seconds: float = 0.0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    excess: float | None = None
    log_excess: float | None = None
    certificate: Any = None

    @property
    def ok(self) -> bool:
        """Whether the solver reports full success (``optimal``, or ``converged`` where no certificate
        was asked for)."""
        return self.status in ("optimal", "converged")


def join(*parts: str) -> str:
    """Messages joined by '; ', empty parts dropped."""
    return "; ".join(p for p in parts if p)


def certified_status(status: str, message: str, certificate,
                     unproved: str = "stationary") -> tuple[str, str]:
    """The status a certificate proves (docs/theory.md "Statuses"): ``optimal`` when it certifies the
    point (whatever the solver said, except ``error``); otherwise ``stationary`` for a solver that
    stopped (``converged``; ``unproved`` names it: ``"optimal_inaccurate"`` for a convex program), the
    solver's own word for ``not_converged`` / ``error``, each with the gap in the message. Without a
    certificate the status is unchanged."""
    if certificate is None or status == "error":
        return status, message
    gap = (f"relative gap {certificate.relative_gap:.3g} on the excess (tolerance "
           f"{certificate.tolerance:g})")
    if certificate.certified:
        return "optimal", join(message if status != "converged" else "", f"certified: {gap}")
    note = f"the certificate does not prove this point globally optimal: {gap}"
    if str(certificate.method).startswith("failed"):
        note = f"the certificate {certificate.method}, so it proves nothing here: {gap}"
    if status in ("converged", "optimal", "stationary"):
        return unproved, join(note, message)
    return status, join(message, note)
