"""Prototypes steer the geometry ([PROTO], docs/theory.md section 5).

What it shows: without ReLU, counts (10, 10, 2, 2), tau 0.5, simplex-ETF prototypes joining every
batch (full batch), each point the n x n convex program: left, the distance of the class-mean Gram to
the ETF (the cross-entropy limit) against the number of prototypes per class, on an axis from 0 so the
approach is drawn at its true size; middle and right, the cosines between class means with 1 and with
the most prototypes per class.

Values it reproduces (docs/theory.md section 5; tests/test_examples.py): distances to the ETF 0.167,
0.140, 0.111, 0.079 for 1, 2, 4, 8 prototypes per class (``--quick``: 1, 2, 4).

    python examples/prototypes.py [--out-dir figures] [--quick]
"""

from _common import parse, write

from solvers.convex import solve_relaxation
from ufm import Problem, Prototypes
from ufm.app import plots
from ufm.geometry import etf_gram, normalized_distance

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    per_class = [1, 2, 4] if args.quick else [1, 2, 4, 8]
    grams, distances = [], []
    for n_w in per_class:
        problem = Problem.from_counts([10, 10, 2, 2], tau=0.5, prototypes=Prototypes("etf", n_w))
        solution = solve_relaxation(problem)
        grams.append(solution.class_mean_gram)
        distances.append(normalized_distance(solution.class_mean_gram, etf_gram(4)))
        print(f"prototypes per class {n_w}: distance to ETF {distances[-1]:.3f} ({solution.status})")
    fig, axes = plots.mosaic([["trend", "trend"], ["first", "last"]], height=5.6)
    fig.get_layout_engine().set(wspace=0.12)    # the first colour bar's label clear of the next "class"
    ax = axes["trend"]
    ax.plot(per_class, distances, marker="o", color=plots.OKABE_ITO[0])
    ax.set_xscale("log", base=2)
    plots.log_ticks(ax, per_class)
    ax.set_ylim(0, 1.15 * max(distances))
    ax.set_xlabel("prototypes per class")
    ax.set_ylabel("distance to the ETF")
    ax.set_title("approach to the cross-entropy limit (ETF)", fontsize=9)
    plots.gram_heatmap(grams[0], ax=axes["first"], cosine=True, title=f"{per_class[0]} prototype per class")
    plots.gram_heatmap(grams[-1], ax=axes["last"], cosine=True, title=f"{per_class[-1]} prototypes per class")
    fig.suptitle(plots.problem_title(counts=[10, 10, 2, 2], tau=0.5, relu=False,
                                     extra="simplex-ETF prototypes in every batch"))
    write(fig, {"prototypes_per_class": per_class, "distance_to_etf": distances, "class_mean_grams": grams},
          args.out_dir, "prototypes")
