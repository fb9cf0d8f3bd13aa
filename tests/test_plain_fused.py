"""The plain fused form of log E (ufm.objectives.scl.plain) against independent computations, and the
descent's two phases (solvers.gd: PLAIN_SWITCH).

References: the reference path's log E (ufm.objectives.scl.formula, JAX's derivative of the excess form: other
formulas, other code), mpmath at 60 digits (tests/reference_mp.py) and a plain Python loop over the
SCL formula (tests/reference.py). Tolerances: in float64 at tau >= 0.1 on these small problems the
plain form's rounding is ~1e-15 relative to E (rounding_estimate / E <= 1e-13 here), so values agree to
1e-13 relative and tangent gradients to 1e-12 of their largest entry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from solvers import gd
from ufm import Batching, Problem
from ufm.batching import pack
from ufm.objectives.scl.formula import reference_log_excess_packed as reference_log_excess, representatives
from ufm.objectives.scl.plain import log_excess_plain_packed, min_tau, rounding_estimate
from compiled import small_jit
from tests.reference import scl_loop
from tests.reference_mp import excess_mp


def _unit(key, n, d, relu=False):
    H = jax.random.normal(jax.random.PRNGKey(key), (n, d))
    H = jnp.abs(H) if relu else H
    return H / jnp.linalg.norm(H, axis=1, keepdims=True)


def _tangent(G, H):
    return G - jnp.sum(G * H, axis=1, keepdims=True) * H


CASES = [
    # counts, tau, batches (None: full), chunk, prototypes (labels) or None, prototype anchors
    ((4, 4, 4), 0.5, None, None, None, True),
    pytest.param((10, 5, 3, 2), 0.3, None, 3, None, True, marks=pytest.mark.slow),
    ((10, 5, 3, 2), 0.1, None, 7, None, True),
    ((6, 6, 1), 0.5, None, None, None, True),                       # a class of one: no anchor
    ((8, 8, 2, 2), 0.5, [list(range(12)), list(range(6, 20)), [0, 1, 18, 19]], 4, None, True),
    pytest.param((5, 4, 3), 0.4, None, 2, (0, 1, 2), True, marks=pytest.mark.slow),
    ((5, 4, 3), 0.4, [list(range(7)), list(range(5, 12))], None, (0, 2), False),
]


@pytest.mark.parametrize("counts,tau,batches,chunk,protos,anchors", CASES)
def test_plain_form_equals_the_reference_path(counts, tau, batches, chunk, protos, anchors):
    labels = np.repeat(np.arange(len(counts)), counts)
    n, d = len(labels), 5
    H = _unit(sum(counts), n, d)
    packed = pack(batches if batches is not None else [list(range(n))])
    P = None if protos is None else _unit(7, len(protos), d)
    PL = None if protos is None else jnp.asarray(protos)
    lab, rep = jnp.asarray(labels), jnp.asarray(representatives(labels))
    idx, val = jnp.asarray(packed.index), jnp.asarray(packed.valid)

    def ref(H, t):
        return reference_log_excess(H, lab, rep, t, idx, val, P, PL, anchors)

    def plain(H, t):
        return log_excess_plain_packed(H, lab, rep, t, idx, val, len(counts), P, PL, anchors, chunk)

    (v1, (g1, t1)), (v2, (g2, t2)) = [small_jit(jax.value_and_grad(f, argnums=(0, 1)))(H, jnp.asarray(tau))
                                      for f in (ref, plain)]
    assert abs(float(v2) - float(v1)) <= 1e-13 * max(1.0, abs(float(v1)))
    G1, G2 = _tangent(g1, H), _tangent(g2, H)
    assert float(jnp.abs(G1 - G2).max()) <= 1e-12 * float(jnp.abs(G1).max())
    assert abs(float(t2) - float(t1)) <= 1e-12 * abs(float(t1))
    # the loss itself, by a double loop: log E = log(L - sum log|P(i)|) at this batching
    loss = scl_loop(np.asarray(H), labels, tau, batches, prototypes=None if P is None else np.asarray(P),
                    prototype_labels=protos, prototype_anchors=anchors)
    E_mp = float(excess_mp(np.asarray(H), labels, tau, batches, None if P is None else np.asarray(P),
                           protos, anchors))
    assert abs(float(jnp.exp(v2)) - E_mp) <= 1e-13 * E_mp
    assert loss > E_mp                                                # the constant sum log|P(i)| >= 0


def test_rounding_estimate_holds_against_mpmath():
    """The plain form's error against 60 digits stays within its stated bound, also where that bound
    is large relative to E (a near-collapsed start at small tau, the regime gd leaves to the precise
    form)."""
    labels = np.repeat(np.arange(3), 6)
    means = np.eye(3, 4)
    for tau, spread in ((0.5, 0.3), (0.1, 0.05), (0.05, 1e-3)):
        H = np.asarray(means[labels] + spread * np.asarray(jax.random.normal(jax.random.PRNGKey(3), (18, 4))))
        H /= np.linalg.norm(H, axis=1, keepdims=True)
        packed = pack([list(range(18))])
        value = small_jit(log_excess_plain_packed, static_argnums=6)(
            jnp.asarray(H), jnp.asarray(labels), jnp.asarray(representatives(labels)), tau,
            jnp.asarray(packed.index), jnp.asarray(packed.valid), 3)
        E_mp = float(excess_mp(H, labels, tau))
        bound = rounding_estimate(tau, 18, 18, jnp.float64)
        assert abs(float(jnp.exp(value)) - E_mp) <= bound, (tau, float(jnp.exp(value)), E_mp, bound)


def _excess_longdouble(H, labels, tau) -> float:
    """E of a full batch from the formula in numpy's longdouble (80-bit on x86: eps 1.1e-19), with
    each anchor's log-sum-exp shifted by its own maximum: an independent reference at n = 1000."""
    X = np.asarray(H, dtype=np.longdouble)
    G = X @ X.T / np.longdouble(tau)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    G_off = G.copy()
    np.fill_diagonal(G_off, -np.inf)
    top = G_off.max(axis=1)
    lse = top + np.log(np.exp(G_off - top[:, None]).sum(axis=1))
    npos = same.sum(axis=1)
    mean_pos = np.where(same, G, 0).sum(axis=1) / npos
    return float(np.sum(lse - mean_pos - np.log(npos.astype(np.longdouble))))


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18, reason="needs an 80-bit longdouble")
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("tau,spread", [(0.5, 1.0), (0.1, 0.1), (0.05, 0.02)])
def test_rounding_estimate_holds_at_n_1000(dtype, tau, spread):
    """The estimate against an 80-bit reference at the benchmark's size (k = 10, d = 10): a random
    start (spread 1) and classes near their means (spread 0.1, where E is small against the loss)."""
    labels = np.repeat(np.arange(10), 100)
    means = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 10)))[0]
    H = means[labels] * (1 - spread) + spread * np.random.default_rng(1).normal(size=(1000, 10)) / 3
    H = (H / np.linalg.norm(H, axis=1, keepdims=True)).astype(jnp.dtype(dtype))
    packed = pack([list(range(1000))])
    # n = 1000: compiled as the toolkit compiles a program of this size (XLA's default optimisation)
    value = jax.jit(log_excess_plain_packed, static_argnums=6)(
        jnp.asarray(H), jnp.asarray(labels), jnp.asarray(representatives(labels)), jnp.asarray(tau, dtype),
        jnp.asarray(packed.index), jnp.asarray(packed.valid), 10)
    E_ref = _excess_longdouble(H.astype(np.float64), labels, tau)
    # in log E: the estimate relative to E, plus the rounding of log E itself (any form has it)
    allowed = rounding_estimate(tau, 1000, 1000, dtype) / E_ref + float(jnp.finfo(dtype).eps) * abs(np.log(E_ref))
    assert abs(float(value) - np.log(E_ref)) <= allowed, (float(value), np.log(E_ref), allowed)


