"""Geometry of the SCL optimum against the STEP imbalance ratio R, with and without ReLU.

What it shows ([OF] Fig. 1-2, [LAND]), STEP imbalance with k = 4 (2 majority classes of 96, 2 minority
classes of 96 / R), tau 0.5, each point the reduced k x k program with its certificate: top left, the
cosines per block: with ReLU the class means form an orthogonal frame at every R (all cosines 0, one
line); without ReLU the geometry starts as the simplex ETF at R = 1 and drifts away as R grows: majority
classes push apart (cosine toward -1) while minority classes are pushed together (minority-minority
cosine rises, "minority collapse"); top right, the distances to the ETF and the frame; bottom, the
optimal loss as a sum (it falls mostly because n shrinks) and per example.

Values it reproduces (tests/test_examples.py, against closed forms): at R = 1 without ReLU the ETF,
every cosine -1/3 and loss 384 log(95 + 288 e^{-8/3}) = 1822.091; with ReLU every cosine is 0 and the
loss is the orthogonal frame's sum_c n_c log((n_c - 1) + (n - n_c) e^{-2}) at every R (1880.703 at
R = 1).
``--quick`` uses R = 1, 4, 16.

    python examples/geometry_vs_imbalance.py [--out-dir figures] [--quick]
"""

from _common import parse, write

from theory_checks.sweeps import sweep_imbalance
from ufm.app import plots
from ufm.app.progress import progress

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    ratios = [1, 4, 16] if args.quick else [1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    result = sweep_imbalance(ratios, profile="step", k=4, n_max=96, tau=0.5, progress=progress)
    fig = plots.sweep_result_figure(result)
    write(fig, result.to_dict(), args.out_dir, "geometry_vs_imbalance")
