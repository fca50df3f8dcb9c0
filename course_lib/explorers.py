"""Interactive explorers: move a slider, watch a figure redraw.

Every explorer comes in two layers:

* a **pure function** from parameters to a matplotlib ``Figure`` (no widgets,
  no global state, seeded, so the same parameters give the same picture):
  :func:`init_histograms`, :func:`bn_batch_stats`, :func:`depth_curves`,
  :func:`batch_size_effects`, :func:`weight_decay_curves`, :func:`dropout_curves`;
* a **thin widget** around it, built by :class:`Explorer`:
  :func:`init_explorer`, :func:`bn_stats_explorer`, :func:`depth_explorer`,
  :func:`batch_size_explorer`, :func:`weight_decay_explorer`, :func:`dropout_explorer`.

Put the call as the last line of a notebook cell::

    from course_lib import explorers
    explorers.depth_explorer(data)          # data = course_lib.data.load_mnist()

The widget's display also carries a PNG of the default figure, so a notebook
saved with outputs shows that picture where no kernel runs (GitHub, nbviewer,
HTML export).  Sliders act on release (``continuous_update=False``), a redraw
with unchanged parameters is skipped, the controls are disabled while the
figure is computed, and the status line says how long the redraw took (or what
went wrong).

The explorers that train keep each redraw around a second on a 2-core laptop by
training small networks (width 64-100) for a few hundred steps on a subset of
the data; pass larger sizes as keyword arguments for a closer look.
"""
from __future__ import annotations

import base64
import html
import math
import time
from collections import OrderedDict

import ipywidgets as W
import numpy as np

from course_lib import backend, dying_relu, plots
from course_lib import functional as F
from course_lib import init as init_mod
from course_lib.backend import to_numpy
from course_lib.model import MLP
from course_lib.optim import Momentum
from course_lib.trainer import ActivationStats, Hook, dead_unit_counts, evaluate, fit

POWERS_OF_TWO = tuple(2 ** k for k in range(1, 10))          # 2 .. 512
WEIGHT_DECAYS = (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)
INIT_CHOICES = (("std = 1", 1.0), ("std = 0.01", 0.01), ("Xavier (Glorot)", "xavier"), ("He", "he"),
                ("custom std (slider)", "custom"))
_FIGSIZE = (11.0, 3.4)


def _figure(figsize=_FIGSIZE):
    """A standalone figure (not registered with pyplot) with fixed margins.

    No constrained layout: it would double the time to render, and the explorers'
    layouts are fixed, so margins set once by :func:`_adjust` do the job.
    """
    return plots.new_figure(figsize, managed=False, layout=None)


def _adjust(fig, left=0.065, right=0.985, bottom=0.16, top=0.82, wspace=0.3, **kw):
    """Margins for a figure without a layout engine (a caller's constrained figure is left alone)."""
    if fig.get_layout_engine() is None:
        fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top, wspace=wspace, **kw)


# ===================================================================== BLAS threads
_BLAS_FUNCS = []


def _find_blas():
    """(get, set) thread-count functions of the OpenBLAS numpy loaded, or None (Linux only)."""
    if _BLAS_FUNCS:
        return _BLAS_FUNCS[0]
    found = None
    try:
        import ctypes
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
        for path in paths:
            lib = ctypes.CDLL(path)
            for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"),
                                   ("openblas", "")):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype = ctypes.c_int
                    found = (get, set_)
                    break
            if found:
                break
    except Exception:  # no /proc, no ctypes, another BLAS: leave the threads alone
        found = None
    _BLAS_FUNCS.append(found)
    return found


class _one_blas_thread:
    """Run BLAS single-threaded inside the block (restored after).

    The explorers multiply small matrices (64 x 784 x 64), where threads cost
    more than they give, and on a busy machine spinning BLAS threads slow a
    retrain down several times over.
    """

    def __enter__(self):
        self.funcs, self.before = _find_blas(), None
        if self.funcs is not None:
            self.before = int(self.funcs[0]())
            if self.before != 1:
                self.funcs[1](1)
        return self

    def __exit__(self, *exc):
        if self.funcs is not None and self.before not in (None, 1):
            self.funcs[1](self.before)
        return False


# ============================================================================ data
_SUBSETS: OrderedDict = OrderedDict()   # (id(data), split, n) -> (data, (x, y)); data kept alive
_CACHE_SIZE = 32


def _subset(data, split, n):
    """The first ``n`` rows of ``data``'s split ("train", "val" or "test"), cached.

    :func:`course_lib.data.load_mnist` already shuffles, so the first rows are a
    random, class-balanced-in-expectation subset; the cache makes a redraw skip the copy.
    """
    key = (id(data), split, n)
    hit = _SUBSETS.get(key)
    if hit is not None and hit[0] is data:
        _SUBSETS.move_to_end(key)
        return hit[1]
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    if x is None or len(x) == 0:
        raise ValueError(f"the data has no {split} split; pass course_lib.data.load_mnist()")
    n = len(x) if n is None else min(int(n), len(x))
    xy = (x[:n].copy(), y[:n].copy())
    _SUBSETS[key] = (data, xy)
    while len(_SUBSETS) > _CACHE_SIZE:
        _SUBSETS.popitem(last=False)
    return xy


