"""Landscape analysis on the constraint set (docs/theory.md section 3, [LAND]).

- :func:`riemannian_hessian_eigenvalues`: the spectrum of the Riemannian Hessian of the loss on the
  product of spheres at H (n, d). For a tangent vector xi (xi_i orthogonal to h_i),

      Hess L(H)[xi]_i = P_i( (nabla^2 L xi)_i ) - <h_i, grad_i L> xi_i,    P_i = I - h_i h_i^T,

  so in an orthonormal tangent basis B (n d, n (d-1)) the matrix is B^T (nabla^2 L - D) B with
  D = blockdiag(<h_i, grad_i L> I_d). With ReLU the Hessian is taken on the face of the nonnegative
  sphere that H lies on (coordinates with h_ij > 0 free, the others fixed at 0).
  Rotations H -> H Q leave the loss unchanged, so a minimiser has about d(d-1)/2 zero eigenvalues
  (fewer on a ReLU face); a minimum has no negative eigenvalue, a saddle at least one.
- :func:`loss_slice`: the loss on a 2-D slice ``R(H + a U + b V)`` through H, with R the retraction
  (rows normalised; with ReLU clipped at 0 first), so every point of the slice is feasible.
- :func:`symmetric_saddle`: a saddle point for contrast: by the principle of symmetric criticality,
  a critical point of the loss restricted to embeddings in which two classes of equal count share
  their rows is a critical point of the full loss; since the global minimiser separates the two
  classes, it is a saddle (its Hessian has a negative eigenvalue).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from ufm.batching import pack
from ufm.constraint_sets import unit_sphere
from ufm.errors import ProblemError
from ufm.objectives import Capability, ObjectiveOptions, implementation, objective_of, require
from ufm.problem import Problem
from ufm.programs import program
from solvers.sizing import MAX_HESSIAN_SIZE


class _LossData(NamedTuple):
    """The problem's epoch-0 batching as the arrays of its objective's ``loss_packed`` (NumPy)."""

    labels: np.ndarray
    tau: np.ndarray
    index: np.ndarray
    valid: np.ndarray
    prototypes: np.ndarray | None
    prototype_labels: np.ndarray | None


class _LossKind(NamedTuple):
    """The static part of the problem's loss: its objective's options (capability ``BATCHED``) and
    whether prototypes are anchors."""

    objective: ObjectiveOptions
    prototype_anchors: bool


def _loss_data(problem: Problem) -> tuple[_LossData, _LossKind]:
    """``(arrays, kind)`` of the problem's loss over its batching at epoch 0."""
    require(objective_of(problem), Capability.BATCHED, "the landscape")
    packed = pack(problem.batches(0))
    W, w_labels = problem.prototype_rows()
    data = _LossData(np.asarray(problem.labels), np.float64(problem.tau), np.asarray(packed.index),
                     np.asarray(packed.valid), None if W is None else np.asarray(W, dtype=np.float64),
                     None if w_labels is None else np.asarray(w_labels))
    return data, _LossKind(problem.objective, bool(problem.prototype_anchors))


def _loss(H, data: _LossData, kind: _LossKind):
    """The loss (sum) of H (n, d): the objective's ``loss_packed`` (the reference path: it has a
    Hessian)."""
    return implementation(kind.objective).loss_packed(H, data.labels, data.tau, data.index, data.valid, "sum",
                                                      data.prototypes, data.prototype_labels,
                                                      kind.prototype_anchors)


def _gradient_and_hessian(H, data: _LossData, *, kind: _LossKind):
    """The Euclidean gradient (n, d) and Hessian (n d, n d) of the loss at H."""
    n, d = H.shape
    flat = lambda x: _loss(x.reshape(n, d), data, kind)  # noqa: E731
    x = H.reshape(-1)
    return jax.grad(flat)(x).reshape(n, d), jax.hessian(flat)(x)


def _gradient(H, data: _LossData, *, kind: _LossKind):
    return jax.grad(_loss)(H, data, kind)


def _losses(points, data: _LossData, *, kind: _LossKind):
    """The loss at each of the points (s, n, d), vmapped."""
    return jax.vmap(lambda H: _loss(H, data, kind))(points)


def _saddle_value_and_grad(x, rows_of, data: _LossData, *, kind: _LossKind, rows: int, d: int):
    """The loss and its gradient in x (rows * d) of H = normalised rows of x, taken by ``rows_of`` (n,)."""
    def f(x):
        X = x.reshape(rows, d)
        return _loss((X / jnp.linalg.norm(X, axis=1, keepdims=True))[rows_of], data, kind)
    return jax.value_and_grad(f)(x)


