"""The tools a researcher would pick instead of ufm-scl, on the same problem, the same starts, the same
target, in the same run (``python -m benchmarks --only peers``; ``pip install .[bench]``).

Problem: balanced n = 1000 (k = 10, 100 per class), d = 10, tau = 0.5, full batch, float64, with and
without ReLU. Target: a relative gap of 1e-6 on the excess (docs/theory.md section 3),

    gap(H) = (L(H) - L*) / E*,    L* = constant + E*   (closed form, docs/theory.md section 2:
                                                         the simplex ETF, or the orthogonal frame with ReLU).

Every peer minimises the plain SupCon loss (sum reduction) of H, written in its own framework, and is
stopped at the first loss evaluation whose gap is <= the target (a trial point of a line search
counts: generous to the peer). Each peer's functions are compiled / warmed before its clock starts. A
peer that reaches the target within REPEAT_BELOW (2 s) is run 3 times from that start and its median
taken, as ufm-scl's time is a median of 3 calls.

Peers (each a ``bench`` extra, never a runtime dependency):

- pymanopt ConjugateGradient and TrustRegions on the Oblique manifold (unit columns of X = H^T), with
  a jitted JAX cost, Euclidean gradient and Hessian-vector product; ReLU as H = x^2 / ||x^2|| row by
  row (the start x = sqrt(h0));
- torch L-BFGS (strong Wolfe) on the normalising parameterisation H = X / ||X|| (ReLU:
  X^2 / ||X^2||);
- the same spectral projected gradient (BB + nonmonotone Armijo) as ufm-scl's default, in PyTorch;
- geoopt RiemannianAdam on the sphere (rows), lr 0.01; ReLU through x^2 / ||x^2||;
- Adam + projection (benchmarks/torch_baseline.py, lr 0.1): one row, not the headline.

ufm-scl's time: the whole call a user makes, ``gd.solve(problem, seed=s, certify=False,
steps=e)``, for exactly the e epochs its own history shows it needs to reach the target, warm (its
program compiled by an earlier call, as each peer's functions are), the median of 3 calls: packing the
problem, the random start, the compiled loop, the float64 evaluation and the Solution, so the time
is to the target, not to its own tolerance. Also recorded: the compiled loop alone (``loop_seconds``)
and the default call to its own tolerance, 1e-12 (``default_call_seconds``, more epochs than the
target needs). Ratios are ufm-scl time / peer time per start; the table gives their median over the
starts (below 1: ufm-scl is faster).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from solvers import gd
from solvers.transforms import NEGATIVE_CURVATURE_MOVE
from ufm.objectives.scl.prediction import etf_excess, orthogonal_frame_excess
from ufm import Problem


class Reached(Exception):
    """Raised from a peer's cost function at the first evaluation within the target."""


class Clock:
    """Wall time from ``start()`` to the first loss within ``target`` of the optimum, or to the cap."""

    def __init__(self, constant: float, excess_star: float, target: float, cap: float):
        self.constant, self.excess_star, self.target, self.cap = constant, excess_star, target, cap
        self.best_gap = math.inf
        self.evaluations = 0

    def start(self) -> "Clock":
        self.t0 = time.perf_counter()
        return self

    def seen(self, loss: float) -> None:
        """Record one loss evaluation; raise :class:`Reached` at the target, TimeoutError past the cap."""
        self.evaluations += 1
        gap = (loss - self.constant - self.excess_star) / self.excess_star
        self.best_gap = min(self.best_gap, gap)
        if gap <= self.target:
            self.seconds = time.perf_counter() - self.t0
            raise Reached
        if time.perf_counter() - self.t0 > self.cap:
            raise TimeoutError

    def result(self, reached: bool) -> dict:
        seconds = self.seconds if reached else time.perf_counter() - self.t0
        return {"reached": reached, "seconds": seconds, "evaluations": self.evaluations,
                "best_gap": self.best_gap}


def timed(run: Callable[[], None], clock: Clock) -> dict:
    clock.start()
    try:
        run()
    except Reached:
        return clock.result(True)
    except TimeoutError:
        pass
    return clock.result(False)


