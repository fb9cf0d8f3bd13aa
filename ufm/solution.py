"""The result of a solver (docs/architecture.md, "The flow of a problem through a solve")."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

class Status(str, Enum):
    """What a solve proved (docs/theory.md "Statuses"). A ``str`` subclass: it compares equal to, and
    prints and serialises as, its value (``Status.OPTIMAL == "optimal"``).

    - ``optimal``: a certificate proves the value to its tolerance (relative gap on the excess);
    - ``stationary``: the solver stopped at a point the certificate does not prove global;
    - ``converged``: stopped, no certificate computed;
    - ``optimal_inaccurate``: a convex program whose certified bracket fails;
    - ``not_converged``: out of steps; ``error``: non-finite values, or no solution.
    """

    OPTIMAL = "optimal"
    STATIONARY = "stationary"
    CONVERGED = "converged"
    OPTIMAL_INACCURATE = "optimal_inaccurate"
    NOT_CONVERGED = "not_converged"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


STATUSES = tuple(s.value for s in Status)


# ---------------------------------------------------------------- typed solver records
@dataclass(frozen=True)
class Certificate:
    """A proved lower bound on the optimum (docs/theory.md "Certificates").

    ``excess``: E at the solution; ``lower_bound``: a valid lower bound on the optimal loss
    (sum reduction); ``excess_lower_bound``: on the optimal excess E* (>= 0); ``gap``: loss minus
    lower bound (= excess minus its bound); ``relative_gap``: gap / excess; ``certified``:
    relative_gap <= ``tolerance``; ``method``: how lambda_min was bounded (``"cholesky"``: a
    factorisation of the shifted slack, ``"dense"``: its smallest eigenvalue, ``"lanczos"``,
    ``"exact"`` where E = 0); ``lambda_min``: a lower bound on that of the slack, in units of E;
    ``seconds``: the wall time of the certificate, of which ``compile_seconds`` went to building
    compiled programs (:func:`ufm.programs.compile_seconds`; 0 where they were built before)."""

    excess: float
    log_excess: float
    lower_bound: float
    excess_lower_bound: float
    gap: float
    relative_gap: float
    certified: bool
    tolerance: float
    seconds: float
    method: str
    lambda_min: float
    compile_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"lower_bound": self.lower_bound, "excess_lower_bound": self.excess_lower_bound,
                "gap": self.gap, "relative_gap": self.relative_gap, "certified": self.certified,
                "tolerance": self.tolerance, "seconds": self.seconds, "compile_seconds": self.compile_seconds,
                "method": self.method, "lambda_min": self.lambda_min}



@dataclass(frozen=True)
class Level:
    """One rank of the staircase (:mod:`solvers.staircase`): the point's ``rank`` (its dimension), the slack's ``lambda_min``
    (units of E; None where the certificate proved the point), whether it ``escaped`` (and the
    dimensions it ``lifted``, the step ``t`` and the direction's ``kind``: ``"eigenvector"``, ``"positive part"``, ``"negative part"``,
    ``"absolute value"``, ``"random"``), the eigensolver's ``matvecs`` (0 for dense ``eigh``), the
    ``seconds`` of its eigensolve and line search, and ``log_excess`` before and after the escape."""

    rank: int
    lambda_min: float | None
    escaped: bool
    matvecs: int
    seconds: float
    log_excess: float
    log_excess_after: float | None = None
    step: float | None = None
    kind: str | None = None
    lifted: int = 0

    def to_dict(self) -> dict:
        return {"rank": self.rank, "lambda_min": self.lambda_min, "escaped": self.escaped,
                "lifted": self.lifted, "matvecs": self.matvecs, "seconds": self.seconds,
                "log_excess": self.log_excess, "log_excess_after": self.log_excess_after, "step": self.step,
                "kind": self.kind}


@dataclass(frozen=True)
class Staircase:
    """The staircase's account: its ``levels``, the number of ``escapes`` and why it stopped
    (``stop``: ``"certified"``, ``"escape cap"``, ``"no negative curvature"``,
    ``"eigensolver not converged"``, ``"no decrease"``, ``"descent failed"``), and ``rank``, the
    numerical rank of the last point's Gram (None where not computed)."""

    levels: tuple[Level, ...]
    escapes: int
    stop: str
    rank: int | None = None

    def to_dict(self) -> dict:
        return {"levels": [level.to_dict() for level in self.levels], "escapes": self.escapes,
                "stop": self.stop, "rank": self.rank}


