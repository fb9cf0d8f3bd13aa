"""The explorer, driven headless through its widgets (Agg backend)."""

import numpy as np
import pytest

from reference import orthogonal_frame_loss
from ufm.app.explore import Explorer, ExplorerState
from ufm.geometry import etf_gram


@pytest.fixture(scope="module")
def explorer():
    return Explorer(ExplorerState(ratio=1.0, k=3, tau=0.5, n_max=6))


def drawn_gram(explorer):
    return np.asarray(explorer.ax_gram.images[0].get_array())


def test_starts_balanced_etf(explorer):
    np.testing.assert_allclose(drawn_gram(explorer), etf_gram(3), atol=1e-4)
    assert explorer.metrics["dist to ETF"] < 1e-4


def test_relu_toggle_redraws_the_orthogonal_frame(explorer):
    explorer.sliders["R"].set_val(3.0)
    explorer.relu.set_active(0)          # ReLU on
    assert explorer.state.relu and explorer.state.ratio == 3.0
    np.testing.assert_allclose(drawn_gram(explorer), np.eye(3), atol=1e-4)
    counts = explorer.metrics["counts"]
    assert counts == [6, 2, 2]
    assert explorer.metrics["loss"] == pytest.approx(orthogonal_frame_loss(counts, 0.5), rel=1e-6)
    texts = " ".join(t.get_text() for t in explorer.ax_text.texts)
    assert "dist to OF" in texts
    explorer.relu.set_active(0)          # ReLU off again


def test_k_slider_and_profile(explorer):
    explorer.sliders["k"].set_val(5)
    explorer.profile.set_active(1)       # long-tail
    assert explorer.state.profile == "long-tail"
    assert drawn_gram(explorer).shape == (5, 5)
    assert len(explorer.metrics["counts"]) == 5


def test_batching_switches_to_gradient_descent(explorer):
    explorer.sliders["k"].set_val(3)
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


def test_explore_command_snapshot_and_headless_message(tmp_path, capsys):
    from ufm.app.cli import main

    out = tmp_path / "explorer.png"
    assert main(["explore", "--out", str(out), "--classes", "3", "--relu"]) == 0
    assert out.stat().st_size > 10000
    assert main(["explore"]) == 2                       # Agg in tests: no window to open
    assert "--out" in capsys.readouterr().err
