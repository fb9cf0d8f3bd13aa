"""Gradient descent for the UFM + SCL on the sphere (and the nonnegative sphere, ReLU).

Constraint set (docs/theory.md section 1), one row per example, H (n, d):

    S   = { H : ||h_i|| = 1 for every i }                      (no ReLU)
    S_+ = { H : ||h_i|| = 1 and h_i >= 0 for every i }         (ReLU)

Objective: log E, the logarithm of the excess of the SCL loss (sum reduction) over the problem's
batching (``ufm.objectives.scl.precise.log_excess_packed``, the fused kernel; docs/theory.md section 3a): the
loss minus its constant, to full relative precision at any tau (the loss itself does not resolve the geometry below tau ~ 0.07).
With a deterministic batching of at least ``PLAIN_MIN_WIDTH`` rows the steps first evaluate log E
in its plain form (``ufm.objectives.scl.plain``, about 2.5x cheaper) while its rounding is far below what a
step changes (``PLAIN_SWITCH``), then the precise form from the same point; the result, the
certificate and the gradient half of the stopping test are the precise form's (docs/theory.md
section 9, "Two forms of the same objective"), except that a run a certificate follows may end on the
plain form where that passed the whole stopping test with its rounding below tol / PLAIN_SWITCH (the
certificate then computes E itself).

Method (default ``optimizer="bb"``): Riemannian / projected gradient descent with Barzilai-Borwein
step sizes and a nonmonotone Armijo backtracking line search (Grippo-Lampariello-Lucidi, memory 10),
the spectral projected gradient method (Birgin, Martinez, Raydan 2000) on a product of spheres:

    g_i    = P_i(grad_i L(H))          Riemannian gradient: grad projected on the tangent space of
                                       row i's sphere, (I - h_i h_i^T) grad_i; with ReLU also zeroed
                                       on active bounds (h_ij = 0 and grad_ij > 0), i.e. the projection
                                       of -grad onto the tangent cone of S_+ (``ufm.constraint_sets``)
    H(a)   = R(H - a g)                R: rows normalised (ReLU: clipped at 0 first, rows that would
                                       become zero keep their largest coordinate, ``ufm.constraint_sets``)
    a_0    = <s,s>/<s,y> or <s,y>/<y,y> (alternating BB1/BB2), s = H_k - H_{k-1}, y = g_k - g_{k-1};
             where <s,y> <= 0, max(2 a_last, 0.3 / max|g|) (``solvers.transforms``)
    accept a when L(H(a)) <= max_{last 10} L + c <g, H(a) - H>, c = 1e-4, else halve a.

Why this method: the loss is smooth and well conditioned along the manifold near the optimum, and the
BB step is a cheap secant (quasi-Newton) estimate of the curvature, so the iteration converges linearly
at a fast rate to machine precision with no per-problem learning rate (the line search makes the first
trial step ``learning_rate`` harmless). Measured on 2 CPU cores, float64, compiled runs
(benchmarks/bench_gd.py and the test problems; an older kernel and BB step, kept for the comparison
of methods: the current figures for the first row are in the README's benchmark table, 15 it /
0.048 s to 1e-6, median of 5 starts, 2026-12-05):

    problem                                   BB (default)                 Adam, lr 0.1 cosine-decayed
    balanced n=1000, k=10, tau 0.5, no ReLU   13 it / 0.08 s to 1e-6;      95 it / 0.3 s to 1e-6;
                                              18 it to 3e-16 (converged)   2440 it / 7.6 s to 2e-13
    same with ReLU, d = 20                    12 it / 0.17 s to 1e-6;      51 it / 0.25 s to 1e-6;
                                              15 it to 2e-16               199 it / 1.0 s to 2e-13
    STEP(6, 20, 10), ReLU, tau 0.5, d = 12    20 it to 4e-16               159 it to 5e-11

Adam (constant rate 0.1 or 0.01, or cosine-decayed) did reach 1e-10..1e-12 on these problems, but in
10-100x more iterations than BB, and its rate is problem dependent; BB needs no tuning. Adam, SGD or any
optax ``GradientTransformation`` remain selectable (``optimizer=``): they are fed the Riemannian
gradient and followed by the same retraction. A normalising parameterisation H = X / ||X|| (not
measured here) would add a curvature that depends on ||X||; the retraction keeps the iterate exactly on
the set, so the stopping test is evaluated at a feasible point.

Batching: an *epoch* walks the problem's batching. Deterministic batchings (full, explicit) are one
step on the whole batching loss L = sum_B L_B per epoch (exact gradient descent on the theory's
objective). Random schemes (random, balanced, binding) reshuffle every epoch from the problem's seed
(``problem.batches(epoch)``) and take one step per batch (stochastic; monotone Armijo on each batch's
loss, first trial step twice the last accepted one). A random epoch is drawn inside the compiled loop
from the key ``fold_in(PRNGKey(seed), epoch)`` (:mod:`ufm.random_batches`, the same draw as
``problem.batches(epoch)``), so memory holds one epoch's batches, whatever
the number of epochs. Prototypes are fixed rows added to every batch.

Stopping criterion (checked after every epoch on the reported objective: log E over the batching of
epoch 0): converged when BOTH

    |log E_k - log E_{k-1}| <= tol                  (the relative change of the excess over one epoch)
    ||g(H_k)||_F <= tol ** GRAD_POWER                (Riemannian gradient of log E; 1e-9 at tol 1e-12)

or E = 0 exactly (a global minimum). A non-finite value or gradient stops with status ``"error"``;
running out of ``steps`` epochs gives ``"not_converged"``; a line search that cannot decrease log E
any more (the floating-point floor) stops. Then the certificate (``solvers.certificate``) decides:
``optimal`` when it proves the relative gap on E within ``gap_tol``, else ``stationary``
(``converged`` only with ``certify=False``). Below tau = 0.2 the solve runs through warm-started
temperature stages first (:func:`continuation_taus`); where the certificate fails and some classes are
numerically collapsed, they are tied and the solve runs again (:func:`_with_tied_polish`).

Public API: :func:`solve`, :func:`solve_many` (many random starts in one compiled call, vmapped in
groups of :func:`default_lanes`),
:func:`solve_batched` (several problems of equal shape, e.g. several temperatures, in one call; with
``pad=True`` problems of different counts, e.g. a sweep over imbalance ratios, padded to one n).
``chunk_size`` (every entry point) evaluates the loss in row blocks (``ufm.objectives.scl.losses``), memory O(c n).
Compilation: one program per (config, shapes); tau, the start and the data are traced, so sweeps over
temperatures, seeds or (padded) ratios at one shape compile once (tests/test_gd.py counts traces).
"""

from __future__ import annotations

import functools
from dataclasses import replace
import math
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import tree_utils as otu

import ufm  # noqa: F401  (float64)
from ufm.batching import pack
from ufm.constraint_sets import unit_sphere
from solvers import descent, generic, sharding, staircase
from ufm.objectives import (Capability, ObjectiveOptions, batched, embeddings_log_excess, excess_constant, has,
                            implementation, objective_of)
from solvers.optimizers import OPTIMIZERS
from solvers.transforms import keeps_evaluation
from ufm.errors import ProblemError, is_number, whole_number
from ufm.geometry import class_mean_gram
from solvers.sizing import (CPU_LANE_BUDGET_BYTES, CPU_MAX_LANES, batch_shape, certificate_bytes,  # noqa: F401
                            default_lanes)
from solvers.defaults import DEFAULT_LR, DEFAULT_STEPS, GAP_TOL, check_gap_tol
from solvers.certificate import certificate_fits, certify_embeddings, collapsed_form_applies, collapsed_rows
from ufm.problem import SEED_MAX, Problem, require_problem
from ufm.programs import bucket, program
from ufm.random_batches import draw, draw_shape, raw_key
from ufm.solution import DescentInfo, Solution, certified_status, join

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