def synthetic_splits(n_train=1000, n_val=500, n_test=500, *, n_features=784, n_classes=10, noise=0.3,
                     seed=0):
    """Small MNIST-shaped data (features in [0, 1], int64 labels) for tests and demos without files.

    Each class has a random sparse template; a sample is its class's template
    plus Gaussian noise, clipped to [0, 1].  Returns a :class:`course_lib.data.Splits`
    on the active backend.
    """
    from course_lib.data import Splits
    rng = np.random.default_rng(seed)
    templates = (rng.random((n_classes, n_features)) < 0.15) * rng.uniform(0.5, 1.0, (n_classes, n_features))

    def make(n):
        y = rng.integers(0, n_classes, n)
        x = np.clip(templates[y] + noise * rng.standard_normal((n, n_features)), 0, 1)
        return backend.asarray(x, backend.default_dtype), backend.asarray(y.astype(np.int64))

    parts = [make(n) for n in (n_train, n_val, n_test)]
    return Splits(*parts[0], *parts[1], *parts[2], name="synthetic",
                  class_names=tuple(str(c) for c in range(n_classes)))


# ========================================================================= training
class _EvalEvery(Hook):
    """Eval-mode loss and accuracy on named sets every ``every`` steps (or epochs)."""

    name = "eval_curves"

    def __init__(self, sets, every, per="step", last=None):
        self.sets, self.every, self.per, self.last = sets, every, per, last

    def _measure(self, t, model, history):
        row = {"t": t}
        for name, (x, y) in self.sets.items():
            row[name] = evaluate(model, x, y)
        self._record(history, row)

    def on_step(self, step, model, history):
        if self.per == "step" and ((step + 1) % self.every == 0 or step + 1 == self.last):
            self._measure(step + 1, model, history)

    def on_epoch(self, epoch, model, history):
        if self.per == "epoch" and ((epoch + 1) % self.every == 0 or epoch == 0 or epoch + 1 == self.last):
            self._measure(epoch + 1, model, history)


def _curves(history, key):
    rows = history.extras.get("eval_curves", [])
    t = np.array([r["t"] for r in rows])
    loss = np.array([r[key][0] for r in rows])
    acc = np.array([r[key][1] for r in rows])
    return t, loss, acc


def _train(data, *, depth, width, norm, steps=None, num_epochs=None, batch_size, lr, init, activation="relu",
           dropout=0.0, weight_decay=0.0, n_train, n_eval, eval_split="val", eval_every=20, per="step",
           train_curve=False, seed=0, hooks=()):
    """Build and train a small MLP on a subset; returns ``(model, history)``.

    With ``steps``: that many updates (epochs as needed); with ``num_epochs``: that many epochs.
    """
    x, y = _subset(data, "train", n_train)
    sets = {"eval": _subset(data, eval_split, n_eval)}
    if train_curve:
        sets = {"train": (x, y), **sets}
    model = MLP([x.shape[1]] + [width] * depth + [10], activation=activation, norm=norm, init=init,
                dropout=dropout, seed=seed)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    if num_epochs is None:
        num_epochs = math.ceil(steps / steps_per_epoch)
    with _one_blas_thread():
        history = fit(model, (x, y), optimizer=Momentum(lr, weight_decay=weight_decay), num_epochs=num_epochs,
                      batch_size=batch_size, seed=seed, max_steps=steps, progress=False,
                      hooks=[_EvalEvery(sets, eval_every, per, last=steps if per == "step" else num_epochs),
                             *hooks])
    return model, history


def _smooth(y, k):
    y = np.asarray(y, dtype=float)
    if len(y) < k or k < 2:
        return np.arange(len(y)), y
    return np.arange(k - 1, len(y)), np.convolve(y, np.ones(k) / k, mode="valid")


# ================================================================ 1. initialisation
_SATURATION = {"sigmoid": lambda a: (a < 0.01) | (a > 0.99), "tanh": lambda a: abs(a) > 0.99,
               "relu": lambda a: a == 0}


