"""The interactive explorer (front end): sliders and toggles for the imbalance ratio R, the number of
classes k, the temperature tau, ReLU, the imbalance profile and the batching; every change re-solves
and redraws the cosines between class means, the class-mean picture and the metrics.

One code path on the desktop and in Jupyter: plain matplotlib widgets, so any interactive backend
runs it (a desktop window through ``ufm explore``; in a notebook ``%matplotlib widget``, i.e. ipympl,
then ``Explorer()``; see ``examples/explore.ipynb``).

- R (1 to 100) and tau (0.01 to 2) slide on log scales, k (2 to 20) in whole steps.
- A click or a drag on a slider solves once, when the mouse is released (the value shown follows the
  drag); ``set_val`` / :meth:`Explorer.set` solve at once.
- Full batch uses the reduced k x k program (well under 0.5 s for k <= 20; ``python -m benchmarks
  --only explorer``). A batching other than full has no reduced program, so the explorer then runs
  gradient descent (press "run GD" also to cross-check a full-batch point).
- :meth:`Explorer.snapshot` saves the current picture without the widgets.

Headless use (tests, benchmarks): build ``Explorer()`` under the Agg backend, set widget values
(``explorer.sliders["R"].set_val(math.log10(4))`` or ``explorer.set(ratio=4)``,
``explorer.relu.set_active(0)``) and read ``explorer.state``, ``explorer.last_solution`` and the
drawn artists.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.widgets import Button, CheckButtons, RadioButtons, Slider

from ufm.app import plots
from ufm.app.explore_state import LOG_SLIDERS, SLIDER_RANGES, ExplorerState  # noqa: F401
from ufm.batching import Batching
from ufm.errors import ProblemError
from ufm.geometry import etf_gram, normalized_distance, orthogonal_frame_gram
from ufm.problem import Problem, profile_counts


class Explorer:
    """The explorer figure; ``update()`` re-solves and redraws (the widgets call it)."""

    def __init__(self, state: ExplorerState | None = None):
        self.state = state or ExplorerState()
        self.last_solution = None
        self.last_problem = None
        self.last_profile = self.state.profile
        self.last_seconds = 0.0
        self.metrics: dict = {}
        self._pending = False
        self.fig = plt.figure(figsize=(9.5, 6.0))
        self.ax_gram, self.ax_colorbar, self.ax_means, self.ax_text = self._plot_axes(self.fig)
        self.sliders = {
            "R": self._slider(0.30, "ratio R", "ratio", self.state.ratio),
            "k": self._slider(0.24, "classes k", "k", self.state.k),
            "tau": self._slider(0.18, "τ", "tau", self.state.tau),
        }
        self.relu = CheckButtons(self.fig.add_axes([0.70, 0.17, 0.1, 0.16]), ["ReLU"], [self.state.relu])
        profiles = ["step", "long-tail"]
        self.profile = RadioButtons(self.fig.add_axes([0.82, 0.17, 0.15, 0.16]), profiles,
                                    active=profiles.index(self.state.profile))
        schemes = ["full", "binding", "random"]
        self.batching = RadioButtons(self.fig.add_axes([0.12, 0.02, 0.3, 0.12]), schemes,
                                     active=schemes.index(self.state.batching))
        self.gd_button = Button(self.fig.add_axes([0.50, 0.04, 0.15, 0.06]), "run GD")
        for slider in self.sliders.values():
            slider.drawon = False           # the explorer draws once per change (update, or the drag)
            slider.on_changed(lambda _value, s=slider: self._slid(s))
        self.fig.canvas.mpl_connect("button_release_event", lambda _event: self._released())
        self.relu.on_clicked(lambda _label: self.update())
        self.profile.on_clicked(lambda _label: self.update())
        self.batching.on_clicked(lambda _label: self.update())
        self.gd_button.on_clicked(lambda _event: self.update(use_gd=True))
        self.update()

    @staticmethod
    def _plot_axes(fig, top: float = 0.42, ceiling: float = 0.86):
        """The heatmap, its colour bar, the means picture and the metrics panel, between ``top`` and
        ``ceiling`` (above it: the title)."""
        height = ceiling - top
        ax_gram = fig.add_axes([0.07, top, 0.27, height])
        ax_colorbar = fig.add_axes([0.35, top + 0.03, 0.012, height - 0.06])
        ax_means = fig.add_axes([0.50, top, 0.24, height])      # clear of the colour bar's label
        ax_text = fig.add_axes([0.775, top, 0.22, height])
        ax_text.axis("off")
        return ax_gram, ax_colorbar, ax_means, ax_text

    def _slider(self, bottom: float, label: str, name: str, value) -> Slider:
        low, high = SLIDER_RANGES[name]
        ax = self.fig.add_axes([0.12, bottom, 0.5, 0.03])
        if name in LOG_SLIDERS:
            slider = Slider(ax, label, math.log10(low), math.log10(high), valinit=math.log10(value))
            slider.valtext.set_text(f"{value:.3g}")
            return slider
        return Slider(ax, label, low, high, valinit=value, valstep=1)

    def _slid(self, slider: Slider) -> None:
        """A slider moved: show its value; solve now, or on release while the mouse drags it."""
        if slider in (self.sliders["R"], self.sliders["tau"]):
            slider.valtext.set_text(f"{10 ** slider.val:.3g}")
        if getattr(slider, "drag_active", False):
            self._pending = True
            self.fig.canvas.draw_idle()
        else:
            self.update()

    def _released(self) -> None:
        if self._pending:
            self._pending = False
            self.update()

    def set(self, *, ratio: float | None = None, k: int | None = None, tau: float | None = None) -> None:
        """Move the sliders to these values (each move solves, as a click would)."""
        for name, value in (("R", ratio), ("k", k), ("tau", tau)):
            if value is not None:
                self.sliders[name].set_val(math.log10(value) if name != "k" else value)

    def _read_widgets(self) -> None:
        s = self.state
        s.ratio = float(10 ** self.sliders["R"].val)
        s.k = int(round(self.sliders["k"].val))
        s.tau = float(10 ** self.sliders["tau"].val)
        s.relu = bool(self.relu.get_status()[0])
        s.profile = self.profile.value_selected
        s.batching = self.batching.value_selected

    def problem(self, use_gd: bool = False) -> Problem:
        """The problem the widgets describe (the smallest count rounded so any R on the slider works;
        the panel shows the counts used): ``n_max`` examples in the largest class for the reduced
        program, ``gd_n_max`` for gradient descent (a batching, or ``use_gd``)."""
        s = self.state
        n_max = s.gd_n_max if (use_gd or s.batching != "full") else s.n_max
        counts = profile_counts(s.profile, s.k, n_max, s.ratio, rounded=True)
        batching = Batching.full()
        if s.batching != "full":
            size = max(s.k + 2, sum(counts) // 4)
            batching = Batching(s.batching, batch_size=size)
        return Problem.from_counts(counts, tau=s.tau, relu=s.relu, batching=batching)

    def update(self, use_gd: bool = False) -> None:
        """Re-solve for the widgets' values and redraw everything."""
        self._read_widgets()
        start = time.perf_counter()
        try:
            problem = self.problem(use_gd)
            if use_gd or not problem.is_full_batch:
                from solvers.gd import solve
                solution = solve(problem)
            else:
                from solvers.convex import solve_reduced
                solution = solve_reduced(problem)
        except ProblemError as err:
            self._show_message(str(err))
            return
        if not np.isfinite(np.asarray(solution.class_mean_gram)).all():
            self._show_message(f"the solver returned a non-finite Gram (status {solution.status}): {solution.message}")
            return
        self.last_seconds = time.perf_counter() - start
        self.last_solution = solution
        self.last_problem = problem
        self.last_profile = self.state.profile
        self.metrics = self._metrics(problem, solution)
        self._draw(self.ax_gram, self.ax_colorbar, self.ax_means, self.ax_text)
        self.fig.canvas.draw_idle()

    def _show_message(self, text: str) -> None:
        self.ax_text.clear()
        self.ax_text.axis("off")
        self.ax_text.text(0, 1, "cannot solve:\n" + text, va="top", wrap=True, fontsize=9, color="#D55E00")
        self.fig.canvas.draw_idle()

    def _metrics(self, problem: Problem, solution) -> dict:
        M = np.asarray(solution.class_mean_gram)
        k = problem.k
        return {
            "counts": list(problem.counts), "R": max(problem.counts) / min(problem.counts), "tau": problem.tau,
            "loss": float(solution.loss),
            "dist to ETF": normalized_distance(M, etf_gram(k)),
            "dist to OF": normalized_distance(M, orthogonal_frame_gram(k)),
            "status": str(solution.status), "seconds": self.last_seconds,
        }

    def _draw(self, ax_gram, ax_colorbar, ax_means, ax_text, timing: bool = True) -> None:
        """Draw the last solution into these axes (the explorer's own, or a snapshot's: without the
        solve time, which is this machine's and the first call's compile)."""
        problem, solution = self.last_problem, self.last_solution
        M = np.asarray(solution.class_mean_gram)
        ax_gram.clear()
        plots.gram_heatmap(M, ax=ax_gram, cosine=True, cax=ax_colorbar,
                           title=f"cosines between class means\n({solution.method})")
        ax_means.clear()
        plots.class_means_view(M, counts=problem.counts, ax=ax_means)
        lines = [f"{key}: {_compact(value)}" for key, value in self.metrics.items() if timing or key != "seconds"]
        ax_text.clear()
        ax_text.axis("off")
        ax_text.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=7)
        ax_gram.figure.suptitle(plots.problem_title(profile=self.last_profile, k=problem.k, tau=problem.tau,
                                                    relu=problem.relu, extra=f"R = {self.metrics['R']:.3g}"),
                                fontsize=11)

    def snapshot(self, path: str | Path) -> Path:
        """Save the current picture (heatmap, means, metrics) without the widgets; the extension picks
        the format (.png, .pdf, .svg)."""
        if self.last_solution is None:
            raise ProblemError("nothing to save: the explorer has not solved a problem yet (see its message)")
        fig = plt.figure(figsize=(6.3, 2.8))      # 6.8 in at most once cropped (README, Figures)
        try:
            self._draw(*self._plot_axes(fig, top=0.04, ceiling=0.80), timing=False)
            return plots.save(fig, path)
        finally:
            plt.close(fig)


def _compact(value) -> str:
    """Floats to 4 digits; count lists run-length encoded (``20 x5, 4 x5``) so they fit the panel."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        runs: list[list[int]] = []
        for v in value:
            if runs and runs[-1][0] == v:
                runs[-1][1] += 1
            else:
                runs.append([v, 1])
        return ", ".join(f"{v} x{r}" if r > 1 else str(v) for v, r in runs)
    return str(value)


def main(state: ExplorerState | None = None) -> Explorer:
    """Open the explorer window at ``state`` (default :class:`ExplorerState`); blocks until it is closed."""
    explorer = Explorer(state)
    plt.show()
    return explorer