#: float32 runs to 1e-8 (its gradient test at 1e-6, or the float32 floor, where the search stalls):
#: at 1e-6 the stop came while the relative gap on the excess was still 1.5e-6 .. 8.9e-6 on
#: (4,4,4), (8,8,2,2) and 10 x 100 at tau 0.5, above the certificate's 1e-6; at 1e-8 all three were
#: proved (gaps 6e-8 .. 2.3e-7) in 2-4 more iterations.
DEFAULT_TOL = {jnp.float64: 1e-12, jnp.float32: 1e-8}
#: The gradient test is ||grad log E|| <= tol ** GRAD_POWER (1e-9 at tol 1e-12): the certificate's
#: gap is first order in the stationarity residual (its multipliers are estimated at the point), so
#: the point must be more accurate than the value alone would need.
GRAD_POWER = 0.75
HISTORY = 20000   # at most this many epochs of loss history are kept
#: Two phases (deterministic batchings): the steps run on the plain form of log E
#: (``ufm.objectives.scl.plain``, about 2.5x cheaper) while its rounding estimate beta (relative to E) times
#: PLAIN_SWITCH stays below both the last step's change of log E and PLAIN_MAX_NOISE; then on the
#: precise form (``ufm.objectives.scl.precise``) from the same point and transform state, where the
#: stopping test is made. At tau 0.5, n = 1000 beta is ~4e-15: the plain phase takes every step to a
#: change of ~4e-13; for (8, 8, 2, 2) at tau 0.05 beta is ~8e-4 at the optimum, so the precise form
#: takes over while E is still above ~2e-9 (PLAIN_MAX_NOISE). The line search compares values whose
#: rounding is at most 1 / PLAIN_SWITCH of the last change. A run that a certificate follows
#: (``Data.plain_finish``) ends on the plain form where the plain phase passed the whole stopping test
#: with PLAIN_SWITCH beta <= tol: the plain direction is within ~beta of the precise one (measured up to
#: 1.4 beta; tests/test_plain_fused.py holds it to 4 beta), so at most tol / 25, far below the
#: gradient test's tol ** GRAD_POWER; the precise evaluation it saves costs ~2.5 plain ones (n = 1000:
#: ~10 ms of a 50 ms certified solve).
PLAIN_SWITCH = 100.0
PLAIN_MAX_NOISE = 1e-2
#: The plain phase is compiled only for batches of at least this many rows: it adds ~0.85 s to the
#: compile of a run's program (2 cores; n = 24 and n = 1000 alike) and saves ~0.07 s per solve at
#: n = 1000 (0.195 -> 0.124 s to tol 1e-12), so a dozen warm solves of one shape (the starts of a
#: landscape, a sweep, solve_many) pay it back; from n ~ 3000 one solve does (0.6 s saved at n = 5000
#: per 10 steps). Below it the compile dominates every solve (the tests, ``ufm verify``).
PLAIN_MIN_WIDTH = 1000


def _takes_plain_phase(random_batches: bool, width: int) -> bool:
    """Whether a run compiles the plain phase: a deterministic batching whose kernels run on at least
    PLAIN_MIN_WIDTH rows (``width``: one batch's rows, prototypes included)."""
    return not random_batches and width >= PLAIN_MIN_WIDTH



# ------------------------------------------------------------------ the constraint set
def random_start(key: jax.Array, n: int, d: int, relu: bool, dtype: DTypeLike = jnp.float64) -> jnp.ndarray:
    """Random point of the constraint set: Gaussian rows (absolute values with ReLU), normalised."""
    return unit_sphere(relu).random_point(key, (n, d), dtype)


# ------------------------------------------------------------------ static configuration
class Config(NamedTuple):
    """Static (hashable) part of a run: everything that changes the compiled program."""

    relu: bool
    steps: int
    optimizer: str | None             # a name of solvers.optimizers.OPTIMIZERS (built inside the trace)
    tx: Any                           # or a user's optax GradientTransformation (then optimizer None)
    stochastic: bool                  # random scheme: one step per batch
    prototype_anchors: bool
    history: int
    chunk_size: int | None = None     # anchors per kernel block; None: ufm.objectives.scl.precise.default_block
    n_classes: int = 0                # k, for the class-mean Gram snapshots
    draw: tuple | None = None         # random scheme: (scheme, counts, batch size) drawn per epoch
    mesh: Any = None                  # full batch rows sharded over these devices (solvers.sharding)
    class_rows: int | None = None     # bound on one class's rows in a batch (ufm.objectives.scl.precise); None: any
    plain_phase: bool = False         # first phase on the plain form (PLAIN_SWITCH, PLAIN_MIN_WIDTH)
    objective: ObjectiveOptions | None = None   # the loss whose batched kernels run (capability BATCHED)


def _kernels(cfg: Config):
    """The batched kernels of the run's objective (its implementation, capability ``BATCHED``)."""
    return implementation(cfg.objective)


class Data(NamedTuple):
    """Traced arrays of a run (vmappable)."""

    H0: jnp.ndarray           # (n, d) start
    tau: jnp.ndarray          # ()
    labels: jnp.ndarray       # (n,)
    mon_index: jnp.ndarray    # (nb0, w0) epoch-0 batching: the reported objective (a deterministic
    mon_valid: jnp.ndarray    # batching's step too; a random scheme draws its batches from batch_key)
    batch_key: jnp.ndarray    # (2,) uint32: epoch e of a random scheme draws from fold_in(batch_key, e)
    protos: jnp.ndarray | None
    proto_labels: jnp.ndarray | None
    lr: jnp.ndarray           # ()
    tol: jnp.ndarray          # ()
    rep: jnp.ndarray          # (n,) representative example of each example's class (ufm.objectives.scl.formula)
    tie: jnp.ndarray          # (n,) row of the iterate V behind each example: H = V[tie]
    plain_finish: jnp.ndarray  # () bool: a certificate evaluates E after the run, so the run may end on
                              # the plain form where it passes the whole stopping test (_two_phases)


class Record(NamedTuple):
    """What the driver keeps beside the descent state (``DescentState.record``)."""

    history: jnp.ndarray      # (history,) reported log E after each epoch (nan beyond)
    gram_snaps: jnp.ndarray   # (snapshots, k, k) class-mean Gram at the start and after epochs 2^j
    plain_epochs: jnp.ndarray  # epochs whose steps ran on the plain form (PLAIN_SWITCH)
    plain_value: jnp.ndarray   # bool: the run ended on the plain form's value and gradient (_two_phases)


#: A run's state: :class:`solvers.descent.DescentState` (params = the iterate V, value = log E over the
#: epoch-0 batching, iteration = epochs) with a :class:`Record`.
LoopState = descent.DescentState


def _loss_fn(cfg: Config, data: Data) -> Callable:
    """The objective of the iterate V: log E of H = V[tie] over the batches (index, valid), by the
    objective's precise kernel (``log_excess_packed``; SCL's: ``ufm.objectives.scl.precise``)."""
    kernel = _kernels(cfg).log_excess_packed

    def loss(V, index, valid):
        return kernel(V[data.tie], data.labels, data.rep, data.tau, index, valid, cfg.n_classes, data.protos,
                      data.proto_labels, cfg.prototype_anchors, cfg.chunk_size, cfg.mesh, cfg.class_rows)
    return loss


def _plain_loss_fn(cfg: Config, data: Data) -> Callable:
    """The same objective in the plain form (``log_excess_plain_packed``; SCL's:
    ``ufm.objectives.scl.plain``): cheaper, accurate to :func:`_plain_rounding` (relative to E)."""
    kernel = _kernels(cfg).log_excess_plain_packed

    def loss(V, index, valid):
        return kernel(V[data.tie], data.labels, data.rep, data.tau, index, valid, cfg.n_classes, data.protos,
                      data.proto_labels, cfg.prototype_anchors, cfg.chunk_size, cfg.mesh)
    return loss


def _plain_rounding(cfg: Config, data: Data, f) -> jnp.ndarray:
    """The plain form's rounding of log E at log E = f, estimated: ``ufm.objectives.scl.plain.rounding_estimate``
    over the reported batching's anchor rows (at most batches x rows), divided by E = e^f, plus the
    rounding of log E itself."""
    batches, width = data.mon_index.shape[0], _batch_width(data.mon_index, data.protos)
    estimate = _kernels(cfg).rounding_estimate(data.tau, batches * width, width, f.dtype)
    return estimate * jnp.exp(-f) + float(jnp.finfo(f.dtype).eps) * jnp.abs(f)


def _make_tx(cfg: Config, lr, total_steps: int) -> optax.GradientTransformationExtraArgs:
    """The run's transform: the user's, or the named optimiser's (``solvers.optimizers``)."""
    tx = cfg.tx if cfg.tx is not None else OPTIMIZERS[cfg.optimizer](
        lr, total_steps, unit_sphere(cfg.relu), cfg.stochastic)
    return optax.with_extra_args_support(tx)