def init_histograms(depth=5, init_scale="xavier", activation="tanh", width=100, n_samples=1000, seed=0,
                    bins=40, fig=None):
    """Activation histograms of each layer of a deep stack at initialisation (no training).

    ``n_samples`` Gaussian inputs (n_samples, width) go through ``depth`` layers
    ``a = x @ W`` (no bias) followed by ``activation`` ("sigmoid", "tanh",
    "relu"); W is drawn with ``init_scale``: a std (1, 0.01, ...) or a scheme
    name of :mod:`course_lib.init` ("xavier", "he", "lecun").  This is the DLFS
    book's experiment (ch. 6.2) with a depth you choose.  Left: one histogram
    per layer (layer 1 on top; ReLU rows leave out the exact zeros); right: the
    std of each layer's output (log scale) and the fraction of saturated units
    (sigmoid/tanh within 0.01 of their limits, ReLU exactly 0).
    """
    if activation not in _SATURATION:
        raise ValueError(f"activation must be 'sigmoid', 'tanh' or 'relu', got {activation!r}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    forward = F.ACTIVATIONS[activation][0]
    rng = np.random.default_rng(seed)
    x = backend.asarray(rng.standard_normal((n_samples, width)), backend.default_dtype)
    acts = {}
    with np.errstate(over="ignore", invalid="ignore", under="ignore"), _one_blas_thread():
        for i in range(depth):
            W = backend.asarray(init_mod.initialize(init_scale, width, width, rng), x.dtype)
            x, _ = forward(x @ W)
            acts[f"layer {i + 1}"] = x
    host = {k: to_numpy(v) for k, v in acts.items()}
    std = init_mod.std_for(init_scale, width, width)
    name = init_scale if isinstance(init_scale, str) else "std"
    fig = fig if fig is not None else _figure((11.0, max(3.4, 1.1 + 0.2 * depth)))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(1.6, 1))
    _adjust(fig, left=0.08, right=0.98, bottom=0.16 if depth < 12 else 0.09, top=0.86 if depth < 12 else 0.92,
            wspace=0.3)
    value_range = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": None}[activation]
    plots.layer_ridgeline(host, bins=bins, range=value_range, ax=ax1, exclude_zeros=activation == "relu",
                          xlabel=f"{activation} output" + (" (zeros left out)" if activation == "relu" else ""),
                          title="Histogram of each layer's outputs", annotate=False)
    layers = np.arange(1, depth + 1)
    stds = np.array([float(a.std()) for a in host.values()])
    ax2.semilogy(layers, np.clip(stds, 1e-30, None), "o-", color="C0", ms=3, label="std of the output")
    plots.log_axis_limits(ax2, stds, lo=0.01, hi=2.0)
    ax2.set(xlabel="layer", ylabel="std of the layer's output (log scale)", title="Spread per layer")
    ax2.grid(alpha=0.3)
    sat = float(_SATURATION[activation](host[f"layer {depth}"]).mean())
    what = "exactly 0" if activation == "relu" else "saturated"
    ax2.text(0.03, 0.04, f"last layer: {sat:.0%} {what}", transform=ax2.transAxes, fontsize=8)
    for ax in (ax1, ax2):
        ax.title.set_fontsize(10)
    fig.suptitle(f"{activation}, init {name} (W std {std:.3g}): {depth} layers x {width} units at "
                 "initialisation, no training", fontsize=10)
    return fig


def init_explorer(depth=5, init_scale="xavier", activation="tanh", **kwargs):
    """Sliders for :func:`init_histograms`: depth, init scheme (or a std on a log slider), activation.

    ``kwargs`` (width, n_samples, seed, bins) go to :func:`init_histograms`.
    """
    named = [v for _, v in INIT_CHOICES if v != "custom"]
    custom = not (isinstance(init_scale, str) or init_scale in named)
    width = kwargs.get("width", 100)
    start_std = float(init_scale) if custom else init_mod.std_for(init_scale, width, width)
    depth_w = W.IntSlider(value=depth, min=1, max=30, step=1, description="depth (layers)",
                          continuous_update=False, style=_STYLE, layout=_wide())
    choice = W.Dropdown(options=INIT_CHOICES, value="custom" if custom else init_scale, description="init",
                        style=_STYLE)
    std_w = W.FloatLogSlider(value=start_std, base=10, min=-3, max=1, step=0.05, description="init std",
                             readout_format=".3g", continuous_update=False, style=_STYLE, layout=_wide())
    act = W.Dropdown(options=["sigmoid", "tanh", "relu"], value=activation, description="activation",
                     style=_STYLE)
    syncing = []

    # Moving the std slider selects "custom"; picking a scheme moves the slider to its std.
    def on_std(change):
        if not syncing and choice.value != "custom":
            choice.value = "custom"

    def on_choice(change):
        if change["new"] != "custom":
            syncing.append(1)
            try:
                std_w.value = init_mod.std_for(change["new"], width, width)
            finally:
                syncing.pop()

    std_w.observe(on_std, names="value")
    choice.observe(on_choice, names="value")

    def params(v):
        return {"depth": v["depth"], "activation": v["activation"],
                "init_scale": v["std"] if v["init"] == "custom" else v["init"]}

    return Explorer(init_histograms, {"depth": depth_w, "init": choice, "std": std_w, "activation": act},
                    params=params, fixed=kwargs, title="Weight initialisation: activations layer by layer",
                    note="Gaussian inputs through a stack of fully connected layers at initialisation "
                         "(no training). Watch whether the spread survives the depth.")


# ============================================================== 2. batch statistics
_BN_CURVES: OrderedDict = OrderedDict()


def skewed_population(n=20000, seed=0):
    """A skewed 1-feature population (Gamma(2, 1): mean 2, variance 2), host numpy, shape (n, 1)."""
    return np.random.default_rng(seed).gamma(2.0, 1.0, size=(n, 1)).astype(np.float64)


def _batch_stats(pop, m, n_batches, rng):
    """Means and biased variances of ``n_batches`` batches of size m drawn from the population."""
    idx = rng.integers(0, pop.shape[0], size=(n_batches, m))
    batches = pop[idx]
    return to_numpy(batches.mean(axis=1)), to_numpy(batches.var(axis=1))