@dataclass(frozen=True)
class DescentInfo:
    """How a gradient-descent solve ran (:mod:`solvers.gd`, :mod:`solvers.generic`).

    - ``optimizer``: its name, or ``"custom"`` for a user's optax transform; ``objective``: ``"scl"``
      or another objective's name; ``dtype`` of the run;
    - ``tol``, ``grad_tol``: the stopping tolerances; ``value_change``: the last change of the solver's
      value (for SCL, |log E_k - log E_(k-1)|: the relative change of the excess);
      ``direction_norm``: the last ||descent direction||_F (the Riemannian gradient's norm);
    - ``solver_value``: the solver's own (float32 or float64) last value (SCL: log E);
    - ``loss_history``, ``excess_history``: the loss and excess after each epoch (SCL);
    - ``mean_gram_checkpoints``: ``{"epochs": [...], "grams": [(k, k), ...]}``, the class-mean Gram
      at the start and after epochs 1, 2, 4, ... (SCL);
    - ``last_step_size``: the BB step at the end (where the transform has one);
    - ``evaluations``: loss-and-gradient evaluations of the run where the search counts them (the
      default optimiser on a deterministic batching: 1 at the start plus one per trial of every
      search, the accepted trial's evaluation being reused as the next step's, plus 1 for the precise
      form's first evaluation after a plain phase; of the last run, where
      a temperature continuation or the tied polish ran several), else None;
    - ``plain_epochs``: epochs whose steps evaluated the plain form (``solvers.gd.PLAIN_SWITCH``; 0
      where that phase is not compiled); their ``excess_history`` entries are the plain form's, the
      last entry and ``solver_value`` the precise one's;
    - ``polish``: what the tied polish did, if it ran; ``polished_from_iterations``: epochs before it;
    - ``metrics``: numbers an objective reports about its point (cross-entropy: ``self_duality``,
      ``classifier``, ``bias``), by that objective's names;
    - ``staircase``: the escapes from a stall (:class:`Staircase`), where the staircase ran.
    """

    optimizer: str
    objective: str = "scl"
    dtype: str = "float64"
    tol: float | None = None
    grad_tol: float | None = None
    value_change: float | None = None
    direction_norm: float | None = None
    solver_value: float | None = None
    loss_history: list[float] = field(default_factory=list)
    excess_history: list[float] = field(default_factory=list)
    mean_gram_checkpoints: dict[str, list] | None = None
    last_step_size: float | None = None
    evaluations: int | None = None
    plain_epochs: int = 0
    polish: str | None = None
    polished_from_iterations: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    staircase: Staircase | None = None


@dataclass(frozen=True)
class DualBracket:
    """The n x n program's bracket on its optimum, resting on no solver's word (:mod:`solvers.bound`):
    ``lower`` the best dual bound at the solver's Gram, ``upper`` the smaller of the embeddings' loss
    and the objective at a feasible Gram near the solver's, ``gap`` = upper - lower;
    ``polished_multipliers``: the multipliers were polished by one small SDP (a loose bracket)."""

    lower: float
    upper: float
    gap: float
    polished_multipliers: bool = False


@dataclass(frozen=True)
class FactoredRun:
    """The factored reduced path (:func:`solvers.reduced.solve_factored`): ``direction_norm`` (the
    Riemannian gradient of log E at the best start), ``starts_tried``, and ``fallback_relative_gap``
    (its certificate's relative gap where it fell back to the general program)."""

    direction_norm: float
    starts_tried: int
    fallback_relative_gap: float | None = None


