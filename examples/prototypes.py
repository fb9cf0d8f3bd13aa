"""Prototypes steer the geometry ([PROTO], docs/theory.md section 5).

What it shows: without ReLU, counts (10, 10, 2, 2), tau 0.5, simplex-ETF prototypes joining every
batch: the distance of the class-mean Gram to the ETF (the cross-entropy limit) shrinks as the number
of prototypes per class grows (docs/theory.md's check values 0.167, 0.140, 0.111, 0.080 for 1, 2, 4, 8), from
the n x n convex program; the heatmaps show the class-mean Gram with 1 and with the most prototypes.

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
    fig, axes = plots.figure(ncols=3, width=3.4, height=3.0)
    ax = axes[0, 0]
    ax.plot(per_class, distances, marker="o", color=plots.OKABE_ITO[0])
    ax.set_xscale("log", base=2)
    plots.log_ticks(ax, per_class)
    ax.set_xlabel("prototypes per class")
    ax.set_ylabel("distance of mean Gram to ETF")
    ax.set_title("approach to the CE limit")
    plots.gram_heatmap(grams[0], ax=axes[0, 1], title=f"{per_class[0]} prototype per class")
    plots.gram_heatmap(grams[-1], ax=axes[0, 2], title=f"{per_class[-1]} prototypes per class")
    write(fig, {"prototypes_per_class": per_class, "distance_to_etf": distances, "class_mean_grams": grams},
          args.out_dir, "prototypes")