def bn_batch_stats(batch_size=32, n_batches=200, seed=0, *, population=None, feature=0,
                   batch_sizes=POWERS_OF_TWO, fig=None):
    """How far each mini-batch's mean and variance fall from the population's (no training).

    ``n_batches`` mini-batches of ``batch_size`` samples are drawn from a fixed
    population: by default :func:`skewed_population`, or ``population`` (an
    (N,) or (N, D) array, e.g. a layer's pre-activations on MNIST; column
    ``feature`` is used).  Left: each batch's (mean, biased variance) around the
    population values, on axes that stay fixed across batch sizes.  Right: the
    spread of both statistics for every batch size in ``batch_sizes`` with the
    ideal 1/sqrt(m).  These noisy statistics are what BN normalises with in training.
    """
    if batch_size < 2:
        raise ValueError(f"a batch needs at least 2 samples for a variance, got batch_size={batch_size}")
    pop_host = skewed_population(seed=seed) if population is None else to_numpy(population)
    pop_host = np.asarray(pop_host, dtype=np.float64)
    pop_host = pop_host.reshape(len(pop_host), -1)[:, feature]
    pop = backend.asarray(pop_host, backend.default_dtype)
    mu, var = float(pop_host.mean()), float(pop_host.var())
    means, variances = _batch_stats(pop, batch_size, n_batches, backend.default_rng(seed + batch_size))

    key = (id(population), seed, n_batches, feature, tuple(batch_sizes), backend.device)
    cached = _BN_CURVES.get(key)
    if cached is None or cached[0] is not population:
        spreads, lims = [], None
        for m in batch_sizes:
            mm, vv = _batch_stats(pop, m, n_batches, backend.default_rng(seed + m))
            spreads.append((mm.std() / math.sqrt(var), vv.std() / var))
            if lims is None:  # axes from the smallest batches, so every batch size fits
                lims = (np.percentile(mm, [0.5, 99.5]), np.percentile(vv, 99.0))
        cached = (population, np.array(spreads), lims)
        _BN_CURVES[key] = cached
        while len(_BN_CURVES) > 8:
            _BN_CURVES.popitem(last=False)
    _, spreads, (xlim, ytop) = cached

    fig = fig if fig is not None else _figure((11.0, 4.0))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(1.15, 1))
    _adjust(fig, left=0.07, bottom=0.13, top=0.86, wspace=0.25)
    plots.batch_stats_scatter(means, variances, mu, var, batch_size=batch_size, ax=ax1,
                              title=f"{n_batches} batches of m = {batch_size}: std of batch means "
                                    f"{means.std():.3g} (σ/√m = {math.sqrt(var / batch_size):.3g})")
    ax1.title.set_fontsize(9)
    pad = 0.05 * (xlim[1] - xlim[0])
    ax1.set_xlim(min(xlim[0], mu) - pad, max(xlim[1], mu) + pad)
    ax1.set_ylim(0, max(ytop, 1.3 * var))
    plots.batch_noise_curve(batch_sizes, spreads[:, 0], spreads[:, 1], highlight=batch_size, ax=ax2,
                            title="Spread of the batch statistics shrinks like 1/√m")
    ax2.title.set_fontsize(9)
    fig.suptitle("Batch statistics vs population statistics (a skewed population)" if population is None
                 else "Batch statistics vs population statistics", fontsize=10)
    return fig


def bn_stats_explorer(batch_size=32, **kwargs):
    """A log-scale batch-size slider (2 .. 512) for :func:`bn_batch_stats`; ``kwargs`` go to it."""
    m = W.SelectionSlider(options=_with(POWERS_OF_TWO, batch_size), value=batch_size, description="batch size",
                          continuous_update=False, style=_STYLE, layout=_wide())
    return Explorer(bn_batch_stats, {"batch_size": m}, fixed=kwargs,
                    title="Batch statistics: how noisy is a mini-batch's mean and variance?",
                    note="Many mini-batches drawn from one fixed population; no training.")


