"""The result of a solver (ARCHITECTURE.md "Data")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STATUSES = ("optimal", "optimal_inaccurate", "converged", "not_converged", "error")


@dataclass(frozen=True)
class Solution:
    """What a solver returns.

    - ``method``: ``"gd"``, ``"convex"`` or ``"reduced"``.
    - ``embeddings``: (n, d) unit rows, or None where only a Gram is known.
    - ``gram``: (n, n) example Gram (convex solver) or None.
    - ``class_mean_gram``: (k, k) Gram of the class means of the unit-norm embeddings.
    - ``loss``: SCL loss of the solution, sum reduction, over the problem's batching.
    - ``lower_bound``: the convex optimum (a certified lower bound) or None.
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

    @property
    def ok(self) -> bool:
        """Whether the solver reports full success (``optimal`` or ``converged``)."""
        return self.status in ("optimal", "converged")
