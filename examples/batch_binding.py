"""Batch-binding against plain batches under ReLU (docs/theory.md section 4, [OF]).

What it shows, for one problem throughout: counts (8, 8, 4, 4), tau 0.5, ReLU, gradient descent from
seed 0.

- left: the cosines between class means when the batches are fixed and two class pairs never meet
  (batches {classes 0, 1} and {classes 2, 3}: docs/theory.md's counterexample). The pairs that never
  share a batch are not held orthogonal: their cosines (0-2, 0-3, 1-2, 1-3) are positive, while the
  pairs that meet are orthogonal (0);
- middle: the same problem with batch-binding (batches of 6: one example of every class in every
  batch, plus others): the orthogonal frame (identity);
- right: the distance of the mean Gram to the orthogonal frame against the batch size, for one fixed
  random partition, random batches reshuffled every epoch, and batch-binding (log scale; values at
  round-off drawn on the stated 1e-16 floor). Binding reaches the frame at every batch size.

Values it reproduces (tests/test_examples.py, against check_conditions and the frame itself): the
never-meet batching fails section 4's conditions and its mean Gram is >= 0.05 from the frame;
binding meets them and is within 1e-4 of it at every batch size.

    python examples/batch_binding.py [--out-dir figures] [--quick]
"""

import numpy as np
from _common import parse, write

from solvers.gd import solve
from theory_checks.sweeps import sweep_batching
from ufm import Batching, Problem, check_conditions
from ufm.app import plots
from ufm.app.progress import progress
from ufm.geometry import normalized_distance

COUNTS = [8, 8, 4, 4]
TAU = 0.5

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    never_meet = Problem.from_counts(COUNTS, tau=TAU, relu=True,
                                     batching=Batching.from_lists([range(16), range(16, 24)]))
    binding = never_meet.with_(batching=Batching.binding(6))
    fig, axes = plots.mosaic([["never_meet", "binding"], ["sweep", "sweep"]], height=5.8)
    solutions = {}
    for name, title, problem in [
            ("never_meet", "fixed batches {0, 1} | {2, 3}", never_meet),
            ("binding", "batch-binding, batches of 6", binding)]:
        solution = solve(problem, seed=0)
        solutions[name] = {"class_mean_gram": solution.class_mean_gram, "loss": solution.loss,
                           "status": solution.status,
                           "distance_to_of": normalized_distance(solution.class_mean_gram, np.eye(4)),
                           "conditions": check_conditions(problem.labels, problem.batches()).to_dict()}
        plots.gram_heatmap(solution.class_mean_gram, ax=axes[name], cosine=True, vmin=-1, vmax=1, title=title)
    sizes = [6, 8] if args.quick else [6, 8, 10, 12, 16]
    result = sweep_batching(sizes, COUNTS, tau=TAU, progress=progress)
    plots.sweep_panel(axes["sweep"], result.x, result.series, "dist:OF", "distance to orthogonal frame",
                      "batch size", logy=True, roundoff=True)
    axes["sweep"].set_title("distance to the frame against the batch size", fontsize=9)
    fig.suptitle(plots.problem_title(counts=COUNTS, tau=TAU, relu=True))
    write(fig, {"counts": COUNTS, "tau": TAU, "counterexample": solutions, "sweep": result.to_dict()},
          args.out_dir, "batch_binding")