def _run(cfg: Config, data: Data):
    """The whole solve as one pure function (jit / vmap it): epochs of :func:`solvers.descent.update`
    (a deterministic batching: one step on the reported objective) or of one :func:`solvers.descent.step`
    per drawn batch (a random scheme), both judged by :func:`solvers.descent.judge`; with the plain phase
    first where it is compiled (:func:`_two_phases`). Returns the final LoopState."""
    loss = _loss_fn(cfg, data)
    groups = draw_shape(*cfg.draw)[0] if cfg.draw is not None else 1
    tx = _make_tx(cfg, data.lr, cfg.steps * groups)
    epoch_body, start = _epochs(cfg, data, loss, tx)
    if not (cfg.plain_phase and not cfg.stochastic):
        return jax.lax.while_loop(lambda s: descent.going(s, cfg.steps), epoch_body, start())
    plain_body, plain_start = _epochs(cfg, data, _plain_loss_fn(cfg, data), tx)
    return _two_phases(cfg, data, epoch_body, plain_body, plain_start, loss)


def _epochs(cfg: Config, data: Data, loss: Callable, tx) -> tuple[Callable, Callable]:
    """``(epoch_body, start)`` with ``loss`` as the objective of the steps and of the reported value
    (log E over the epoch-0 batching), for ``jax.lax.while_loop``."""
    cset = unit_sphere(cfg.relu)
    dtype = data.H0.dtype
    tol = data.tol.astype(dtype)
    keep = keeps_evaluation(tx) and not cfg.stochastic

    def reported(V):
        return loss(V, data.mon_index, data.mon_valid)

    def random_epoch(s: LoopState) -> LoopState:
        # this epoch's batches, drawn here (ufm.random_batches): one (batch, width) slice at a time
        idx, val = draw(*cfg.draw, jax.random.fold_in(data.batch_key, s.iteration))

        def batch_step(carry, b):
            V, opt = carry
            index, valid = b
            f, G = jax.value_and_grad(loss)(V, index, valid)
            V, opt, _ = descent.step(lambda W: loss(W, index, valid), cset, tx, V, f, G, opt)
            return (V, opt), None
        (V, opt), _ = jax.lax.scan(batch_step, (s.params, s.tx_state), (idx[:, None], val[:, None]))
        f, G, gnorm = descent.measure(reported, cset, V)
        # a random scheme cannot prove a stall on one batch: keep walking
        return descent.judge(cset, s, V, opt, f, G, gnorm, jnp.asarray(False), tol, tol ** GRAD_POWER)

    def epoch_body(s: LoopState) -> LoopState:
        if cfg.stochastic:
            moved = random_epoch(s)
        else:     # the step's objective is the reported one: the search keeps f and G (one evaluation)
            moved = descent.update(reported, cset, tx, s, tol, tol ** GRAD_POWER, keep)
        return moved._replace(record=_recorded(cfg, data, moved))

    def start() -> LoopState:
        s = descent.init(reported, cset, tx, data.H0)
        snaps = jnp.full((n_snapshots(cfg.steps), cfg.n_classes, cfg.n_classes), jnp.nan, dtype)
        return s._replace(record=Record(jnp.full((cfg.history,), jnp.nan, dtype),
                                        snaps.at[0].set(_mean_gram(cfg, data, data.H0)), jnp.asarray(0),
                                        jnp.asarray(False)))
    return epoch_body, start


def _mean_gram(cfg: Config, data: Data, V) -> jnp.ndarray:
    """The class-mean Gram (k, k) of H = V[tie] (rows whose label is out of range, the padding of
    solve_batched, are dropped by segment_sum)."""
    H = V[data.tie]
    sums = jax.ops.segment_sum(H, data.labels, num_segments=cfg.n_classes)
    sizes = jax.ops.segment_sum(jnp.ones_like(H[:, 0]), data.labels, num_segments=cfg.n_classes)
    means = sums / jnp.maximum(sizes, 1.0)[:, None]
    return means @ means.T


def _recorded(cfg: Config, data: Data, s: LoopState) -> Record:
    """The record after epoch ``s.iteration``: its log E in the history, and after epochs 1, 2, 4, ...
    a snapshot of the class-mean Gram."""
    r = s.record
    done = s.iteration
    history = r.history.at[jnp.minimum(done - 1, cfg.history - 1)].set(s.value)
    power_of_two = (done & (done - 1)) == 0
    slot = jnp.where(power_of_two, jnp.round(jnp.log2(done.astype(s.value.dtype))).astype(jnp.int32) + 1, 0)
    snaps = jnp.where(power_of_two, r.gram_snaps.at[slot].set(_mean_gram(cfg, data, s.params)), r.gram_snaps)
    return r._replace(history=history, gram_snaps=snaps)


def _two_phases(cfg: Config, data: Data, epoch_body: Callable, plain_body: Callable, plain_start: Callable,
                loss: Callable) -> LoopState:
    """Phase 1 on the plain form while its rounding is far below what a step changes (PLAIN_SWITCH);
    then the precise form from the same point and transform state (one more evaluation), unless a
    certificate follows (``data.plain_finish``) and the plain phase passed the whole stopping test."""
    cset = unit_sphere(cfg.relu)
    tol = data.tol.astype(data.H0.dtype)
    usable = data.tau >= _kernels(cfg).min_tau(data.H0.dtype)

    def plain_cond(s: LoopState):
        noise = PLAIN_SWITCH * _plain_rounding(cfg, data, s.value)
        return descent.going(s, cfg.steps) & usable & (noise < PLAIN_MAX_NOISE) & (s.change > jnp.maximum(tol, noise))

    s1 = jax.lax.while_loop(plain_cond, plain_body, plain_start())
    # the last plain step's change stands for the stopping test's first half where the plain
    # rounding estimate is below tol / PLAIN_SWITCH (its error then ~2% of tol); the gradient half is
    # the precise one's. (A further precise step from a point already at the optimum can cost a full
    # search: with ReLU at the exact frame no trial decreases, 50 halvings.)
    plain_rel_ok = (s1.change <= tol) & (PLAIN_SWITCH * _plain_rounding(cfg, data, s1.value) <= tol)
    # where a certificate follows (it evaluates E itself), a plain phase that passed the whole test
    # on its own ends the run: its gradient's rounding is then also far below the gradient test's
    # tol ** GRAD_POWER (PLAIN_SWITCH's note), and the precise evaluation (~2.5 plain ones) is saved
    plain_done = (data.plain_finish & plain_rel_ok & (s1.grad_norm <= tol ** GRAD_POWER)
                  & ~s1.failed & ~s1.stalled)
    f, G, gnorm = jax.lax.cond(
        plain_done, lambda V: (s1.value, s1.grad, s1.grad_norm),
        lambda V: descent.measure(lambda W: loss(W, data.mon_index, data.mon_valid), cset, V), s1.params)
    last = jnp.clip(s1.iteration - 1, 0, cfg.history - 1)
    history = jnp.where(s1.iteration > 0, s1.record.history.at[last].set(f), s1.record.history)  # the value handed over
    # the search's memory of accepted values restarts from the precise value (the plain ones differ
    # by their rounding); the BB state (points and directions) carries over
    opt = s1.tx_state
    values = otu.tree_get(opt, "values")
    if values is not None:
        opt = otu.tree_set(opt, values=jnp.full_like(values, jnp.nan).at[0].set(f))
    s2 = s1._replace(value=f, grad=G, grad_norm=gnorm, stalled=jnp.asarray(False), tx_state=opt,
                     record=s1.record._replace(history=history, plain_epochs=s1.iteration, plain_value=plain_done),
                     converged=(f == -jnp.inf) | (plain_rel_ok & (gnorm <= tol ** GRAD_POWER)),
                     failed=descent.failed(cset, s1.params, f, gnorm))
    return jax.lax.while_loop(lambda s: descent.going(s, cfg.steps), epoch_body, s2)


def _runs(data: "Data", *, cfg: Config, batched: tuple | None, lanes: int | None) -> "LoopState":
    """The runs of ``data``: one (``batched`` None), or many along the axes ``batched`` (the vmap
    in_axes of Data, 0 or None per field): all vmapped at once (``lanes`` None), or ``lanes`` at a time
    (vmapped), the groups one after another (``jax.lax.map`` with ``batch_size``)."""
    fn = functools.partial(_run, cfg)
    if batched is None:
        return fn(data)
    if lanes is None:
        return jax.vmap(fn, in_axes=(Data(*batched),))(data)
    fields = [f for f, axis in zip(Data._fields, batched) if axis == 0]
    xs = {f: getattr(data, f) for f in fields}
    return jax.lax.map(lambda x: fn(data._replace(**x)), xs, batch_size=lanes)


