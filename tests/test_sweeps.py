"""Sweeps: the numbers behind the figures against independent values and the solvers."""

import json
import math

import numpy as np
import pytest

from reference import etf_loss, orthogonal_frame_loss
from solvers.convex import solve_reduced
from theory_checks import sweeps
from ufm import Problem, ProblemError
from ufm.app.cli import main


def test_sweep_points_are_exactly_the_ratios_asked_for():
    """Each point's counts have exactly the ratio on its label; a ratio that the counts cannot realise
    refuses the whole sweep before anything runs (it is not relabelled)."""
    result = sweeps.sweep_imbalance([1, 4], k=4, n_max=8, tau=0.5, relu_options=(False,))
    for ratio, counts in zip(result.x, result.meta["counts"]):
        assert max(counts) / min(counts) == ratio
    with pytest.raises(ProblemError, match="sweep point 1e\\+06.*not a whole number"):
        sweeps.sweep_imbalance([1, 1e6], n_max=10)
    with pytest.raises(ProblemError, match="minority fraction"):
        sweeps.sweep_imbalance([1, 2], n_max=10, minority_fraction=0)
    with pytest.raises(ProblemError, match="empty"):
        sweeps.sweep_temperature([], [4, 4])


def test_imbalance_sweep_numbers():
    result = sweeps.sweep_imbalance([1, 4], k=4, n_max=8, tau=0.5)
    relu, plain = result.series["ReLU"], result.series["no ReLU"]
    # ReLU: orthogonal frame, closed-form loss (docs/theory.md section 2)
    for ratio, loss in zip([1, 4], relu["loss"]):
        assert loss == pytest.approx(orthogonal_frame_loss([8, 8, 8 // ratio, 8 // ratio], 0.5), rel=1e-6)
    assert max(relu["dist:OF"]) < 1e-4
    assert max(abs(v) for v in relu["cos:maj-min"]) < 1e-4
    # no ReLU: ETF at R = 1 (cosine -1/(k-1)); at R = 4 the docs/theory.md check values for (8, 8, 2, 2)
    assert plain["cos:maj-maj"][0] == pytest.approx(-1 / 3, abs=1e-4)
    assert plain["dist:ETF"][0] < 1e-4
    assert plain["loss"][1] == pytest.approx(35.98345, abs=1e-5)
    assert plain["cos:maj-maj"][1] == pytest.approx(-0.497, abs=1e-3)
    assert plain["cos:maj-min"][1] == pytest.approx(-0.349, abs=1e-3)
    assert plain["cos:min-min"][1] == pytest.approx(-0.033, abs=1e-3)


def test_imbalance_sweep_gd_cross_check():
    result = sweeps.sweep_imbalance([2], k=3, n_max=6, tau=1.0, relu_options=(False,), check_gd=True,
                                    gd_starts=2)
    assert abs(result.series["no ReLU"]["gd_gap"][0]) < 1e-7


def test_gd_cross_check_runs_every_point_and_start_in_one_batched_call_with_the_separate_results(monkeypatch):
    """check_gd solves all points and starts of one shape in one padded solve_batched call; each gap
    equals the gap computed from separate gd.solve runs (same seeds) to 1e-9 relative (checked on the
    ReLU series: the separate solves compile apiece)."""
    from solvers import gd

    calls = []
    real = gd.solve_batched
    monkeypatch.setattr(gd, "solve_batched", lambda runs, **kw: calls.append(len(runs)) or real(runs, **kw))
    result = sweeps.sweep_imbalance([1, 2], k=3, n_max=6, tau=1.0, check_gd=True, gd_starts=2)
    assert calls == [4, 4]                       # two shapes (ReLU or not) x (2 ratios x 2 starts)
    assert all(len(result.series[name]["gd_gap"]) == 2 for name in ("no ReLU", "ReLU"))
    for ratio, gap in zip([1, 2], result.series["ReLU"]["gd_gap"]):
        problem = Problem.from_profile("step", 3, 6, ratio, 0.5, tau=1.0, relu=True)
        best = min(gd.solve(problem, seed=s).loss for s in range(2))
        optimum = solve_reduced(problem).lower_bound
        assert gap == pytest.approx((best - optimum) / abs(optimum), abs=1e-9)


def test_ce_imbalance_sweep_matches_the_fixed_etf_closed_form():
    """With the fixed ETF classifier every point is the ETF, h_i = w_{y_i}, and the loss is
    n log(1 + (k - 1) exp(-(k / (k - 1)) / tau)) (docs/theory.md section 10, worked out by hand:
    w_c . w_y = -1/(k - 1) for c != y)."""
    from ufm import CrossEntropy

    k, tau = 3, 0.5
    result = sweeps.sweep_imbalance([1, 2, 4], k=k, n_max=8, tau=tau, relu_options=(False,),
                                    objective=CrossEntropy("etf"))
    row = result.series["no ReLU"]
    for counts, loss, dist, status in zip(result.meta["counts"], row["loss"], row["dist:ETF"], row["status"]):
        assert status == "optimal" and dist < 1e-7
        assert loss == pytest.approx(sum(counts) * math.log1p((k - 1) * math.exp(-(k / (k - 1)) / tau)), rel=1e-9)
    assert result.meta["loss"] == "CE, etf classifier"
    with pytest.raises(ProblemError, match="check_gd"):
        sweeps.sweep_imbalance([1], k=3, n_max=4, objective=CrossEntropy("etf"), check_gd=True)
    with pytest.raises(ProblemError, match="no temperature"):
        sweeps.sweep_temperature([0.5], [4, 4], objective=CrossEntropy("learned", 0.01))


def test_temperature_sweep_matches_reduced_program():
    result = sweeps.sweep_temperature([0.5, 1.0], [6, 6, 2], relu_options=(False,))
    for tau, loss in zip([0.5, 1.0], result.series["no ReLU"]["loss"]):
        assert loss == pytest.approx(solve_reduced(Problem.from_counts([6, 6, 2], tau=tau), program="general").lower_bound,
                                     rel=1e-6)


def test_batching_sweep_fixed_partition_breaks_the_frame_binding_keeps_it():
    fixed = sweeps.sweep_batching([3], [4, 4, 2, 2], schemes=("fixed-random",))
    binding = sweeps.sweep_batching([6], [4, 4, 2, 2], schemes=("binding",))
    assert binding.series["binding"]["dist:OF"][0] < 1e-4
    assert fixed.series["fixed-random"]["conditions_met"][0] is False
    assert fixed.series["fixed-random"]["dist:OF"][0] > 0.05


def test_batching_sweep_refuses_a_point_it_cannot_pose():
    """Batch-binding needs a batch size above k: the sweep refuses (no NaN point, no empty figure)."""
    with pytest.raises(ProblemError, match="sweep point 3, binding: batch-binding"):
        sweeps.sweep_batching([3, 6], [4, 4, 2, 2], schemes=("fixed-random", "binding"))
    with pytest.raises(ProblemError, match="unknown batching scheme"):
        sweeps.sweep_batching([6], [4, 4, 2, 2], schemes=("bogus",))


def test_sweep_command_writes_figure_and_json(tmp_path, capsys):
    out = tmp_path / "sweep.pdf"
    assert main(["sweep", "imbalance", "--ratios", "1,2", "--classes", "3", "--n-max", "4",
                 "--out", str(out), "--json", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert out.exists() and out.stat().st_size > 1000 and data["figure"] == str(out.resolve())
    assert data["x"] == [1.0, 2.0] and len(data["series"]["no ReLU"]["loss"]) == 2


def test_bad_range_is_a_one_line_error(capsys):
    assert main(["sweep", "imbalance", "--ratios", "1:x:3"]) == 2
    assert "--ratios" in capsys.readouterr().err


def test_sweep_command_prints_a_table(tmp_path, capsys):
    """Without --json: one table per series with the counts of each point and every quantity; the
    balanced point's loss is the ETF closed form (tests/reference.py), printed to 6 digits."""
    assert main(["sweep", "imbalance", "--ratios", "1,2", "--classes", "3", "--n-max", "4", "--tau", "0.5",
                 "--out", str(tmp_path / "s.png"), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "no ReLU:"
    header = lines[1].split()
    assert header[:4] == ["imbalance", "ratio", "R", "counts"] and "loss" in header and "status" in header
    first = lines[3].split()
    assert first[1] == "4,4,4" and first[-1] == "optimal"
    loss = float(first[header.index("loss") - 2])          # "imbalance ratio R" is one column
    assert loss == pytest.approx(etf_loss([4, 4, 4], 0.5), rel=1e-5)
    assert lines[4].split()[1] == "4,2,2"


#: docs/theory.md "Small tau" (the mpmath optimum of the block program, tests/reference_mp.py):
#: counts (8, 8, 2, 2), no ReLU, mean-Gram entries maj-maj / maj-min / min-min.
SMALL_TAU_TABLE = {0.5: (-0.4969368967, -0.3487554409, -0.0328819047),
                   0.1: (-0.3415932915, -0.3467975421, -0.2693359063),
                   0.05: (-0.3387166711, -0.3401315307, -0.3002124618),
                   0.02: (-0.3358340801, -0.3360729486, -0.3197782457),
                   0.01: (-0.3346461643, -0.3347070016, -0.3265010531)}


def test_temperature_sweep_reaches_the_small_tau_check_values():
    """The temperature sweep down to tau = 0.01 (the figure of examples/temperature_limit.py): its
    block cosines are docs/theory.md's mpmath check values (issue floor 1e-4; they hold to 1e-5), and
    the distance to the ETF falls with tau; with ReLU every cosine is 0 (the orthogonal frame)."""
    taus = sorted(SMALL_TAU_TABLE)
    result = sweeps.sweep_temperature(taus, [8, 8, 2, 2])
    plain = result.series["no ReLU"]
    for i, tau in enumerate(taus):
        got = [plain[f"cos:{block}"][i] for block in ("maj-maj", "maj-min", "min-min")]
        assert got == pytest.approx(SMALL_TAU_TABLE[tau], abs=1e-5), tau
        assert plain["status"][i] == "optimal"
    assert np.all(np.diff(plain["dist:ETF"]) > 0)           # taus ascending: farther from the ETF
    assert plain["dist:ETF"][0] < 0.005
    relu = result.series["ReLU"]
    assert max(abs(v) for block in ("maj-maj", "maj-min", "min-min") for v in relu[f"cos:{block}"]) < 1e-6
    # the excess per example carries the geometry where the loss cannot: E(0.01) = 1.18762e-56 (the
    # mpmath value of docs/theory.md), per example and as log10 (which never underflows)
    assert plain["excess_per_example"][0] == pytest.approx(1.18762e-56 / 20, rel=1e-4)
    assert plain["log10_excess_per_example"][0] == pytest.approx(math.log10(1.18762e-56 / 20), abs=1e-4)
