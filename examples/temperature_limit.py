"""The small-temperature limit: the SCL optimum tends to the simplex ETF as tau -> 0, whatever the
imbalance (docs/theory.md section 3, "Small tau").

What it shows, for counts (8, 8, 2, 2) (two majority, two minority classes), tau from 2 down to 0.01 on
a log axis, without and with ReLU, each point the reduced k x k program in excess form with its
certificate:

- top left, the cosines between class means per block. Without ReLU, at tau = 0.5 the majority
  classes push apart (maj-maj -0.497) and the minority classes are pushed together (min-min -0.033);
  as tau falls every cosine tends to the ETF's -1/3. With ReLU all three are 0 at every tau
  (the orthogonal frame), drawn as one line;
- top right, the distance of the mean Gram to the ETF and to the orthogonal frame: without ReLU the
  distance to the ETF shrinks in proportion to tau (0.0046 at tau = 0.01);
- bottom left, the optimal loss per example: it flattens below tau ~ 0.1, where the loss no longer sees
  the geometry in float64;
- bottom right, the excess per example E / n (the loss minus its geometry-free constant), which
  carries the geometry with full relative precision down to ~1e-57 at tau = 0.01.

Values it reproduces (docs/theory.md's check values; tests/test_examples.py holds them to 1e-4):
maj-maj / maj-min / min-min cosines at tau 0.5: -0.4969 / -0.3488 / -0.0329; 0.1: -0.3416 / -0.3468 /
-0.2693; 0.05: -0.3387 / -0.3401 / -0.3002; 0.02: -0.3358 / -0.3361 / -0.3198; 0.01: -0.3346 /
-0.3347 / -0.3265. ``--quick`` runs tau = 0.01, 0.1, 0.5 only.

    python examples/temperature_limit.py [--out-dir figures] [--quick]
"""

from _common import parse, write

from theory_checks.sweeps import sweep_temperature
from ufm.app import plots
from ufm.app.progress import progress

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    taus = [0.01, 0.1, 0.5] if args.quick else [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    result = sweep_temperature(taus, [8, 8, 2, 2], progress=progress)
    fig = plots.sweep_result_figure(result)
    write(fig, result.to_dict(), args.out_dir, "temperature_limit")
