"""The explorer, driven headless through its widgets (Agg backend)."""

import math

import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent

from reference import orthogonal_frame_loss
from ufm.app.explore import SLIDER_RANGES, Explorer, ExplorerState
from ufm.geometry import etf_gram


@pytest.fixture(scope="module")
def explorer():
    return Explorer(ExplorerState(ratio=1.0, k=3, tau=0.5, n_max=6, gd_n_max=6))


def drawn_cosines(explorer):
    return np.asarray(explorer.ax_gram.images[0].get_array())


def test_starts_balanced_etf(explorer):
    np.testing.assert_allclose(drawn_cosines(explorer), etf_gram(3), atol=1e-4)
    assert explorer.metrics["dist to ETF"] < 1e-4


def test_log_sliders_cover_the_issue_ranges(explorer):
    # ratio 1 .. 100 and tau 0.01 .. 2 on log10 scales; the shown text is the value itself
    assert SLIDER_RANGES["ratio"] == (1.0, 100.0) and SLIDER_RANGES["tau"] == (0.01, 2.0)
    ratio, tau = explorer.sliders["R"], explorer.sliders["tau"]
    assert (ratio.valmin, ratio.valmax) == (0.0, 2.0)
    assert tau.valmin == pytest.approx(-2.0) and tau.valmax == pytest.approx(math.log10(2.0))
    explorer.set(tau=0.01)
    assert explorer.state.tau == pytest.approx(0.01)
    assert tau.valtext.get_text() == "0.01"
    # at tau = 0.01 the balanced optimum is still the ETF (the small-tau limit), solved in excess form
    np.testing.assert_allclose(drawn_cosines(explorer), etf_gram(3), atol=1e-6)
    explorer.set(tau=0.5)


def test_relu_toggle_redraws_the_orthogonal_frame(explorer):
    explorer.set(ratio=3.0)
    explorer.relu.set_active(0)          # ReLU on
    assert explorer.state.relu and explorer.state.ratio == pytest.approx(3.0)
    np.testing.assert_allclose(drawn_cosines(explorer), np.eye(3), atol=1e-4)
    counts = explorer.metrics["counts"]
    assert counts == [6, 2, 2]
    assert explorer.metrics["loss"] == pytest.approx(orthogonal_frame_loss(counts, 0.5), rel=1e-6)
    texts = " ".join(t.get_text() for t in explorer.ax_text.texts)
    assert "dist to OF" in texts
    explorer.relu.set_active(0)          # ReLU off again


def _mouse(explorer, name, kind, x_value):
    """A mouse event at slider value ``x_value`` (in the slider's own units) on its axes."""
    slider = explorer.sliders[name]
    x, y = slider.ax.transData.transform((x_value, 0.5))
    return MouseEvent(kind, explorer.fig.canvas, x, y, button=1)


def test_a_drag_solves_once_on_release(explorer):
    before = explorer.last_solution
    ratio = explorer.sliders["R"]
    explorer.fig.canvas.callbacks.process("button_press_event", _mouse(explorer, "R", "button_press_event", 0.5))
    explorer.fig.canvas.callbacks.process("motion_notify_event", _mouse(explorer, "R", "motion_notify_event", 0.8))
    assert ratio.drag_active
    assert explorer.last_solution is before                  # dragging: the value moves, nothing solves
    assert ratio.valtext.get_text() == f"{10 ** ratio.val:.3g}"
    explorer.fig.canvas.callbacks.process("button_release_event",
                                          _mouse(explorer, "R", "button_release_event", 0.8))
    assert explorer.last_solution is not before              # released: solved once, at the last value
    assert explorer.state.ratio == pytest.approx(10 ** 0.8, rel=1e-3)


def test_k_slider_and_profile(explorer):
    explorer.set(k=5)
    explorer.profile.set_active(1)       # long-tail
    assert explorer.state.profile == "long-tail"
    assert drawn_cosines(explorer).shape == (5, 5)
    assert len(explorer.metrics["counts"]) == 5


def test_batching_switches_to_gradient_descent(explorer):
    explorer.set(k=3)
    explorer.relu.set_active(0)
    explorer.batching.set_active(1)      # binding
    assert explorer.last_solution.method == "gd"
    assert explorer.metrics["dist to OF"] < 1e-4
    explorer.batching.set_active(0)
    explorer.relu.set_active(0)
    assert explorer.last_solution.method == "reduced"


def test_gd_button(explorer):
    explorer.gd_button._observers.process("clicked", None)
    assert explorer.last_solution.method == "gd"


def test_snapshot_has_no_widgets(explorer, tmp_path):
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    path = explorer.snapshot(tmp_path / "snap.png")
    assert path.stat().st_size > 10000
    assert set(plt.get_fignums()) == before                  # the snapshot's figure is closed again
    image = plt.imread(path)
    # the snapshot is a short strip (plots only), not the explorer window with its widget rows
    assert image.shape[0] < 0.6 * image.shape[1]
    # a paper's page: at most 6.8 in wide once cropped (README, Figures; it was 9.44 in)
    from ufm.app.plots import STYLE
    assert image.shape[1] / STYLE["savefig.dpi"] <= 6.8


def test_explore_command_snapshot_and_headless_message(tmp_path, capsys):
    from ufm.app.cli import main

    out = tmp_path / "explorer.png"
    assert main(["explore", "--out", str(out), "--classes", "3", "--relu", "--tau", "0.01", "--ratio", "50"]) == 0
    assert out.stat().st_size > 10000
    assert main(["explore"]) == 2                       # Agg in tests: no window to open
    assert "--out" in capsys.readouterr().err
    assert main(["explore", "--out", str(out), "--ratio", "150"]) == 2
    assert "[1, 100]" in capsys.readouterr().err


def test_a_failed_solve_is_a_message_and_a_snapshot_before_any_solve_is_a_one_line_error(tmp_path, monkeypatch):
    import dataclasses

    from solvers import convex
    from ufm import ProblemError

    real = convex.solve_reduced
    broken = lambda problem, *a, **kw: dataclasses.replace(real(problem), status="error",
                                                            class_mean_gram=np.full((problem.k, problem.k), np.nan))
    monkeypatch.setattr(convex, "solve_reduced", broken)
    fresh = Explorer.__new__(Explorer)
    fresh.last_solution = None
    with pytest.raises(ProblemError, match="nothing to save"):
        fresh.snapshot(tmp_path / "x.png")
    explorer = Explorer(ExplorerState(ratio=1.0, k=3, n_max=6))
    assert explorer.last_solution is None
    assert "non-finite" in " ".join(t.get_text() for t in explorer.ax_text.texts)