def _pairs(data: _LossData, batches_wide: int = 1) -> int:
    """Anchor-column pairs of one loss evaluation (the size rule of ufm.programs)."""
    return int(batches_wide * data.index.shape[0] * data.index.shape[1] ** 2)


#: The landscape's derivatives, compiled once per shape and kept (ufm.programs): small problems only
#: (the Hessian is dense), so they compile with the fast options.
_GRADIENT_AND_HESSIAN = program(_gradient_and_hessian, static_argnames=("kind",),
                                cost=lambda H, data, **k: int(H.size) ** 2)
_GRADIENT = program(_gradient, static_argnames=("kind",), cost=lambda H, data, **k: _pairs(data))
_LOSSES = program(_losses, static_argnames=("kind",), cost=lambda points, data, **k: _pairs(data, len(points)))
_SADDLE = program(_saddle_value_and_grad, static_argnames=("kind", "rows", "d"),
                  cost=lambda x, rows_of, data, **k: _pairs(data))


def _tangent_basis(H: np.ndarray, relu: bool, support_tol: float = 1e-8) -> np.ndarray:
    """Orthonormal basis (n d, m) of the tangent space at H (ReLU: of the face H lies on)."""
    n, d = H.shape
    blocks = []
    for i in range(n):
        free = np.flatnonzero(H[i] > support_tol) if relu else np.arange(d)
        E = np.eye(d)[:, free]                      # free coordinates
        h = H[i, free]
        # orthonormal basis of {v in span(E) : <v, h_i> = 0}
        Q, _ = np.linalg.qr(np.column_stack([h, np.eye(len(free))]))
        local = E @ Q[:, 1:len(free)]
        full = np.zeros((n * d, local.shape[1]))
        full[i * d:(i + 1) * d] = local
        blocks.append(full)
    return np.hstack(blocks)