def _runs_cost(data: "Data", *, cfg: Config, batched: tuple | None, lanes: int | None) -> int:
    """The work of one evaluation (:mod:`ufm.programs`): anchor-column pairs of the reported batching,
    times the runs evaluated side by side."""
    batches, width = np.shape(data.mon_index)[-2:]
    width += 0 if data.protos is None else np.shape(data.protos)[-2]
    side_by_side = 1 if batched is None else (lanes or np.shape(data.H0)[0])
    return int(batches * width * width * side_by_side)


#: The compiled runs (:func:`_runs`), kept across processes where the compile cache is on.
_RUNS = program(_runs, static_argnames=("cfg", "batched", "lanes"), cost=_runs_cost)


@functools.lru_cache(maxsize=64)
def _compiled(cfg: Config, batched: tuple | None, lanes: int | None = None, runs_mesh: Any = None):
    """The compiled run(s) for one config: :func:`_runs` as a program of ``data``; ``runs_mesh``: the
    batched runs split over its devices (:func:`solvers.sharding.shard_runs`; the number of runs a
    multiple of its size), each device grouping its own runs by ``lanes`` (plain ``jax.jit``: a
    sharded program is not kept on disk)."""
    if runs_mesh is None:
        return _RUNS.bind(cfg=cfg, batched=batched, lanes=lanes)
    runs = functools.partial(_runs, cfg=cfg, batched=batched, lanes=lanes)
    if runs_mesh is not None:
        runs = sharding.shard_runs(runs, runs_mesh, batched)
    return jax.jit(runs)


def _run_batched(cfg: Config, batched: tuple, lanes: int | None, mesh, data: Data) -> LoopState:
    """The batched runs of ``data`` (through the continuation stages), split over ``mesh`` (or on one
    device when it is None): padded to a multiple of its size, the padding dropped after."""
    if mesh is None:
        return _staged(_compiled(cfg, batched, lanes), data)
    padded, count = sharding.pad_runs(data, batched, mesh.size)
    per_device = next(np.shape(x)[0] for x, a in zip(padded, batched) if a == 0) // mesh.size
    lanes = None if lanes is None else min(lanes, per_device)
    return sharding.unpad_runs(_staged(_compiled(cfg, batched, lanes, mesh), padded), count)


def _batch_width(mon_index, protos) -> int:
    """Rows in one batch of the reported objective: the packed width (last axis of ``mon_index``)
    plus the prototype rows (``protos`` (p, d) or None)."""
    return int(mon_index.shape[-1]) + (0 if protos is None else int(protos.shape[0]))


def _check_lanes(lanes, runs: int) -> int | None:
    """None (vmap all at once) or the group size, after validating a user's ``lanes``."""
    if not (isinstance(lanes, (int, np.integer)) and not isinstance(lanes, bool) and lanes >= 1):
        raise ProblemError(f"lanes must be None or a positive integer (got {lanes!r})")
    return None if lanes >= runs else int(lanes)


def _group(lanes, runs: int, default: int) -> int | None:
    """The group size of ``runs`` batched runs: the user's ``lanes`` (checked), or the ``default``
    (:func:`default_lanes`) evened out: as many groups, all of one size where the runs allow, since a
    smaller last group is a second vmapped body in the program (compiled apart: 20 starts in groups
    of 16 + 4 took 6 s to compile, in groups of 10 + 10 3 s)."""
    if lanes is not None:
        return _check_lanes(lanes, runs)
    if default >= runs:
        return None
    return -(-runs // -(-runs // default))


# ------------------------------------------------------------------ problem -> arrays
#: Temperature continuation: below this tau a solve first runs at tau = 0.5, 0.25, ... (each stage
#: warm-started from the last, to ``CONTINUATION_TOL``), then at its own tau. At small tau a class can
#: stop short of collapse in a configuration whose within-class term is 0 (an anchor that sees all its
#: positives at one similarity), pulled together only by the between-class term, e^{-1/tau} weaker:
#: from a random start at tau = 0.05 gradient descent was seen to stall there; from the collapsed
#: geometry of a larger tau it does not.
CONTINUATION_BELOW = 0.2
CONTINUATION_START = 0.5
CONTINUATION_TOL = 1e-8


def continuation_taus(tau: float) -> list[float]:
    """The temperatures of the warm-up stages before a solve at ``tau`` (empty at tau >= 0.2)."""
    stages, t = [], CONTINUATION_START
    if tau >= CONTINUATION_BELOW:
        return stages
    while t > 1.5 * tau:
        stages.append(t)
        t /= 2
    return stages


def _staged(fn: Callable, data: Data) -> LoopState:
    """Run ``fn`` (a compiled run) through the continuation stages (:func:`continuation_taus` of the
    smallest tau in ``data``; a run whose own tau is larger stays at it), each warm-started from the
    last, then at the data's own tau. The returned state's ``epoch`` counts every stage's epochs."""
    tau = np.asarray(data.tau)
    stages = continuation_taus(float(tau.min()))
    epochs = 0
    for t in stages:
        staged_tau = np.maximum(tau, t).astype(tau.dtype)
        out = fn(data._replace(tau=staged_tau, tol=np.full(np.shape(data.tol), max(CONTINUATION_TOL,
                                                                                   float(np.min(data.tol))),
                                                           dtype=tau.dtype)))
        epochs = epochs + np.asarray(out.iteration)
        data = data._replace(H0=out.params)
    out = jax.block_until_ready(fn(data))
    return out._replace(iteration=np.asarray(out.iteration) + epochs)


def _check_certificate_args(certify, gap_tol) -> None:
    """``certify`` a bool (``"no"`` would be truthy and certify) and ``gap_tol`` in (0, 1)."""
    if not isinstance(certify, (bool, np.bool_)):
        raise ProblemError(f"certify must be True or False (got {certify!r})")
    check_gap_tol(gap_tol)


def _check_escape(escape) -> None:
    if not isinstance(escape, (bool, np.bool_)):
        raise ProblemError(f"escape must be True or False (got {escape!r})")


def _check_dtype(dtype) -> None:
    try:
        known = jnp.dtype(dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
    except TypeError:
        known = False
    if not known:
        raise ProblemError(f"dtype must be float32 or float64 (got {dtype!r})")


def _check_args(steps, learning_rate, tol, optimizer):
    if not (isinstance(steps, (int, np.integer)) and not isinstance(steps, (bool, np.bool_)) and steps >= 1):
        raise ProblemError(f"steps must be a positive integer (got {steps!r})")
    if not (is_number(learning_rate) and 0 < learning_rate < math.inf):
        raise ProblemError(f"learning rate must be a positive number (got {learning_rate!r})")
    if not (is_number(tol) and 0 < tol < math.inf):
        raise ProblemError(f"tol must be a positive finite number (got {tol!r})")
    if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
        raise ProblemError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)} "
                           "or an optax GradientTransformation")
    if not isinstance(optimizer, (str, optax.GradientTransformation)):
        raise ProblemError(f"optimizer must be a name or an optax GradientTransformation (got {optimizer!r})")


def _config(problem: Problem, steps: int, optimizer, chunk_size: int | None = None) -> Config:
    name, tx = (optimizer, None) if isinstance(optimizer, str) else (None, optimizer)
    anchors = problem.prototype_anchors
    b = problem.batching
    return Config(bool(problem.relu), int(steps), name, tx, bool(b.is_random),
                  bool(anchors), min(int(steps), HISTORY),
                  None if chunk_size is None else int(chunk_size), problem.k,
                  (b.scheme, tuple(problem.counts), int(b.batch_size)) if b.is_random else None,
                  None, implementation(problem.objective).class_rows_bucket(problem.class_rows)
                  if batched(problem) else None, _takes_plain_phase(b.is_random, batch_shape(problem)[1]), problem.objective)


def n_snapshots(steps: int) -> int:
    """Snapshots of the class-mean Gram: at the start and after epochs 1, 2, 4, ..., <= steps."""
    return int(steps).bit_length() + 1


def snapshot_epochs(epochs: int) -> list[int]:
    """The epochs (0 = the start) whose snapshots a run of ``epochs`` epochs has written."""
    return [0] + [1 << j for j in range(int(epochs).bit_length()) if (1 << j) <= epochs]


