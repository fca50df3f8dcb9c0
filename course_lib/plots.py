"""Plotting helpers shared by the notebooks and the explorers (matplotlib).

Every function accepts arrays of any backend (numpy, cupy, the stand-in) and
converts them with :func:`course_lib.backend.to_numpy` before plotting.  Two
shapes of function:

* ``f(..., ax=None) -> Axes`` draws into one Axes (a new figure when ``ax`` is
  None): :func:`learning_curves`, :func:`train_test_gap`,
  :func:`percentile_bands`, :func:`batch_stats_scatter`, :func:`batch_noise_curve`.
* ``f(..., fig=None) -> Figure`` builds a figure of several panels:
  :func:`layer_histograms`, :func:`weight_tiles`, :func:`sweep_grid`.

New figures are pyplot figures, so ``%matplotlib inline`` shows them once at
the end of the cell.  When the call is the last line of a cell, end it with
``;`` (or assign the result), otherwise Jupyter shows the figure twice.  Pass
``fig=matplotlib.figure.Figure()`` to draw off-screen (the explorers do).

The core modules never import matplotlib; this one and :mod:`course_lib.explorers` may.
"""
from __future__ import annotations

import builtins
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from course_lib.backend import to_numpy

#: Axis labels for the fields of :class:`course_lib.trainer.History`.
METRIC_LABELS = {
    "train_loss": "training loss (cross-entropy)",
    "val_loss": "validation loss (cross-entropy)",
    "train_acc": "training accuracy",
    "val_acc": "validation accuracy",
    "step_loss": "training loss per step (cross-entropy)",
}


# ----------------------------------------------------------------------------- helpers
def new_figure(figsize=(6.0, 4.0), *, managed=True, **kwargs) -> Figure:
    """A figure with constrained layout: a pyplot one (``managed``), else a standalone ``Figure``."""
    kwargs.setdefault("layout", "constrained")
    if managed:
        import matplotlib.pyplot as plt
        return plt.figure(figsize=figsize, **kwargs)
    return Figure(figsize=figsize, **kwargs)


def _integer_x(ax):
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _axes(ax, figsize=(6.0, 4.0)):
    if ax is None:
        ax = new_figure(figsize).add_subplot()
    return ax


def to_png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def log_axis_limits(ax, values, lo=0.05, hi=2.0, axis="y"):
    """Log-axis limits covering ``values`` and at least [lo, hi], labelled at whole decades only.

    Fixed minimum limits keep a redrawn figure comparable with the previous one,
    and without minor ticks a narrow range does not fill with ``4.5 x 10^-1`` labels.
    """
    from matplotlib.ticker import LogLocator, NullLocator
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    pad = 1.5 if axis == "y" else 1.25
    low = min(lo, float(v.min()) / pad) if v.size else lo
    high = max(hi, float(v.max()) * pad) if v.size else hi
    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_ylim if axis == "y" else ax.set_xlim)(low, high)
    target.set_major_locator(LogLocator(base=10))
    target.set_minor_locator(NullLocator())  # minor ticks cost a lot of drawing time and say little here
    return low, high


def _host(a) -> np.ndarray:
    """A host numpy copy of ``a`` (float arrays keep their dtype, anything else becomes float64)."""
    a = np.asarray(to_numpy(a))
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def _series(h, metric):
    """A metric's values from a History, a mapping, or a plain sequence."""
    if hasattr(h, metric):
        return list(getattr(h, metric))
    if isinstance(h, Mapping):
        return list(h[metric])
    return list(_host(h).reshape(-1))


