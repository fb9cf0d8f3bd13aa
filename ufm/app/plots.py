"""Publication-quality figures (front end: takes data, never runs a solver).

Conventions: Okabe-Ito colour-blind-safe palette, 10-pt fonts, labelled axes (with units where a
quantity has one; most here are dimensionless and say so), legends, and :func:`save` writing PNG,
PDF or SVG by the file extension.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from ufm.atomic import write_bytes_atomically
from ufm.errors import ProblemError

if TYPE_CHECKING:
    from typing import ParamSpec, TypeVar

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from theory_checks.compare import Comparison
    from theory_checks.sweeps import SweepResult

    P = ParamSpec("P")
    R = TypeVar("R")

OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100, "savefig.dpi": 200,
    "savefig.bbox": "tight", "pdf.fonttype": 42, "svg.fonttype": "none",
}
FORMATS = (".png", ".pdf", ".svg")
#: Line colours of the sweep figures: Okabe-Ito without its yellow, which is too pale for thin lines.
LINE_COLOURS = [c for c in OKABE_ITO if c != "#F0E442"]


def styled(function: Callable[P, R]) -> Callable[P, R]:
    """Run a plotting function inside the toolkit's rc style (text is styled when it is created)."""
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with plt.rc_context(STYLE):
            return function(*args, **kwargs)
    return wrapper


@styled
def figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.8) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with the toolkit's style; ``width``/``height`` per panel in inches."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                             layout="constrained")
    return fig, axes


@styled
def mosaic(layout: list[list[str]], width: float = 6.8, height: float = 5.6) -> tuple[Figure, dict[str, Axes]]:
    """A constrained-layout figure of named panels (``plt.subplot_mosaic``), e.g. ``[["a", "b"],
    ["c", "c"]]`` for two panels over one wide one; ``width``/``height`` of the whole figure in inches
    (6.8: a two-column paper page)."""
    return plt.subplot_mosaic(layout, figsize=(width, height), layout="constrained")


def log_ticks(ax: Axes, values: Sequence[float], axis: str = "x") -> None:
    """Plain-number tick labels at ``values`` on a log axis (no 2x10^0 clutter)."""
    values = sorted(set(float(v) for v in values))
    if len(values) > 8:
        values = values[:: int(np.ceil(len(values) / 8))]
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    setter(values, [f"{v:g}" for v in values])
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_formatter(matplotlib.ticker.NullFormatter())


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path``, whole or not at all (:func:`ufm.atomic.write_bytes_atomically`: a
    failure is an :class:`ufm.errors.OutputError`, the file there unchanged); the extension picks the
    format (.png, .pdf, .svg). The figure is rendered in memory first, so its exact size is checked
    against the disk's free space before anything is written."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ProblemError(f"figure file {path} must end in one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rendered = io.BytesIO()
    with plt.rc_context(STYLE):
        fig.savefig(rendered, format=path.suffix.lower()[1:])
    return write_bytes_atomically(path, rendered.getvalue())


def tau_text(tau: float | None) -> str:
    r"""The temperature as every title writes it: ``$\tau$ = 0.5`` (mathtext), or "" for None."""
    return "" if tau is None else rf"$\tau$ = {tau:g}"


def problem_title(*, counts: Sequence[int] | None = None, profile: str | None = None, k: int | None = None,
                  tau: float | None = None, relu: bool | None = None, dim: int | None = None,
                  extra: str = "") -> str:
    r"""One title convention for every figure: ``counts (8, 8, 4), $\tau$ = 0.5, no ReLU, d = 4``
    (parts that are None are left out; a STEP or long-tail profile with k classes instead of counts)."""
    parts = []
    if counts is not None:
        parts.append(f"counts ({', '.join(str(int(c)) for c in counts)})")
    if profile is not None:
        parts.append(f"{profile} imbalance" + (f", k = {k}" if k is not None else ""))
    if tau is not None:
        parts.append(tau_text(tau))
    if relu is not None:
        parts.append("ReLU" if relu else "no ReLU")
    if dim is not None:
        parts.append(f"d = {dim}")
    if extra:
        parts.append(extra)
    return ", ".join(parts)