@pytest.mark.parametrize("tau,relu,spread", [(0.5, True, 0.0), (0.5, False, 1e-3), (0.1, True, 1e-3),
                                             (0.1, False, 0.0)])
def test_plain_direction_is_within_the_rounding_estimate(tau, relu, spread):
    """The plain form's descent direction (the projected gradient of log E) against the precise
    kernel's (other formulas, other code) at n = 1000, k = 10, d = 10, near the optimum (the
    orthogonal frame with ReLU, a random orthonormal frame without): within beta = rounding_estimate
    / E, the plain value's own estimate (measured up to 1.4 beta over 720 points: tau 0.07-0.5, ReLU
    and not, spreads 0-1, 12 seeds; the largest at exactly collapsed points at tau 0.07; hence the
    bound 4 beta, whose margin covers another CPU's rounding). A run that a certificate follows may stop
    on the plain form where PLAIN_SWITCH beta <= tol (solvers.gd._two_phases): its direction is then off
    by at most tol / 25, far below the gradient test's tol ** GRAD_POWER (4e-14 against 1e-9 at tol
    1e-12)."""
    from ufm.constraint_sets import unit_sphere
    from ufm.objectives.scl.precise import log_excess_packed

    labels = np.repeat(np.arange(10), 100)
    rng = np.random.default_rng(0)
    means = np.eye(10) if relu else np.linalg.qr(rng.normal(size=(10, 10)))[0]
    H = means[labels] + spread * rng.normal(size=(1000, 10)) / 3
    H = np.abs(H) if relu else H
    H = H / np.linalg.norm(H, axis=1, keepdims=True)
    packed = pack([list(range(1000))])
    args = (jnp.asarray(labels), jnp.asarray(representatives(labels)), jnp.asarray(tau),
            jnp.asarray(packed.index), jnp.asarray(packed.valid), 10)
    cset = unit_sphere(relu)
    directions = []
    for kernel in (log_excess_plain_packed, log_excess_packed):
        value, grad = jax.jit(jax.value_and_grad(kernel), static_argnums=6)(jnp.asarray(H), *args)
        directions.append(cset.direction(H, np.asarray(grad)))
    beta = rounding_estimate(tau, 1000, 1000, jnp.float64) / np.exp(float(value))
    assert np.linalg.norm(directions[0] - directions[1]) <= 4 * beta


