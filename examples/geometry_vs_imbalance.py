"""Geometry of the SCL optimum against the STEP imbalance ratio R, with and without ReLU.

What it shows ([OF] Fig. 1-2, [LAND]): with ReLU the class means form an orthogonal frame at every R
(all cosines 0, distance to OF 0), whatever the imbalance; without ReLU the geometry starts as the simplex
ETF at R = 1 and drifts away as R grows: majority classes push apart (cosine toward -1) while minority
classes are pushed together (minority-minority cosine rises, "minority collapse"). Each point is the
reduced k x k convex program; ``--quick`` uses fewer ratios.

    python examples/geometry_vs_imbalance.py [--out-dir figures] [--quick]
"""

from _common import parse, write

from theory_checks.sweeps import sweep_imbalance
from ufm.app import plots
from ufm.app.progress import progress

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    ratios = [1, 4, 16] if args.quick else [1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    result = sweep_imbalance(ratios, profile="step", k=4, n_max=64, tau=0.5, progress=progress)
    fig = plots.sweep_figure(result.x, result.series, result.xlabel,
                             [("cos", "cosine between class means"), ("dist", "distance of mean Gram"),
                              ("loss", "optimal loss (sum, nats)")],
                             logx=True, title="STEP imbalance, k = 4 (2 majority, 2 minority), tau = 0.5")
    write(fig, result.to_dict(), args.out_dir, "geometry_vs_imbalance")