# ========================================================================== 3. depth
def depth_curves(data, depth=10, batch_norm=True, *, width=64, n_train=1000, n_val=500, steps=150, batch_size=64,
                 lr=0.1, init="xavier", activation="relu", seed=0, fig=None):
    """Train an MLP with ``depth`` hidden layers (with or without BN) briefly and plot what happened.

    Momentum SGD (``lr``, momentum 0.9) for ``steps`` updates of ``batch_size``
    on the first ``n_train`` training images; validation accuracy on ``n_val``
    validation images after every epoch.  Panels: training loss per step,
    validation accuracy, and the std of each hidden layer's activations at the
    first and the last step.  With ``init="xavier"`` and ReLU, the signal
    shrinks layer by layer without BN, and deep plain networks stay near chance.
    """
    norm = "batch" if batch_norm else None
    act_layers = [f"{activation}{i}" for i in range(depth)]
    stats = ActivationStats(every=max(steps - 1, 1), layers=act_layers)
    x, _ = _subset(data, "train", n_train)
    per_epoch = math.ceil(len(x) / batch_size)
    model, h = _train(data, depth=depth, width=width, norm=norm, steps=steps, batch_size=batch_size, lr=lr,
                      init=init, activation=activation, n_train=n_train, n_eval=n_val,
                      eval_every=max(per_epoch, 1), seed=seed, hooks=[stats])
    label = f"{depth} hidden layers, {'with' if batch_norm else 'without'} BN"
    color = "C0" if batch_norm else "C1"
    fig = fig if fig is not None else _figure()
    ax1, ax2, ax3 = fig.subplots(1, 3)
    _adjust(fig)
    s, loss = _smooth(h.step_loss, 10)
    ax1.plot(h.step_loss, color=color, alpha=0.25, lw=0.8)
    ax1.plot(s, loss, color=color, label="moving average (10 steps)")
    ax1.axhline(math.log(10), color="gray", ls=":", lw=1, label="chance (ln 10)")
    top = float(np.nanmax(loss)) if len(loss) and np.isfinite(loss).any() else 2.5
    ax1.set(xlabel="training step", ylabel="training loss (cross-entropy)", title="Training loss",
            ylim=(0, min(max(2.6, 1.05 * top), 10.0)))
    ax1.legend(fontsize=7)
    t, _, acc = _curves(h, "eval")
    ax2.plot(t, acc, "o-", color=color, ms=3, label=label)
    ax2.axhline(0.1, color="gray", ls=":", lw=1, label="chance")
    ax2.set(xlabel="training step", ylabel="validation accuracy", title="Validation accuracy", ylim=(0, 1))
    ax2.legend(fontsize=7, loc="lower right")
    rows = h.extras.get("activation_stats", [])
    layers = np.arange(1, depth + 1)
    for row, style, when in zip(rows[:1] + rows[-1:], ("--", "-"), ("first step", f"step {steps}")):
        std = [row[n]["std"] if n in row else np.nan for n in act_layers]
        ax3.semilogy(layers, np.maximum(std, 1e-30), style, marker="o", ms=3, color=color, label=when)
    plots.log_axis_limits(ax3, [r[n]["std"] for r in rows for n in act_layers if n in r], lo=0.01, hi=3.0)
    ax3.set(xlabel="hidden layer", ylabel=f"std of {activation} output", title="Activation spread per layer")
    ax3.legend(fontsize=7)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(10)
    final = f"val acc {acc[-1]:.2f}" if len(acc) else ""
    fig.suptitle(f"{label}: width {width}, {steps} steps of batch {batch_size} on {len(x)} images, "
                 f"init {init}  ({h.message or final})", fontsize=10)
    return fig


def depth_explorer(data, depth=10, batch_norm=True, **kwargs):
    """A depth slider (2 .. 20 hidden layers) and a BN switch for :func:`depth_curves`."""
    d = W.IntSlider(value=depth, min=2, max=20, description="depth (hidden layers)", continuous_update=False,
                    style=_STYLE, layout=_wide())
    bn = W.Checkbox(value=batch_norm, description="batch norm (BN)", indent=False)
    return Explorer(depth_curves, {"depth": d, "batch_norm": bn}, fixed={"data": data, **kwargs},
                    title="Depth with and without batch normalization",
                    note="Each change retrains a small ReLU network from scratch (about a second).")


# ===================================================================== 4. batch size
def _noise_curve(data, n_train, width, init, seed, batch_sizes, n_batches=100):
    """Spread of the first layer's batch mean / variance (at init) for each batch size; cached."""
    key = ("noise", id(data), n_train, width, init, seed, tuple(batch_sizes), backend.device)
    hit = _BN_CURVES.get(key)
    if hit is not None and hit[0] is data:
        return hit[1]
    x, _ = _subset(data, "train", n_train)
    W0 = backend.asarray(init_mod.initialize(init, x.shape[1], width, np.random.default_rng(seed)), x.dtype)
    a = x @ W0                                            # (N, width) pre-activations
    mu, sd = a.mean(axis=0), a.std(axis=0) + 1e-8
    rng = backend.default_rng(seed)
    out = []
    for m in batch_sizes:
        idx = rng.integers(0, a.shape[0], size=(n_batches, m))
        b = a[idx]                                        # (n_batches, m, width)
        bm, bv = b.mean(axis=1), b.var(axis=1)
        out.append((float(to_numpy((bm.std(axis=0) / sd).mean())),
                    float(to_numpy((bv.std(axis=0) / (sd * sd)).mean()))))
    out = np.array(out)
    _BN_CURVES[key] = (data, out)
    return out