@styled
def gram_heatmap(M: np.ndarray, ax: Axes | None = None, title: str = "class-mean Gram", vmin: float = -1.0,
                 vmax: float = 1.0, cax: Axes | None = None, cosine: bool = False) -> Axes:
    """Heatmap of a (k, k) Gram with a diverging colour-blind-safe map and the values written in;
    ``cosine``: draw the cosines between class means (M_cc' / sqrt(M_cc M_c'c')) instead of M;
    ``cax``: an axes for the colour bar (redrawn in place, as the explorer does)."""
    from ufm.geometry import cosines

    M = np.asarray(M, dtype=float)
    if cosine:
        M = cosines(M)
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
    ticks = range(k) if k <= 12 else range(0, k, max(1, k // 6))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    ax.set_title(title)
    label = "cosine" if cosine else "inner product"
    if cax is not None:
        cax.clear()
        ax.figure.colorbar(image, cax=cax, label=label)
    else:                            # beside its own panel (a layout's column stays the panel's)
        ax.figure.colorbar(image, cax=ax.inset_axes([1.04, 0.0, 0.05, 1.0]), label=label)
    return ax


@styled
def comparison_figure(result: Comparison) -> Figure:
    """``ufm compare``'s figure: the trained features' class-mean cosines beside the certified UFM
    optimum's (``result`` a :class:`theory_checks.compare.Comparison`), the distances in the title."""
    fig, axes = mosaic([["features", "predicted"]], width=6.8, height=3.4)
    d = result.distance
    p = result.problem
    gram_heatmap(result.class_mean_gram, ax=axes["features"], title="trained features", cosine=True)
    gram_heatmap(result.predicted_gram, ax=axes["predicted"], cosine=True,
                 title=f"UFM optimum ({result.predicted_status})")
    fig.suptitle(f"{problem_title(counts=p.counts, tau=p.tau, relu=p.relu)}\ndistance to the optimum "
                 f"{d['predicted']:.3f}, to the ETF {d['etf']:.3f}, to the orthogonal frame {d['of']:.3f}",
                 fontsize=9)
    return fig


#: Class means closer than this fraction of the largest mean norm (true distances, not the picture's)
#: share one label.
_SAME_POINT = 0.03


@styled
def class_means_view(M: np.ndarray, counts: Sequence[int] | None = None, ax: Axes | None = None,
                     title: str = "class means") -> Axes:
    """The class means as arrows from the origin, placed by metric MDS of the means and the origin
    (:func:`ufm.geometry.means_picture`): distances and norms are kept as well as 2-D allows, and
    the title states the stress (0: exact). Means that coincide (minority collapse) share one label
    ("2,3"); marker size grows with the class count."""
    from ufm.geometry import gram_distances, means_picture

    M = np.asarray(M, dtype=float)
    picture = means_picture(M, 2)
    X = picture.points
    k = len(M)
    sizes = np.full(k, 40.0) if counts is None else 20 + 80 * np.asarray(counts) / max(counts)
    if ax is None:
        _, axes = figure()
        ax = axes[0, 0]
    colours = [OKABE_ITO[c % len(OKABE_ITO)] for c in range(k)]
    for c in range(k):
        ax.annotate("", xy=X[c], xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colours[c], lw=1.3))
    ax.scatter(X[:, 0], X[:, 1], s=sizes, c=colours, zorder=3, edgecolors="white", linewidths=0.5)
    ax.plot([0], [0], marker="+", color="0.3", ms=6)
    lim = 1.3 * max(1e-9, np.abs(X).max())
    largest_norm = np.sqrt(max(np.diag(M).max(), 1e-300))
    for group in _point_groups(gram_distances(M), _SAME_POINT * largest_norm):
        centre = X[group].mean(axis=0)
        norm = np.linalg.norm(centre)
        direction = centre / norm if norm > 1e-12 else np.array([0.0, 1.0])
        at = centre + 0.12 * lim * direction
        ax.text(at[0], at[1], ",".join(str(c) for c in group), ha="center", va="center", fontsize=8)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    exact = picture.stress < 1e-6
    ax.set_title(f"{title}\n(MDS, {'exact' if exact else f'stress {picture.stress:.2g}'})")
    return ax


def _point_groups(distances: np.ndarray, radius: float) -> list[list[int]]:
    """Indices of points grouped by proximity (single linkage within ``radius``, from their (k, k)
    distances), in order."""
    groups: list[list[int]] = []
    for c in range(len(distances)):
        for group in groups:
            if min(distances[c, g] for g in group) < radius:
                group.append(c)
                break
        else:
            groups.append([c])
    return groups


#: The y-value below which a log panel draws values on a floor line (float64 round-off of a
#: distance of O(1) quantities), and the band below ``RESOLUTION`` shaded as "at round-off".
LOG_FLOOR = 1e-16
RESOLUTION = 1e-12


def _quantity_colours(series: dict[str, dict[str, Sequence[float]]], panels) -> dict[str, str]:
    """One colour per measured quantity, the same in every panel of the figure: the colour says what is
    measured (a cosine block, a target geometry, the loss), the line style says which series."""
    keys: list[str] = []
    for quantity, _ in panels:
        for values in series.values():
            for key in values:
                if (key == quantity or key.startswith(quantity + ":")) and key not in keys:
                    keys.append(key)
    return {key: LINE_COLOURS[i % len(LINE_COLOURS)] for i, key in enumerate(keys)}


def _merged_lines(keys: list[str], values: dict, log: bool, span: float,
                  tol: float = 1e-6) -> list[tuple[list[str], np.ndarray]]:
    """Lines of one series in one panel, with keys whose values coincide merged (so three ReLU cosines
    at 0 become one line "maj-maj = maj-min = min-min" rather than three hidden under one).

    Coincide: the same points are finite and, on a log panel, every value agrees to 1e-3 decades (at or
    below :data:`LOG_FLOOR`, all values are drawn on the floor and agree); on a linear panel to
    ``tol * span``, ``span`` the range of all the panel's finite values (so round-off around 0 merges and
    lines a visible distance apart never do)."""
    lines: list[tuple[list[str], np.ndarray]] = []
    for key in keys:
        y = np.asarray(values[key], dtype=float)
        for names, other in lines:
            finite = np.isfinite(y)
            if not finite.any() or not np.array_equal(finite, np.isfinite(other)):
                continue
            if log:
                same = np.allclose(np.log10(np.maximum(y[finite], LOG_FLOOR)),
                                   np.log10(np.maximum(other[finite], LOG_FLOOR)), rtol=0.0, atol=1e-3)
            else:
                same = np.allclose(y[finite], other[finite], rtol=0.0, atol=tol * span)
            if same:
                names.append(key)
                break
        else:
            lines.append(([key], y))
    return lines


def _merged_at_round_off(entries: list) -> list:
    """Lines of different series that lie wholly in the round-off band (every finite value below
    :data:`RESOLUTION`, the same points finite) cannot be told apart at the accuracy computed: one line,
    labelled "random = binding (at round-off)", drawn at their largest value, instead of markers
    stacked on the floor."""
    low = [e for e in entries if np.isfinite(e[2]).any() and np.all(e[2][np.isfinite(e[2])] < RESOLUTION)]
    if len(low) < 2 or any(not np.array_equal(np.isfinite(e[2]), np.isfinite(low[0][2])) for e in low):
        return entries
    merged = (low[0][0], low[0][1], np.fmax.reduce([e[2] for e in low]),
              " = ".join(e[3] for e in low) + " (at round-off)")
    return [e for e in entries if not any(e is m for m in low)] + [merged]


@styled
def sweep_figure(x: Sequence[float], series: dict[str, dict[str, Sequence[float]]], xlabel: str,
                 panels: Sequence[tuple[str, str]], logx: bool = False, logy: bool | Sequence[str] = False,
                 title: str = "", roundoff: bool | Sequence[str] = False) -> Figure:
    """One panel per ``(quantity, ylabel)`` in ``panels``, two columns at most (a paper page), each
    drawn by :func:`sweep_panel`. Colour = quantity (the same in every panel), line style and marker
    fill = series. ``logy``: True (every panel) or the quantities drawn on a log scale; ``roundoff``:
    True or the log quantities computed to an absolute accuracy (see :func:`sweep_panel`)."""
    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = figure(ncols=ncols, nrows=nrows, width=3.4, height=2.9)
    colours = _quantity_colours(series, panels)
    log_quantities = {q for q, _ in panels} if logy is True else set(logy or ())
    floor_quantities = log_quantities if roundoff is True else set(roundoff or ()) & log_quantities
    for index, (quantity, ylabel) in enumerate(panels):
        sweep_panel(axes[index // ncols, index % ncols], x, series, quantity, ylabel, xlabel, colours=colours,
                    logx=logx, logy=quantity in log_quantities, roundoff=quantity in floor_quantities)
    for index in range(len(panels), nrows * ncols):
        axes[index // ncols, index % ncols].set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


@styled
def sweep_panel(ax: Axes, x: Sequence[float], series: dict[str, dict[str, Sequence[float]]], quantity: str,
                ylabel: str, xlabel: str, colours: dict[str, str] | None = None, logx: bool = False,
                logy: bool = False, roundoff: bool = False, legend: str = "below") -> None:
    """One sweep panel: a line per series and per quantity ``quantity`` or ``quantity:<label>``; lines
    that coincide are drawn once with a merged label ("ReLU: maj-maj = maj-min = min-min", see
    :func:`_merged_lines`). Points without a finite value are named in their line's label ("no value at
    ..."), never dropped silently. ``roundoff`` (with ``logy``): the values are computed to an absolute
    accuracy (distances, NC1), so values below :data:`LOG_FLOOR` are drawn on a dashed floor line with a
    downward marker, and, when the data come within 1e-9, the band below :data:`RESOLUTION` is shaded
    as round-off; both are stated in the legend and the y-range follows the data. (The excess is
    computed to full relative precision: no floor.) Integer x values get integer ticks. ``legend``:
    "below" the panel or "right" of it; never over the data."""
    colours = colours or _quantity_colours(series, [(quantity, ylabel)])
    styles = ["-", "--", ":", "-."]
    x = np.asarray(x, dtype=float)
    floor = logy and roundoff
    clipped_any = False
    drawn: list[np.ndarray] = []
    entries = _panel_entries(series, quantity, logy)
    if floor:
        entries = _merged_at_round_off(entries)
    for s_index, names, y, label in entries:
        missing = ~np.isfinite(y) | (logy and not floor) & (y <= 0)
        if missing.any():
            label += f" (no value at {', '.join(f'{v:g}' for v in x[missing])})"
        colour = colours[names[0]] if len(names) == 1 else "0.35"
        clipped = np.zeros(len(y), dtype=bool)
        if floor:
            clipped = np.isfinite(y) & (y < LOG_FLOOR)
            clipped_any |= bool(clipped.any())
            y = np.where(clipped, LOG_FLOOR, y)
        ax.plot(x, y, marker="osD^"[s_index % 4], ms=4, lw=1.4, color=colour, ls=styles[s_index % len(styles)],
                label=label, mfc=colour if s_index == 0 else "white", mec=colour)
        if clipped.any():
            ax.plot(x[clipped], y[clipped], lw=0, marker="v", ms=6, color=colour)
        drawn.append(y[np.isfinite(y) & (y > 0 if logy else True)])
    if logy:
        ax.set_yscale("log")
    values_drawn = np.concatenate(drawn) if drawn else np.zeros(0)
    if floor and values_drawn.size:
        low, high = float(values_drawn.min()), float(values_drawn.max())
        ax.set_ylim(low / 5, high * 5)                  # the data's range; the band does not stretch it
        if low < 1e-9:
            ax.axhspan(LOG_FLOOR / 5, RESOLUTION, color="0.92", zorder=0, lw=0,
                       label=f"round-off (below {RESOLUTION:.0e})")
        if clipped_any:
            ax.axhline(LOG_FLOOR, color="0.4", lw=0.8, ls="--",
                       label=rf"$\blacktriangledown$ below {LOG_FLOOR:.0e}, drawn at it")
    _panel_axes(ax, x, xlabel, ylabel, logx, legend)


def _panel_entries(series: dict[str, dict[str, Sequence[float]]], quantity: str, logy: bool) -> list[tuple]:
    """``(series index, names, y, label)`` per line of a :func:`sweep_panel`: the series' lines of
    ``quantity``, those that coincide merged (:func:`_merged_lines`, to the panel's span)."""
    panel = [np.asarray(v, dtype=float) for values in series.values() for key, v in values.items()
             if key == quantity or key.startswith(quantity + ":")]
    finite = np.concatenate([v[np.isfinite(v)] for v in panel]) if panel else np.zeros(0)
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    span = span if span > 0 else max(float(np.abs(finite).max()) if finite.size else 0.0, 1.0)
    entries = []
    for s_index, (series_name, values) in enumerate(series.items()):
        keys = [key for key in values if key == quantity or key.startswith(quantity + ":")]
        for names, y in _merged_lines(keys, values, log=logy, span=span):
            sub = " = ".join(n.split(":", 1)[1] for n in names if ":" in n)
            entries.append((s_index, names, y, series_name + (f": {sub}" if sub and len(keys) > 1 else "")))
    return entries


def _panel_axes(ax, x: np.ndarray, xlabel: str, ylabel: str, logx: bool, legend: str) -> None:
    """A :func:`sweep_panel`'s x ticks (integer ticks for integer x), labels, grid and legend
    ("below" the x label or "right" of the panel, never over the data)."""
    if logx:
        ax.set_xscale("log")
        log_ticks(ax, x)
    elif np.all(np.isfinite(x)) and np.allclose(x, np.round(x)):
        ax.set_xticks(x if len(x) <= 8 else x[::int(np.ceil(len(x) / 8))])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%d"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, lw=0.5)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        if legend == "right":
            ax.legend(frameon=False, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        else:                                       # below the x label, not over it
            ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3),
                      ncol=1 if max(len(lab) for lab in labels) > 22 else 2, fontsize=7.5)


def sweep_result_figure(result: SweepResult) -> Figure:
    """The figure of a ``theory_checks.sweeps.SweepResult`` (``ufm sweep`` and the examples draw the
    same): panels, log scales and title by the sweep's kind.

    - imbalance: cosines, distances to ETF and OF, the optimal loss as a sum and per example;
    - temperature (log tau): cosines, distances, the loss per example, and log10 of the excess per
      example (what carries the geometry at small tau; from log E, so it never underflows);
    - batching: the distance to the target frame and NC1, on log scales with the round-off band."""
    meta = result.meta
    xlabel = result.xlabel.replace("tau", r"$\tau$")
    if result.kind == "batching":
        of = meta["relu"]
        panels = [("dist:OF" if of else "dist:ETF", "distance to orthogonal frame" if of else "distance to simplex ETF"),
                  ("nc1", "NC1 (within class)")]
        return sweep_figure(result.x, result.series, xlabel, panels, logy=True, roundoff=True,
                            title=problem_title(counts=meta["counts"], tau=meta["tau"], relu=of))
    panels = [("cos", "cosine between class means"), ("dist", "distance of the mean Gram")]
    logy: list[str] = []
    if result.kind == "temperature":
        panels += [("loss_per_example", "optimal loss per example (nats)")]
        if any("log10_excess_per_example" in values for values in result.series.values()):
            panels += [("log10_excess_per_example", r"$\log_{10}$ of the excess per example, E / n")]
        title = problem_title(counts=meta["counts"])
    else:
        panels += [("loss", "optimal loss, sum over examples (nats)"),
                   ("loss_per_example", "optimal loss per example (nats)")]
        title = problem_title(profile=meta["profile"], k=meta["k"], tau=meta["tau"],
                              extra=f"largest class {meta['n_max']}")
    if meta.get("loss", "scl") != "scl":
        title += f", {meta['loss']}"
    return sweep_figure(result.x, result.series, xlabel, panels, logx=True, logy=logy, title=title)


@styled
def landscape_figure(data: dict, title: str = "") -> Figure:
    """Four panels, two by two, from the numbers of ``theory_checks.landscape.landscape_data``:
    (a) histogram of each start's relative gap (L - L*) / |L*| to the convex optimum L*, (b) the loss
    on a 2-D slice through the best minimiser, (c) the Riemannian Hessian spectrum at the minimiser
    (and at a saddle for contrast), (d) convergence of the loss gap and of the distance to the
    predicted geometry."""
    fig, axes = figure(ncols=2, nrows=2, width=3.4, height=2.9)
    ax = axes[0, 0]
    gaps = np.asarray(data["gaps"], dtype=float)
    logs = np.log10(np.maximum(np.abs(gaps), LOG_FLOOR))
    finite = logs[np.isfinite(logs)]
    low = np.floor(finite.min()) - 1 if finite.size else -16.0
    high = np.ceil(finite.max()) + 1 if finite.size else 0.0
    low, high = max(low, -16.5), max(high, low + 4)          # at least 4 decades, from round-off up
    ax.hist(logs[np.isfinite(logs)], bins=np.arange(low, high + 0.25, 0.25), color=OKABE_ITO[0],
            edgecolor="white")
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel(r"$\log_{10}\, |L - L^*| / |L^*|$")
    ax.set_ylabel("random starts")
    below = int(np.sum(gaps < 0))
    notes = [f"{below} below $L^*$ (rounding)" if below else "", f"{int(np.sum(~np.isfinite(gaps)))} unknown"
             if not np.isfinite(gaps).all() else ""]
    note = "; ".join(n for n in notes if n)
    if note:
        ax.text(0.98, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.3")
    ax.set_title(f"(a) {len(gaps)} starts against the convex optimum $L^*$", fontsize=9)

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
    cax = ax.inset_axes([1.04, 0.0, 0.05, 1.0])         # beside its own panel, not the column
    fig.colorbar(contours, cax=cax, label="loss - slice minimum (nats)")
    ax.set_xlabel("step along direction 1")
    ax.set_ylabel("step along direction 2")
    ax.set_title(f"(b) slice ({sl['directions']} directions)", fontsize=9)


#: Hessian eigenvalues within this fraction of the largest |eigenvalue| are zero to round-off (the
#: Hessian is a float64 derivative of sums over n^2 pairs, and eigh adds eps ||A||).
HESSIAN_ROUND_OFF = 1e-8


def spectrum_label(name: str, eig: np.ndarray) -> str:
    """The legend of one Hessian spectrum: its smallest eigenvalue, or, where that is within round-off
    of 0 (a minimiser's -2.7e-10), the floor it is below: a figure must not show a negative
    curvature that is not there."""
    eig = np.asarray(eig, dtype=float)
    floor = HESSIAN_ROUND_OFF * float(np.abs(eig).max()) if eig.size else 0.0
    if abs(float(eig.min())) <= floor:
        return f"{name} (smallest 0 to round-off: |value| < {floor:.0e})"
    return f"{name} (smallest {eig.min():+.2g})"


def _landscape_tail(fig, axes, data: dict) -> None:
    ax = axes[1, 0]
    for index, (name, eig) in enumerate(data["hessian"].items()):
        if eig is None or len(eig) == 0:
            continue
        eig = np.asarray(eig, dtype=float)
        ax.plot(np.arange(len(eig)), eig, marker="os"[index % 2], ms=3, lw=0, color=OKABE_ITO[index],
                label=spectrum_label(name, eig))
    ax.axhline(0, color="0.5", lw=0.7)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("eigenvalue index (ascending)")
    ax.set_ylabel("Riemannian Hessian eigenvalue")
    ax.set_title("(c) Hessian spectrum", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no feasible directions", ha="center", va="center", transform=ax.transAxes)

    ax = axes[1, 1]
    curves = data["curves"]
    ax.semilogy(np.arange(1, len(curves["loss_gap"]) + 1), np.maximum(np.abs(curves["loss_gap"]), LOG_FLOOR),
                color=OKABE_ITO[0], label=r"$|L - L^*| / |L^*|$")
    ax.semilogy(curves["checkpoints"], np.maximum(curves["distance"], LOG_FLOOR), marker="o", ms=3,
                color=OKABE_ITO[1], label="distance to the predicted Gram")
    ax.axhspan(LOG_FLOOR / 3, RESOLUTION, color="0.92", zorder=0, lw=0, label=f"round-off (below {RESOLUTION:.0e})")
    ax.set_xlabel("iteration (epoch)")
    ax.set_ylabel("gap / distance")
    ax.set_title("(d) convergence", fontsize=9)
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1, fontsize=8)
