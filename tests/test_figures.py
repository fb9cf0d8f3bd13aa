"""The figures say what they draw: legends that name every visible line (coinciding lines merged),
one colour per quantity across panels, stated floors, two columns at most, integer ticks, tau as a
symbol; and the class-mean picture (MDS) against independent distance computations."""

import itertools
import json

import matplotlib
import numpy as np
import pytest

from ufm.app import plots
from ufm.app.cli import main
from ufm.geometry import etf_gram, means_picture

matplotlib.use("Agg")


def _true_distances(M):
    """Distances between the class means and the origin, from the Gram by the definition."""
    k = len(M)
    X = np.linalg.cholesky(M + 1e-12 * np.eye(k)) if np.all(np.linalg.eigvalsh(M) > 0) else None
    if X is None:                                   # a PSD factor of any Gram
        w, V = np.linalg.eigh(M)
        X = V * np.sqrt(np.clip(w, 0, None))
    P = np.vstack([X, np.zeros(X.shape[1])])
    return np.array([[np.linalg.norm(a - b) for b in P] for a in P])


def _picture_distances(points):
    P = np.vstack([points, np.zeros(points.shape[1])])
    return np.array([[np.linalg.norm(a - b) for b in P] for a in P])


def _stress(points, D):
    d = _picture_distances(points)
    upper = np.triu_indices(len(D), 1)
    return float(np.sqrt(np.sum((d[upper] - D[upper]) ** 2) / np.sum(D[upper] ** 2)))


@pytest.mark.parametrize("M", [etf_gram(3), np.array([[1.0, 0.2], [0.2, 1.0]]),
                               np.array([[1.0, -0.5, 0.5], [-0.5, 1.0, -1.0], [0.5, -1.0, 1.0]])])
def test_picture_is_exact_when_the_means_span_a_plane(M):
    picture = means_picture(M)
    assert picture.stress < 1e-6
    np.testing.assert_allclose(_picture_distances(picture.points), _true_distances(M), atol=1e-5)


def test_picture_keeps_orthogonal_means_apart_and_states_its_stress():
    """Six orthogonal means: the top-2 projection puts four of them on the origin; the MDS picture
    keeps every pair apart and its stress is the one computed here from its points."""
    M = np.eye(6)
    picture = means_picture(M)
    d = _picture_distances(picture.points)
    assert min(d[i, j] for i, j in itertools.combinations(range(6), 2)) > 0.4
    assert picture.stress == pytest.approx(_stress(picture.points, _true_distances(M)), rel=1e-9)
    assert 0.05 < picture.stress < 0.35            # not exact (6 orthogonal directions in a plane)
    from ufm.geometry import factor_gram
    assert np.sum(np.linalg.norm(factor_gram(M, 2), axis=1) < 1e-9) == 4    # what the old view drew


def test_collapsed_means_share_one_label():
    M = np.array([[1.0, -0.2, -0.2], [-0.2, 1.0, 1.0], [-0.2, 1.0, 1.0]])   # classes 1 and 2 coincide
    fig, axes = plots.figure()
    ax = plots.class_means_view(M, ax=axes[0, 0])
    labels = sorted(t.get_text() for t in ax.texts if t.get_text())      # (arrows are empty annotations)
    assert labels == ["0", "1,2"]
    assert "MDS" in ax.get_title()