def riemannian_hessian(problem: Problem, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(R, B)``: the Riemannian Hessian R (m, m) of the loss at H (n, d) in the orthonormal tangent
    basis B (n d, m) (module docstring): ``<xi, Hess xi> = c^T R c`` for ``xi = B c``.

    Cost: a dense (n d) x (n d) Euclidean Hessian, so keep n d below a few hundred."""
    H = np.asarray(H, dtype=float)
    n, d = H.shape
    data, kind = _loss_data(problem)
    grad, hess = (np.asarray(a) for a in _GRADIENT_AND_HESSIAN(H, data, kind=kind))
    radial = np.repeat(np.sum(H * grad, axis=1), d)
    B = _tangent_basis(H, problem.relu)
    R = B.T @ (hess - np.diag(radial)) @ B
    return (R + R.T) / 2, B


def riemannian_hessian_eigenvalues(problem: Problem, H: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of the Riemannian Hessian at H (n, d)."""
    return np.linalg.eigvalsh(riemannian_hessian(problem, H)[0])


def riemannian_gradient_norm(problem: Problem, H: np.ndarray) -> float:
    """``||P(grad L)||_F`` on the tangent space (ReLU: of the face H lies on)."""
    H = np.asarray(H, dtype=float)
    data, kind = _loss_data(problem)
    grad = np.asarray(_GRADIENT(H, data, kind=kind))
    B = _tangent_basis(H, problem.relu)
    return float(np.linalg.norm(B.T @ grad.ravel()))


@dataclass
class Slice:
    """``alphas`` (a,), ``betas`` (b,), ``loss`` (b, a) = L(R(H + alpha U + beta V)), ``directions``."""

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    directions: str

    def to_dict(self) -> dict:
        return {"alphas": self.alphas.tolist(), "betas": self.betas.tolist(), "loss": self.loss.tolist(),
                "directions": self.directions}


def loss_slice(problem: Problem, H: np.ndarray, directions: str = "random", radius: float = 1.0,
               resolution: int = 41, seed: int = 0) -> Slice:
    """Loss on a 2-D slice through H along two unit tangent directions.

    ``directions="random"``: two random orthonormal tangent directions; ``"hessian"``: the eigenvectors
    of the two smallest Hessian eigenvalues above the rotation null space (flattest curved directions).
    """
    H = np.asarray(H, dtype=float)
    n, d = H.shape
    B = _tangent_basis(H, problem.relu)
    if B.shape[1] < 2:
        raise ProblemError(f"no 2-D slice through this point: the feasible directions span only {B.shape[1]} "
                           "dimension(s) (with ReLU at small d every row sits on a vertex); raise --dim")
    if directions == "random":
        rng = np.random.default_rng(seed)
        C, _ = np.linalg.qr(rng.standard_normal((B.shape[1], 2)))
        U, V = (B @ C[:, 0]).reshape(n, d), (B @ C[:, 1]).reshape(n, d)
    elif directions == "hessian":
        R, B = riemannian_hessian(problem, H)
        vals, vecs = np.linalg.eigh(R)
        curved = np.flatnonzero(np.abs(vals) > 1e-6 * max(1.0, np.abs(vals).max()))
        if curved.size < 2:
            raise ProblemError(f"no Hessian directions: {curved.size} eigenvalue(s) of the Hessian here stand "
                               "above round-off (1e-6; at small tau the curvature is exp(-1/tau) small); "
                               "use --directions random")
        pick = curved[np.argsort(vals[curved])[:2]]
        U, V = (B @ vecs[:, pick[0]]).reshape(n, d), (B @ vecs[:, pick[1]]).reshape(n, d)
    else:
        raise ValueError(f"unknown directions {directions!r}; use 'random' or 'hessian'")
    data, kind = _loss_data(problem)
    grid = np.linspace(-radius, radius, resolution)
    points = np.stack([unit_sphere(problem.relu).retract(H + a * U + b * V) for b in grid for a in grid])
    values = np.asarray(_LOSSES(points, data, kind=kind)).reshape(resolution, resolution)
    return Slice(grid, grid, values, directions)


def symmetric_saddle(problem: Problem, classes: tuple[int, int] = (0, 1), seed: int = 0) -> np.ndarray:
    """A critical point in which classes ``classes`` (equal counts) share their rows: minimise the loss
    over H restricted to that symmetric subspace (L-BFGS on a normalised parameterisation, float64).
    Returns H (n, d); check it with :func:`riemannian_gradient_norm` and the Hessian spectrum."""
    a, b = classes
    counts = problem.counts
    if counts[a] != counts[b]:
        raise ValueError(f"classes {a} and {b} must have equal counts to be swapped")
    if problem.relu:
        raise ValueError("symmetric_saddle is for the sphere without ReLU")
    starts = np.concatenate([[0], np.cumsum(counts)])
    source = np.arange(problem.n)
    source[starts[b]:starts[b + 1]] = np.arange(starts[a], starts[a + 1])   # class b copies class a
    free_rows = np.unique(source)
    data, kind = _loss_data(problem)
    d = problem.dim
    row_of = np.searchsorted(free_rows, source)

    def objective(x):
        value, grad = _SADDLE(np.asarray(x, dtype=np.float64), row_of, data, kind=kind,
                              rows=len(free_rows), d=d)
        return float(value), np.asarray(grad, dtype=float)

    x0 = np.random.default_rng(seed).standard_normal(len(free_rows) * d)
    result = minimize(objective, x0, jac=True, method="L-BFGS-B",
                      options={"maxiter": 5000, "gtol": 1e-12, "ftol": 1e-15})
    X = result.x.reshape(len(free_rows), d)
    return (X / np.linalg.norm(X, axis=1, keepdims=True))[row_of]




#: The stages of :func:`landscape_data`, in order (its ``on_stage`` reports each as it starts).
LANDSCAPE_STAGES = ("random starts", "convex optimum", "Hessian spectra", "loss slice")


def _hessians(problem: Problem, H: np.ndarray, notes: list[str]) -> dict:
    """``{"minimum", "saddle"}``: Riemannian Hessian eigenvalues at the minimiser H and, without ReLU and
    with two classes of equal count (full batch, no prototypes), at a :func:`symmetric_saddle`; None
    where skipped (too large: a note says so)."""
    hessian: dict = {"minimum": None, "saddle": None}
    if problem.n * problem.dim > MAX_HESSIAN_SIZE:
        notes.append(f"Hessian skipped: n d = {problem.n * problem.dim} > {MAX_HESSIAN_SIZE}")
        return hessian
    hessian["minimum"] = riemannian_hessian_eigenvalues(problem, H).tolist()
    equal = [c for c in range(problem.k) if problem.counts[c] == problem.counts[0]]
    if not problem.relu and len(equal) >= 2 and problem.prototypes is None and problem.is_full_batch:
        saddle = symmetric_saddle(problem, (equal[0], equal[1]))
        hessian["saddle"] = riemannian_hessian_eigenvalues(problem, saddle).tolist()
        notes.append(f"saddle: classes {equal[0]} and {equal[1]} share rows; gradient norm "
                     f"{riemannian_gradient_norm(problem, saddle):.2g}")
    return hessian


def _distances_to(target: np.ndarray, solution) -> tuple[list[int], list[float]]:
    """``(epochs, distances)``: the normalised distance of the solve's class-mean Gram to ``target`` at
    its checkpoints (the start, after epochs 1, 2, 4, ...) and where it stopped."""
    from ufm.geometry import normalized_distance

    snapshots = solution.info.mean_gram_checkpoints
    checkpoints = list(snapshots["epochs"])
    distances = [normalized_distance(np.asarray(M), target) for M in snapshots["grams"]]
    if not checkpoints or checkpoints[-1] < solution.iterations:
        checkpoints.append(solution.iterations)
        distances.append(normalized_distance(solution.class_mean_gram, target))
    return checkpoints, distances


def landscape_data(problem: Problem, starts: int = 20, slice_directions: str = "random",
                   resolution: int = 31, radius: float = 1.0,
                   on_stage: Callable[[str], None] | None = None) -> dict:
    """The numbers behind ``ufm landscape`` (JSON-ready). ``on_stage`` (optional) is called with the
    name of each of :data:`LANDSCAPE_STAGES` as it starts (a front end's progress).

    - ``gaps``: (loss - convex optimum) / |optimum| of ``starts`` random starts (one vmapped call);
    - ``slice``: :func:`loss_slice` through the best start's embeddings;
    - ``hessian``: Riemannian Hessian eigenvalues at that minimiser and, without ReLU and with two
      classes of equal count, at a :func:`symmetric_saddle` (None where skipped);
    - ``curves``: the best start's relative loss gap per epoch, and the distance of its mean Gram to the
      predicted one at the start, after epochs 1, 2, 4, ... (the solver's own snapshots) and where it stopped.
    """
    from solvers.convex import convex_optimum
    from solvers.gd import solve_many
    from theory_checks.predictions import predict
    from ufm.geometry import procrustes_distance

    stage = on_stage or (lambda name: None)
    seeds = [problem.seed + s for s in range(starts)]
    stage(LANDSCAPE_STAGES[0])
    solutions = solve_many(problem, seeds, escape=False)       # the landscape shows the stalls themselves
    stage(LANDSCAPE_STAGES[1])
    optimum = convex_optimum(problem)
    # no certified bound (a failed convex solve): the gaps are NaN and the notes say why
    bound = float("nan") if optimum.lower_bound is None else float(optimum.lower_bound)
    scale = abs(bound) if bound != 0 else 1.0      # an optimum of 0 (tiny tau, pairs): absolute gaps
    gaps = [(s.loss - bound) / scale for s in solutions]
    best = int(np.argmin([s.loss for s in solutions]))
    H = solutions[best].embeddings
    prediction = predict(problem)
    target = prediction.class_mean_gram if prediction.class_mean_gram is not None else optimum.class_mean_gram
    notes = [] if optimum.lower_bound is not None else [
        f"no lower bound from the convex optimum ({optimum.status}: {optimum.message}); gaps are NaN"]
    stage(LANDSCAPE_STAGES[2])
    hessian = _hessians(problem, H, notes)
    history = np.asarray(solutions[best].info.loss_history, dtype=float)
    stage(LANDSCAPE_STAGES[3])
    try:
        slice_data = loss_slice(problem, H, slice_directions, radius, resolution, seed=problem.seed).to_dict()
    except ProblemError as err:
        slice_data = None
        notes.append(f"slice skipped: {err}")
    checkpoints, distances = _distances_to(target, solutions[best])
    return {
        "problem": problem.describe(), "optimum": bound, "optimum_status": optimum.status,
        "predicted_geometry": prediction.geometry, "gaps": gaps,
        "statuses": [s.status for s in solutions],
        "optimal": sum(s.status == "optimal" for s in solutions),
        "stationary": sum(s.status == "stationary" for s in solutions),
        "max_procrustes_residual": max(procrustes_distance(s.embeddings, H) for s in solutions),
        "slice": slice_data,
        "hessian": hessian,
        "curves": {"loss_gap": ((history - bound) / scale).tolist(), "checkpoints": checkpoints,
                   "distance": distances},
        "notes": notes,
    }
