"""The size guard (solvers/sizing.py): its estimates against measured memory and drawn batches."""

import json
import os
import re
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


# the peak resident memory of this process alone: VmHWM (ru_maxrss would carry the forking parent's
# peak across exec, which under pytest is the test worker's)
PEAK = (
    "import json, sys\n"
    "from ufm import Problem\nfrom solvers import gd\n"
    "p = Problem.balanced(4, int(sys.argv[1]), tau=0.5)\n"
    "gd.solve(p, steps=2, certify=False)\n"
    "status = open('/proc/self/status').read()\n"
    "print(json.dumps(1024 * int(status.split('VmHWM:')[1].split()[0])))\n")


def _peak(per_class: int) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, str(per_class)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is read from Linux's /proc")
@pytest.mark.slow
def test_gd_estimate_follows_the_measured_peak():
    """Full-batch solves at n = 2000 and n = 8000 in fresh processes: each estimate plus the imports
    bounds that run's peak, the estimate's growth bounds the measured growth, and that growth is far
    below one (n, n) float64 array at n = 8000 (512 MB): the kernel works in blocks of anchors
    (ufm.objectives.scl.precise.default_block), so memory is O(block x n), not O(n^2)."""
    small, large = Problem.balanced(4, 500, tau=0.5), Problem.balanced(4, 2000, tau=0.5)
    est_small, est_large = (sizing.gd_bytes(p, steps=2, certify=False) for p in (small, large))
    peak_small, peak_large = _peak(500), _peak(2000)
    imports = 300 * 2 ** 20
    assert peak_small < imports + est_small and peak_large < imports + est_large
    assert peak_large - peak_small < max(est_large - est_small, 64 * 2 ** 20)
    assert peak_large - peak_small < 8 * large.n ** 2 / 4


def test_require_names_the_estimate_and_the_way_out(monkeypatch):
    monkeypatch.setattr(sizing, "physical_memory", lambda: 10 * 2 ** 30)
    sizing.require(int(7.9 * 2 ** 30), "a run", "do less")           # 80 % of 10 GB fits
    with pytest.raises(ProblemError, match=r"a run needs about 9 GiB of memory, more than the 8 GiB .*; do less"):
        sizing.require(9 * 2 ** 30, "a run", "do less")


def test_gib_units():
    assert sizing.gib(3 * 2 ** 20) == "3 MiB" and sizing.gib(2 ** 50 * 17.1) == "17.1 PiB"


def test_a_need_just_above_the_budget_reads_above_it(monkeypatch):
    """"needs about 18.8 GB, more than the 18.8 GB" contradicted itself: the digits grow until they differ."""
    monkeypatch.setattr(sizing, "physical_memory", lambda: 23.5 * 2 ** 30)
    budget = sizing.memory_budget()
    with pytest.raises(ProblemError) as refused:
        sizing.require(int(budget * 1.001), "a run", "do less")
    need, allowed = re.search(r"needs about ([0-9.]+) GiB of memory, more than the ([0-9.]+) GiB",
                              str(refused.value)).groups()
    assert float(need) > float(allowed)
    assert np.isclose(float(sizing.gib(1.5 * 2 ** 30).split()[0]), 1.5)


CERTIFIED_PEAK = (
    "import json, sys\n"
    "from ufm import Problem\nfrom solvers import gd, certificate\n"
    "if sys.argv[2] == 'n-by-n':\n"
    "    certificate.collapsed_form_applies = lambda problem: False\n"
    "p = Problem.balanced(4, int(sys.argv[1]), tau=0.5)\n"
    "cert = gd.solve(p).certificate\n"
    "assert cert is not None and cert.method == ('collapsed' if sys.argv[2] == 'collapsed' else 'cholesky')\n"
    "status = open('/proc/self/status').read()\n"
    "print(json.dumps(1024 * int(status.split('VmHWM:')[1].split()[0])))\n")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is read from Linux's /proc")
@pytest.mark.slow
def test_certified_solve_estimate_is_within_10_percent_of_the_peak():
    """With the certificate on, the estimate lies from 10 % below to 15 % above the peak of the n x n
    certificate (n = 3000, full batch, a fresh process; the peak itself varies from run to run here,
    0.99-1.10 GiB against an estimate of 1.107 GiB, and the budget keeps 20 % of the memory free
    beyond it). It was 1.2-1.35x below:
    the certificate's Gram and slack beside its blocks were not counted. The estimate is for the
    worst case, a point the collapsed k x k form does not prove (forced here); where that form proves
    the optimum the peak is lower (0.50 GiB measured), never higher."""
    problem = Problem.balanced(4, 750, tau=0.5)
    estimate = sizing.gd_bytes(problem, steps=5000)
    peaks = {}
    for form in ("n-by-n", "collapsed"):
        out = subprocess.run([sys.executable, "-c", CERTIFIED_PEAK, "750", form], capture_output=True, text=True,
                             check=True)
        peaks[form] = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.9 <= estimate / peaks["n-by-n"] <= 1.15, (peaks["n-by-n"] / 2 ** 30, estimate / 2 ** 30)
    assert peaks["collapsed"] <= 1.1 * estimate
