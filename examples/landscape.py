"""The benign landscape of the UFM with SCL ([LAND], docs/theory.md section 3).

What it shows, for counts (8, 8, 4), tau 0.5, no ReLU, d = 4 > k: (a) 20 random starts of gradient
descent (one vmapped call) all end within round-off of the convex optimum; (b) the loss on a random 2-D
slice through the minimiser is a single basin; (c) the Riemannian Hessian at the minimiser has no
negative eigenvalue (zeros are rotations), while a saddle in which two classes share their rows has
negative ones; (d) the loss gap and the distance to the predicted Gram fall linearly to the solvers'
accuracy.

    python examples/landscape.py [--out-dir figures] [--quick]
"""

from _common import parse, write

from theory_checks.landscape import landscape_data
from ufm import Problem
from ufm.app import plots

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    problem = Problem.from_counts([8, 8, 4], tau=0.5, dim=4)
    data = landscape_data(problem, starts=8 if args.quick else 20, resolution=15 if args.quick else 41)
    fig = plots.landscape_figure(data, title=plots.problem_title(counts=problem.counts, tau=problem.tau,
                                                                 relu=problem.relu, dim=problem.dim))
    write(fig, data, args.out_dir, "landscape")