def _data(problem: Problem, H0, steps, lr, tol, dtype, tie: np.ndarray | None = None,
          plain_finish: bool = False) -> Data:
    """The traced arrays of a run from the start H0 (n, d), or with ``tie`` (n,) from V0 (q, d) with
    H = V[tie] (the collapsed polish). ``plain_finish``: a certificate judges the result, so the run
    may end on the plain form (:func:`_two_phases`)."""
    mon = pack(problem.batches(0))
    tie = np.arange(problem.n, dtype=np.int32) if tie is None else np.asarray(tie, dtype=np.int32)
    W, wl = problem.prototype_rows()
    dtype = np.dtype(dtype)      # NumPy throughout: the compiled run takes them as they are (no eager JAX op)
    return Data(np.asarray(H0, dtype), np.asarray(problem.tau, dtype), np.asarray(problem.labels),
                np.asarray(mon.index), np.asarray(mon.valid), raw_key(problem.seed),
                None if W is None else np.asarray(W, dtype),
                None if wl is None else np.asarray(wl), np.asarray(lr, dtype), np.asarray(tol, dtype),
                np.asarray(implementation(problem.objective).representatives(problem.labels)),
                np.asarray(tie), np.asarray(bool(plain_finish)))


def _start(problem: Problem, seed: int, dtype) -> jnp.ndarray:
    return random_start(raw_key(int(seed)), problem.n, problem.dim, problem.relu, dtype)


def _descent_info(problem: Problem, s: LoopState, cfg: Config, tol: float, dtype, const: float) -> DescentInfo:
    """The run's :class:`~ufm.solution.DescentInfo` from its final LoopState (NumPy leaves)."""
    epochs = int(s.iteration)
    hist = np.exp(np.asarray(s.record.history, dtype=np.float64)[:min(epochs, cfg.history)])
    bb_step = otu.tree_get(s.tx_state, "step")
    trials = otu.tree_get(s.tx_state, "trials")
    # slot i of the record holds epoch snapshot_epochs(...)[i] where it was written; a run longer than
    # its step budget (warm-started stages) has more such epochs than slots, and a slot a stage did not
    # reach is still NaN: only the written pairs are kept (they once came out 16 epochs to 15 Grams)
    grams = np.asarray(s.record.gram_snaps, dtype=np.float64)[..., :problem.k, :problem.k]
    written = [(epoch, gram) for epoch, gram in zip(snapshot_epochs(epochs), grams) if np.isfinite(gram).all()]
    return DescentInfo(
        optimizer=cfg.optimizer or "custom", dtype=jnp.dtype(dtype).name, tol=tol, grad_tol=float(tol ** GRAD_POWER),
        value_change=float(s.change), direction_norm=float(s.grad_norm), solver_value=float(s.value),
        loss_history=(const + hist).tolist(), excess_history=hist.tolist(),
        mean_gram_checkpoints={"epochs": [epoch for epoch, _ in written],
                               "grams": [gram.tolist() for _, gram in written]},
        last_step_size=None if bb_step is None else float(bb_step),
        evaluations=None if trials is None or cfg.stochastic
        else 1 + int(trials) + int(cfg.plain_phase and not s.record.plain_value),
        plain_epochs=int(s.record.plain_epochs))


def _stopped(s: LoopState, tol: float, grad_tol: float, certify: bool) -> tuple[str, str]:
    """``(status, message)`` of why the loop stopped, before any certificate judges the point."""
    if bool(s.converged):
        return "converged", ""
    if bool(s.stalled):
        # at the floating-point floor: the certificate, if any, judges the point
        ok = float(s.grad_norm) <= grad_tol or certify
        return ("converged" if ok else "not_converged",
                "line search cannot decrease the excess further (floating-point floor)"
                + ("" if ok else f"; Riemannian gradient norm of log E {float(s.grad_norm):.3g} above {grad_tol:.3g}"))
    return "not_converged", (f"stopped after {int(s.iteration)} epochs: relative change of the excess "
                             f"{float(s.change):.3g} (tol {tol:g}), Riemannian gradient norm of log E "
                             f"{float(s.grad_norm):.3g} (tol {grad_tol:.3g}); raise steps")


def _solution(problem: Problem, s: LoopState, cfg: Config, seconds: float, tol: float,
              dtype, tie: np.ndarray | None = None, certify: bool = True,
              gap_tol: float = GAP_TOL) -> Solution:
    """Turn one final LoopState (NumPy leaves) into a Solution: H = V[tie] as float64 unit rows, its
    excess and loss recomputed in float64, and (``certify``) the certificate, which decides the status
    (:func:`ufm.solution.certified_status`)."""
    V = np.asarray(s.params, dtype=np.float64)
    H = V if tie is None else V[np.asarray(tie)]
    epochs = int(s.iteration)
    const = excess_constant(problem)
    grad_tol = float(tol ** GRAD_POWER)
    info = _descent_info(problem, s, cfg, tol, dtype, const)
    if bool(s.failed) or not np.all(np.isfinite(H)) or \
            not unit_sphere(problem.relu).violation(H) <= descent.FEASIBILITY_TOL:
        M = np.full((problem.k, problem.k), np.nan)
        return Solution("gd", M, float("nan"), "error", embeddings=H, iterations=epochs, seconds=seconds,
                        message=f"the loss, its gradient or the iterate became non-finite (NaN/inf, or rows "
                                f"no longer unit after an overflowing step) by epoch {epochs}; lower the "
                                "learning rate or use optimizer='bb'", info=info)
    H = unit_sphere(problem.relu).retract(H)   # exact float64 unit rows (float32 runs round to ~1e-7)
    status, message = _stopped(s, tol, grad_tol, certify)
    cert, polish = None, None
    tied = collapsed_rows(problem, H) if certify and collapsed_form_applies(problem) else None
    if tied is not None and len(tied[0]) == problem.k:
        # every class within SNAP_TOL of its mean: the collapsed point, certified in its k x k form
        # (no n x n matrix; docs/theory.md section 8), is returned where that proves it optimal
        snapped = tied[0][tied[1]]
        snapped_cert = certify_embeddings(problem, snapped, gap_tol)
        if snapped_cert.certified:
            if not np.array_equal(snapped, H):
                polish = "classes within SNAP_TOL tied to their normalised mean"
            H, cert = snapped, snapped_cert
    if cert is None and certify and certificate_fits(problem):
        cert = certify_embeddings(problem, H, gap_tol)
    elif cert is None and certify:
        message = join(message, f"no certificate: its gradient blocks would need "
                                f"{certificate_bytes(problem) / 2 ** 30:.1f} GiB (use batches for a certified solve)")
    status, message = certified_status(status, message, cert)
    if cert is not None:
        log_e = cert.log_excess
    elif tie is None and np.dtype(dtype) == np.float64 and np.isfinite(float(s.value)) \
            and not s.record.plain_value:
        # the run's own last value: the precise kernel's log E at this point, in float64 (the
        # retraction above moved the unit rows by rounding only); no second evaluation
        log_e = float(s.value)
    else:
        log_e = embeddings_log_excess(problem, H)
    excess = float(np.exp(log_e))
    if polish is not None:
        info = replace(info, polish=polish)
    return Solution("gd", class_mean_gram(H, problem.labels), const + excess, status, embeddings=H,
                    lower_bound=None if cert is None else cert.lower_bound, excess=excess,
                    log_excess=log_e, certificate=cert, iterations=epochs, seconds=seconds,
                    message=message, info=info)


