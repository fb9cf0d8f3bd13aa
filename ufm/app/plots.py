"""Publication-quality figures (front end: takes data, never runs a solver).

Conventions: Okabe-Ito colour-blind-safe palette, 10-pt fonts, labelled axes (with units where a
quantity has one; most here are dimensionless and say so), legends, and :func:`save` writing PNG,
PDF or SVG by the file extension.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from ufm.errors import ProblemError
from ufm.geometry import factor_gram

OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100, "savefig.dpi": 200,
    "savefig.bbox": "tight", "pdf.fonttype": 42, "svg.fonttype": "none",
}
FORMATS = (".png", ".pdf", ".svg")


def styled(function):
    """Run a plotting function inside the toolkit's rc style (text is styled when it is created)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return function(*args, **kwargs)
    return wrapper


@styled
def figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.8,
           projection: str | None = None):
    """A constrained-layout figure with the toolkit's style; ``width``/``height`` per panel in inches."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                             layout="constrained", subplot_kw={"projection": projection} if projection else None)
    return fig, axes


def log_ticks(ax, values: Sequence[float], axis: str = "x") -> None:
    """Plain-number tick labels at ``values`` on a log axis (no 2x10^0 clutter)."""
    values = sorted(set(float(v) for v in values))
    if len(values) > 8:
        values = values[:: int(np.ceil(len(values) / 8))]
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    setter(values, [f"{v:g}" for v in values])
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_formatter(matplotlib.ticker.NullFormatter())


def save(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path``; the extension picks the format (.png, .pdf, .svg)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ProblemError(f"figure file {path} must end in one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        fig.savefig(path)
    return path


@styled
def gram_heatmap(M: np.ndarray, ax=None, title: str = "class-mean Gram", vmin: float = -1.0,
                 vmax: float = 1.0, cax=None):
    """Heatmap of a (k, k) Gram with a diverging colour-blind-safe map and the values written in;
    ``cax``: an axes for the colour bar (redrawn in place, as the explorer does)."""
    M = np.asarray(M, dtype=float)
    if ax is None:
        _, axes = figure()
        ax = axes[0, 0]
    image = ax.imshow(M, cmap="RdBu_r", vmin=vmin, vmax=vmax)
    k = len(M)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=max(5, 9 - k // 3),
                        color="white" if abs(M[i, j]) > 0.6 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    ax.set_title(title)
    if cax is not None:
        cax.clear()
        ax.figure.colorbar(image, cax=cax, label="inner product")
    else:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="inner product")
    return ax


@styled
def class_means_view(M: np.ndarray, counts: Sequence[int] | None = None, ax=None, dims: int = 2,
                     title: str = "class means"):
    """The class means drawn as arrows in 2-D (or 3-D with ``dims=3``), coordinates from the top
    eigenpairs of the mean Gram M (k, k): the picture is exact when rank M <= dims. Marker size grows
    with the class count."""
    M = np.asarray(M, dtype=float)
    X = factor_gram(M, dims)
    k = len(M)
    sizes = np.full(k, 40.0) if counts is None else 20 + 80 * np.asarray(counts) / max(counts)
    if ax is None:
        _, axes = figure(projection="3d" if dims == 3 else None)
        ax = axes[0, 0]
    colours = [OKABE_ITO[c % len(OKABE_ITO)] for c in range(k)]
    if dims == 3:
        for c in range(k):
            ax.plot([0, X[c, 0]], [0, X[c, 1]], [0, X[c, 2]], color=colours[c], lw=1.5)
        ax.scatter(X[:, 0], X[:, 1], X[:, 2], s=sizes, c=colours)
        ax.set_zlabel("coordinate 3")
    else:
        for c in range(k):
            ax.annotate("", xy=X[c, :2], xytext=(0, 0),
                        arrowprops=dict(arrowstyle="->", color=colours[c], lw=1.5))
        ax.scatter(X[:, 0], X[:, 1], s=sizes, c=colours, zorder=3)
        for c in range(k):
            ax.text(X[c, 0] * 1.12, X[c, 1] * 1.12, str(c), ha="center", va="center", fontsize=8)
        lim = 1.25 * max(1e-9, np.abs(X[:, :2]).max())
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.85", lw=0.5, zorder=0)
        ax.axvline(0, color="0.85", lw=0.5, zorder=0)
    ax.set_xlabel("coordinate 1")
    ax.set_ylabel("coordinate 2")
    ax.set_title(title)
    return ax


@styled
def sweep_figure(x: Sequence[float], series: dict[str, dict[str, Sequence[float]]], xlabel: str,
                 panels: Sequence[tuple[str, str]], logx: bool = False, logy: bool = False,
                 title: str = ""):
    """One panel per ``(quantity, ylabel)`` in ``panels``; in each, one line per entry of ``series``
    (e.g. ``{"ReLU": {...}, "no ReLU": {...}}``), each mapping quantity names to values over ``x``.
    Quantities named ``"<q>:<label>"`` draw several lines with legend ``label`` in one panel.
    ``logy``: log scale with values clipped at 1e-16 (for distances that reach round-off)."""
    fig, axes = figure(ncols=len(panels))
    markers = "osD^v<>"
    line_styles = ["-", "--", ":", "-."]
    for ax, (quantity, ylabel) in zip(axes[0], panels):
        n_line = 0
        for s_index, (series_name, values) in enumerate(series.items()):
            keys = [key for key in values if key == quantity or key.startswith(quantity + ":")]
            for key_index, key in enumerate(keys):
                # colour and marker name the quantity, the line style names the series
                label = series_name + (f", {key.split(':', 1)[1]}" if ":" in key else "")
                y = np.maximum(np.asarray(values[key], dtype=float), 1e-16) if logy else values[key]
                ax.plot(x, y, marker=markers[key_index % len(markers)], ms=3.5, lw=1.4,
                        color=OKABE_ITO[(key_index if len(keys) > 1 else s_index) % len(OKABE_ITO)],
                        ls=line_styles[s_index % len(line_styles)], label=label)
                n_line += 1
        if logx:
            ax.set_xscale("log")
            log_ticks(ax, x)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, lw=0.5)
        if n_line:
            # below the panel, so the legend never hides data
            ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22),
                      ncol=2 if n_line > 2 else n_line, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


@styled
def landscape_figure(data: dict, title: str = ""):
    """Four panels from the numbers of ``theory_checks.landscape.landscape_data``:
    (a) histogram of final loss minus the convex optimum over random starts, (b) the loss on a 2-D slice
    through the best minimiser, (c) the Riemannian Hessian spectrum at the minimiser (and at a saddle
    for contrast), (d) convergence of the loss gap and of the distance to the predicted geometry."""
    fig, axes = figure(ncols=4, width=3.2, height=2.9)
    ax = axes[0, 0]
    gaps = np.asarray(data["gaps"], dtype=float)
    floor = 1e-16
    logs = np.log10(np.maximum(np.abs(gaps), floor))
    # a fixed scale from round-off (1e-16) up, so "all starts at 1e-10" reads as such
    ax.hist(logs, bins=np.arange(-16.0, max(1.0, np.ceil(logs.max()) + 1), 0.5), color=OKABE_ITO[0],
            edgecolor="white")
    ax.set_xlabel("log10 |loss - convex optimum| / optimum")
    ax.set_ylabel("number of random starts")
    ax.set_title(f"(a) {len(gaps)} starts")

    ax = axes[0, 1]
    sl = data["slice"]
    if sl is None:
        ax.text(0.5, 0.5, "no feasible 2-D slice\n(see notes)", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("(b) slice")
        ax.set_axis_off()
    else:
        _slice_panel(fig, ax, sl)
    _landscape_tail(fig, axes, data)
    if title:
        fig.suptitle(title)
    return fig


def _slice_panel(fig, ax, sl: dict) -> None:
    A, B = np.meshgrid(sl["alphas"], sl["betas"])
    Z = np.asarray(sl["loss"], dtype=float)
    contours = ax.contourf(A, B, Z - Z.min(), levels=20, cmap="viridis")
    ax.plot([0], [0], marker="*", color="white", ms=10, mec="black", mew=0.5)
    fig.colorbar(contours, ax=ax, label="loss - slice minimum (nats)")
    ax.set_xlabel("step along direction 1")
    ax.set_ylabel("step along direction 2")
    ax.set_title(f"(b) slice ({sl['directions']} directions)")


def _landscape_tail(fig, axes, data: dict) -> None:
    floor = 1e-16
    ax = axes[0, 2]
    for index, (name, eig) in enumerate(data["hessian"].items()):
        if eig is None or len(eig) == 0:
            continue
        eig = np.asarray(eig, dtype=float)
        ax.plot(np.arange(len(eig)), eig, marker="os"[index % 2], ms=3, lw=0, color=OKABE_ITO[index],
                label=f"{name} (min {eig.min():+.2g})")
    ax.axhline(0, color="0.5", lw=0.7)
    ax.set_xlabel("eigenvalue index (ascending)")
    ax.set_ylabel("Riemannian Hessian eigenvalue")
    ax.set_title("(c) Hessian spectrum")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False)
    else:
        ax.text(0.5, 0.5, "no feasible directions", ha="center", va="center", transform=ax.transAxes)

    ax = axes[0, 3]
    curves = data["curves"]
    ax.semilogy(np.arange(1, len(curves["loss_gap"]) + 1), np.maximum(np.abs(curves["loss_gap"]), floor),
                color=OKABE_ITO[0], label="relative loss gap")
    ax.semilogy(curves["checkpoints"], np.maximum(curves["distance"], floor), marker="o", ms=3,
                color=OKABE_ITO[1], label="distance to predicted Gram\n(floor: accuracy of the prediction)")
    ax.set_xlabel("iteration (epoch)")
    ax.set_ylabel("gap / distance (dimensionless)")
    ax.set_title("(d) convergence")
    ax.legend(frameon=False, loc="upper right", fontsize=7)
