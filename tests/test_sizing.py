"""The size guard (solvers/sizing.py): its estimates against measured memory and drawn batches."""

import json
import subprocess
import sys

import numpy as np
import pytest

from solvers import sizing
from ufm import Batching, Problem, ProblemError, Prototypes


@pytest.mark.parametrize("problem", [
    Problem.balanced(4, 5),
    Problem.balanced(4, 6, batching=Batching.random(5)),
    Problem.balanced(4, 6, relu=True, batching=Batching.binding(7)),
    Problem.balanced(3, 5, batching=Batching.balanced(4), prototypes=Prototypes("etf", 2)),
    Problem.balanced(2, 4, batching=Batching.from_lists([[0, 1, 4], [2, 3, 5, 6, 7]])),
])
def test_batch_shape_is_that_of_the_drawn_batches(problem):
    """The guard sizes batches without drawing them; here they are drawn and compared."""
    batches = problem.batches(0)
    p = 0 if problem.prototypes is None else problem.k * problem.prototypes.per_class
    count, width = sizing.batch_shape(problem)
    assert count == len(batches) and width == max(len(b) for b in batches) + p


def test_gd_estimate_bounds_the_measured_peak():
    """A full-batch solve at n = 2000 in a fresh process: its peak resident memory stays below the
    memory after the imports plus the estimate, and the estimate is not absurdly loose (within 10x of
    the whole peak). (Measured on the 2-core machine: peak 0.67 GB after 0.18 GB of imports;
    estimate 0.68 GB.)"""
    code = (
        "import resource, json\n"
        "from ufm import Problem\nfrom solvers import gd\n"
        "p = Problem.balanced(4, 500, tau=0.5)\n"
        "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "gd.solve(p, steps=5, certify=False)\n"
        "print(json.dumps([1024 * r0, 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))\n")
    before, peak = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                             check=True).stdout.strip().splitlines()[-1])
    estimate = sizing.gd_bytes(Problem.balanced(4, 500, tau=0.5), steps=5, certify=False)
    assert peak < before + estimate and estimate < 10 * peak


def test_chunking_and_starts_scale_the_estimate():
    problem = Problem.balanced(4, 2500)
    fixed = sizing.JIT_BYTES
    plain = sizing.gd_bytes(problem, 10, certify=False) - fixed
    chunked = sizing.gd_bytes(problem, 10, chunk_size=100, certify=False) - fixed
    assert plain > 50 * chunked     # w^2 -> c w with w = 10000, c = 100
    assert sizing.gd_bytes(problem, 10, starts=4, certify=False) - fixed > 3.9 * plain


def test_require_names_the_estimate_and_the_way_out(monkeypatch):
    monkeypatch.setattr(sizing, "physical_memory", lambda: 10 * 2 ** 30)
    sizing.require(int(7.9 * 2 ** 30), "a run", "do less")           # 80 % of 10 GB fits
    with pytest.raises(ProblemError, match=r"a run needs about 9 GB of memory, more than the 8 GB .*; do less"):
        sizing.require(9 * 2 ** 30, "a run", "do less")


def test_gib_units():
    assert sizing.gib(3 * 2 ** 20) == "3 MB" and sizing.gib(2 ** 50 * 17.1) == "17.1 PB"
    assert np.isclose(float(sizing.gib(1.5 * 2 ** 30).split()[0]), 1.5)
