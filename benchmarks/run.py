"""One-command benchmark harness: ``PYTHONPATH=. python -m benchmarks [--quick] [--out DIR]``.

Prints a table per section and writes ``results.json`` (machine info: CPU, cores, load, JAX backend,
versions) and ``RESULTS.md`` (the table for the README) to ``--out`` (default benchmarks/).
Timings are wall-clock medians of compiled runs; compile time is reported separately. Nothing here
asserts a timing; the test suite has no wall-clock assertions.

Sections:
1. ``peers``: time to a 1e-6 relative gap on the excess against the tools a researcher would pick
   instead (pymanopt ConjugateGradient and TrustRegions, torch L-BFGS, the same BB scheme in PyTorch,
   geoopt RiemannianAdam, Adam + projection), n = 1000, k = 10, tau 0.5, with and without ReLU, the
   same starts, pairwise medians (benchmarks/peers.py; ``pip install .[bench]``).
1b. ``peers_imbalanced``: the same with ReLU on counts 160 x 5 and 40 x 5 (d = k = 10), whose optimum
   is the orthogonal frame whatever the counts.
1a. ``sharded``: the full-batch loss + gradient and GD steps row-sharded over the host's CPU devices
   (one per core, ``XLA_FLAGS=--xla_force_host_platform_device_count``) against one device, in a
   child process.
2. ``gd_scaling``: full-batch GD per-step time at n = 1000, 5000 (, 20000 with the chunked loss),
   k = 10, with the compiled loss+gradient timed alone and its matmul throughput as a fraction of a
   measured large float64 matmul on the same device.
3. ``many``: 64 random starts in one vmapped call vs one start vs a Python loop; 32 STEP imbalance
   ratios (padded, one vmapped call) vs a Python loop of solves.
3a. ``certificate``: a certified gradient-descent solve at n = 2000 .. 20000 (k = 10, ReLU, tau 0.5,
   a fixed batch-binding batching of ~110 per batch), each in its own process: solve and
   certificate seconds, relative gap, peak memory.
3b. ``staircase_large``: the same at n = 20000 from seeds 0, 1, 2 (``--quick``: n = 5000), the
   staircase climbing where the certificate does not prove the first point: status, escapes, time
   and peak memory.
3c. ``compare``: ``ufm compare`` on 50000 x 2048 float32 features (``--quick``: 10000), k = 10, a
   memory-mapped .npy written by another process: wall time and peak memory.
4. ``convex``: the n x n program versus n (Clarabel, SCS) up to a time cap; the reduced program
   versus k: general cvxpy program vs the certified factored path; STEP block path at k = 100.
5. ``explorer``: the explorer's update (a slider moved, solved and redrawn) at
   k = 4..20, cold (first call) and warm.
0. ``startup``: whole ``ufm`` processes as a user waits for them: ``--help``, a rejected option, the
   default ``solve`` and ``verify --quick``, each cold (an empty compile cache) and warm (a second
   run), medians of 3; and the compile / run trade of ufm.programs' fast compile options
   (benchmarks/startup.py).
6. ``gpu`` (only where JAX sees a GPU; elsewhere it records why and keeps an earlier GPU result):
   full-batch GD at n = 1000 .. 100000 (chunked loss above 20000) in float64 and float32, each as a
   fraction of a measured matmul in the same dtype on that GPU; 64 vmapped starts against one.

``many`` also measures what 64 loss+gradient evaluations cost against one at the same shapes, grouped
as the solve groups its starts (in one compiled loop, so no dispatch): the arithmetic floor of the
ratio. On 2 CPU cores it is far above 3x (the lanes share two cores; see RESULTS.md), so 64 starts
cannot cost 3x one start there (a single start at n = 20 is overhead-bound, which is why the whole
solve does better than the floor). On a GPU the lanes run in parallel; the ``gpu`` section measures
it there.

On a GPU machine (cvxpy, torch and matplotlib are not needed by the ``gpu`` section)::

    cp benchmarks/results.json "$OUT"/ && python -m benchmarks --only gpu --out "$OUT"

then copy ``$OUT/results.json`` over benchmarks/results.json and run
``python -m benchmarks --markdown-only`` to regenerate RESULTS.md and the README table.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import optax

import ufm  # noqa: F401  (float64)
from solvers import gd
from ufm import Problem
from ufm.objectives.scl.precise import class_rows_bucket
from ufm.objectives.scl.losses import scl_loss_packed
from ufm.objectives.scl.plain import log_excess_plain_packed

from benchmarks import peers, startup


def _now() -> float:
    return time.perf_counter()


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("jax", "jaxlib", "numpy", "scipy", "optax", "cvxpy", "clarabel", "scs", "torch"):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except Exception:             # not installed
            versions[mod] = None
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu,
            "cores": os.cpu_count(), "load_average_at_start": os.getloadavg(),
            "platform": platform.platform(), "python": platform.python_version(),
            "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
            "gpu": jax.default_backend() == "gpu", "versions": versions}


# ------------------------------------------------------------------ 1a. sharded over devices
_SHARDED = """
import json, sys, time
import jax, jax.numpy as jnp
import ufm
from ufm import Problem
from solvers import gd, sharding
from ufm.objectives.scl.losses import scl_loss_packed
devices = jax.device_count(); rows = []
for n in map(int, sys.argv[1:]):
    problem = Problem.balanced(10, n // 10, tau=0.5)
    chunk = 2000 if n > 5000 else None
    row = {"n": n, "devices": devices, "chunk_size": chunk}
    for label, count in (("one", None), ("sharded", devices)):
        steps = 5
        st, lr, tol, cfg = gd._prepare(problem, steps, None, "bb", jnp.float64, 1e-300, chunk)
        cfg = cfg._replace(mesh=sharding.device_mesh(count, sharding.ROWS))
        data = gd._data(problem, gd._start(problem, 0, jnp.float64), st, lr, tol, jnp.float64)
        run = gd._compiled(cfg, None).lower(data).compile()
        jax.block_until_ready(run(data))
        t0 = time.perf_counter(); out = jax.block_until_ready(run(data)); dt = time.perf_counter() - t0
        row[label + "_seconds_per_step"] = dt / int(out.iteration)
        row[label + "_final_log_excess"] = float(out.value)
    row["speedup"] = row["one_seconds_per_step"] / row["sharded_seconds_per_step"]
    rows.append(row)
print(json.dumps({"device_kind": jax.devices()[0].device_kind, "rows": rows}))
"""


def bench_sharded(sizes: list[int]) -> dict:
    """Full-batch GD steps (n = ``sizes``, k = 10, tau 0.5, float64) on one device and row-sharded over
    every device, in a child process: on a CPU one host device per core (JAX fixes its device count
    when it starts), on GPUs every GPU JAX sees. The two runs end at the same log E (reported)."""
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if jax.default_backend() == "cpu":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count()}"
    proc = subprocess.run([sys.executable, "-c", _SHARDED, *map(str, sizes)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["backend"] = jax.default_backend()
    for r in out["rows"]:
        print(f"  n={r['n']}: one device {r['one_seconds_per_step']:.3f} s/step, {r['devices']} devices "
              f"{r['sharded_seconds_per_step']:.3f} s/step ({r['speedup']:.2f}x)", flush=True)
    return out


# ------------------------------------------------------------------ 2. scaling in n
def matmul_peak(n: int | None = None, dtype=jnp.float64) -> float:
    """Measured GFLOP/s of a large square matmul on the default device (the 'peak' we compare to):
    n = 2048 on a CPU, 8192 on an accelerator (a 2048 matmul takes well under a millisecond there)."""
    n = (2048 if jax.default_backend() == "cpu" else 8192) if n is None else n
    return 2 * n ** 3 / _fastest(jax.jit(lambda x: x @ x), jnp.ones((n, n), dtype), 3) / 1e9


def exp_pass_floor(H: jnp.ndarray, tau, reps: int = 3) -> float:
    """Seconds of the least any SCL loss + gradient must do: one product G = H H^T / tau, one exp pass
    over it (with its row sums), and one product back, exp(G) @ H; by row blocks (a scan, as the kernel
    runs), the fastest of several block sizes, so the floor is the best this device does."""
    n = H.shape[0]

    def timed_floor(c: int) -> float:
        blocks = -(-n // c)
        Hp = jnp.concatenate([H, jnp.zeros((blocks * c - n, H.shape[1]), H.dtype)]).reshape(blocks, c, -1)

        def floor(H, Hp):
            def body(_, Hb):
                E = jnp.exp(Hb @ H.T / tau)
                return None, (E.sum(1), E @ H)
            return jax.lax.scan(body, None, Hp)[1]
        f = jax.jit(floor)
        jax.block_until_ready(f(H, Hp))
        return min(_median_time(lambda: jax.block_until_ready(f(H, Hp)), 1) for _ in range(reps))
    return min(timed_floor(min(c, n)) for c in (32, 64, 128, 256, 512, 2048))


def _fastest(fn, x, reps: int) -> float:
    """Seconds of the fastest of ``reps`` calls fn(x), after one warm-up (compile) call."""
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(reps):
        t0 = _now()
        jax.block_until_ready(fn(x))
        times.append(_now() - t0)
    return min(times)


def bench_scaling(sizes: list[int], chunk_above: float = float("inf"), chunk: int = 2000,
                  dtype=jnp.float64) -> dict:
    """Full-batch BB GD, balanced k = 10, d = 10, tau 0.5, from seed 0, a few steps per size (tol 1e-15:
    no early stop); the loss is chunked (``chunk``) above ``chunk_above`` (default never: the kernel's
    own blocks, ``ufm.objectives.scl.precise.default_block``)."""
    peak = matmul_peak(dtype=dtype)
    rows = []
    for n in sizes:
        problem = Problem.balanced(10, n // 10, tau=0.5)
        chunk_size = chunk if n > chunk_above else None
        steps = max(3, min(20, 20000 // n))
        st, lr, tol, cfg = gd._prepare(problem, steps, None, "bb", dtype, 1e-15, chunk_size)
        data = gd._data(problem, gd._start(problem, 0, dtype), st, lr, tol, dtype)
        t0 = _now()
        compiled = gd._compiled(cfg, None).lower(data).compile()
        compile_s = _now() - t0
        t0 = _now()
        out = jax.block_until_ready(compiled(data))
        run_s = _now() - t0
        epochs = int(out.iteration)
        # the compiled loss + gradient alone (the profile's dominant piece)
        vg = jax.jit(jax.value_and_grad(
            lambda H: scl_loss_packed(H, data.labels, data.tau, data.mon_index, data.mon_valid, "sum",
                                      chunk_size=chunk_size, num_classes=problem.k,
                                      class_rows=cfg.class_rows)))
        reps = 7 if n <= 5000 else 2                       # the smallest of several: short calls are noisy
        vg_s = _fastest(vg, data.H0, reps)
        # the plain form (ufm.objectives.scl.plain), what the descent's steps evaluate until the switch
        plain = jax.jit(jax.value_and_grad(
            lambda H: log_excess_plain_packed(H, data.labels, data.rep, data.tau, data.mon_index,
                                              data.mon_valid, problem.k, chunk_size=chunk_size)))
        plain_s = _fastest(plain, data.H0, reps)
        floor_s = exp_pass_floor(data.H0, data.tau)
        flops = 6.0 * n * n * problem.dim          # G = H H^T, and two (n, n) x (n, d) products back
        rows.append({"n": n, "k": 10, "d": problem.dim, "chunk_size": chunk_size, "epochs": epochs,
                     "compile_seconds": compile_s, "seconds": run_s,
                     "seconds_per_step": run_s / max(epochs, 1),
                     "loss_and_grad_seconds": vg_s, "floor_seconds": floor_s,
                     "loss_and_grad_over_floor": vg_s / floor_s,
                     "plain_loss_and_grad_seconds": plain_s, "plain_over_floor": plain_s / floor_s,
                     # counted: every line-search trial (each a value and gradient); a run adds 2 (its
                     # start, and the precise form's first evaluation after the plain phase)
                     "evaluations_per_step": int(optax.tree_utils.tree_get(out.tx_state, "trials")) / max(epochs, 1),
                     "loss_and_grad_gflops": flops / vg_s / 1e9,
                     "fraction_of_matmul_peak": flops / vg_s / 1e9 / peak})
        print(f"  n={n} {jnp.dtype(dtype).name}: {rows[-1]['seconds_per_step']:.3f} s/step, loss+grad "
              f"{vg_s:.3f} s = {vg_s / floor_s:.2f} x the floor ({floor_s:.3f} s), plain form "
              f"{plain_s:.3f} s = {plain_s / floor_s:.2f} x, "
              f"{rows[-1]['evaluations_per_step']:.2f} evaluations per step", flush=True)
    return {"device": jax.default_backend(), "dtype": jnp.dtype(dtype).name,
            "matmul_peak_gflops": peak, "rows": rows}


# ------------------------------------------------------------------ 2a. the certificate at scale
_CERTIFIED_SOLVE = """
import json, resource, sys, time
import numpy as np
import ufm
from ufm import Batching, Problem
from solvers import gd
n = int(sys.argv[1]); seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0; counts = [n // 10] * 10
problem = Problem.from_counts(counts, tau=0.5, relu=True, dim=20,
                              batching=Batching.from_lists(Batching.binding(110).batches(counts)))
def peak_gb():
    # this process's own peak: VmHWM (reset by exec), not ru_maxrss, which Linux carries over from
    # the parent that started it (a benchmark run that already holds GBs)
    try:
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 2 ** 20
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
t0 = time.perf_counter(); sol = gd.solve(problem, seed=seed); total = time.perf_counter() - t0
staircase = sol.info.staircase
print(json.dumps({"n": problem.n, "seed": seed, "batches": len(problem.batches(0)), "status": sol.status,
                  "escapes": 0 if staircase is None else staircase.escapes,
                  "staircase": None if staircase is None else staircase.to_dict(),
                  "iterations": sol.iterations, "solve_seconds": total,
                  "certificate_seconds": sol.certificate.seconds, "relative_gap": sol.certificate.relative_gap,
                  "method": sol.certificate.method,
                  "distance_to_of": float(np.abs(sol.class_mean_gram - np.eye(10)).max()),
                  "peak_memory_gb": peak_gb()}))
"""


def bench_certificate(sizes: list[int], seeds: tuple[int, ...] = (0,)) -> dict:
    """A certified gradient-descent solve (k = 10, ReLU, tau 0.5, d = 20, a fixed batch-binding
    batching: the 10 binding examples plus about 100 others per batch) at each n and seed, each in its
    own process so its peak memory (max RSS) is its own; compile time included in the solve time, and
    the staircase where the certificate does not prove the first point (``escapes``)."""
    import subprocess
    import sys
    rows = []
    for n, seed in [(n, seed) for n in sizes for seed in seeds]:
        proc = subprocess.run([sys.executable, "-c", _CERTIFIED_SOLVE, str(n), str(seed)], capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        if proc.returncode != 0:
            rows.append({"n": n, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"  n={n} seed={seed}: {r['status']} ({r['escapes']} escapes), solve {r['solve_seconds']:.1f} s, "
              f"certificate "
              f"{r['certificate_seconds']:.1f} s, {r['peak_memory_gb']:.2f} GB, gap {r['relative_gap']:.1e}",
              flush=True)
    return {"rows": rows}


# ------------------------------------------------------------------ 2b. the GPU
def bench_gpu(sizes: tuple[int, ...] = (1000, 5000, 20000, 100000), chunk_above: int = 20000,
              chunk: int = 4096) -> dict:
    """Full-batch GD on the GPU up to n = 100000 (chunked loss), float64 and float32, each against a
    large matmul in the same dtype on the same GPU; 64 vmapped starts against one. On a machine
    without a GPU it records why it did not run (and main keeps an earlier GPU measurement)."""
    if jax.default_backend() != "gpu":
        return {"skipped": f"no GPU (JAX backend {jax.default_backend()})"}
    out = {"machine": machine_info(), "device_kind": jax.devices()[0].device_kind}
    out["float64"] = bench_scaling(list(sizes), chunk_above, chunk, jnp.float64)
    out["float32"] = bench_scaling([n for n in sizes if n >= 20000], chunk_above, chunk, jnp.float32)
    out["seeds"] = _seeds_row(Problem.balanced(10, 100, tau=0.5), 3, "balanced n=1000 k=10 d=10 tau=0.5")
    out["seeds_landscape"] = _seeds_row(Problem.step(4, 8, 4, tau=0.5, relu=True), 3,
                                        "STEP(4, 8, 4) ReLU n=20 d=8 tau=0.5 (landscape size)")
    if jax.device_count() > 1:        # several GPUs: the row-sharded solve over all of them
        out["sharded"] = bench_sharded([20000, 100000])
    return out


# ------------------------------------------------------------------ 3. many solves at once
def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = _now()
        fn()
        times.append(_now() - t0)
    return statistics.median(times)


def _loss_grad_floor(problem: Problem, starts: int = 64) -> float:
    """Time of ``starts`` loss + gradient evaluations, grouped as :func:`solvers.gd.solve_many` groups
    its starts (:func:`solvers.gd.default_lanes` vmapped at a time), over the time of one, at the
    problem's shapes: what one iteration of the many-start solve costs against one start's, before
    overheads. Each timing runs ``evals`` evaluations in one compiled loop, so dispatch does not
    count."""
    dtype = jnp.float64
    data = gd._data(problem, gd._start(problem, 0, dtype), 1, 0.1, 1e-12, dtype)
    vg = jax.value_and_grad(lambda H: scl_loss_packed(H, data.labels, data.tau, data.mon_index,
                                                      data.mon_valid, "sum", data.protos,
                                                      data.proto_labels, num_classes=problem.k,
                                                      class_rows=class_rows_bucket(problem.class_rows)))
    evals = int(max(5, min(200, 2e8 / (problem.n ** 2 * problem.dim))))

    def repeated(f):
        return jax.jit(lambda H: jax.lax.fori_loop(0, evals, lambda i, X: X + 1e-12 * f(X)[1], H))
    lanes = gd.default_lanes(problem, starts)
    one_fn = repeated(vg)
    many_fn = repeated(jax.vmap(vg) if lanes >= starts
                       else lambda X: jax.lax.map(vg, X, batch_size=lanes))
    H64 = jnp.stack([gd._start(problem, s, dtype) for s in range(starts)])
    jax.block_until_ready((one_fn(data.H0), many_fn(H64)))
    one = _median_time(lambda: jax.block_until_ready(one_fn(data.H0)), 3)
    many = _median_time(lambda: jax.block_until_ready(many_fn(H64)), 3)
    return many / one


def _seeds_row(problem: Problem, reps: int, label: str) -> dict:
    seeds = list(range(64))
    gd.solve(problem, seed=0)
    sols = gd.solve_many(problem, seeds)
    one = _median_time(lambda: gd.solve(problem, seed=0), reps)
    many = _median_time(lambda: gd.solve_many(problem, seeds), reps)
    t0 = _now()
    for s in seeds:
        gd.solve(problem, seed=s)
    loop = _now() - t0
    return {"problem": label, "one_start_seconds": one, "vmapped_64_seconds": many,
            "loop_64_seconds": loop, "vmapped_over_one": many / one, "loop_over_vmapped": loop / many,
            "lanes": gd.default_lanes(problem, len(seeds)),
            "iterations_seed0": gd.solve(problem, seed=0).iterations,
            "iterations_max_of_64": max(s.iterations for s in sols),
            "loss_grad_64_over_one": _loss_grad_floor(problem)}


def bench_many(n_per_class: int, reps: int) -> dict:
    out = {"seeds_landscape": _seeds_row(Problem.step(4, 8, 4, tau=0.5, relu=True), reps,
                                         "STEP(4, 8, 4) ReLU n=20 d=8 tau=0.5 (landscape size)")}
    problem = Problem.balanced(10, n_per_class, tau=0.5)
    out["seeds"] = _seeds_row(problem, reps, f"balanced n={problem.n} k=10 d=10 tau=0.5")
    # 32 STEP imbalance ratios: counts (64, 64, n_min, n_min), n_min = 2..33, padded to n = 194
    problems = [Problem.from_counts([64, 64, m, m], tau=0.5) for m in range(2, 34)]
    t0 = _now()
    sols = gd.solve_batched(problems, pad=True)
    vm_cold = _now() - t0
    vm_warm = _median_time(lambda: gd.solve_batched(problems, pad=True), reps)
    t0 = _now()
    for p in problems:
        gd.solve(p)
    loop_cold = _now() - t0
    t0 = _now()
    for p in problems:
        gd.solve(p)
    loop_warm = _now() - t0
    out["ratios"] = {"problem": "STEP counts (64, 64, m, m), m = 2..33 (ratios 2..32), tau 0.5, "
                                "padded to n = 194, one call",
                     "all_converged": all(s.status == "converged" for s in sols),
                     "lanes": gd.default_lanes(problems[0], len(problems), width=194),
                     "vmapped_cold_seconds": vm_cold, "vmapped_warm_seconds": vm_warm,
                     "loop_cold_seconds": loop_cold, "loop_warm_seconds": loop_warm,
                     "loop_over_vmapped_cold": loop_cold / vm_cold,
                     "loop_over_vmapped_warm": loop_warm / vm_warm}
    return out


# ------------------------------------------------------------------ 4. convex programs
def bench_convex(cap: float, general_max_k: int) -> dict:
    import warnings
    from solvers.convex import solve_relaxation
    from solvers.reduced import solve_reduced
    warnings.filterwarnings("ignore")
    nxn = {}
    for solver in ("CLARABEL", "SCS"):
        rows = []
        for m in (2, 4, 6, 8, 12, 16, 24, 32, 48):
            problem = Problem.step(4, 2 * m, 2.0, tau=0.5)
            t0 = _now()
            sol = solve_relaxation(problem, solver=solver, certified=False)
            dt = _now() - t0
            rows.append({"n": problem.n, "seconds": dt, "status": sol.status, "value": sol.lower_bound})
            print(f"  {solver} n={problem.n}: {dt:.2f} s {sol.status}", flush=True)
            if dt > cap:
                break
        nxn[solver] = rows
    reduced = []
    for k in (5, 10, 20, 40, 70, 100):
        problem = Problem.long_tail(k, 50, 10.0, tau=0.5)
        t0 = _now()
        solve_reduced(problem, program="factored")      # cold: compiles the embedding check's loss
        t_cold = _now() - t0
        t0 = _now()
        fast = solve_reduced(problem, program="factored")
        t_fast = _now() - t0
        row = {"k": k, "n": problem.n, "factored_seconds": t_fast, "factored_cold_seconds": t_cold,
               "factored_status": fast.status,
               "factored_value": fast.loss, "relative_gap": fast.certificate.relative_gap}
        if k <= general_max_k:
            t0 = _now()
            gen = solve_reduced(problem, program="general")
            row.update(general_seconds=_now() - t0, general_status=gen.status, general_value=gen.loss,
                       relative_difference=abs(gen.loss - fast.loss) / abs(gen.loss))
        reduced.append(row)
        print(f"  reduced k={k}: factored {t_fast:.2f} s, general {row.get('general_seconds', float('nan')):.2f} s",
              flush=True)
    problem = Problem.step(100, 50, 10.0, tau=0.5)
    t0 = _now()
    block = solve_reduced(problem, program="block")
    t_block = _now() - t0
    return {"cap_seconds": cap, "nxn": nxn, "reduced": reduced,
            "step_block_k100_seconds": t_block, "step_block_k100_status": block.status}


# ------------------------------------------------------------------ 5. the explorer's update
_COMPARE = """
import json, sys, time
from pathlib import Path
import numpy as np
n, d, k = int(sys.argv[1]), int(sys.argv[2]), 10
folder = Path(sys.argv[3])
if sys.argv[4] == "write":               # a process of its own: the measured one only compares
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(k), n // k)
    features = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, 5000):
        stop = min(n, start + 5000)
        block = rng.standard_normal((stop - start, d)).astype(np.float32) * 0.3
        block[np.arange(stop - start), labels[start:stop]] += 1.0
        features[start:stop] = block
    features.flush()
    np.save(folder / "labels.npy", labels)
    sys.exit(0)
from ufm.app.cli import main
t0 = time.perf_counter()
code = main(["compare", str(folder / "features.npy"), "--labels", str(folder / "labels.npy"), "--tau", "0.5",
             "--json", "--no-cache"])
seconds = time.perf_counter() - t0
with open("/proc/self/status") as status:
    peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 2 ** 20
print(json.dumps({"n": n, "d": d, "exit": code, "seconds": seconds, "peak_memory_gb": peak,
                  "array_gb": n * d * 4 / 2 ** 30}))
"""


def bench_compare(n: int, d: int) -> dict:
    """``ufm compare`` on n x d float32 features (a .npy on disk, memory-mapped), k = 10, in its own
    process: wall time of the call and the process's peak memory against the array's size."""
    import subprocess
    import sys
    import tempfile
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with tempfile.TemporaryDirectory() as folder:
        for step in ("write", "run"):
            proc = subprocess.run([sys.executable, "-c", _COMPARE, str(n), str(d), folder, step],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                break
    if proc.returncode != 0:
        return {"n": n, "d": d, "error": proc.stderr.strip().splitlines()[-1:]}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  compare n={n} d={d}: {row['seconds']:.1f} s, peak {row['peak_memory_gb']:.2f} GB "
          f"(array {row['array_gb']:.2f} GB)", flush=True)
    return row


def bench_explorer() -> dict:
    """The explorer's update as a user waits for it: a slider moved (``Explorer.set``: the ratio, a
    new value each time) to the figure drawn again (Agg: ``draw_idle`` draws at once), for k = 4 to
    20, long-tail profile, full batch (the reduced program). Median of 3; cold = construction + first
    update (compiles)."""
    import matplotlib
    matplotlib.use("Agg")
    from ufm.app.explore import Explorer, ExplorerState
    rows = []
    for k in (4, 8, 12, 16, 20):
        t0 = _now()
        ex = Explorer(ExplorerState(k=k, profile="long-tail"))
        cold = _now() - t0
        ratios = iter([3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 17.0, 19.0, 21.0, 23.0])
        ex.set(ratio=next(ratios))                                  # the first move compiles nothing new
        warm = _median_time(lambda: ex.set(ratio=next(ratios)), 3)
        ex.set(tau=0.01)                                            # the slider's small end
        warm_small = _median_time(lambda: ex.set(ratio=next(ratios)), 3)
        rows.append({"k": k, "cold_seconds": cold, "warm_seconds": warm, "warm_small_tau_seconds": warm_small,
                     "solve_seconds": ex.last_seconds})
    return {"measured": "slider moved to figure redrawn (cold: construction + first update, compiles)",
            "rows": rows}


# ------------------------------------------------------------------ output
def _scaling_table(s: dict) -> list[str]:
    """Markdown rows of one :func:`bench_scaling` result."""
    L = [f"| full-batch GD, k=10 ({s['device']}, {s['dtype']}) | s/step | loss+grad s (precise form) | "
         "plain form s | floor s (one exp pass + two products) | precise / floor | plain / floor | "
         f"evaluations per step (counted; + 2 per run) | of matmul peak ({s['matmul_peak_gflops']:.1f} GFLOP/s) |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        plain = f"{r['plain_loss_and_grad_seconds']:.3f}" if "plain_loss_and_grad_seconds" in r else "-"
        floor = (f"{r['floor_seconds']:.3f} | {r['loss_and_grad_over_floor']:.2f}" if "floor_seconds" in r
                 else "- | -")
        plain_ratio = f"{r['plain_over_floor']:.2f}" if "plain_over_floor" in r else "-"
        per_step = f"{r['evaluations_per_step']:.2f}" if "evaluations_per_step" in r else "-"
        L.append(f"| n={r['n']}{' chunk ' + str(r['chunk_size']) if r['chunk_size'] else ''} | "
                 f"{r['seconds_per_step']:.3f} | {r['loss_and_grad_seconds']:.3f} | {plain} | {floor} | "
                 f"{plain_ratio} | {per_step} | {100 * r['fraction_of_matmul_peak']:.1f}% |")
    return L + [""]


def markdown(res: dict) -> str:
    m = res["machine"]
    L = [f"### Benchmark results (`python -m benchmarks{' --quick' if res['quick'] else ''}`)", "",
         f"Machine: {m['cpu']}, {m['cores']} cores, JAX backend `{m['jax_backend']}`, "
         f"load average at start {m['load_average_at_start'][0]:.1f}; {m['date']}; jax "
         f"{m['versions']['jax']}, torch {m['versions']['torch']}, cvxpy {m['versions']['cvxpy']}. "
         + ("The machine was shared with other jobs (load above): timings are noisy; ratios are pairwise "
            "in the same run. " if m["load_average_at_start"][0] > 0.5 else
            "Ratios are pairwise in the same run. ")
         + ("" if "float64" in res.get("gpu", {}) else
            "No GPU was available for these runs: the GPU rows (full batch n = 100000, fraction of "
            "GPU matmul peak, 64 starts) are not measured; `python -m benchmarks --only gpu` on a GPU "
            "machine adds them (see benchmarks/run.py)."), ""]
    if res.get("updated_sections"):
        L += ["Re-measured later with `--only` (the sections' own runs, each with its date, and its CPU where "
              "that is not the machine above; `--quick` where marked; compare ratios only within one section): "
              + "; ".join(
                  f"{name} ({when})" for name, when in res["updated_sections"].items()) + ".", ""]
    L += startup.startup_table(res.get("startup", {}))
    L += _peers_table(res.get("peers", {}))
    L += _sharded_table(res.get("sharded", {}))
    for key in ("gd_scaling", "gd_scaling_float32"):
        if res.get(key):
            L += _scaling_table(res[key])
    gp = res.get("gpu", {})
    if "float64" in gp:
        L += [f"GPU: {gp['device_kind']} ({gp['machine']['date']}; jax {gp['machine']['versions']['jax']}); "
              "float32 matmuls may use TF32 there, so its peak is the measured float32 matmul.", ""]
        L += _scaling_table(gp["float64"]) + _scaling_table(gp["float32"]) + _sharded_table(gp.get("sharded", {}))
        L += ["| many solves on the GPU | vmapped / 1 start | loss+grad floor (64 / 1) |", "|---|---|---|"]
        for a in (gp["seeds_landscape"], gp["seeds"]):
            L.append(f"| 64 starts, {a['problem']} | {a['vmapped_over_one']:.1f}x | "
                     f"{a['loss_grad_64_over_one']:.1f}x |")
        L.append("")
    mn = res.get("many")
    if mn:
        a, b = mn["seeds"], mn["ratios"]
        L += ["| many solves | value |", "|---|---|"]
        for a in (mn["seeds_landscape"], mn["seeds"]):
            L += [f"| 64 starts in one call ({a['lanes']} vmapped at a time) / 1 start ({a['problem']}) | "
                  f"{a['vmapped_over_one']:.1f}x "
                  f"({a['vmapped_64_seconds']:.2f} s vs {a['one_start_seconds']:.3f} s) |",
                  f"| cost floor: 64 loss+gradient evaluations in the same groups / one | "
                  f"{a['loss_grad_64_over_one']:.1f}x |",
                  f"| iterations: seed 0 / slowest of the 64 (a vmapped loop runs until the last stops) | "
                  f"{a['iterations_seed0']} / {a['iterations_max_of_64']} |",
                  f"| 64 starts: Python loop / one call | {a['loop_over_vmapped']:.1f}x |"]
        L += [
              f"| 32 imbalance ratios ({b['lanes']} vmapped at a time): loop / one call, cold "
              f"(compiles included) | "
              f"{b['loop_over_vmapped_cold']:.1f}x ({b['loop_cold_seconds']:.1f} s vs "
              f"{b['vmapped_cold_seconds']:.1f} s) |",
              f"| 32 imbalance ratios: loop / one call, warm | {b['loop_over_vmapped_warm']:.1f}x |", ""]
    c = res.get("convex")
    if c:
        sizes = sorted({r["n"] for rows in c["nxn"].values() for r in rows})
        L += [f"| n x n program (STEP k=4, tau 0.5; stops past {c['cap_seconds']:g} s), n | "
              + " | ".join(str(n) for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
        for name, rows in c["nxn"].items():
            by_n = {r["n"]: f"{r['seconds']:.2f}" + ("*" if r["status"] != "optimal" else "")
                    for r in rows}
            L.append(f"| {name} s | " + " | ".join(by_n.get(n, "-") for n in sizes) + " |")
        L.append("(* = status not `optimal`)")
        L += ["", "| reduced program, k | factored (certified) s, warm / cold | general cvxpy s | rel. diff |",
              "|---|---|---|---|"]
        for r in c["reduced"]:
            gen = f"{r['general_seconds']:.2f}" if "general_seconds" in r else "not run"
            diff = f"{r['relative_difference']:.1e}" if "relative_difference" in r else ""
            L.append(f"| {r['k']} | {r['factored_seconds']:.3f} / {r['factored_cold_seconds']:.2f} | "
                     f"{gen} | {diff} |")
        L += ["", f"STEP block path, k = 100: {c['step_block_k100_seconds']:.2f} s.", ""]
    for key in ("certificate", "staircase_large"):
        L += _certified_rows(res.get(key))
    e = res.get("explorer")
    if e:
        L += [f"| explorer update: {e['measured']} | " + " | ".join(f"k={r['k']}" for r in e["rows"]) + " |",
              "|---|" + "---|" * len(e["rows"]),
              "| cold s | " + " | ".join(f"{r['cold_seconds']:.3f}" for r in e["rows"]) + " |",
              "| warm s (tau 0.5) | " + " | ".join(f"{r['warm_seconds']:.3f}" for r in e["rows"]) + " |"]
        if all("warm_small_tau_seconds" in r for r in e["rows"]):
            L += ["| warm s (tau 0.01) | " + " | ".join(f"{r['warm_small_tau_seconds']:.3f}" for r in e["rows"]) + " |"]
        L += [""]
    return "\n".join(L) + "\n"


def _certified_rows(cs: dict | None) -> list[str]:
    """Markdown rows of :func:`bench_certificate` (the ``certificate`` and ``staircase_large`` sections)."""
    if not cs or not cs.get("rows"):
        return []
    seeded = any("seed" in r for r in cs["rows"])       # results stored before the staircase have none
    L = [f"| certified GD solve (k=10, ReLU, tau 0.5, fixed batch-binding, ~110 per batch), n"
         f"{' (seed)' if seeded else ''} | status{' (escapes)' if seeded else ''} | "
         "iterations | solve s (compile incl.) | certificate s | relative gap | peak memory GB |",
         "|---|---|---|---|---|---|---|"]
    for r in cs["rows"]:
        if "error" in r:
            L.append(f"| {r['n']} | error: {r['error']} | | | | | |")
            continue
        which = f", seed {r['seed']}" if seeded else ""
        escapes = f" ({r['escapes']})" if seeded else ""
        L.append(f"| {r['n']} ({r['batches']} batches{which}) | {r['status']}{escapes} | {r['iterations']} | "
                 f"{r['solve_seconds']:.1f} | {r['certificate_seconds']:.1f} ({r['method']}) | "
                 f"{r['relative_gap']:.1e} | {r['peak_memory_gb']:.2f} |")
    return L + [""]


def _peers_table(p: dict) -> list[str]:
    """Markdown rows of :func:`benchmarks.peers.bench_peers`."""
    if "settings" not in p:
        return [f"Peers: not measured ({p.get('skipped', 'not run')}).", ""] if p else []
    a, b = p["settings"]["no_relu"], p["settings"]["relu"]
    L = [f"| time to a {p['target']:g} relative gap on the excess, n=1000, k=10, tau 0.5, float64 "
         f"({p['starts']} starts) | no ReLU: median s | ratio ufm-scl / peer | ReLU: median s | ratio |",
         "|---|---|---|---|---|",
         f"| **ufm-scl**: the whole `gd.solve` call, warm, no certificate (BB, fused kernel; median "
         f"iterations {a['ufm_median_iterations']:g} / {b['ufm_median_iterations']:g}) | "
         f"{a['ufm_median_seconds']:.3f} | 1 | {b['ufm_median_seconds']:.3f} | 1 |"]
    L += _peer_rows(a, b, _descent_cells)
    notes = []
    for label, st in (("no ReLU", a), ("ReLU", b)):
        if st["ufm_reached"] < st["starts"]:
            others = ", ".join(f"{k} {v}" for k, v in st["peers_reached_where_ufm_did_not"].items())
            notes.append(f"{label}: ufm-scl reached the target from {st['ufm_reached']} of {st['starts']} "
                         f"starts (from the others its run converged above the target: not to the "
                         f"orthogonal frame); ratios are over those starts. From the other starts the peers reached "
                         f"it: {others}.")
    if "ufm_median_loop_seconds" in a:
        notes.append(f"ufm-scl's call, warm, is the whole `gd.solve(problem, seed=s, certify=False, steps=e)` "
                     f"for the e epochs its run needs to reach the target; its compiled loop alone took "
                     f"{a['ufm_median_loop_seconds']:.3f} / {b['ufm_median_loop_seconds']:.3f} s (no ReLU / "
                     f"ReLU), and the default call to its own tolerance 1e-12 "
                     f"{a['ufm_median_default_call_seconds']:.3f} / {b['ufm_median_default_call_seconds']:.3f} s.")
    if "ufm_certified" not in a:       # results stored before the staircase
        return L + _peers_notes(p, notes)
    L += ["", "| time to a certified optimum (the default `gd.solve`: certificate, and the staircase where it "
          "does not prove the point) | no ReLU: median s | ratio to peer | ReLU: median s | ratio to peer |",
          "|---|---|---|---|---|",
          f"| **ufm-scl** (proved from {a['ufm_certified']} / {b['ufm_certified']} of {a['starts']} starts; "
          f"escapes with ReLU: {b['ufm_escapes']}) | {a['ufm_median_certified_seconds']:.3f} | 1 | "
          f"{b['ufm_median_certified_seconds']:.3f} | 1 |"]
    return L + _peer_rows(a, b, _certified_cells) + _peers_notes(p, notes)


def _speed(ratio: float) -> str:
    return f"{1 / ratio:.1f}x faster" if ratio <= 1 else f"{ratio:.1f}x slower"


def _descent_cells(r: dict) -> list[str]:
    """A peer's time to the target and the ratio of ufm-scl's descent to it."""
    if "median_ratio" not in r:
        return ["-", "-"]
    ratio = r["median_ratio"]
    return [f"{r['median_seconds']:.2f}{'' if r['all_reached'] else ' (cap hit)'}",
            f"{'<= ' if not r['all_reached'] else ''}{ratio:.3f} ({_speed(ratio)})"]


def _certified_cells(r: dict) -> list[str]:
    """The ratio of ufm-scl's certified call to a peer's time to the target."""
    ratio = r["certified_median_ratio"]
    starts = r["certified_starts_compared"]
    return ["", "-" if ratio != ratio else f"{ratio:.3f} ({_speed(ratio)}, {starts} start{'s' * (starts != 1)})"]


def _peer_rows(a: dict, b: dict, cells: Callable[[dict], list[str]]) -> list[str]:
    """One row per peer: its cells without ReLU (``a``) and with ReLU (``b``)."""
    return [f"| {name} | " + " | ".join(cells(a["summary"][name]) + cells(b["summary"][name])) + " |"
            for name in a["summary"]]


def _peers_notes(p: dict, notes: list[str]) -> list[str]:
    repeated = any("runs_seconds" in r[name] for s in p["settings"].values() for r in s["rows"] for name in r
                   if name not in ("seed", "ufm-scl"))
    again = (f" A peer that reached the target within {peers.REPEAT_BELOW:g} s was run {peers.REPEATS} times from "
             "that start and its median taken (ufm-scl's times are medians of 3 calls)." if repeated else "")
    return ["", "Ratios are medians of pairwise ratios over the same starts; a peer that hit the "
                f"{p['cap_seconds']:g} s cap gives an upper bound on the ratio." + again + " " + " ".join(notes), ""]


def _sharded_table(s: dict) -> list[str]:
    if "rows" not in s:
        return [f"Sharded run: {s['error']}", ""] if s.get("error") else []
    L = [f"| full-batch GD row-sharded ({s['backend']}, {s['rows'][0]['devices']} x {s['device_kind']}) | "
         "one device s/step | sharded s/step | speed-up | log E after 5 steps, one / sharded |",
         "|---|---|---|---|---|"]
    for r in s["rows"]:
        L.append(f"| n={r['n']}{' chunk ' + str(r['chunk_size']) if r['chunk_size'] else ''} | "
                 f"{r['one_seconds_per_step']:.3f} | {r['sharded_seconds_per_step']:.3f} | {r['speedup']:.2f}x | "
                 f"{r['one_final_log_excess']:.15g} / {r['sharded_final_log_excess']:.15g} |")
    return L + [""]


README = Path(__file__).resolve().parents[1] / "README.md"
DEFAULT_OUT = Path(__file__).resolve().parent
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def update_readme(md: str, readme: Path = README) -> bool:
    """Replace the README's block between the benchmark markers with ``md``; False if no markers."""
    if not readme.exists():
        return False
    text = readme.read_text()
    if START not in text or END not in text:
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{md.strip()}\n{END}{tail}")
    return True