# ------------------------------------------------------------------ the loss, in JAX and in PyTorch
def supcon_jax(H, labels, tau):
    """Plain SupCon, sum reduction: sum_i -1/|P(i)| sum_{p in P(i)} log softmax_{a != i}(G_i./tau)_p."""
    n = H.shape[0]
    logits = (H @ H.T) / tau
    eye = jnp.eye(n, dtype=bool)
    lse = jax.nn.logsumexp(jnp.where(eye, -jnp.inf, logits), axis=1)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    return jnp.sum(lse - jnp.sum(jnp.where(pos, logits, 0.0), axis=1) / pos.sum(1))


def rows_from(X, relu: bool, xp=jnp):
    """H (n, d) from a free parameter X (n, d): X / ||X|| by rows, or X^2 / ||X^2|| with ReLU."""
    Y = X * X if relu else X
    norm = xp.sqrt((Y * Y).sum(1, keepdims=True)) if xp is jnp else Y.norm(dim=1, keepdim=True)
    return Y / norm


# ------------------------------------------------------------------ pymanopt
def pymanopt_run(name: str, H0: np.ndarray, labels, tau, relu: bool, clock: Clock) -> dict:
    import pymanopt
    from pymanopt.manifolds import Oblique
    n, d = H0.shape
    y = jnp.asarray(labels)
    # Oblique(d, n): unit columns; X = H^T (no ReLU) or X = sqrt(H)^T, H = x^2 / ||x^2|| (ReLU)
    f = lambda X: supcon_jax(rows_from(X.T, True) if relu else X.T, y, tau)  # noqa: E731
    cost_j = jax.jit(f)
    grad_j = jax.jit(jax.grad(f))
    hvp_j = jax.jit(lambda X, U: jax.jvp(jax.grad(f), (X,), (U,))[1])
    manifold = Oblique(d, n)

    @pymanopt.function.numpy(manifold)
    def cost(X):
        value = float(cost_j(X))
        clock.seen(value)
        return value

    @pymanopt.function.numpy(manifold)
    def egrad(X):
        return np.asarray(grad_j(X))

    @pymanopt.function.numpy(manifold)
    def ehess(X, U):
        return np.asarray(hvp_j(X, U))

    X0 = (np.sqrt(H0) if relu else H0).T.copy()
    for fn in (cost_j, grad_j):                      # compile before the clock
        jax.block_until_ready(fn(X0))
    jax.block_until_ready(hvp_j(X0, X0))
    problem = pymanopt.Problem(manifold, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)
    opt_cls = {"ConjugateGradient": pymanopt.optimizers.ConjugateGradient,
               "TrustRegions": pymanopt.optimizers.TrustRegions}[name]
    optimizer = opt_cls(verbosity=0, max_time=clock.cap, max_iterations=100000, min_gradient_norm=0.0,
                        min_step_size=0.0)
    return timed(lambda: optimizer.run(problem, initial_point=X0), clock)


# ------------------------------------------------------------------ PyTorch peers
def _torch_loss(labels, tau):
    import torch
    from benchmarks.torch_baseline import supcon_sum
    y = torch.tensor(np.asarray(labels), dtype=torch.long)
    return lambda H: supcon_sum(H, y, tau)


