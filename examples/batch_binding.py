"""Batch-binding against plain batches under ReLU (docs/theory.md section 4, [OF]).

What it shows: left, the class-mean Gram reached when the batches are fixed and two class pairs never
meet (docs/theory.md's counterexample: 4 classes x 4 examples, batches {classes 0, 1} and {2, 3}) - the
unmet pairs are not orthogonal; middle, the same problem with batch-binding - the orthogonal frame;
right, the distance to the orthogonal frame against the batch size for one fixed random partition,
random batches reshuffled every epoch, and batch-binding (gradient descent; log scale, round-off at
1e-13). Binding reaches the frame at every batch size; a fixed partition does not.

    python examples/batch_binding.py [--out-dir figures] [--quick]
"""

import numpy as np
from _common import parse, write

from solvers.gd import solve
from theory_checks.sweeps import sweep_batching
from ufm import Batching, Problem, check_conditions
from ufm.app import plots
from ufm.app.progress import progress

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    never_meet = Problem.balanced(4, 4, tau=0.5, relu=True, batching=Batching.from_lists([range(8), range(8, 16)]))
    binding = never_meet.with_(batching=Batching.binding(6))
    fig, axes = plots.figure(ncols=3, width=3.6, height=3.1)
    solutions = {}
    for ax, (name, problem) in zip(axes[0], [("classes 0,1 | 2,3 never meet", never_meet),
                                             ("batch-binding", binding)]):
        solution = solve(problem, seed=0)
        solutions[name] = {"class_mean_gram": solution.class_mean_gram, "loss": solution.loss,
                           "conditions": check_conditions(problem.labels, problem.batches()).to_dict()}
        plots.gram_heatmap(solution.class_mean_gram, ax=ax, title=name, vmin=-1, vmax=1)
    sizes = [6, 8] if args.quick else [6, 8, 10, 12, 16]
    result = sweep_batching(sizes, [8, 8, 4, 4], tau=0.5, progress=progress)
    ax = axes[0, 2]
    for index, (scheme, values) in enumerate(result.series.items()):
        ax.semilogy(result.x, np.maximum(values["dist:OF"], 1e-16), marker="os^"[index], ms=4,
                    color=plots.OKABE_ITO[index], label=scheme)
    ax.set_xlabel("batch size")
    ax.set_ylabel("distance to orthogonal frame")
    ax.set_title("counts (8, 8, 4, 4), tau 0.5")
    ax.legend(frameon=False, fontsize=8)
    write(fig, {"counterexample": solutions, "sweep": result.to_dict()}, args.out_dir, "batch_binding")