def _with_tied_polish(problem: Problem, sol: Solution, cfg: Config, steps: int, lr: float, tol: float, dtype,
              gap_tol: float) -> Solution:
    """The collapsed polish: where the certificate does not prove ``sol`` and some classes' rows are
    numerically equal (within ``SNAP_TOL``), tie each such class to one row (its normalised mean) and
    run again over the tied rows V with H = V[tie]. Near collapse the within-class term of E grows as
    the fourth power of a class's spread s (X ~ s^2/tau, within ~ var X), a flat quartic valley whose
    gradient (~ s^3/tau^2) still dominates that of log E at small tau long after its value is
    negligible: gradient descent crawls there while the between-class geometry waits ((8, 8, 2, 2) at
    tau 0.02: spread 1.6e-10, within ~ s^4/tau^2 ~ 2e-36 against E ~ 1e-27, yet ||grad log E|| = 10.8). Ties make
    the within-class term exactly 0. The better certified of the two solutions is returned (the polish
    is judged by the same certificate on the untied problem)."""
    if sol.certificate is None or sol.certificate.certified or sol.status == "error":
        return sol
    tied = collapsed_rows(problem, sol.embeddings)
    if tied is None:
        return sol
    V0, tie = tied
    # the tied point itself first: its rows are exactly equal within the tied classes, so the
    # within-class rounding (far above E at small tau) is gone; often that alone is proved optimal
    snapped = V0[tie]
    cert = certify_embeddings(problem, snapped, gap_tol)
    if cert.certified:
        status, message = certified_status("converged", "classes within SNAP_TOL tied to their mean", cert)
        return replace(sol, embeddings=snapped, class_mean_gram=class_mean_gram(snapped, problem.labels),
                       loss=excess_constant(problem) + cert.excess, excess=cert.excess,
                       log_excess=cert.log_excess, certificate=cert, lower_bound=cert.lower_bound,
                       status=status, message=message,
                       info=replace(sol.info, polish="classes within SNAP_TOL tied to their normalised mean"))
    # solved again whatever the tied point's gap: at small tau a geometry right to 1e-4 in cosine can
    # have gap 1 (E moves as e^{-1/tau}; (8, 8, 2, 2) at tau 0.02: E 1% above the optimum, gap 1,
    # proved optimal after the tied run), so the gap cannot tell precision from a stall. The tied run
    # has q <= n rows and is kept only if its certificate is better.
    data = _data(problem, V0, steps, lr, tol, dtype, tie=tie, plain_finish=True)
    t0 = time.perf_counter()
    run_cfg, data = _in_family(problem, cfg, data)
    out = _own_rows(jax.tree_util.tree_map(np.asarray, _compiled(run_cfg, None)(data)), len(V0), problem.dim)
    seconds = time.perf_counter() - t0
    polished = _solution(problem, out, cfg, seconds, tol, dtype, tie=tie, gap_tol=gap_tol)
    if polished.status == "error" or not (polished.certificate.relative_gap < sol.certificate.relative_gap):
        return sol
    info = replace(polished.info, polished_from_iterations=sol.iterations,
                   polish="classes within SNAP_TOL tied to one row each, then solved again")
    return replace(polished, iterations=sol.iterations + polished.iterations,
                   seconds=sol.seconds + polished.seconds, info=info)


def _prepare(problem, steps, learning_rate, optimizer, dtype, tol, chunk_size=None, who: str = "solve"):
    require_problem(problem, who)
    _check_dtype(dtype)
    tol = DEFAULT_TOL[jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32] \
        if tol is None else tol
    steps = DEFAULT_STEPS if steps is None else steps
    learning_rate = DEFAULT_LR if learning_rate is None else learning_rate
    _check_args(steps, learning_rate, tol, optimizer)
    if chunk_size is not None:
        if not (isinstance(chunk_size, (int, np.integer)) and not isinstance(chunk_size, bool) and chunk_size >= 1):
            raise ProblemError(f"chunk_size must be None or a positive integer (got {chunk_size!r})")
        if chunk_size > (widest := batch_shape(problem)[1]):
            raise ProblemError(f"chunk_size {chunk_size} exceeds the widest batch ({widest} rows): a block holds "
                               f"at most every anchor of a batch; use at most {widest}, or None")
        if not batched(problem):
            raise ProblemError(f"chunk_size evaluates the batched kernels in row blocks; this problem's objective "
                               f"{problem.objective.name!r} has none: drop chunk_size")
    return int(steps), float(learning_rate), float(tol), _config(problem, steps, optimizer, chunk_size)


def _unstack(tree, i):
    return jax.tree_util.tree_map(lambda x: np.asarray(x[i]), tree)


# ------------------------------------------------------------------ public API
def solve(problem: Problem, *, steps: int | None = None, learning_rate: float | None = None,
          optimizer: str | optax.GradientTransformation = "bb", seed: int | None = None,
          dtype: DTypeLike = jnp.float64, tol: float | None = None, chunk_size: int | None = None,
          certify: bool = True, gap_tol: float = GAP_TOL, devices: int | None = None,
          escape: bool = True) -> Solution:
    """Minimise the problem's objective from a random start: SCL (the batched driver of this module)
    over unit-norm rows (nonnegative with ReLU), any other objective by :mod:`solvers.generic`.

    - ``steps``: at most this many epochs (default 5000); ``learning_rate``: the first trial step of
      the BB line search, or the optax learning rate (default 0.1);
    - ``optimizer``: ``"bb"`` (default, module docstring), ``"adam"`` (cosine-decayed rate),
      ``"sgd"``, or any optax ``GradientTransformation`` (fed the Riemannian gradient);
    - ``seed``: the random start (``jax.random.PRNGKey(seed)``; default ``problem.seed``);
    - ``dtype``: ``jnp.float64`` (default) or ``jnp.float32``;
    - ``tol``: stopping tolerance (module docstring; default 1e-12 in float64, so the gradient test
      asks for ||grad log E|| <= tol ** GRAD_POWER = 1e-9; 1e-6 in float32);
    - ``chunk_size``: None (default: the kernel's own blocks, ``ufm.objectives.scl.precise.default_block``) or c:
      evaluate the loss in row blocks of c anchors (``ufm.objectives.scl.losses.scl_loss``), memory O(c n);
    - ``devices``: None (one device) or p: a full-batch loss and gradient row-sharded over the first p
      devices (:mod:`solvers.sharding`): the same iterates as one device, up to the order of sums;
    - ``escape``: where the certificate does not prove the point, climb the staircase
      (:mod:`solvers.staircase`: escape one rank up along the certificate's eigenvector, descend
      again, return to d; default True; SCL's batched driver); False keeps the plain descent.

    Returns a :class:`ufm.Solution` with ``method="gd"``, ``embeddings`` (n, d) float64 unit rows,
    ``class_mean_gram`` (k, k), ``loss`` (float64, sum reduction, over the batching of epoch 0),
    ``excess`` and ``log_excess``, the ``certificate`` (``certify=True``), status ``"optimal"`` or
    ``"stationary"`` as the certificate decides (``"converged"`` without one), ``"not_converged"`` or
    ``"error"``, ``iterations`` (epochs), ``seconds`` (wall time of the call, compilation included
    where a program is built) and ``info`` (a :class:`ufm.solution.DescentInfo`: the tolerances, the
    last value change and direction norm, histories, checkpoints of the class-mean Gram).
    """
    steps, lr, tol, cfg = _prepare(problem, steps, learning_rate, optimizer, dtype, tol, chunk_size)
    _check_certificate_args(certify, gap_tol)
    seed = problem.seed if seed is None else whole_number(seed, "seed", 0, SEED_MAX)
    cfg = cfg._replace(mesh=_row_mesh(problem, devices))
    _check_escape(escape)
    if not batched(problem):
        sol = generic.solve_many(problem, [seed], steps=steps, learning_rate=lr, optimizer=optimizer,
                                 dtype=dtype, tol=tol, certify=certify, gap_tol=gap_tol)[0]
        return _escaped(problem, sol, escape, gap_tol, _generic_descent(problem, steps, lr, optimizer, dtype, tol,
                                                                        gap_tol))
    sol = _solve_from(problem, cfg, _start(problem, seed, dtype), steps, lr, tol, dtype, certify, gap_tol)
    return _escaped(problem, sol, escape, gap_tol, _batched_descent(cfg, steps, lr, tol, dtype, gap_tol))


def _solve_from(problem: Problem, cfg: Config, H0: np.ndarray, steps: int, lr: float, tol: float, dtype,
                certify: bool, gap_tol: float) -> Solution:
    """One run of the batched driver from the start H0 (n, d), certified and polished."""
    data = _data(problem, H0, steps, lr, tol, dtype, plain_finish=certify)
    t0 = time.perf_counter()
    run_cfg, data = _in_family(problem, cfg, data)
    out = _own_rows(jax.tree_util.tree_map(np.asarray, _staged(_compiled(run_cfg, None), data)), problem.n,
                    problem.dim)
    seconds = time.perf_counter() - t0
    sol = _solution(problem, out, cfg, seconds, tol, dtype, certify=certify, gap_tol=gap_tol)
    return _with_tied_polish(problem, sol, cfg, steps, lr, tol, dtype, gap_tol)