def torch_lbfgs_run(H0, labels, tau, relu: bool, clock: Clock) -> dict:
    import torch
    loss_of = _torch_loss(labels, tau)
    X = torch.tensor(np.sqrt(H0) if relu else H0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([X], lr=1.0, max_iter=100000, max_eval=100000, tolerance_grad=0.0,
                            tolerance_change=0.0, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_of(rows_from(X, relu, torch))
        clock.seen(loss.item())
        loss.backward()
        return loss

    def run():
        while True:
            opt.step(closure)
    return timed(run, clock)


def torch_bb_run(H0, labels, tau, relu: bool, clock: Clock, memory: int = 10, c: float = 1e-4) -> dict:
    """ufm-scl's default scheme (solvers.gd docstring) written in PyTorch on the SupCon loss: the
    Riemannian gradient (tangent projection; with ReLU zeroed on active bounds), the retraction
    (clip, normalise rows), alternating BB1/BB2 steps (where <s,y> <= 0 the larger of twice the last
    step and the one that moves the largest coordinate by NEGATIVE_CURVATURE_MOVE), nonmonotone
    Armijo (memory 10), halving."""
    import torch
    loss_of = _torch_loss(labels, tau)

    def value_grad(H):
        H = H.detach().requires_grad_(True)
        loss = loss_of(H)
        clock.seen(loss.item())
        (G,) = torch.autograd.grad(loss, H)
        g = G - (G * H).sum(1, keepdim=True) * H
        if relu:
            g = torch.where((H.detach() <= 0) & (g > 0), torch.zeros_like(g), g)
        return loss.item(), g

    def retract(V):
        if relu:
            V = V.clamp_min(0.0)
        return V / V.norm(dim=1, keepdim=True)

    def run():
        H = torch.tensor(H0, dtype=torch.float64)
        f, g = value_grad(H)
        recent, a, it = [f], 0.1, 0
        while True:
            ref = max(recent[-memory:])
            while True:
                Hn = retract(H - a * g)
                fn, gn = value_grad(Hn)
                if fn <= ref + c * (g * (Hn - H)).sum().item():
                    break
                a /= 2
            s, yv = Hn - H, gn - g
            sy = (s * yv).sum().item()
            it += 1
            if sy > 0:
                a = (s * s).sum().item() / sy if it % 2 else sy / (yv * yv).sum().item()
            else:   # no positive curvature: ufm-scl's rule (solvers.transforms.NEGATIVE_CURVATURE_MOVE)
                largest = gn.abs().max().item()
                a = max(2 * a, NEGATIVE_CURVATURE_MOVE / largest) if largest > 0 else 2 * a
            H, f, g = Hn, fn, gn
            recent.append(f)
    return timed(run, clock)


def geoopt_run(H0, labels, tau, relu: bool, clock: Clock, lr: float = 0.01) -> dict:
    import geoopt
    import torch
    loss_of = _torch_loss(labels, tau)
    start = np.sqrt(H0) / np.linalg.norm(np.sqrt(H0), axis=1, keepdims=True) if relu else H0
    X = geoopt.ManifoldParameter(torch.tensor(start, dtype=torch.float64), manifold=geoopt.Sphere())
    opt = geoopt.optim.RiemannianAdam([X], lr=lr)

    def run():
        while True:
            opt.zero_grad()
            loss = loss_of(rows_from(X, True, torch) if relu else X)
            clock.seen(loss.item())
            loss.backward()
            opt.step()
    return timed(run, clock)


def adam_projection_run(H0, labels, tau, relu: bool, clock: Clock, lr: float = 0.1) -> dict:
    """benchmarks/torch_baseline.py's loop (Adam, rows projected back to the sphere; with ReLU clipped
    at 0 first)."""
    import torch
    loss_of = _torch_loss(labels, tau)
    H = torch.tensor(H0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([H], lr=lr)

    def run():
        while True:
            opt.zero_grad()
            loss = loss_of(H)
            clock.seen(loss.item())
            loss.backward()
            opt.step()
            with torch.no_grad():
                if relu:
                    H.clamp_(min=0.0)
                H.div_(H.norm(dim=1, keepdim=True))
    return timed(run, clock)


PEERS: dict[str, Callable] = {
    "pymanopt ConjugateGradient": lambda *a: pymanopt_run("ConjugateGradient", *a),
    "pymanopt TrustRegions": lambda *a: pymanopt_run("TrustRegions", *a),
    "torch L-BFGS": torch_lbfgs_run,
    "BB in PyTorch": torch_bb_run,
    "geoopt RiemannianAdam": geoopt_run,
    "Adam + projection": adam_projection_run,
}
HEADLINE = ("pymanopt ConjugateGradient", "pymanopt TrustRegions")


# ------------------------------------------------------------------ ufm-scl
def _median_call(call: Callable[[], object], reps: int = 3) -> tuple[float, object]:
    """Median wall seconds of ``reps`` calls (after one untimed call), and the last result."""
    result = call()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def ufm_run(problem: Problem, seed: int, constant: float, excess_star: float, target: float) -> dict:
    """The whole ``gd.solve`` call (no certificate) for exactly the epochs needed to reach the target
    (from a first run's history), warm, the median of 3 (module docstring); the gap is measured on the
    returned Solution's excess. Also the compiled loop alone, the default call, and the time to a
    certified optimum: the default call with its certificate and, where that does not prove the
    point, the staircase (``certified_seconds``, ``certified``, ``escapes``)."""
    certified_seconds, proved = _median_call(lambda: gd.solve(problem, seed=seed))
    staircase = proved.info.staircase
    certified = {"certified_seconds": certified_seconds, "certified": proved.status == "optimal",
                 "certified_reached": bool(proved.status == "optimal"
                                           and (proved.excess - excess_star) / excess_star <= target),
                 "escapes": 0 if staircase is None else staircase.escapes}
    default_seconds, first = _median_call(lambda: gd.solve(problem, seed=seed, certify=False))
    gaps = (np.asarray(first.info.excess_history) - excess_star) / excess_star
    hit = np.flatnonzero(gaps <= target)
    if not len(hit):
        return {"reached": False, "seconds": math.nan, "iterations": first.iterations,
                "best_gap": float(np.nanmin(gaps)), "default_call_seconds": default_seconds, **certified}
    epochs = int(hit[0]) + 1
    seconds, sol = _median_call(lambda: gd.solve(problem, seed=seed, certify=False, steps=epochs))
    st, lr, tol, cfg = gd._prepare(problem, epochs, None, "bb", jnp.float64, None, None)
    data = gd._data(problem, gd._start(problem, seed, jnp.float64), st, lr, tol, jnp.float64)
    compiled = gd._compiled(cfg, None).lower(data).compile()
    loop_seconds, _ = _median_call(lambda: jax.block_until_ready(compiled(data)))
    gap = (sol.excess - excess_star) / excess_star
    return {"reached": bool(gap <= target), "seconds": seconds, "iterations": epochs, "best_gap": gap,
            "loop_seconds": loop_seconds, "default_call_seconds": default_seconds,
            "default_call_iterations": first.iterations, **certified}


def summarize(rows: list[dict]) -> dict:
    """Per peer: the median over the starts of the ratio ufm-scl time / peer time, over the starts
    where ufm-scl reached the target (a start where it did not, a stationary point that is not the
    optimum, has no time to the target: counted, not hidden), and whether the peer reached it there."""
    ours = [r for r in rows if r["ufm-scl"]["reached"]]
    out = {"ufm_reached": len(ours), "starts": len(rows),
           "ufm_median_seconds": statistics.median(r["ufm-scl"]["seconds"] for r in ours) if ours else math.nan,
           "ufm_median_iterations": statistics.median(r["ufm-scl"]["iterations"] for r in ours) if ours else math.nan,
           "ufm_median_loop_seconds": (statistics.median(r["ufm-scl"]["loop_seconds"] for r in ours)
                                       if ours else math.nan),
           "ufm_median_default_call_seconds": statistics.median(r["ufm-scl"]["default_call_seconds"]
                                                                for r in rows),
           "ufm_certified": sum(r["ufm-scl"]["certified"] for r in rows),
           "ufm_median_certified_seconds": statistics.median(r["ufm-scl"]["certified_seconds"] for r in rows),
           "ufm_escapes": [r["ufm-scl"]["escapes"] for r in rows],
           # the certified call's result within the target: the staircase reaches it from stalled starts
           "ufm_certified_reached": sum(r["ufm-scl"]["certified_reached"] for r in rows),
           "peers_reached_where_ufm_did_not": {}, "summary": {}}
    for name in rows[0]:
        if name in ("seed", "ufm-scl"):
            continue
        out["peers_reached_where_ufm_did_not"][name] = sum(r[name]["reached"] for r in rows
                                                           if not r["ufm-scl"]["reached"])
        proved = [r for r in rows if r["ufm-scl"]["certified"] and r[name]["reached"]]
        out["summary"][name] = {
            # ufm-scl's time to a certified optimum (certificate and staircase included) against the
            # peer's time to the target, over the starts where both got there
            "certified_median_ratio": (statistics.median(r["ufm-scl"]["certified_seconds"] / r[name]["seconds"]
                                                         for r in proved) if proved else math.nan),
            "certified_starts_compared": len(proved)}
        if not ours:
            continue
        out["summary"][name].update({
            "median_ratio": statistics.median(r["ufm-scl"]["seconds"] / r[name]["seconds"] for r in ours),
            "all_reached": all(r[name]["reached"] for r in ours),
            "median_seconds": statistics.median(r[name]["seconds"] for r in ours),
            "median_evaluations": statistics.median(r[name]["evaluations"] for r in ours)})
    return out


#: A peer that reaches the target within this many seconds is run REPEATS times from the same start
#: and its median taken, as ufm-scl's call is (``_median_call``): single runs of pymanopt's
#: ConjugateGradient on one start took 0.144-0.256 s across runs (2 cores).
REPEAT_BELOW, REPEATS = 2.0, 3


def _peer_runs(run: Callable[[], dict]) -> dict:
    """One peer's result from a start: its first run, or where that reached the target within
    REPEAT_BELOW seconds, the median of REPEATS runs (``seconds``; every run in ``runs_seconds``)."""
    first = run()
    if not (first["reached"] and first["seconds"] <= REPEAT_BELOW):
        return first
    results = [first] + [run() for _ in range(REPEATS - 1)]
    times = [r["seconds"] for r in results]
    return {**first, "reached": all(r["reached"] for r in results), "seconds": statistics.median(times),
            "runs_seconds": times}


def bench_peers(starts: int = 5, cap: float = 60.0, target: float = 1e-6,
                peers: tuple[str, ...] | None = None, counts: tuple[int, ...] | None = None) -> dict:
    """Every peer and ufm-scl from ``starts`` shared random starts (ufm-scl's seeds 0..starts-1), with
    and without ReLU. Returns per-start rows and, per peer and setting, the median of the pairwise
    ratios ufm-scl time / peer time (a peer that hits the cap gives an upper bound on the ratio).
    ``counts``: an imbalanced problem in place of 10 x 100 (d = k), with ReLU only, where the optimum
    is the orthogonal frame whatever the counts (without ReLU it has no closed form to measure
    against)."""
    import torch
    torch.set_num_threads(os.cpu_count())
    label = "balanced n=1000, k=10" if counts is None else f"counts {', '.join(map(str, counts))}"
    out: dict = {"problem": f"{label}, d=k, tau=0.5, full batch, float64",
                 "target": target, "cap_seconds": cap, "starts": starts, "settings": {}}
    for relu in ((False, True) if counts is None else (True,)):
        problem = (Problem.balanced(10, 100, tau=0.5, relu=relu, dim=10) if counts is None
                   else Problem.from_counts(counts, tau=0.5, relu=relu, dim=len(counts)))
        counts_, tau = problem.counts, problem.tau
        excess_star = (orthogonal_frame_excess(counts_, tau) if relu
                       else etf_excess(counts_[0], problem.k, tau))
        constant = float(sum(c * math.log(c - 1) for c in counts_))
        rows = []
        for seed in range(starts):
            H0 = np.asarray(gd._start(problem, seed, jnp.float64))
            row = {"seed": seed, "ufm-scl": ufm_run(problem, seed, constant, excess_star, target)}
            for name, fn in PEERS.items():
                if peers is not None and name not in peers:
                    continue
                row[name] = r = _peer_runs(lambda: fn(H0, problem.labels, tau, relu,
                                                      Clock(constant, excess_star, target, cap)))
                print(f"  relu={relu} seed={seed} {name}: {'reached' if r['reached'] else 'CAP'} "
                      f"{r['seconds']:.2f} s ({r['evaluations']} evaluations; ufm-scl "
                      f"{row['ufm-scl']['seconds']:.3f} s)", flush=True)
            rows.append(row)
        summary = summarize(rows)
        out["settings"]["relu" if relu else "no_relu"] = {"excess_star": excess_star, "rows": rows, **summary}
    return out