def _layer_values(activations, range, exclude_zeros, who):
    """Names, flattened finite host values, stds, zero fractions and the shared x range of
    per-layer activations (a mapping name -> array, or a list named "layer 1", ...)."""
    if isinstance(activations, Mapping):
        names, arrays = list(activations), list(activations.values())
    else:
        arrays = list(activations)
        names = [f"layer {i + 1}" for i in builtins.range(len(arrays))]
    if not arrays:
        raise ValueError(f"{who} needs at least one layer's activations")
    values = [_host(a).reshape(-1) for a in arrays]
    stds = [float(v.std()) for v in values]
    zero_frac = [float((v == 0).mean()) for v in values]
    if exclude_zeros:
        values = [v[v != 0] for v in values]
    values = [v[np.isfinite(v)] for v in values]
    if range is None:
        nonempty = [v[:: max(1, v.size // 20000)] for v in values if v.size]  # a subsample is plenty
        pooled = np.concatenate(nonempty) if nonempty else np.zeros(1)
        lo, hi = np.percentile(pooled, [0.5, 99.5])
        lo = min(0.0, lo) if exclude_zeros else lo
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        range = (float(lo), float(hi))
    return names, values, stds, zero_frac, range


# ------------------------------------------------------------------------ histograms
def layer_histograms(activations, bins=30, range=None, title="Activation histograms per layer",
                     axes=None, *, max_cols=10, xlabel="activation value", exclude_zeros=False,
                     color="C0", fig=None) -> Figure:
    """One histogram panel per layer, like the activation histograms of the DLFS book (ch. 6).

    activations: ``{layer name: array}`` or a list of arrays (named "layer 1", ...);
                 every array is flattened.
    range:       ``(low, high)`` shared by all panels; None = the 0.5-99.5 percentile range of
                 all layers pooled, so the panels can be compared.
    exclude_zeros: drop exact zeros (ReLU outputs) and state their fraction in each title.
    axes:        a sequence of Axes to draw into, one per layer (else a new figure, ``max_cols``
                 panels per row).
    The y axis is the fraction of values per bin, shared by the panels; each panel's
    title gives the layer's standard deviation.
    """
    names, values, stds, zero_frac, range = _layer_values(activations, range, exclude_zeros,
                                                          "layer_histograms")
    edges = np.linspace(range[0], range[1], bins + 1)
    n = len(values)
    if axes is None:
        ncols = min(n, max_cols)
        nrows = math.ceil(n / ncols)
        size = (max(2.0 + 1.6 * ncols, 5.0), 0.6 + 1.9 * nrows)
        fig = fig if fig is not None else new_figure(size)
        if fig.get_figwidth() < size[0] * 0.6 or fig.get_figheight() < size[1] * 0.6:
            fig.set_size_inches(size)
        grid = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
        axes = list(grid.reshape(-1))
        first_col = ncols
        for ax in axes[n:]:
            ax.set_visible(False)
    else:
        axes = list(np.asarray(axes, dtype=object).reshape(-1))
        if len(axes) < n:
            raise ValueError(f"{n} layers but only {len(axes)} axes")
        fig = axes[0].figure
        first_col = len(axes)
    top = 0.0
    for i, (name, v) in enumerate(zip(names, values)):
        ax = axes[i]
        counts, _ = np.histogram(np.clip(v, range[0], range[1]), bins=bins, range=range)  # uniform bins: no sort
        frac = counts / max(len(v), 1)
        top = max(top, float(frac.max()) if frac.size else 0.0)
        ax.stairs(frac, edges, fill=True, color=color, alpha=0.85)
        sub = f"std {stds[i]:.2g}"
        if exclude_zeros:
            sub += f", {zero_frac[i]:.0%} zeros"
        ax.set_title(f"{name}\n{sub}", fontsize=8)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.tick_params(labelsize=7)
        if i % first_col == 0:
            ax.set_ylabel("fraction of values", fontsize=7)
    axes[0].set_ylim(0, max(top * 1.08, 1e-3))
    axes[0].set_xlim(*range)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def layer_ridgeline(activations, bins=40, range=None, ax=None, title="Activation histograms per layer", *,
                    xlabel="activation value", exclude_zeros=False, color="C0", annotate=True):
    """All layers' histograms stacked in one Axes (layer 1 on top), for deep stacks.

    The compact alternative to :func:`layer_histograms` when there are many
    layers: one row per layer, each histogram scaled to its row (so read the
    *spread* along x, not the height), the layer's std written on the right.
    ``range`` and ``exclude_zeros`` as in :func:`layer_histograms`.  Returns the Axes.
    """
    names, values, stds, zero_frac, range = _layer_values(activations, range, exclude_zeros,
                                                          "layer_ridgeline")
    ax = _axes(ax, (6.0, 1.0 + 0.3 * len(values)))
    edges = np.linspace(range[0], range[1], bins + 1)
    for i, v in enumerate(values):
        counts, _ = np.histogram(np.clip(v, range[0], range[1]), bins=bins, range=range)  # uniform bins: no sort
        h = counts / counts.max() * 0.9 if counts.max() > 0 else counts.astype(float)
        base = -float(i)
        ax.stairs(base + h, edges, baseline=base, fill=True, color=color, alpha=0.8, lw=0)
        if annotate:
            note = f"std {stds[i]:.2g}" + (f", {zero_frac[i]:.0%} zeros" if exclude_zeros else "")
            ax.text(1.01, base + 0.3, note, transform=ax.get_yaxis_transform(), fontsize=7, va="center")
    n = len(values)
    step = max(1, math.ceil(n / 15))
    ax.set_yticks([-i for i in builtins.range(0, n, step)], [names[i] for i in builtins.range(0, n, step)],
                  fontsize=7)
    ax.set_ylim(-(n - 1) - 0.15, 1.0)
    ax.set_xlim(*range)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("layer (histogram per row)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return ax


# --------------------------------------------------------------------------- curves
def learning_curves(histories, metric="val_acc", ax=None, title=None, *, xlabel=None, ylabel=None,
                    logy=False, smooth=1, styles=None):
    """One curve per run: ``histories = {label: History}`` (or ``{label: sequence}``).

    metric: a field of :class:`course_lib.trainer.History` (``"val_acc"``,
    ``"train_loss"``, ``"step_loss"``, ...); per-epoch metrics are drawn against
    the epoch (1, 2, ...), ``"step_loss"`` against the step.  A diverged run ends
    in an ``x``.  ``smooth`` > 1 draws a moving average over that many points.
    Returns the Axes.
    """
    ax = _axes(ax)
    per_step = metric.startswith("step")
    styles = styles or {}
    for i, (label, h) in enumerate(histories.items()):
        y = np.asarray(_series(h, metric), dtype=float)
        x = np.arange(len(y)) if per_step else np.arange(1, len(y) + 1)
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = x[smooth - 1:]
        style = {"color": f"C{i % 10}", **styles.get(label, {})}
        diverged = bool(getattr(h, "diverged", False))
        (line,) = ax.plot(x, y, label=f"{label} (diverged)" if diverged else str(label), **style)
        if diverged and len(y):
            finite = np.isfinite(y)
            if finite.any():
                j = np.flatnonzero(finite)[-1]
                ax.plot(x[j], y[j], "x", color=line.get_color(), ms=8)
    ax.set_xlabel(xlabel or ("step" if per_step else "epoch"))
    _integer_x(ax)
    ax.set_ylabel(ylabel or METRIC_LABELS.get(metric, metric.replace("_", " ")))
    if logy:
        ax.set_yscale("log")
    ax.set_title(title or METRIC_LABELS.get(metric, metric).capitalize())
    if histories:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def train_test_gap(history=None, ax=None, title="Training vs held-out accuracy", *, train=None, test=None,
                   x=None, train_label="train", test_label="validation", xlabel="epoch",
                   ylabel="accuracy", annotate=True):
    """Training and held-out accuracy curves with the gap between them shaded.

    Pass a History (its ``train_acc`` and ``val_acc``), or the two sequences
    ``train=`` and ``test=`` (and optionally their ``x`` positions).  The final
    gap is written on the plot.  Returns the Axes.
    """
    ax = _axes(ax)
    if history is not None:
        train = history.train_acc if train is None else train
        test = history.val_acc if test is None else test
    if train is None or test is None:
        raise ValueError("train_test_gap needs a history or both train= and test=")
    tr, te = _host(train).reshape(-1), _host(test).reshape(-1)
    n = min(len(tr), len(te))
    tr, te = tr[:n], te[:n]
    x = np.arange(1, n + 1) if x is None else _host(x).reshape(-1)[:n]
    ax.plot(x, tr, color="C0", label=train_label)
    ax.plot(x, te, color="C1", label=test_label)
    ax.fill_between(x, te, tr, where=tr >= te, color="C3", alpha=0.15, label="gap", interpolate=True)
    if annotate and n:
        ax.annotate(f"gap {tr[-1] - te[-1]:+.3f}", xy=(x[-1], (tr[-1] + te[-1]) / 2), xytext=(-4, 0),
                    textcoords="offset points", ha="right", va="center", fontsize=8, color="C3")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _integer_x(ax)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return ax


def percentile_bands(steps, p15, p50, p85, label=None, ax=None, *, color="C0", title=None,
                     xlabel="training step", ylabel="input to the activation"):
    """The 15th, 50th and 85th percentiles of a value over training (Ioffe & Szegedy 2015, Fig. 1b/c).

    steps, p15, p50, p85: sequences of the same length.  The median is a solid
    line, the 15-85 band is shaded.  Call twice on the same ``ax`` to compare
    runs (e.g. without and with BN).  Returns the Axes.
    """
    ax = _axes(ax)
    s = _host(steps).reshape(-1)
    lo, mid, hi = (_host(p).reshape(-1) for p in (p15, p50, p85))
    ax.fill_between(s, lo, hi, color=color, alpha=0.2, lw=0)
    ax.plot(s, lo, color=color, lw=0.8, alpha=0.8)
    ax.plot(s, hi, color=color, lw=0.8, alpha=0.8)
    ax.plot(s, mid, color=color, lw=1.8, label=f"{label}: 15/50/85th pct." if label else "15/50/85th pct.")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Percentiles over training")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


# --------------------------------------------------------------------------- weights
def weight_tiles(W, n_cols=10, title="First-layer weights as images", *, n_tiles=None, shape=(28, 28),
                 cmap="RdBu_r", fig=None, colorbar_label="weight value") -> Figure:
    """Each column of ``W`` (shape ``(784, k)``, host or device) as a 28x28 tile.

    The colour scale is symmetric around 0 (``vmax = max |W|`` over the tiles
    shown), so white is 0, red positive, blue negative.  Works for gradients
    (``dW``) too.  ``n_tiles`` limits how many columns are shown.
    """
    Wh = _host(W)
    if Wh.ndim != 2 or Wh.shape[0] != shape[0] * shape[1]:
        raise ValueError(f"weight_tiles expects W of shape ({shape[0] * shape[1]}, k), got {Wh.shape}")
    k = Wh.shape[1] if n_tiles is None else min(n_tiles, Wh.shape[1])
    n_cols = max(1, min(n_cols, k))
    n_rows = math.ceil(k / n_cols)
    vmax = float(np.abs(Wh[:, :k]).max()) or 1.0
    fig = fig if fig is not None else new_figure((1.0 + 1.05 * n_cols, 0.7 + 1.1 * n_rows))
    grid = fig.subplots(n_rows, n_cols, squeeze=False)
    im = None
    for j, ax in enumerate(grid.reshape(-1)):
        ax.set_xticks([])
        ax.set_yticks([])
        if j >= k:
            ax.set_visible(False)
            continue
        im = ax.imshow(Wh[:, j].reshape(shape), cmap=cmap, vmin=-vmax, vmax=vmax)
        ax.set_title(f"unit {j}", fontsize=7, pad=2)
    cb = fig.colorbar(im, ax=grid.ravel().tolist(), shrink=0.8)
    cb.set_label(colorbar_label)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ------------------------------------------------------------------------------ grid
def sweep_grid(results, row_labels=None, col_labels=None, *, titles=None, n_cols=None, metric="train_acc",
               xlabel="epoch", ylabel="accuracy", title=None, ylim=None, styles=None, fig=None) -> Figure:
    """Small multiples over a sweep, like the DLFS book's 4x4 init-scale grid (with vs without BN).

    results: a 2-D list ``[row][col]`` of cells, or a flat list of cells wrapped
             into ``n_cols`` columns; each cell is ``{curve label: History or sequence}``
             (``metric`` picks the History field), e.g. ``{"BN": h1, "no BN": h2}``.
    row_labels / col_labels: for a 2-D ``results``: rows are labelled on the left,
             columns on top.  ``titles``: one title per cell instead (flat order).
    styles:  ``{curve label: plot kwargs}``; by default the first label is solid
             C0, the second dashed C1, ...
    """
    cells = list(results)
    two_d = bool(cells) and isinstance(cells[0], Sequence) and not isinstance(cells[0], (str, Mapping))
    if two_d:
        n_rows, n_cols = len(cells), max(len(r) for r in cells)
        flat = [c for r in cells for c in list(r) + [None] * (n_cols - len(r))]
    else:
        n_cols = n_cols or min(4, len(cells)) or 1
        n_rows = math.ceil(len(cells) / n_cols)
        flat = cells + [None] * (n_rows * n_cols - len(cells))
    fig = fig if fig is not None else new_figure((1.2 + 2.6 * n_cols, 0.8 + 2.0 * n_rows))
    grid = fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False)
    labels = []
    for c in flat:
        for lab in (c or {}):
            if lab not in labels:
                labels.append(lab)
    dashes = ["-", "--", ":", "-."]
    default = {lab: {"color": f"C{i % 10}", "ls": dashes[i % 4]} for i, lab in enumerate(labels)}
    styles = {lab: {**default[lab], **(styles or {}).get(lab, {})} for lab in labels}
    handles = {}
    for idx, (ax, cell) in enumerate(zip(grid.reshape(-1), flat)):
        r, c = divmod(idx, n_cols)
        if cell is None:
            ax.set_visible(False)
            continue
        for lab, h in cell.items():
            y = np.asarray(_series(h, metric), dtype=float)
            (line,) = ax.plot(np.arange(1, len(y) + 1), y, label=str(lab), **styles[lab])
            handles.setdefault(lab, line)
        if titles is not None and idx < len(titles):
            ax.set_title(str(titles[idx]), fontsize=9)
        elif two_d and r == 0 and col_labels is not None:
            ax.set_title(str(col_labels[c]), fontsize=9)
        if c == 0:
            ax.set_ylabel(f"{row_labels[r]}\n{ylabel}" if two_d and row_labels is not None else ylabel,
                          fontsize=8)
        if r == n_rows - 1 or (idx + n_cols >= len(flat)) or flat[idx + n_cols] is None:
            ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        _integer_x(ax)
    if ylim is not None:
        grid[0, 0].set_ylim(*ylim)
    if handles:
        fig.legend(list(handles.values()), [str(k) for k in handles], loc="outside upper right",
                   ncols=len(handles), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


# ------------------------------------------------------------------ batch statistics
def batch_stats_scatter(means, variances, pop_mean, pop_var, *, batch_size=None, ax=None, label=None,
                        color="C0", title=None, xlabel="batch mean μ_B",
                        ylabel="batch variance σ²_B (biased: ÷ m)"):
    """Each mini-batch's (mean, variance) of one feature as a dot, around the population values.

    The dashed cross marks the population mean and variance; with ``batch_size``
    given, a diamond marks the expected biased batch variance ``(m-1)/m * var``.
    Returns the Axes.
    """
    ax = _axes(ax)
    mu, var = _host(means).reshape(-1), _host(variances).reshape(-1)
    ax.scatter(mu, var, s=9, alpha=0.5, color=color, lw=0, label=label or "one mini-batch")
    ax.axvline(float(pop_mean), color="k", ls="--", lw=1)
    ax.axhline(float(pop_var), color="k", ls="--", lw=1, label="population mean / variance")
    if batch_size is not None and batch_size > 1:
        ax.plot(float(pop_mean), float(pop_var) * (batch_size - 1) / batch_size, "D", color="C3", ms=6,
                label="expected batch variance (m−1)/m · σ²")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or (f"Batch statistics, m = {batch_size}" if batch_size else "Batch statistics"))
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    return ax


def batch_noise_curve(batch_sizes, spread_mean, spread_var=None, *, highlight=None, ax=None, title=None,
                      xlabel="batch size m", ylabel="spread across batches / population std"):
    """How the batch statistics scatter around the population ones as the batch grows (log-log).

    spread_mean: std over batches of the batch mean, divided by the population std
    (ideal: ``1/sqrt(m)``, drawn dotted); spread_var: the same for the batch
    variance divided by the population variance.  ``highlight`` marks one batch size.
    Returns the Axes.
    """
    ax = _axes(ax)
    m = _host(batch_sizes).reshape(-1)
    ax.loglog(m, _host(spread_mean).reshape(-1), "o-", color="C0", ms=4, label="batch mean")
    if spread_var is not None:
        ax.loglog(m, _host(spread_var).reshape(-1), "s-", color="C2", ms=4, label="batch variance")
    ax.loglog(m, 1 / np.sqrt(m), ":", color="k", label="1/√m")
    if highlight is not None:
        ax.axvline(highlight, color="C3", lw=1.5, alpha=0.7, label=f"m = {highlight}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    log_axis_limits(ax, np.concatenate([_host(spread_mean).reshape(-1), 1 / np.sqrt(m)]), lo=0.03, hi=1.0)
    log_axis_limits(ax, m, lo=float(m.min()), hi=float(m.max()), axis="x")
    ax.set_title(title or "Noise of batch statistics vs batch size")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ax


__all__ = ["METRIC_LABELS", "new_figure", "to_png", "log_axis_limits", "layer_histograms", "learning_curves",
           "train_test_gap", "percentile_bands", "layer_ridgeline", "weight_tiles", "sweep_grid", "batch_stats_scatter",
           "batch_noise_curve"]