def _escaped(problem: Problem, sol: Solution, escape: bool, gap_tol: float,
             descend: Callable[[Problem, np.ndarray], Solution] | None) -> Solution:
    """``sol``, or where the certificate does not prove it, ``escape`` is on and the objective climbs
    (``descend`` not None), the staircase's (:func:`solvers.staircase.climb`: escape one rank up along
    the slack's eigenvector, ``descend`` again from the lifted rows)."""
    if not escape or descend is None or sol.status != "stationary" or sol.certificate is None:
        return sol                     # converged and not proved is the only case the staircase takes
    return staircase.climb(problem, sol, descend, gap_tol=gap_tol)


def _batched_descent(cfg: Config, steps: int, lr: float, tol: float, dtype,
                     gap_tol: float) -> Callable[[Problem, np.ndarray], Solution]:
    """The staircase's descent for the batched driver: a certified run from the lifted rows."""
    def descend(up: Problem, H0: np.ndarray) -> Solution:
        return _solve_from(up, cfg._replace(mesh=None), np.asarray(H0, dtype=np.dtype(dtype)), steps, lr, tol,
                           dtype, True, gap_tol)
    return descend


def _generic_descent(problem: Problem, steps: int, lr: float, optimizer, dtype, tol: float,
                     gap_tol: float) -> Callable[[Problem, np.ndarray], Solution] | None:
    """The staircase's descent for an objective of :mod:`solvers.generic` whose point is its embeddings
    and whose certificate is the Gram one (``GRAM`` without ``OWN_BOUND``); None for any other, which
    does not climb."""
    objective = objective_of(problem)
    if not has(objective, Capability.GRAM) or has(objective, Capability.OWN_BOUND):
        return None

    def descend(up: Problem, H0: np.ndarray) -> Solution:
        return generic.solve_from(up, np.asarray(H0, dtype=np.dtype(dtype)), steps=steps, learning_rate=lr,
                                  optimizer=optimizer, tol=tol, certify=True, gap_tol=gap_tol)
    return descend


def _row_mesh(problem: Problem, devices: int | None):
    """The mesh of ``solve(devices=...)``: a full-batch SCL problem only."""
    if devices is None:
        return None
    if not batched(problem):
        raise ProblemError("devices shards the batched kernels by rows; this problem's objective "
                           f"{problem.objective.name!r} has none: drop devices")
    if not problem.is_full_batch:
        raise ProblemError(f"devices shards a full-batch solve by rows; this problem's batching is "
                           f"{problem.batching.scheme}: drop devices, or use the full batch")
    return sharding.device_mesh(devices, sharding.ROWS)


def solve_many(problem: Problem, seeds: Sequence[int], *, steps: int | None = None,
               learning_rate: float | None = None,
               optimizer: str | optax.GradientTransformation = "bb",
               dtype: DTypeLike = jnp.float64, tol: float | None = None,
               chunk_size: int | None = None, lanes: int | None = None, certify: bool = True,
               gap_tol: float = GAP_TOL, devices: int | None = None, escape: bool = True) -> list[Solution]:
    """Solve from several random starts in one compiled call.

    Same keywords as :func:`solve`; ``seeds`` gives the starts (the same starts as ``solve(seed=s)``).
    ``lanes``: how many starts run side by side (``jax.vmap``); the groups run one after another
    inside the same compiled call. Default :func:`default_lanes`: every start on a GPU, on a CPU a
    group that keeps the logits in cache (vmapping more only adds memory traffic there). Each start
    keeps its own stopping test (finished starts stop moving; a group runs until its last start
    stops). ``seconds`` of every solution is the wall time of the call. ``devices``: None (one
    device) or p: the starts split over the first p devices (:mod:`solvers.sharding`), each device
    grouping its share by ``lanes``. ``escape``: each start the certificate does not prove climbs
    the staircase afterwards, one by one (:func:`solve`); its ``seconds`` then add its climb.
    """
    steps, lr, tol, cfg = _prepare(problem, steps, learning_rate, optimizer, dtype, tol, chunk_size, "solve_many")
    mesh = sharding.device_mesh(devices, sharding.RUNS)
    if mesh is not None and not batched(problem):
        raise ProblemError(f"devices splits the batched driver's starts over devices; this problem's objective "
                           f"{problem.objective.name!r} has no batched kernels: drop devices")
    _check_certificate_args(certify, gap_tol)
    _check_escape(escape)
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ProblemError(f"seeds must be a list of integer seeds (got {seeds!r})")
    seeds = [whole_number(s, "seed", 0, SEED_MAX) for s in seeds]
    if not seeds:
        raise ProblemError("solve_many needs at least one seed")
    if not batched(problem):
        sols = generic.solve_many(problem, seeds, steps=steps, learning_rate=lr, optimizer=optimizer,
                                  dtype=dtype, tol=tol, certify=certify, gap_tol=gap_tol)
        descend = _generic_descent(problem, steps, lr, optimizer, dtype, tol, gap_tol)
        return [_escaped(problem, sol, escape, gap_tol, descend) for sol in sols]
    data = _data(problem, _start(problem, seeds[0], dtype), steps, lr, tol, dtype, plain_finish=certify)
    width = _batch_width(data.mon_index, data.protos)
    group = _group(lanes, len(seeds), default_lanes(problem, len(seeds), dtype, width))
    H0 = np.stack([_start(problem, s, dtype) for s in seeds])     # the same starts as solve(seed=s)
    axes = tuple(0 if f == "H0" else None for f in Data._fields)
    t0 = time.perf_counter()
    run_cfg, data = _in_family(problem, cfg, data._replace(H0=H0))
    out = _run_batched(run_cfg, axes, group, mesh, data)
    seconds = time.perf_counter() - t0
    out = _own_rows(jax.tree_util.tree_map(np.asarray, out), problem.n, problem.dim)
    sols = [_solution(problem, _unstack(out, i), cfg, seconds, tol, dtype, certify=certify, gap_tol=gap_tol)
            for i in range(len(seeds))]
    sols = [_with_tied_polish(problem, sol, cfg, steps, lr, tol, dtype, gap_tol) for sol in sols]
    descend = _batched_descent(cfg, steps, lr, tol, dtype, gap_tol)
    return [_escaped(problem, sol, escape, gap_tol, descend) for sol in sols]


def _pad_data(data: Data, n_pad: int, d_pad: int | None = None, v_pad: int | None = None) -> Data:
    """Pad a full-batch run's arrays to ``n_pad`` examples: each extra example is a unit row e_1 of its
    own outside every batch (``valid`` False), so it enters no loss term, gets a zero gradient and never
    moves; to ``d_pad`` columns (default: as they are): zero columns, on which every gradient is 0 (the
    gradient of a row is a combination of rows), so they stay 0; and the iterate V (H = V[tie]; V = H
    untied) to ``v_pad`` rows (default: its rows plus the extra examples'), the rows no example uses
    being e_1 too. H0 (V's start) may hold a leading axis of starts."""
    n = np.shape(data.labels)[-1]
    q, d = np.shape(data.H0)[-2:]
    extra, d_pad = n_pad - n, d if d_pad is None else d_pad
    v_pad = q + extra if v_pad is None else v_pad
    H0 = np.zeros(np.shape(data.H0)[:-2] + (v_pad, d_pad), dtype=np.asarray(data.H0).dtype)
    H0[..., :q, :d] = np.asarray(data.H0)                      # NumPy: no per-shape compiles
    H0[..., q:, 0] = 1.0
    protos = data.protos
    if protos is not None and d_pad != d:
        protos = np.concatenate([np.asarray(protos), np.zeros(protos.shape[:-1] + (d_pad - d,), protos.dtype)], -1)
    # padding labels lie outside 0..k-1: they enter no batch, and the Gram snapshots drop them
    labels = np.concatenate([np.asarray(data.labels), np.full((extra,), np.iinfo(np.int32).max // 2,
                                                              data.labels.dtype)])

    def widen(a, fill):
        pad = [(0, 0)] * (a.ndim - 1) + [(0, extra)]
        return np.pad(np.asarray(a), pad, constant_values=fill)
    rep = np.concatenate([np.asarray(data.rep), np.arange(n, n_pad, dtype=np.int32)])
    tie = np.concatenate([np.asarray(data.tie), np.arange(q, q + extra, dtype=np.int32)])
    return data._replace(H0=H0, labels=labels, rep=rep, tie=tie, mon_index=widen(data.mon_index, 0),
                         mon_valid=widen(data.mon_valid, False), protos=protos)


