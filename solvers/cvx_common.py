"""What the two convex programs share: solver choice and tolerances, status mapping, constraint
residuals (docs/theory.md section 3, "never trust a status alone")."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ufm.errors import ProblemError

if TYPE_CHECKING:   # cvxpy is imported where a program is solved (the size checks need none of it)
    import cvxpy as cp

#: Interior-point defaults. docs/theory.md section 3: 1e-9 or better is needed for 1e-6 agreement of
#: values; Grams need more (the loss is flat to second order: at 1e-10 a k x k mean Gram was seen
#: 1e-5 off with the value right to 1e-10), yet 1e-11 and 1e-12 often end "AlmostSolved"; 1e-10 it is, with
#: Gram entries trusted to ~1e-5 (compare the value, and cross-check programs).
CLARABEL_OPTIONS: dict[str, Any] = {
    "tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "tol_ktratio": 1e-8,
    "max_iter": 400,
}
#: First-order SCS: as tight as it will go; it is often inaccurate (docs/theory.md section 3).
SCS_OPTIONS: dict[str, Any] = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000}

#: A Gram whose constraint residuals exceed this is reported ``optimal_inaccurate`` whatever the
#: solver said.
RESIDUAL_TOL = 1e-6

#: An ``optimal_inaccurate`` solve counts as ``optimal`` when a rigorous bracket (a certified lower
#: bound, and the objective at an exactly feasible point near the solver's) is this narrow relative to
#: max(1, |value|): docs/theory.md section 3 asks 1e-9 or better of the solver's tolerance for values.
CERTIFIED_GAP_TOL = 1e-9

SOLVERS = ("CLARABEL", "SCS")


def solver_call(solver: str | None, options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """``(solver name, keyword arguments for cvxpy's Problem.solve)``; Clarabel by default."""
    name = "CLARABEL" if solver is None else str(solver).upper()
    if name not in SOLVERS:
        raise ProblemError(f"unknown convex solver {solver!r}; use one of {', '.join(SOLVERS)}")
    if options is not None and not (isinstance(options, dict) and all(isinstance(k, str) for k in options)):
        raise ProblemError(f"solver_options must be a dict of setting names to values (got {options!r})")
    if name == "CLARABEL" and options:
        import clarabel

        known = {k for k in dir(clarabel.DefaultSettings()) if not k.startswith("_")}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ProblemError(f"Clarabel has no setting {unknown[0]!r}; its settings are "
                               f"{', '.join(sorted(known))}")
    base = dict(CLARABEL_OPTIONS if name == "CLARABEL" else SCS_OPTIONS)
    base.update(options or {})
    return name, base


def solve(program: cp.Problem, solver: str | None, options: dict[str, Any] | None) -> tuple[str, str, str]:
    """Run ``program``; returns ``(status, raw cvxpy status, message)`` with status one of
    ``optimal`` / ``optimal_inaccurate`` / ``error``. A solver exception becomes ``error``."""
    import cvxpy as cp

    name, kwargs = solver_call(solver, options)
    try:
        with warnings.catch_warnings():
            # cvxpy warns "Solution may be inaccurate"; the status says so in the Solution instead
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            program.solve(solver=name, **kwargs)
    except cp.error.SolverError as err:
        return "error", "solver_error", f"{name} failed: {err}"
    except TypeError as err:              # a setting the solver does not take (SCS names them late)
        raise ProblemError(f"solver_options: {err}") from None
    raw = str(program.status)
    if raw == cp.OPTIMAL:
        return "optimal", raw, ""
    if raw == cp.OPTIMAL_INACCURATE:
        return "optimal_inaccurate", raw, f"{name} reports an inaccurate solution ({raw})"
    if raw == cp.USER_LIMIT and program.value is not None and np.isfinite(program.value):
        return "optimal_inaccurate", raw, f"{name} stopped at an iteration or time limit ({raw})"
    return "error", raw, f"{name} returned status {raw!r}"


def iterations(program: cp.Problem) -> int:
    stats = program.solver_stats
    return int(stats.num_iters) if stats is not None and stats.num_iters is not None else 0


def gram_residuals(G: np.ndarray, relu_mask: np.ndarray | None) -> dict[str, float]:
    """Constraint residuals of a (relaxed) Gram G (m, m): ``min_eigenvalue`` (PSD: >= 0),
    ``max_diag_error`` (max |G_ii - 1|), ``min_entry`` (most negative entry where the ReLU constraint
    applies, ``relu_mask`` (m, m) bool; None without ReLU), ``max_asymmetry``."""
    G = np.asarray(G, dtype=float)
    sym = (G + G.T) / 2
    out = {
        "min_eigenvalue": float(np.linalg.eigvalsh(sym).min()),
        "max_diag_error": float(np.abs(np.diag(G) - 1.0).max()),
        "max_asymmetry": float(np.abs(G - G.T).max()),
    }
    if relu_mask is not None:
        out["min_entry"] = float(G[relu_mask].min())
    return out


def residual_violation(res: dict[str, float], tol: float = RESIDUAL_TOL) -> str:
    """A message naming the residuals above ``tol`` ('' if none)."""
    bad = []
    if res["min_eigenvalue"] < -tol:
        bad.append(f"min eigenvalue {res['min_eigenvalue']:.2e}")
    if res["max_diag_error"] > tol:
        bad.append(f"diagonal off by {res['max_diag_error']:.2e}")
    if res.get("min_entry", 0.0) < -tol:
        bad.append(f"negative entry {res['min_entry']:.2e} under ReLU")
    if res["max_asymmetry"] > tol:
        bad.append(f"asymmetry {res['max_asymmetry']:.2e}")
    return "; ".join(bad)


def finish_status(status: str, message: str, res: dict[str, float] | None) -> tuple[str, str]:
    """Downgrade ``optimal`` to ``optimal_inaccurate`` when the residuals say so (never hide it)."""
    if res is None:
        return status, message
    bad = residual_violation(res)
    if bad and status == "optimal":
        return "optimal_inaccurate", f"solver said optimal but residuals exceed {RESIDUAL_TOL:g}: {bad}"
    if bad:
        return status, (message + "; " if message else "") + f"residuals: {bad}"
    return status, message
