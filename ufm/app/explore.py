"""The interactive explorer (front end): sliders and toggles for the imbalance ratio R, the number of
classes k, the temperature tau, ReLU, the imbalance profile and the batching; every change re-solves
and redraws the class-mean Gram heatmap, the class-mean picture and the metrics.

Full batch uses the reduced k x k program (fast: well under a second for k <= 20). A batching other than
full has no reduced program, so the explorer then runs gradient descent (press "run GD" also to
cross-check a full-batch point). Headless use (tests, benchmarks): build ``Explorer()`` under the Agg
backend, set widget values (``explorer.sliders["R"].set_val(4)``, ``explorer.relu.set_active(0)``)
and read ``explorer.state``, ``explorer.last_solution`` and the drawn artists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.widgets import Button, CheckButtons, RadioButtons, Slider

from ufm.app import plots
from ufm.batching import Batching
from ufm.errors import ProblemError
from ufm.geometry import etf_gram, normalized_distance, orthogonal_frame_gram
from ufm.problem import Problem, profile_counts


#: The sliders' (low, high, step) (the ``ufm explore`` starting values must lie on them).
SLIDER_RANGES = {"ratio": (1.0, 20.0, 0.5), "k": (2, 20, 1), "tau": (0.05, 2.0, 0.05)}


@dataclass
class ExplorerState:
    ratio: float = 4.0
    k: int = 4
    tau: float = 0.5
    relu: bool = False
    profile: str = "step"
    batching: str = "full"
    n_max: int = 20


class Explorer:
    """The explorer window; ``update()`` re-solves and redraws (called by every widget)."""

    def __init__(self, state: ExplorerState | None = None):
        self.state = state or ExplorerState()
        self.last_solution = None
        self.last_seconds = 0.0
        self.fig = plt.figure(figsize=(10, 6.2))
        self.ax_gram = self.fig.add_axes([0.05, 0.42, 0.30, 0.52])
        self.ax_colorbar = self.fig.add_axes([0.36, 0.45, 0.012, 0.46])
        self.ax_means = self.fig.add_axes([0.55, 0.42, 0.22, 0.52])
        self.ax_text = self.fig.add_axes([0.79, 0.42, 0.20, 0.52])
        self.ax_text.axis("off")
        self.sliders = {
            "R": self._slider(0.30, "ratio R", "ratio", self.state.ratio),
            "k": self._slider(0.24, "classes k", "k", self.state.k),
            "tau": self._slider(0.18, "tau", "tau", self.state.tau),
        }
        self.relu = CheckButtons(self.fig.add_axes([0.70, 0.17, 0.1, 0.16]), ["ReLU"], [self.state.relu])
        self.profile = RadioButtons(self.fig.add_axes([0.82, 0.17, 0.15, 0.16]), ["step", "long-tail"])
        self.batching = RadioButtons(self.fig.add_axes([0.12, 0.02, 0.3, 0.12]), ["full", "binding", "random"])
        self.gd_button = Button(self.fig.add_axes([0.50, 0.04, 0.15, 0.06]), "run GD")
        for slider in self.sliders.values():
            slider.on_changed(lambda _value: self.update())
        self.relu.on_clicked(lambda _label: self.update())
        self.profile.on_clicked(lambda _label: self.update())
        self.batching.on_clicked(lambda _label: self.update())
        self.gd_button.on_clicked(lambda _event: self.update(use_gd=True))
        self.update()

    def _slider(self, bottom: float, label: str, name: str, value) -> Slider:
        low, high, step = SLIDER_RANGES[name]
        return Slider(self.fig.add_axes([0.12, bottom, 0.5, 0.03]), label, low, high, valinit=value, valstep=step)

    def _read_widgets(self) -> None:
        s = self.state
        s.ratio = float(self.sliders["R"].val)
        s.k = int(self.sliders["k"].val)
        s.tau = float(self.sliders["tau"].val)
        s.relu = bool(self.relu.get_status()[0])
        s.profile = self.profile.value_selected
        s.batching = self.batching.value_selected

    def problem(self) -> Problem:
        """The problem the widgets describe (the smallest count rounded so any R on the slider works;
        the panel shows the counts used)."""
        s = self.state
        counts = profile_counts(s.profile, s.k, s.n_max, s.ratio, rounded=True)
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
            problem = self.problem()
            if use_gd or not problem.is_full_batch:
                from solvers.gd import solve
                solution = solve(problem)
            else:
                from solvers.convex import solve_reduced
                solution = solve_reduced(problem)
        except ProblemError as err:
            self._show_message(str(err))
            return
        self.last_seconds = time.perf_counter() - start
        self.last_solution = solution
        self._draw(problem, solution)

    def _show_message(self, text: str) -> None:
        self.ax_text.clear()
        self.ax_text.axis("off")
        self.ax_text.text(0, 1, "cannot solve:\n" + text, va="top", wrap=True, fontsize=9, color="#D55E00")
        self.fig.canvas.draw_idle()

    def _draw(self, problem: Problem, solution) -> None:
        M = np.asarray(solution.class_mean_gram)
        k = problem.k
        self.ax_gram.clear()
        plots.gram_heatmap(M, ax=self.ax_gram, title=f"class-mean Gram ({solution.method})",
                           cax=self.ax_colorbar)
        self.ax_means.clear()
        plots.class_means_view(M, counts=problem.counts, ax=self.ax_means,
                               title="class means" if k <= 2 else "class means (top-2 projection)")
        self.metrics = {
            "counts": list(problem.counts), "loss": float(solution.loss),
            "dist to ETF": normalized_distance(M, etf_gram(k)),
            "dist to OF": normalized_distance(M, orthogonal_frame_gram(k)),
            "status": solution.status, "seconds": self.last_seconds,
        }
        lines = [f"{key}: {_compact(value)}" for key, value in self.metrics.items()]
        self.ax_text.clear()
        self.ax_text.axis("off")
        self.ax_text.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=9)
        self.fig.canvas.draw_idle()


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