def _legend_labels(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_sweep_figure_merges_coinciding_lines_and_colours_by_quantity():
    x = [1.0, 2.0, 4.0]
    series = {"no ReLU": {"cos:a": [-0.3, -0.4, -0.5], "cos:b": [-0.3, -0.2, 0.1], "dist:ETF": [0, 0.1, 0.2],
                          "dist:OF": [0.5, 0.55, 0.6]},
              "ReLU": {"cos:a": [0.0, 0.0, 0.0], "cos:b": [0.0, 0.0, 0.0], "dist:ETF": [0.5, 0.5, 0.5],
                       "dist:OF": [0.0, 0.0, 0.0]}}
    fig = plots.sweep_figure(x, series, "imbalance ratio R", [("cos", "cosine"), ("dist", "distance")], logx=True)
    ax_cos, ax_dist = fig.axes[:2]
    assert _legend_labels(ax_cos) == ["no ReLU: a", "no ReLU: b", "ReLU: a = b"]
    assert len(ax_cos.lines) == 3
    # colour names the quantity: "dist:ETF" has one colour in both series; series differ by style
    colours = {line.get_label(): line.get_color() for line in ax_dist.lines}
    assert colours["no ReLU: ETF"] == colours["ReLU: ETF"]
    styles = {line.get_label(): line.get_linestyle() for line in ax_dist.lines}
    assert styles["no ReLU: ETF"] != styles["ReLU: ETF"]
    assert len({line.get_color() for line in ax_cos.lines[:2]}) == 2
    assert colours["no ReLU: OF"] != colours["no ReLU: ETF"]


def test_log_panels_state_their_floor_and_two_columns_at_most():
    x = [6, 8, 12, 16]
    series = {"fixed": {"nc1": [0.3, 0.2, 1e-27, 1e-13], "dist:OF": [0.5, 0.4, 0.3, 0.2]},
              "binding": {"nc1": [1e-29, 1e-26, 1e-28, 1e-30], "dist:OF": [1e-14, 1e-15, 1e-13, 1e-14]}}
    panels = [("dist:OF", "distance"), ("nc1", "NC1"), ("dist:OF", "again")]
    fig = plots.sweep_figure(x, series, "batch size", panels, logy=True, roundoff=True)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    positions = {round(ax.get_position().x0, 2) for ax in axes}
    assert len(positions) == 2                           # two columns, a third panel on a second row
    ax = axes[1]
    labels = _legend_labels(ax)
    assert any("below 1e-16" in label for label in labels)    # the floor is stated, not silent
    ticks = ax.get_xticks()
    visible = [t for t in ticks if 6 <= t <= 16]
    assert all(float(t).is_integer() for t in visible)   # batch sizes are whole numbers


def test_titles_write_tau_as_a_symbol():
    assert plots.problem_title(counts=[8, 8, 2], tau=0.5, relu=False, dim=4) == \
        r"counts (8, 8, 2), $\tau$ = 0.5, no ReLU, d = 4"


def test_json_without_out_writes_no_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "imbalance", "--ratios", "1,2", "--classes", "2", "--n-max", "4", "--json",
                 "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["figure"] is None and list(tmp_path.iterdir()) == []


def _panel(series, quantity, **options):
    fig, axes = plots.figure()
    plots.sweep_panel(axes[0, 0], [1.0, 2.0, 3.0], series, quantity, "y", "x", **options)
    return axes[0, 0]


def test_merging_follows_what_the_eye_sees():
    """Log panels: lines decades apart stay two lines; linear panels: round-off around 0 merges, while
    a gap visible on the panel's scale does not."""
    ax = _panel({"s": {"d:a": [1, 1e-3, 1e-9], "d:b": [1, 1e-3, 1e-12]}}, "d", logy=True, roundoff=True)
    assert _legend_labels(ax)[:2] == ["s: a", "s: b"]
    ax = _panel({"s": {"c:a": [0.0, 0.0, 0.0], "c:b": [1e-12, 0.0, -1e-13], "c:c": [0.3, 0.2, 0.1]}}, "c")
    assert _legend_labels(ax) == ["s: a = b", "s: c"]
    ax = _panel({"s": {"c:a": [0.0, 0.0, 0.0], "c:b": [0.01, 0.0, 0.0]}}, "c")
    assert _legend_labels(ax) == ["s: a", "s: b"]


def test_round_off_band_does_not_stretch_the_axis_and_missing_points_are_named():
    ax = _panel({"s": {"d": [0.5, 0.3, 0.1]}}, "d", logy=True, roundoff=True)
    low, high = ax.get_ylim()
    assert low > 1e-3 and high < 10                      # the data's decades, not 1e-16 .. 1
    assert not any("round-off" in label for label in _legend_labels(ax))
    ax = _panel({"s": {"d": [0.5, float("nan"), 1e-20]}}, "d", logy=True, roundoff=True)
    labels = _legend_labels(ax)
    assert labels[0] == "s (no value at 2)"
    assert any("round-off" in label for label in labels) and any("below 1e-16" in label for label in labels)


def test_log10_excess_panel_keeps_points_where_the_excess_underflows():
    """Below tau ~ 0.002 E / n underflows to 0 in float64; the figure draws log10(E / n), from log E."""
    from theory_checks.sweeps import SweepResult
    series = {"no ReLU": {"cos:a": [-0.3, -0.3], "dist:ETF": [0.0, 0.0], "dist:OF": [0.5, 0.5],
                          "loss_per_example": [1.0, 1.0], "excess_per_example": [0.0, 1e-56],
                          "log10_excess_per_example": [-400.0, -56.0]}}
    fig = plots.sweep_result_figure(SweepResult("temperature", [0.001, 0.01], "temperature tau", series,
                                                {"counts": [8, 8, 2, 2], "loss": "scl"}))
    ax = fig.axes[3]
    assert ax.get_yscale() == "linear" and list(ax.lines[0].get_ydata()) == [-400.0, -56.0]


def test_series_that_lie_wholly_in_round_off_are_one_line():
    """Two batching schemes both at 1e-16 from the orthogonal frame stacked their markers on the floor
    where neither could be seen: they are one line labelled with both; a series above round-off stays."""
    import matplotlib.pyplot as plt

    from ufm.app.plots import sweep_panel

    fig, ax = plt.subplots()
    series = {"fixed-random": {"dist:OF": [0.5, 0.4]}, "random": {"dist:OF": [1e-16, 2e-16]},
              "binding": {"dist:OF": [3e-16, 1e-16]}}
    sweep_panel(ax, [6, 8], series, "dist:OF", "distance", "batch size", logy=True, roundoff=True)
    labels = ax.get_legend_handles_labels()[1]
    plt.close(fig)
    assert "random = binding (at round-off)" in labels and "fixed-random" in labels
    assert "random" not in labels and "binding" not in labels


def test_every_drawing_function_runs_in_the_toolkit_style():
    """Each function that creates figures or draws text runs inside ``plots.STYLE`` (``@styled``; a
    function inserted between a decorator and its function once left ``class_means_view`` unstyled).
    ``sweep_result_figure`` only calls ``sweep_figure``, which is styled."""
    from ufm.app import plots

    for name in ("figure", "mosaic", "gram_heatmap", "comparison_figure", "class_means_view", "sweep_figure",
                 "sweep_panel", "landscape_figure"):
        assert getattr(getattr(plots, name), "__wrapped__", None) is not None, name