@dataclass(frozen=True)
class BlockValues:
    """The block reduced program's solution (:func:`solvers.reduced.solve_block`): ``a`` (q,) within
    each group of equal counts, ``b`` (q, q) between groups, the groups' ``sizes`` and ``counts``, and
    ``determinant`` det T (0 at a rank k - 1 optimum)."""

    a: list[float]
    b: list[list[float]]
    sizes: list[int]
    counts: list[int]
    determinant: float


@dataclass(frozen=True)
class ProgramInfo:
    """How a convex or reduced program ran (:mod:`solvers.convex`, :mod:`solvers.reduced`).

    - ``program``: ``"relaxation"`` (n x n), ``"factored"``, ``"block"`` or ``"general"`` (reduced);
    - ``solver``: the cvxpy solver's name or ``"factored-descent"``; ``solver_status``: its own word;
      ``solver_word``: the status before the certificate judged (n x n); ``solver_value``: its
      objective value (the factored path: its log E);
    - ``residuals``: of the Gram judged (``min_eigenvalue``, ``max_diag_error``, ``min_entry`` with
      ReLU, ``max_asymmetry``); ``solver_residuals``: of the solver's raw Gram (reduced cvxpy);
    - ``factor``: how the embeddings were made from the Gram (method, residual);
    - ``embedding_loss``: the loss of the recovered embeddings (reduced; None above
      ``EMBEDDING_LOSS_MAX_N``); ``feasible_upper_bound``: the same for the n x n program where the
      embeddings are feasible; ``rank``: the Gram's numerical rank (n x n) or the factor's rank
      (factored); ``tight``: rank <= dim (n x n);
    - one record per path: ``factored`` (:class:`FactoredRun`), ``block`` (:class:`BlockValues`),
      ``bracket`` (:class:`DualBracket`, the n x n program's).
    """

    program: str
    solver: str
    solver_status: str | None = None
    solver_word: str | None = None
    solver_value: float | None = None
    residuals: dict[str, float] | None = None
    solver_residuals: dict[str, float] | None = None
    factor: dict[str, Any] | None = None
    embedding_loss: float | None = None
    feasible_upper_bound: float | None = None
    rank: int | None = None
    tight: bool | None = None
    factored: FactoredRun | None = None
    block: BlockValues | None = None
    bracket: DualBracket | None = None


@dataclass(frozen=True)
class Starts:
    """How several starts ended (:func:`theory_checks.report.best_start`): ``tried``, the index
    ``kept``, and the number that ended with each status."""

    tried: int
    kept: int
    ended: dict[str, int]

    def to_dict(self) -> dict[str, int]:
        return {"tried": self.tried, "kept": self.kept, **self.ended}


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
    - ``status``: a :class:`Status` (a string given is converted; an unknown one is a ValueError);
      ``message`` says what went wrong, if anything.
    - ``iterations``, ``seconds``; ``info``: the solver's typed record (:class:`DescentInfo` or
      :class:`ProgramInfo`); ``starts``: how several starts ended, where there were several.
    """

    method: str
    class_mean_gram: np.ndarray
    loss: float
    status: Status
    embeddings: np.ndarray | None = None
    gram: np.ndarray | None = None
    lower_bound: float | None = None
    iterations: int = 0
    seconds: float = 0.0
    message: str = ""
    info: DescentInfo | ProgramInfo | None = None
    excess: float | None = None
    log_excess: float | None = None
    certificate: Certificate | None = None
    starts: Starts | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def ok(self) -> bool:
        """Whether the solver reports full success (``optimal``, or ``converged`` where no certificate
        was asked for)."""
        return self.status in (Status.OPTIMAL, Status.CONVERGED)


def join(*parts: str) -> str:
    """Messages joined by '; ', empty parts dropped."""
    return "; ".join(p for p in parts if p)


def certified_status(status: str, message: str, certificate: Certificate | None,
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