def test_min_tau_keeps_every_entry_above_underflow():
    for dtype in (jnp.float32, jnp.float64):
        t = min_tau(dtype)
        assert float(jnp.exp(jnp.asarray(-2.0 / t, dtype))) >= float(jnp.finfo(dtype).tiny)


def _runs(problem, seed, plain: bool):
    steps, lr, tol, cfg = gd._prepare(problem, None, None, "bb", jnp.float64, None)
    data = gd._data(problem, gd._start(problem, seed, jnp.float64), steps, lr, tol, jnp.float64)
    return gd._compiled(cfg._replace(plain_phase=plain), None)(data)


@pytest.mark.parametrize("problem", [
    Problem.from_counts([9, 7, 5, 3], tau=0.4),
    pytest.param(Problem.from_counts([9, 7, 5, 3], tau=0.4, relu=True, dim=8), marks=pytest.mark.slow),
    pytest.param(Problem.from_counts([6, 6, 4], tau=0.5,
                                     batching=Batching.from_lists([list(range(10)), list(range(6, 16))])),
                 marks=pytest.mark.slow),
])
def test_two_phases_take_the_precise_path(problem):
    """The plain phase changes only the rounding of the values the search compares: the same
    iterations, the same point, the reported value the precise one."""
    a, b = _runs(problem, 2, False), _runs(problem, 2, True)
    assert int(a.iteration) == int(b.iteration) and bool(a.converged) and bool(b.converged)
    assert int(a.record.plain_epochs) == 0 and 0 < int(b.record.plain_epochs) <= int(b.iteration)
    assert float(jnp.abs(a.params - b.params).max()) <= 1e-9
    assert abs(float(a.value) - float(b.value)) <= 1e-10


def test_a_certified_run_may_end_on_the_plain_form():
    """With ``plain_finish`` (a certificate follows) a plain phase that passed the whole stopping test
    ends the run there: the same iterations and point as without it, the value the plain one (within
    the rounding estimate of the precise value), and ``plain_value`` says so; without it the run
    ends on the precise form. (9, 7, 5, 3), ReLU, d = 8 at tau 0.4: the plain phase reaches the exact
    frame, whose direction is 0."""
    problem = Problem.from_counts([9, 7, 5, 3], tau=0.4, relu=True, dim=8)
    steps, lr, tol, cfg = gd._prepare(problem, None, None, "bb", jnp.float64, None)
    ends = {}
    for finish in (False, True):
        data = gd._data(problem, gd._start(problem, 2, jnp.float64), steps, lr, tol, jnp.float64,
                        plain_finish=finish)
        ends[finish] = gd._compiled(cfg._replace(plain_phase=True), None)(data)
    precise, plain = ends[False], ends[True]
    assert bool(precise.converged) and bool(plain.converged)
    assert not bool(precise.record.plain_value) and bool(plain.record.plain_value)
    assert int(plain.record.plain_epochs) == int(plain.iteration) == int(precise.iteration)
    assert float(jnp.abs(plain.params - precise.params).max()) == 0.0
    beta = rounding_estimate(problem.tau, problem.n, problem.n, jnp.float64) / np.exp(float(precise.value))
    assert abs(float(plain.value) - float(precise.value)) <= beta + 1e-15 * abs(float(precise.value))
    assert float(plain.grad_norm) <= tol ** gd.GRAD_POWER