#: Shape families: a small full-batch problem (at most this many rows, prototypes included) runs in the
#: program of its family, its rows, dimension and classes rounded up to powers of two (at least
#: FAMILY_LEAST_ROWS, FAMILY_LEAST_DIM and FAMILY_LEAST_CLASSES), padded as :func:`_pad_data` and with
#: empty classes: the same iterates up to rounding (the same iterations and statuses on 24 solves,
#: class-mean Grams within 2e-13), one compiled program for many problems (the theorem catalogue's
#: 23 gradient-descent programs became 11). Its cost stays within ufm.programs.FAST_COMPILE_COST,
#: where the padding costs microseconds per step and a compile 1.5-3.5 s.
FAMILY_MAX_ROWS = 256
FAMILY_LEAST_ROWS, FAMILY_LEAST_DIM, FAMILY_LEAST_CLASSES = 32, 8, 8


def _family(problem: Problem, cfg: Config) -> tuple[int, int, int] | None:
    """``(rows, dim, classes)`` of the problem's shape family, or None (not small, not full batch, or
    row-sharded: it runs at its own shape)."""
    width = batch_shape(problem)[1]
    if not problem.is_full_batch or cfg.mesh is not None or width > FAMILY_MAX_ROWS:
        return None
    return (bucket(problem.n, FAMILY_LEAST_ROWS), bucket(problem.dim, FAMILY_LEAST_DIM),
            bucket(problem.k, FAMILY_LEAST_CLASSES))


def _in_family(problem: Problem, cfg: Config, data: Data) -> tuple[Config, Data]:
    """``(config, data)`` of the problem's shape family (:func:`_family`; unchanged outside one). A
    tied run (the polish: V of q < n rows) has its V padded to the family's rows too, so that it runs
    in the same program (the tie is data)."""
    family = _family(problem, cfg)
    if family is None:
        return cfg, data
    rows, dim, classes = family
    return cfg._replace(n_classes=classes, class_rows=None), _pad_data(data, rows, dim, rows)


def _own_rows(s: LoopState, rows: int, d: int) -> LoopState:
    """A (padded) run's state cut to its own ``rows`` rows of V (n, or q for a tied run) and ``d``
    columns (:func:`_in_family`)."""
    return s._replace(params=s.params[..., :rows, :d], grad=s.grad[..., :rows, :d])


def _batched_problems(problems, pad: bool) -> list[Problem]:
    """The problems of :func:`solve_batched` as a list, checked: SCL problems of equal shape (with
    ``pad``, full batch and only the counts may differ)."""
    if isinstance(problems, Problem) or not hasattr(problems, "__iter__"):
        raise ProblemError("solve_batched needs a list of ufm.Problem (for one problem use solve)")
    problems = list(problems)
    if not problems:
        raise ProblemError("solve_batched needs at least one problem")
    for p in problems:
        require_problem(p, "solve_batched")
    first = problems[0]
    for p in problems[1:]:
        if pad:
            if (p.k, p.dim, p.relu, p.prototypes) != (first.k, first.dim, first.relu, first.prototypes):
                raise ProblemError("solve_batched(pad=True) needs problems of equal shape apart from the "
                                   "counts: same number of classes, dim, relu and prototypes")
        elif (p.counts, p.dim, p.relu, p.prototypes, p.batching.scheme, p.batching.batch_size) != \
                (first.counts, first.dim, first.relu, first.prototypes, first.batching.scheme,
                 first.batching.batch_size):
            raise ProblemError("solve_batched needs problems of equal shape: same counts, dim, relu, "
                               "prototypes and batching scheme (tau and seed may differ; "
                               "pad=True allows different counts under full batch)")
        if p.batching.scheme == "explicit" and p.batching != first.batching:
            raise ProblemError("solve_batched needs the same explicit batching for every problem")
    if not all(batched(p) for p in problems):
        raise ProblemError("solve_batched runs the batched kernels (SCL); solve a problem of another objective "
                           "with solve or solve_many")
    if pad and not all(p.is_full_batch for p in problems):
        raise ProblemError("solve_batched(pad=True) supports full-batch problems only")
    return problems


def solve_batched(problems: Sequence[Problem], *, steps: int | None = None,
                  learning_rate: float | None = None,
                  optimizer: str | optax.GradientTransformation = "bb", seed: int | None = None,
                  dtype: DTypeLike = jnp.float64, tol: float | None = None, chunk_size: int | None = None,
                  pad: bool = False, pad_to: int | None = None,
                  lanes: int | None = None, certify: bool = True,
                  gap_tol: float = GAP_TOL, devices: int | None = None) -> list[Solution]:
    """Solve several problems of equal shape in one vmapped compiled call.

    The problems must share counts, dim, relu, prototypes and batching scheme (so their arrays stack);
    they may differ in ``tau`` (traced) and in the seed of a random batching. Every problem starts from
    ``seed`` (default: its own ``problem.seed``). Returns one :class:`ufm.Solution` per problem.

    ``pad=True`` (full batch only) also allows different class counts, e.g. a sweep over imbalance
    ratios: every problem's n examples are padded to ``pad_to`` rows (default the largest n) with rows
    outside the batch (masked out of every loss term, zero gradient, never moved), and the labels are
    vmapped too. Each problem then runs exactly its own n-example full-batch solve (same start as
    :func:`solve` with that seed), and one compiled program serves every problem set with the same
    ``pad_to``, so a sweep recompiles only when the padded size changes.

    ``lanes``: how many problems run side by side (vmapped), as in :func:`solve_many` (default
    :func:`default_lanes` at the padded width); the groups run in sequence in the same call.
    ``devices``: None (one device) or p: the problems split over the first p devices
    (:mod:`solvers.sharding`).
    """
    problems = _batched_problems(problems, pad)
    if seed is not None:
        seed = whole_number(seed, "seed", 0, SEED_MAX)
    _check_certificate_args(certify, gap_tol)
    first = problems[0]
    steps, lr, tol, cfg = _prepare(first, steps, learning_rate, optimizer, dtype, tol, chunk_size)
    if pad:
        n_pad = max(p.n for p in problems) if pad_to is None else int(pad_to)
        if n_pad < max(p.n for p in problems):
            raise ProblemError(f"pad_to = {n_pad} is smaller than the largest problem "
                               f"(n = {max(p.n for p in problems)})")
        # counts differ: no bound on a class's rows, so one program serves every padded sweep
        cfg = cfg._replace(class_rows=None)
    mesh = sharding.device_mesh(devices, sharding.RUNS)
    datas = [_data(p, _start(p, p.seed if seed is None else seed, dtype), steps, lr, tol, dtype, plain_finish=certify)
             for p in problems]
    if pad:
        datas = [_pad_data(d, n_pad) for d in datas]
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.asarray(np.stack(xs)), *datas)
    shared = ("protos", "proto_labels", "lr", "tol") + (() if pad else ("labels", "rep", "tie"))
    axes = tuple(None if f in shared else 0 for f in Data._fields)
    stacked = stacked._replace(protos=datas[0].protos, proto_labels=datas[0].proto_labels,
                               lr=datas[0].lr, tol=datas[0].tol)
    if not pad:
        stacked = stacked._replace(labels=datas[0].labels, rep=datas[0].rep, tie=datas[0].tie)
    width = _batch_width(stacked.mon_index, stacked.protos)
    if pad:     # the kernels run on the padded rows: their width decides the plain phase, not first's
        cfg = cfg._replace(plain_phase=_takes_plain_phase(False, width))
    group = _group(lanes, len(problems), default_lanes(first, len(problems), dtype, width))
    t0 = time.perf_counter()
    out = _run_batched(cfg, axes, group, mesh, stacked)
    seconds = time.perf_counter() - t0
    out = jax.tree_util.tree_map(np.asarray, out)
    return [_batched_solution(p, _unstack(out, i), cfg, seconds, steps, lr, tol, dtype, certify, gap_tol)
            for i, p in enumerate(problems)]


def _batched_solution(p: Problem, s, cfg: Config, seconds: float, steps: int, lr: float, tol: float, dtype,
                      certify: bool, gap_tol: float) -> Solution:
    """One problem's Solution from its lane of :func:`solve_batched`'s state (its own rows), polished."""
    s = s._replace(params=s.params[:p.n], grad=s.grad[:p.n])
    # the polish solves p alone on its own rows: its own width decides its plain phase
    own = cfg._replace(plain_phase=_takes_plain_phase(p.batching.is_random, batch_shape(p)[1]))
    return _with_tied_polish(p, _solution(p, s, cfg, seconds, tol, dtype, certify=certify, gap_tol=gap_tol),
                             own, steps, lr, tol, dtype, gap_tol)