def batch_size_effects(data, batch_size=32, *, depth=4, width=64, n_train=1000, n_val=500, steps=100, lr=0.1,
                       init="he", seed=0, batch_sizes=POWERS_OF_TWO, fig=None):
    """Train the same ReLU MLP with and without BN at one batch size and compare.

    Both runs take ``steps`` momentum-SGD updates (lr ``lr``) of ``batch_size``
    samples from the first ``n_train`` training images, so larger batches see
    more data.  Panels: validation accuracy during training; dead ReLU units
    per layer at the end (units that output 0 for every training image: they
    get no gradient any more); and how noisy BN's batch mean and variance of
    the first layer's pre-activations are for every batch size (the chosen one
    marked).
    """
    x, _ = _subset(data, "train", n_train)
    runs = {}
    for bn in (True, False):
        model, h = _train(data, depth=depth, width=width, norm="batch" if bn else None, steps=steps,
                          batch_size=batch_size, lr=lr, init=init, n_train=n_train, n_eval=n_val,
                          eval_every=max(steps // 8, 1), seed=seed)
        # a diverged net has NaN weights: its "dead units" would be every unit, so none are counted
        runs[bn] = (h, {} if h.diverged else dead_unit_counts(model, x))
    fig = fig if fig is not None else _figure()
    ax1, ax2, ax3 = fig.subplots(1, 3)
    _adjust(fig)
    for bn, (h, _) in runs.items():
        t, _, acc = _curves(h, "eval")
        lab = "with BN" if bn else "without BN"
        if h.diverged:
            lab += " (diverged)"
        ax1.plot(t, acc, "o-", ms=3, color="C0" if bn else "C1", label=lab)
    ax1.axhline(0.1, color="gray", ls=":", lw=1, label="chance")
    ax1.set(xlabel="training step", ylabel="validation accuracy", ylim=(0, 1),
            title=f"Accuracy, batch size {batch_size}")
    ax1.legend(fontsize=7, loc="best")
    layers = np.arange(1, depth + 1)
    for k, (bn, (h, dead)) in enumerate(runs.items()):
        counts = [dead.get(f"relu{i}", 0) for i in range(depth)]
        ax2.bar(layers + (k - 0.5) * 0.38, counts, width=0.38, color="C0" if bn else "C1",
                label=f"{'with' if bn else 'without'} BN: " + ("diverged" if h.diverged else f"{sum(counts)} dead"))
    ax2.set(xlabel="hidden layer", ylabel=f"dead ReLU units (of {width})", ylim=(0, width),
            title="Dead units after training", xticks=layers)
    ax2.legend(fontsize=7, loc="upper left")
    noise = _noise_curve(data, n_train, width, init, seed, batch_sizes)
    plots.batch_noise_curve(batch_sizes, noise[:, 0], noise[:, 1], highlight=batch_size, ax=ax3,
                            title="Noise of BN's batch statistics (layer 1)")
    for ax in (ax1, ax2, ax3):
        ax.title.set_fontsize(10)
    ax1.grid(alpha=0.3)
    fig.suptitle(f"Batch size {batch_size}: {depth} hidden layers x {width} ReLU units, {steps} steps "
                 f"(lr {lr}, init {init}) on {len(x)} images", fontsize=10)
    return fig


def batch_size_explorer(data, batch_size=32, **kwargs):
    """A log-scale batch-size slider (2 .. 512) for :func:`batch_size_effects`."""
    m = W.SelectionSlider(options=_with(POWERS_OF_TWO, batch_size), value=batch_size, description="batch size",
                          continuous_update=False, style=_STYLE, layout=_wide())
    return Explorer(batch_size_effects, {"batch_size": m}, fixed={"data": data, **kwargs},
                    title="Batch size: accuracy, dead units and BN's noise",
                    note="Each change retrains two small ReLU networks, with and without BN (about a second).")


def dw_tiles_figure(records, epoch, *, fig=None):
    """First-layer dW of all 256 units as 28x28 tiles (Source D's scaling, see
    :func:`course_lib.dying_relu.dw_tiles`) at the last step of ``epoch``, one panel per run.

    records: {label: dying_relu.Record} whose ``tiles`` hold ``epoch`` (run with ``tile_epochs``).
    """
    missing = [label for label, rec in records.items() if epoch not in rec.tiles]
    if missing:
        raise ValueError(f"no dW tiles for epoch {epoch} in {missing}: run dying_relu.run(..., tile_epochs=...) "
                         f"with that epoch")
    fig = fig if fig is not None else _figure((4.6 * len(records), 5.0))
    axes = np.atleast_1d(fig.subplots(1, len(records)))
    _adjust(fig, left=0.01, right=0.99, bottom=0.01, top=0.88, wspace=0.05)
    for ax, (label, rec) in zip(axes, records.items()):
        ax.imshow(dying_relu.tile_grid(rec.tiles[epoch], ncols=16, gap=2), cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        dead = f", {rec.dead[epoch - 1]} dead units" if 1 <= epoch <= len(rec.dead) else ""
        ax.set_title(f"{label}: end of epoch {epoch}{dead}", fontsize=10)
        ax.axis("off")
    fig.suptitle("First-layer dW of all 256 units (each tile min-max scaled to 0-255: black = its smallest "
                 "value, white = its largest)", fontsize=10)
    return fig


def dw_tiles_explorer(records, epoch=None):
    """An epoch slider over :func:`dw_tiles_figure`: browse the dW tiles over training."""
    epochs = sorted(set.intersection(*(set(rec.tiles) for rec in records.values())))
    if not epochs:
        raise ValueError("the runs share no epoch with dW tiles: pass tile_epochs=range(...) to dying_relu.run")
    slider = W.SelectionSlider(options=epochs, value=epochs[-1] if epoch is None else epoch, description="epoch",
                               continuous_update=False, style=_STYLE, layout=_wide())
    return Explorer(dw_tiles_figure, {"epoch": slider}, fixed={"records": records},
                    title="dW of the first layer over training",
                    note="Recorded during training: moving the slider only redraws.")


# ================================================================ 5-6. overfitting
def _overfit_figure(data, *, weight_decay, dropout, n_train, n_test, depth, width, num_epochs, batch_size, lr,
                    seed, eval_every, what, fig):
    model, h = _train(data, depth=depth, width=width, norm=None, num_epochs=num_epochs, batch_size=batch_size,
                      lr=lr, init="he", dropout=dropout, weight_decay=weight_decay, n_train=n_train,
                      n_eval=n_test, eval_split="test", eval_every=eval_every, per="epoch", train_curve=True,
                      seed=seed)
    t, tr_loss, tr_acc = _curves(h, "train")
    _, te_loss, te_acc = _curves(h, "eval")
    fig = fig if fig is not None else _figure((11.0, 3.6))
    ax1, ax2, ax3 = fig.subplots(1, 3, width_ratios=(1.2, 1.2, 0.8))
    _adjust(fig)
    plots.train_test_gap(train=tr_acc, test=te_acc, x=t, ax=ax1, test_label="test (held out)",
                         title="Accuracy: training vs test")
    ax1.set_ylim(0, 1.02)
    ax2.plot(t, tr_loss, color="C0", label="train")
    ax2.plot(t, te_loss, color="C1", label="test (held out)")
    ax2.set(xlabel="epoch", ylabel="loss (cross-entropy)", title="Loss: training vs test")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    Ws = [to_numpy(model.layer(f"linear{i}").params["W"]) for i in range(depth + 1)]
    norms = [float(np.sqrt((w.astype(np.float64) ** 2).sum())) for w in Ws]
    ax3.bar(np.arange(1, depth + 2), norms, color="C2")
    ax3.set(xlabel="layer", ylabel="‖W‖ (Frobenius norm)", title="Weight norms at the end",
            xticks=np.arange(1, depth + 2))
    for ax in (ax1, ax2, ax3):
        ax.title.set_fontsize(10)
    gap = tr_acc[-1] - te_acc[-1] if len(t) else float("nan")
    result = (f"diverged at step {h.diverged_at_step} (lr {lr} is too large)" if h.diverged else
              f"final train {tr_acc[-1]:.2f}, test {te_acc[-1]:.2f}, gap {gap:.2f}")
    fig.suptitle(f"{what}: {n_train} training images, {depth} hidden layers x {width}, {num_epochs} epochs; "
                 f"{result}", fontsize=10)
    return fig


def weight_decay_curves(data, weight_decay=1e-3, *, n_train=300, n_test=1000, depth=5, width=100, num_epochs=50,
                        batch_size=100, lr=0.05, seed=0, eval_every=3, fig=None):
    """Overfit a deep MLP on ``n_train`` images with L2 weight decay ``weight_decay`` (λ) and plot the gap.

    The optimizer adds ``λ W`` to every weight matrix's gradient (the gradient
    of ``½ λ ‖W‖²``), not to the biases.  Panels: training vs test accuracy (the
    shaded area is the gap), the two losses, and the final weight norms per layer.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    return _overfit_figure(data, weight_decay=weight_decay, dropout=0.0, n_train=n_train, n_test=n_test,
                           depth=depth, width=width, num_epochs=num_epochs, batch_size=batch_size, lr=lr,
                           seed=seed, eval_every=eval_every, what=f"Weight decay λ = {weight_decay:g}", fig=fig)


def weight_decay_explorer(data, weight_decay=1e-3, **kwargs):
    """A log-scale λ slider (0, 1e-5 .. 0.3) for :func:`weight_decay_curves`."""
    options = [(("0" if v == 0 else f"{v:g}"), v) for v in _with(WEIGHT_DECAYS, weight_decay)]
    lam = W.SelectionSlider(options=options, value=weight_decay, description="weight decay λ",
                            continuous_update=False, style=_STYLE, layout=_wide())
    return Explorer(weight_decay_curves, {"weight_decay": lam}, fixed={"data": data, **kwargs},
                    title="Weight decay against overfitting",
                    note="Each change retrains a deep network on a few hundred images (about a second).")


def dropout_curves(data, p=0.2, *, n_train=300, n_test=1000, depth=5, width=100, num_epochs=50, batch_size=100,
                   lr=0.05, seed=0, eval_every=3, fig=None):
    """Overfit a deep MLP on ``n_train`` images with dropout of drop probability ``p`` after each hidden layer.

    Inverted dropout: in training each unit is zeroed with probability ``p`` and
    the survivors are scaled by 1/(1-p); at test time nothing is dropped.  The
    accuracies are measured in eval mode (no dropout) for both sets.
    """
    if not 0 <= p < 1:
        raise ValueError(f"p is a drop probability in [0, 1), got {p}")
    return _overfit_figure(data, weight_decay=0.0, dropout=p, n_train=n_train, n_test=n_test, depth=depth,
                           width=width, num_epochs=num_epochs, batch_size=batch_size, lr=lr, seed=seed,
                           eval_every=eval_every, what=f"Dropout p = {p:g}", fig=fig)


def dropout_explorer(data, p=0.2, **kwargs):
    """A drop-probability slider (0 .. 0.8) for :func:`dropout_curves`."""
    pw = W.FloatSlider(value=p, min=0.0, max=0.8, step=0.05, description="dropout p (drop prob.)",
                       readout_format=".2f", continuous_update=False, style=_STYLE, layout=_wide())
    return Explorer(dropout_curves, {"p": pw}, fixed={"data": data, **kwargs},
                    title="Dropout against overfitting",
                    note="Each change retrains a deep network on a few hundred images (about a second).")


# ====================================================================== the widget
#: Tests set this to True: an error in a redraw is then raised, not only shown in the status line.
RAISE_ERRORS = False
#: Resolution of the explorers' PNGs (72 = what ``%matplotlib inline`` uses).
DPI = 72


def _with(options, value):
    """``options`` plus ``value`` (sorted), so a non-default start value is selectable."""
    return tuple(sorted(set(options) | {value}))


_STYLE = {"description_width": "initial"}


def _wide():
    return W.Layout(width="430px")


class Explorer(W.VBox):
    """A figure that redraws when its controls change: the shared wrapper of every explorer.

    render:   the pure function, called as ``render(**fixed, **params(values))``; returns a Figure.
    controls: ``{name: widget}``; ``values = {name: widget.value}``.
    params:   maps ``values`` to the keyword arguments of ``render`` (default: unchanged).
    fixed:    keyword arguments that do not change (the data, sizes).

    Behaviour: a redraw whose parameters equal the last drawn ones is
    skipped; during a redraw the controls are disabled and the status line
    reads "computing…", then "drawn in 0.42 s" (or the error).  Set
    ``raise_errors = True`` to re-raise errors (tests do).  The container has
    the CSS class ``course-explorer``; the figure is an ``ipywidgets.Image``.
    """

    def __init__(self, render, controls, *, params=None, fixed=None, title="", note="", dpi=None,
                 raise_errors=None):
        self.render_fn = render
        self.controls = dict(controls)
        self.fixed = dict(fixed or {})
        self.params_fn = params or (lambda values: dict(values))
        self.dpi = dpi or DPI
        self.raise_errors = RAISE_ERRORS if raise_errors is None else raise_errors
        self.explorer_title = title
        self.n_draws, self.n_skipped, self.timings = 0, 0, []
        self.last_params, self.last_error = None, None
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        self.image.add_class("course-explorer-figure")
        self.status = W.Label(value="")
        self.status.add_class("course-explorer-status")
        head = f"<b>{html.escape(title)}</b>" + (f"<br><small>{html.escape(note)}</small>" if note else "")
        header = W.HTML(head)
        bar = W.HBox(list(self.controls.values()), layout=W.Layout(flex_flow="row wrap"))
        bar.add_class("course-explorer-controls")
        super().__init__([header, bar, self.image, self.status])
        self.add_class("course-explorer")
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        self.redraw()

    # -- state ---------------------------------------------------------------------------
    @property
    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    @property
    def params(self) -> dict:
        """The keyword arguments the next redraw passes to the render function."""
        return self.params_fn(self.values)

    @property
    def png(self) -> bytes:
        """The current figure as PNG bytes."""
        return bytes(self.image.value)

    def figure(self):
        """The Figure for the current parameters (computed afresh, e.g. to save it)."""
        return self.render_fn(**self.fixed, **self.params)

    # -- drawing -------------------------------------------------------------------------
    def _on_change(self, change):
        self.redraw()

    def _busy(self, busy, previous=None):
        if busy:
            previous = {k: c.disabled for k, c in self.controls.items()}
            for c in self.controls.values():
                c.disabled = True
            self.status.value = "computing…"
            return previous
        for k, c in self.controls.items():
            c.disabled = previous.get(k, False) if previous else False
        return None

    def redraw(self, force=False) -> bool:
        """Recompute and show the figure; False when skipped (unchanged parameters) or failed."""
        params = self.params
        if not force and params == self.last_params:
            self.n_skipped += 1
            return False
        previous = self._busy(True)
        start = time.perf_counter()
        try:
            fig = self.render_fn(**self.fixed, **params)
            png = plots.to_png(fig, dpi=self.dpi)
        except Exception as exc:
            self.last_error = exc
            self.status.value = f"error: {type(exc).__name__}: {exc}"
            self.status.add_class("course-explorer-error")
            self._busy(False, previous)
            if self.raise_errors:
                raise
            return False
        seconds = time.perf_counter() - start
        self.image.value = png
        self.last_params, self.last_error = params, None
        self.n_draws += 1
        self.timings.append(seconds)
        self.status.remove_class("course-explorer-error")
        self.status.value = f"drawn in {seconds:.2f} s"
        self._busy(False, previous)
        return True

    # -- display -------------------------------------------------------------------------
    def _summary(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return (f"{self.explorer_title} [{shown}] (static image of this view; "
                "run the notebook to move the controls)")

    def _repr_mimebundle_(self, **kwargs):
        bundle = dict(super()._repr_mimebundle_(**kwargs) or {})
        if self.image.value:
            bundle["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        bundle["text/plain"] = self._summary()
        return bundle

    def __repr__(self):
        return f"<{type(self).__name__}: {self._summary()}>"


__all__ = ["Explorer", "init_histograms", "init_explorer", "bn_batch_stats", "bn_stats_explorer",
           "depth_curves", "depth_explorer", "batch_size_effects", "batch_size_explorer",
           "weight_decay_curves", "weight_decay_explorer", "dropout_curves", "dropout_explorer",
           "synthetic_splits", "skewed_population", "RAISE_ERRORS", "DPI"]
