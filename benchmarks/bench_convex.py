"""Solve time of the n x n relaxation versus n and of the reduced k x k program versus k.

Run: ``PYTHONPATH=. python benchmarks/bench_convex.py [--cap SECONDS]``. Prints a table. The n x n
sweep stops at the first size whose solve exceeds the cap (that size is where it becomes impractical
on this machine); each row is one solve (default Clarabel tolerances, timings include cvxpy
compilation). No assertions: timings are machine-dependent.
"""

from __future__ import annotations

import argparse
import time

from solvers.convex import solve_relaxation
from solvers.reduced import solve_reduced
from ufm import Problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cap", type=float, default=60.0, help="stop the n x n sweep past this many seconds")
    parser.add_argument("--k", type=int, default=4, help="classes for the n x n sweep")
    args = parser.parse_args()

    print(f"n x n relaxation (k = {args.k}, STEP ratio 2, tau 0.5, no ReLU), cap {args.cap:g} s")
    print(f"{'n':>6} {'seconds':>9} {'status':>20} {'optimum':>18}")
    for m in (2, 4, 6, 8, 12, 16, 24, 32):
        problem = Problem.step(args.k, 2 * m, 2.0, tau=0.5)
        t0 = time.perf_counter()
        sol = solve_relaxation(problem, certified=False)
        dt = time.perf_counter() - t0
        print(f"{problem.n:>6} {dt:>9.2f} {sol.status:>20} {sol.lower_bound:>18.10f}", flush=True)
        if dt > args.cap:
            print(f"  -> past the {args.cap:g} s cap at n = {problem.n}: impractical beyond this")
            break

    print("\nreduced k x k program (general, long-tail ratio 10, n_max 50, tau 0.5)")
    print(f"{'k':>6} {'n':>8} {'seconds':>9} {'status':>20} {'optimum':>18}")
    for k in (5, 10, 20, 40, 70, 100):
        problem = Problem.long_tail(k, 50, 10.0, tau=0.5)
        t0 = time.perf_counter()
        sol = solve_reduced(problem, fast_path=False, certified=False)
        dt = time.perf_counter() - t0
        print(f"{k:>6} {problem.n:>8} {dt:>9.2f} {sol.status:>20} {sol.lower_bound:>18.10f}", flush=True)

    print("\nSTEP block fast path vs general (k = 100, half minority, n_max 50, ratio 10)")
    problem = Problem.step(100, 50, 10.0, tau=0.5)
    for fast in (True, False):
        t0 = time.perf_counter()
        sol = solve_reduced(problem, fast_path=fast, certified=False)
        print(f"  {sol.extra['program']:>8}: {time.perf_counter() - t0:7.2f} s  {sol.status:>18}  "
              f"{sol.lower_bound:.10f}", flush=True)


if __name__ == "__main__":
    main()