def res_date() -> str:
    return machine_info()["date"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ufm-scl benchmarks (no assertions)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="folder for results.json and RESULTS.md (the README's table is regenerated only "
                             "for the default, benchmarks/)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="sections to run: startup peers peers_imbalanced sharded gd_scaling gd_scaling_float32 many certificate "
                             "staircase_large compare convex explorer gpu")
    parser.add_argument("--markdown-only", action="store_true",
                        help="rewrite RESULTS.md from the results.json in --out, running nothing")
    args = parser.parse_args(argv)
    if args.markdown_only:
        out = Path(args.out)
        md = markdown(json.loads((out / "results.json").read_text()))
        (out / "RESULTS.md").write_text(md)
        _readme_if_default(out, md)
        print(md)
        return
    q = args.quick
    sections = {
        "startup": lambda: startup.bench_startup(reps=1 if q else 3, verify_reps=1 if q else 3),
        "peers": lambda: peers.bench_peers(3 if q else 5, 10.0 if q else 20.0),
        "peers_imbalanced": lambda: peers.bench_peers(3 if q else 5, 10.0 if q else 20.0,
                                                      counts=(160,) * 5 + (40,) * 5),
        "sharded": lambda: bench_sharded([5000] if q else [5000, 20000]),
        "gd_scaling": lambda: bench_scaling([1000, 5000] if q else [1000, 5000, 20000]),
        "gd_scaling_float32": lambda: bench_scaling([5000] if q else [5000, 20000], dtype=jnp.float32),
        "many": lambda: bench_many(20 if q else 100, 3),
        "certificate": lambda: bench_certificate([2000, 5000] if q else [2000, 5000, 10000, 20000]),
        "staircase_large": lambda: bench_certificate([5000] if q else [20000], seeds=(0, 1, 2)),
        "compare": lambda: bench_compare(10000 if q else 50000, 2048),
        "convex": lambda: bench_convex(10.0 if q else 60.0, 20 if q else 100),
        "explorer": bench_explorer,
        "gpu": bench_gpu,
    }
    out = Path(args.out)
    previous = out / "results.json"
    res = {"machine": machine_info(), "quick": q}
    if args.only is not None and previous.exists():
        # a partial run updates its sections and keeps the others (with their own machine line)
        res = {**json.loads(previous.read_text()), "quick": q}
        info = machine_info()
        res.setdefault("updated_sections", {}).update(
            {name: f"{info['date']}{' --quick' if q else ''}, {info['cpu']}, load {info['load_average_at_start'][0]:.1f}"
             for name in args.only})
    print(json.dumps(res["machine"], indent=1))
    for name, fn in sections.items():
        if args.only is not None and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        t0 = _now()
        result = fn()
        result["section_seconds"] = _now() - t0
        if "skipped" in result and previous.exists():
            # a machine without a GPU keeps the GPU measurement an earlier run on a GPU left
            earlier = json.loads(previous.read_text()).get(name, {})
            result = earlier if "skipped" not in earlier and earlier else result
        res[name] = result
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    md = markdown(res)
    (out / "RESULTS.md").write_text(md)
    _readme_if_default(out, md)
    print(md)


def _readme_if_default(out: Path, md: str) -> None:
    """The README's table follows the stored results only: a run written elsewhere (``--out DIR``,
    say a quick comparison) leaves the README alone."""
    if out.resolve() != DEFAULT_OUT.resolve():
        print(f"(README.md left as it is: results written to {out}, not {DEFAULT_OUT})")
    elif update_readme(md):
        print("(README.md results table regenerated)")


if __name__ == "__main__":
    main()
