"""JAX sharding (solvers.sharding): four host devices give what one gives.

JAX fixes its device count when it starts, so the four-device runs are a child process started with
XLA_FLAGS=--xla_force_host_platform_device_count=4; the one-device references run in the same child
(the first device alone), so both sides see the same compiled arithmetic apart from the split.
Tolerances: the split changes only the order of the final sums (a log-sum-exp over devices, a psum of
gradients), a few ulps of each value and gradient; 1e-12 relative bounds that with room. Iterates
follow the same path, so iteration counts must be equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import pytest

from solvers import gd
from ufm import Batching, Problem
from ufm.errors import ProblemError

CHILD = r"""
import json
import jax, jax.numpy as jnp, numpy as np
import ufm
from ufm import Problem
from ufm.batching import pack
from ufm.objectives.scl.formula import representatives
from ufm.objectives.scl.precise import log_excess_packed
from ufm.objectives.scl.plain import log_excess_plain_packed
from solvers import gd, sharding
from ufm.programs import FAST_COMPILE_OPTIONS

assert jax.device_count() == 4, jax.devices()
# the test's own compiles as the toolkit compiles a program of this size (ufm.programs)
small_jit = lambda f: jax.jit(f, compiler_options=FAST_COMPILE_OPTIONS)
out = {}
# the kernel: n = 23 rows (not a multiple of 4), with and without chunks, ReLU rows, prototypes as rows
problem = Problem.from_counts([8, 6, 5, 4], tau=0.3, relu=True, dim=6)
packed = pack(problem.batches(0))
labels, rep = jnp.asarray(problem.labels), jnp.asarray(representatives(problem.labels))
H = jnp.abs(jax.random.normal(jax.random.PRNGKey(1), (problem.n, 6)))
H = H / jnp.linalg.norm(H, axis=1, keepdims=True)
mesh = sharding.device_mesh(4, sharding.ROWS)


def one_and_four(log_excess, chunks):
    # value and gradient of log_excess on one device and row-sharded over four, per chunk size
    rows = []
    for chunk in chunks:
        f = lambda H, m: log_excess(H, labels, rep, problem.tau, jnp.asarray(packed.index),
                                    jnp.asarray(packed.valid), 4, chunk_size=chunk, mesh=m)
        v1, g1 = small_jit(jax.value_and_grad(lambda H: f(H, None)))(H)
        v4, g4 = small_jit(jax.value_and_grad(lambda H: f(H, mesh)))(H)
        rows.append({"value_1": float(v1), "value_4": float(v4),
                     "grad_diff": float(jnp.abs(g1 - g4).max()), "grad_max": float(jnp.abs(g1).max()),
                     "value_only_4": float(small_jit(lambda H: f(H, mesh))(H))})
    return rows


out["kernel"] = one_and_four(log_excess_packed, (None, 2))
# the plain form (the descent's first phase), the same way (blocks of 4 against 6 rows per device:
# a block runs into the next device's rows)
out["plain"] = one_and_four(log_excess_plain_packed, (4,))
# gradient descent: one full-batch solve row-sharded; starts and a sweep split over the devices
solve = []
for relu in (True,):                # (without ReLU the same kernel runs; the CLI test covers it)
    p = Problem.from_counts([9, 7, 5, 3], tau=0.4, relu=relu, dim=6)
    a, b = gd.solve(p, seed=3), gd.solve(p, seed=3, devices=4)
    solve.append({"status": [a.status, b.status], "iterations": [a.iterations, b.iterations],
                  "loss": [a.loss, b.loss], "excess": [a.info.excess_history[-1], b.info.excess_history[-1]],
                  "rows": float(np.abs(a.embeddings - b.embeddings).max())})
out["solve"] = solve
p = Problem.from_counts([9, 7, 5, 3], tau=0.4, relu=True, dim=6)
A, B = gd.solve_many(p, [0, 1, 2, 3, 4]), gd.solve_many(p, [0, 1, 2, 3, 4], devices=4)
out["many"] = {"iterations": [[s.iterations for s in A], [s.iterations for s in B]],
               "loss": [[s.loss for s in A], [s.loss for s in B]],
               "rows": max(float(np.abs(x.embeddings - y.embeddings).max()) for x, y in zip(A, B))}
ps = [p.with_(tau=t) for t in (0.3, 0.4, 0.5)]
A, B = gd.solve_batched(ps), gd.solve_batched(ps, devices=2)
out["sweep"] = {"iterations": [[s.iterations for s in A], [s.iterations for s in B]],
                "loss": [[s.loss for s in A], [s.loss for s in B]]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def four_devices() -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _close(a: float, b: float, rel: float = 1e-12) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def test_row_sharded_kernel_equals_one_device(four_devices):
    for row in four_devices["kernel"] + four_devices["plain"]:
        assert _close(row["value_1"], row["value_4"])
        assert _close(row["value_1"], row["value_only_4"])
        assert row["grad_diff"] <= 1e-12 * row["grad_max"]


def test_row_sharded_solve_takes_the_same_path(four_devices):
    for row in four_devices["solve"]:
        assert row["status"][0] == row["status"][1]
        assert row["iterations"][0] == row["iterations"][1]
        assert _close(*row["loss"]) and _close(*row["excess"], rel=1e-10)
        assert row["rows"] <= 1e-10


def test_starts_and_sweeps_split_over_devices(four_devices):
    many, sweep = four_devices["many"], four_devices["sweep"]
    assert many["iterations"][0] == many["iterations"][1]          # 5 starts on 4 devices: one padded
    assert all(_close(a, b) for a, b in zip(*many["loss"])) and many["rows"] <= 1e-10
    assert sweep["iterations"][0] == sweep["iterations"][1]        # 3 problems on 2 devices
    assert all(_close(a, b) for a, b in zip(*sweep["loss"]))


def test_devices_that_do_not_apply_are_errors():
    problem = Problem.from_counts([4, 4, 3], tau=0.5, batching=Batching.random(4))
    with pytest.raises(ProblemError, match="full-batch"):
        gd.solve(problem, devices=2)
    with pytest.raises(ProblemError, match=f"JAX sees {jax.device_count()}"):
        gd.solve(Problem.from_counts([4, 4, 3], tau=0.5), devices=jax.device_count() + 1)
    with pytest.raises(ProblemError, match="devices"):
        gd.solve_many(Problem.from_counts([4, 4, 3], tau=0.5), [0, 1], devices=0)
