"""Time full-batch gradient descent (n = 1000, k = 10) to 1e-6 relative accuracy.

Run: ``PYTHONPATH=. python benchmarks/bench_gd.py [--relu] [--tau T] [--optimizer bb|adam]``.

Accuracy is measured against the closed-form optimum of docs/theory.md section 2 (the orthogonal-frame loss
with ``--relu``, the simplex-ETF loss without: the counts are balanced, 100 per class). The solver runs
with ``tol = 1e-12`` and its loss history is scanned for the first epoch within 1e-6 relative of the
optimum; the time to that epoch is the measured per-epoch time (second, compiled run) times its index.
Prints times and iterations only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from solvers import gd
from ufm.objectives.scl.prediction import etf_loss, orthogonal_frame_loss
from ufm import Problem


def closed_form(problem: Problem) -> float:
    """docs/theory.md section 2 for these balanced counts: the orthogonal frame with ReLU, else the ETF."""
    if problem.relu:
        return orthogonal_frame_loss(problem.counts, problem.tau)
    return etf_loss(problem.counts[0], problem.k, problem.tau)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relu", action="store_true")
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--optimizer", default="bb")
    parser.add_argument("--target", type=float, default=1e-6)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()

    problem = Problem.balanced(10, 100, tau=args.tau, relu=args.relu)
    best = closed_form(problem)
    t0 = time.perf_counter()
    gd.solve(problem, optimizer=args.optimizer, steps=args.steps, tol=1e-12)   # compile
    compile_and_run = time.perf_counter() - t0
    sol = gd.solve(problem, optimizer=args.optimizer, steps=args.steps, tol=1e-12)
    hist = np.asarray(sol.info.loss_history)
    rel = np.abs(hist - best) / abs(best)
    hit = np.flatnonzero(rel <= args.target)
    per_epoch = sol.seconds / max(sol.iterations, 1)
    print(f"problem: n = {problem.n}, k = {problem.k}, d = {problem.dim}, tau = {problem.tau}, "
          f"relu = {problem.relu}, optimizer = {args.optimizer}")
    print(f"first call (compile + run): {compile_and_run:.2f} s")
    print(f"compiled run: {sol.iterations} iterations, {sol.seconds:.3f} s, status {sol.status}, "
          f"final relative error {abs(sol.loss - best) / abs(best):.2e}")
    if len(hit):
        it = int(hit[0]) + 1
        print(f"to {args.target:g} relative accuracy: {it} iterations, ~{it * per_epoch:.3f} s")
    else:
        print(f"did not reach {args.target:g} relative accuracy in {sol.iterations} iterations")


if __name__ == "__main__":
    main()