def test_a_run_ended_on_the_plain_form_reports_the_precise_value(monkeypatch):
    """Where no certificate comes after all (its blocks would not fit), the solution's log E is not
    the plain value the run ended on but a precise evaluation at the point (the value that a
    certificate would have computed)."""
    from ufm.objectives import embeddings_log_excess

    problem = Problem.from_counts([9, 7, 5, 3], tau=0.4, relu=True, dim=8)
    monkeypatch.setattr(gd, "PLAIN_MIN_WIDTH", 0)
    monkeypatch.setattr(gd, "collapsed_form_applies", lambda problem: False)
    monkeypatch.setattr(gd, "certificate_fits", lambda problem: False)
    sol = gd.solve(problem, seed=2, tol=1e-10)   # its family's 32 rows: 100 beta ~ 1e-12, above 1e-12
    assert sol.certificate is None and sol.info.plain_epochs == sol.iterations
    assert sol.log_excess == embeddings_log_excess(problem, sol.embeddings)


@pytest.mark.slow
def test_small_tau_hands_over_to_the_precise_form(monkeypatch):
    """At tau 0.05 the plain rounding near the optimum (~8e-4 of E) is far above the stopping
    tolerance. From a random start (one compiled run, no continuation) the plain phase takes the
    first steps and hands over; in a solve (continuation stages 0.5 .. 0.1 first) the last stage
    starts near the optimum and runs on the precise form from its first step; it is proved optimal."""
    problem = Problem.from_counts([8, 8, 2, 2], tau=0.05)
    run = _runs(problem, 0, True)
    assert 0 < int(run.record.plain_epochs) < int(run.iteration)
    monkeypatch.setattr(gd, "PLAIN_MIN_WIDTH", 0)
    sol = gd.solve(problem, seed=0)
    assert sol.status == "optimal" and sol.certificate.relative_gap <= 1e-6
    assert sol.info.plain_epochs == 0


def test_plain_phase_only_where_it_pays_back_its_compile():
    """Deterministic batchings of at least PLAIN_MIN_WIDTH rows; never a random scheme (its steps are
    on other batches than the reported objective)."""
    def config(problem):
        return gd._prepare(problem, None, None, "bb", jnp.float64, None)[3]
    assert config(Problem.balanced(10, gd.PLAIN_MIN_WIDTH // 10)).plain_phase
    assert not config(Problem.balanced(10, gd.PLAIN_MIN_WIDTH // 10 - 1)).plain_phase
    assert not config(Problem.balanced(10, 200, batching=Batching.random(gd.PLAIN_MIN_WIDTH))).plain_phase


def test_padded_sweep_takes_the_plain_phase_from_the_padded_width(monkeypatch):
    """solve_batched(pad=True) runs the kernels on n_pad rows (the padding as non-members), so n_pad
    decides the plain phase, not the first problem's n; with it every problem ends where the
    precise-only sweep ends (both proved optimal, the same loss to 1e-10)."""
    problems = [Problem.from_counts([6, 6, 4, 4], tau=0.5), Problem.from_counts([8, 6, 6, 4], tau=0.4)]
    precise = gd.solve_batched(problems, pad=True)                  # 24 rows < PLAIN_MIN_WIDTH
    monkeypatch.setattr(gd, "PLAIN_MIN_WIDTH", 22)                  # above the first n (20), below n_pad
    two_phase = gd.solve_batched(problems, pad=True)
    for a, b in zip(precise, two_phase):
        assert a.info.plain_epochs == 0 and b.info.plain_epochs > 0
        assert a.status == "optimal" and b.status == "optimal"
        assert abs(a.loss - b.loss) <= 1e-10


def test_default_block_follows_its_documented_rule(monkeypatch):
    """~BLOCK_BYTES of logits, at most half the batch, at least MIN_BLOCK_BYTES / itemsize rows (a
    batch below twice that: one block), the precise kernel's rule beyond MAX_BLOCK_BYTES (the sizes
    of default_block's measured sweep, worked out by hand from 20 MB)."""
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    from ufm.objectives.scl.plain import default_block
    from ufm.objectives.scl.precise import default_block as precise_block
    assert [default_block(n, 8) for n in (1000, 5000, 20000)] == [500, 524, 131]
    assert [default_block(n, 4) for n in (5000, 20000)] == [1048, 262]
    assert default_block(129, 8) == 129 and default_block(254, 8) == 254 and default_block(255, 8) == 128
    assert default_block(65536, 8) == 128                              # 128 rows of 512 kB = 64 MB
    assert default_block(100000, 8) == precise_block(100000, 8)
