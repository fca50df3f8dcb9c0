"""The explorers' figures: pure functions from parameters to a matplotlib ``Figure``.

No widgets and no global state but caches: seeded, so the same parameters give the same
picture.  :mod:`course_lib.explorers` puts sliders around them; they also work on their own
(e.g. to save a figure, or in a test)::

    fig = init_histograms(depth=10, init_scale="he", activation="relu")

Each takes ``fig=`` to draw into a given figure (default: a new standalone one, not registered
with pyplot).  The figures that train use :func:`course_lib.quicktrain.train_small` on data
subsets, so a redraw stays around a second on a 2-core laptop.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from course_lib import backend, dying_relu, plots
from course_lib import functional as F
from course_lib import init as init_mod
from course_lib.backend import to_numpy
from course_lib.quicktrain import eval_curve, smooth, train_small
from course_lib.subsets import subset
from course_lib.synthetic import skewed_population
from course_lib.threads import one_blas_thread
from course_lib.trainer import ActivationStats, dead_unit_counts

POWERS_OF_TWO = tuple(2 ** k for k in range(1, 10))          # 2 .. 512
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
    with np.errstate(over="ignore", invalid="ignore", under="ignore"), one_blas_thread():
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


# ============================================================== 2. batch statistics
_BN_CURVES: OrderedDict = OrderedDict()


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
    x, _ = subset(data, "train", n_train)
    per_epoch = math.ceil(len(x) / batch_size)
    model, h = train_small(data, depth=depth, width=width, norm=norm, steps=steps, batch_size=batch_size, lr=lr,
                           init=init, activation=activation, n_train=n_train, n_eval=n_val,
                           eval_every=max(per_epoch, 1), seed=seed, hooks=[stats])
    label = f"{depth} hidden layers, {'with' if batch_norm else 'without'} BN"
    color = "C0" if batch_norm else "C1"
    fig = fig if fig is not None else _figure()
    ax1, ax2, ax3 = fig.subplots(1, 3)
    _adjust(fig)
    s, loss = smooth(h.step_loss, 10)
    ax1.plot(h.step_loss, color=color, alpha=0.25, lw=0.8)
    ax1.plot(s, loss, color=color, label="moving average (10 steps)")
    ax1.axhline(math.log(10), color="gray", ls=":", lw=1, label="chance (ln 10)")
    top = float(np.nanmax(loss)) if len(loss) and np.isfinite(loss).any() else 2.5
    ax1.set(xlabel="training step", ylabel="training loss (cross-entropy)", title="Training loss",
            ylim=(0, min(max(2.6, 1.05 * top), 10.0)))
    ax1.legend(fontsize=7)
    t, _, acc = eval_curve(h, "eval")
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


# ===================================================================== 4. batch size
def _noise_curve(data, n_train, width, init, seed, batch_sizes, n_batches=100):
    """Spread of the first layer's batch mean / variance (at init) for each batch size; cached."""
    key = ("noise", id(data), n_train, width, init, seed, tuple(batch_sizes), backend.device)
    hit = _BN_CURVES.get(key)
    if hit is not None and hit[0] is data:
        return hit[1]
    x, _ = subset(data, "train", n_train)
    W0 = backend.asarray(init_mod.initialize(init, x.shape[1], width, np.random.default_rng(seed)), x.dtype)
    a = x @ W0                                            # (N, width) pre-activations
    sd = a.std(axis=0) + 1e-8
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


#: The batch-size explorer's normalization choices: value -> (short label, long label).
NORM_CHOICES = {"batch": ("BN", "batch norm (BN)"), "renorm": ("Renorm", "Batch Renorm"),
                "layer": ("LN", "LayerNorm"), "group": ("GN", "GroupNorm"), None: ("no norm", "no normalization")}
#: What :func:`batch_size_effects` can hold fixed across batch sizes.
HOLD_FIXED = ("steps", "data")
_REFERENCE_BATCH = 32


def batch_size_budget(batch_size, hold_fixed="steps", *, steps=100, images=None):
    """``(steps, images seen)`` of one run of :func:`batch_size_effects`.

    hold_fixed="steps": every batch size takes ``steps`` updates, so it sees
    ``steps * batch_size`` images (batch 2: 200, batch 512: 51,200).
    hold_fixed="data":  every batch size sees about ``images`` images (default
    ``steps * 32``, so batch 32 runs the same in both modes), in
    ``ceil(images / batch_size)`` updates: small batches take more steps.
    """
    if hold_fixed not in HOLD_FIXED:
        raise ValueError(f"hold_fixed must be 'steps' (equal number of updates) or 'data' (equal number of "
                         f"images seen), got {hold_fixed!r}")
    if batch_size < 1 or steps < 1:
        raise ValueError(f"batch_size and steps must be >= 1, got batch_size={batch_size}, steps={steps}")
    if hold_fixed == "steps":
        return steps, steps * batch_size
    images = steps * _REFERENCE_BATCH if images is None else int(images)
    if images < batch_size:
        raise ValueError(f"images={images} is less than one batch of {batch_size}: pass images >= batch_size")
    n = math.ceil(images / batch_size)
    return n, n * batch_size


def batch_size_effects(data, batch_size=32, *, norm="batch", hold_fixed="steps", images=None, depth=4, width=64,
                       n_train=1000, n_val=500, steps=100, lr=0.1, init="he", seed=0, batch_sizes=POWERS_OF_TWO,
                       fig=None):
    """Train the same ReLU MLP with a normalization layer and without one at one batch size, and compare.

    norm: the layer after each hidden linear layer of the first run: "batch"
    (BN, default), "renorm" (Batch Renorm), "layer" (LayerNorm), "group"
    (GroupNorm, 8 groups: ``width`` must be a multiple of 8) or None (then only
    the plain network is trained).  The second run is always the plain network.

    hold_fixed: what is equal across batch sizes (see :func:`batch_size_budget`).
    "steps" (default): ``steps`` momentum-SGD updates (lr ``lr``), so larger
    batches see more images; "data": about ``images`` images (default
    ``steps * 32``), so smaller batches take more updates.  Either way the
    batches come from the first ``n_train`` training images (several epochs if needed).

    Panels: validation accuracy during training (x: steps, or images seen
    when the data are held fixed); dead ReLU units per layer at the end
    (units that output 0 for every training image: they get no gradient any
    more); and how noisy the batch mean and variance of the first layer's
    pre-activations are for every batch size (the chosen one marked): what
    BN and Renorm normalize with in training, and LayerNorm/GroupNorm do not use.
    """
    if norm not in NORM_CHOICES:
        raise ValueError(f"norm must be one of {list(NORM_CHOICES)}, got {norm!r}")
    n_steps, seen = batch_size_budget(batch_size, hold_fixed, steps=steps, images=images)
    x, _ = subset(data, "train", n_train)
    short = NORM_CHOICES[norm][0]
    runs = {}
    for nm in ((norm, None) if norm is not None else (None,)):
        model, h = train_small(data, depth=depth, width=width, norm=nm, steps=n_steps, batch_size=batch_size, lr=lr,
                               init=init, n_train=n_train, n_eval=n_val, eval_every=max(n_steps // 8, 1), seed=seed)
        # a diverged net has NaN weights: its "dead units" would be every unit, so none are counted
        runs[nm] = (h, {} if h.diverged else dead_unit_counts(model, x))
    fig = fig if fig is not None else _figure()
    ax1, ax2, ax3 = fig.subplots(1, 3)
    _adjust(fig)
    per_image = hold_fixed == "data"
    for nm, (h, _) in runs.items():
        t, _, acc = eval_curve(h, "eval")
        lab = f"with {short}" if nm is not None else f"without {short if norm is not None else 'norm'}"
        if h.diverged:
            lab += " (diverged)"
        ax1.plot(t * batch_size if per_image else t, acc, "o-", ms=3, color="C1" if nm is None else "C0", label=lab)
    ax1.axhline(0.1, color="gray", ls=":", lw=1, label="chance")
    ax1.set(xlabel="training images seen" if per_image else "training step", ylabel="validation accuracy",
            ylim=(0, 1), title=f"Accuracy, batch size {batch_size}")
    ax1.legend(fontsize=7, loc="best")
    layers = np.arange(1, depth + 1)
    for k, (nm, (h, dead)) in enumerate(runs.items()):
        counts = [dead.get(f"relu{i}", 0) for i in range(depth)]
        offset = (k - 0.5) * 0.38 if len(runs) == 2 else 0.0
        who = f"with {short}" if nm is not None else f"without {short if norm is not None else 'norm'}"
        ax2.bar(layers + offset, counts, width=0.38, color="C1" if nm is None else "C0",
                label=f"{who}: " + ("diverged" if h.diverged else f"{sum(counts)} dead"))
    ax2.set(xlabel="hidden layer", ylabel=f"dead ReLU units (of {width})", ylim=(0, width),
            title="Dead units after training", xticks=layers)
    ax2.legend(fontsize=7, loc="upper left")
    noise = _noise_curve(data, n_train, width, init, seed, batch_sizes)
    plots.batch_noise_curve(batch_sizes, noise[:, 0], noise[:, 1], highlight=batch_size, ax=ax3,
                            title="Noise of BN's batch statistics (layer 1)" if norm in ("batch", "renorm", None)
                            else f"Noise of BN's batch statistics ({short} uses none)")
    for ax in (ax1, ax2, ax3):
        ax.title.set_fontsize(10)
    ax1.grid(alpha=0.3)
    if hold_fixed == "steps":
        budget = f"equal steps ({n_steps:,} updates each: {seen:,} images seen)"
    else:
        wanted = batch_size_budget(1, "data", steps=steps, images=images)[1]
        budget = f"equal data ({wanted:,} images each: {n_steps:,} updates of {batch_size})"
    fig.suptitle(f"Batch size {batch_size}, {budget}; {depth} hidden layers x {width} ReLU, lr {lr}, init {init}, "
                 f"{len(x)} training images", fontsize=10)
    return fig


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


# ================================================================ 5-6. overfitting
def _overfit_figure(data, *, weight_decay, dropout, batch_norm, n_train, n_test, depth, width, num_epochs, batch_size,
                    lr, seed, eval_every, what, fig):
    if batch_norm:
        what += ", with BN"
    model, h = train_small(data, depth=depth, width=width, norm="batch" if batch_norm else None,
                           num_epochs=num_epochs, batch_size=batch_size, lr=lr, init="he", dropout=dropout,
                           weight_decay=weight_decay, n_train=n_train, n_eval=n_test, eval_split="test",
                           eval_every=eval_every, per="epoch", train_curve=True, seed=seed)
    t, tr_loss, tr_acc = eval_curve(h, "train")
    _, te_loss, te_acc = eval_curve(h, "eval")
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


def weight_decay_curves(data, weight_decay=1e-3, batch_norm=False, *, n_train=300, n_test=1000, depth=5, width=100,
                        num_epochs=50, batch_size=100, lr=0.05, seed=0, eval_every=3, fig=None):
    """Overfit a deep MLP on ``n_train`` images with L2 weight decay ``weight_decay`` (λ) and plot the gap.

    The optimizer adds ``λ W`` to every weight matrix's gradient (the gradient
    of ``½ λ ‖W‖²``), not to the biases (nor to BN's γ and β).  With
    ``batch_norm`` a BN layer follows each hidden linear layer (which then has
    no bias): BN divides out the scale of those W, so shrinking them does not
    limit what the network computes; it raises their effective learning rate
    instead (van Laarhoven 2017, arXiv:1706.05350).  Only the last layer's W
    still acts as plain L2 there.  Panels: training vs test
    accuracy (the shaded area is the gap), the two losses, and the final
    weight norms per layer.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    return _overfit_figure(data, weight_decay=weight_decay, dropout=0.0, batch_norm=batch_norm, n_train=n_train,
                           n_test=n_test, depth=depth, width=width, num_epochs=num_epochs, batch_size=batch_size, lr=lr,
                           seed=seed, eval_every=eval_every, what=f"Weight decay λ = {weight_decay:g}", fig=fig)


def dropout_curves(data, p=0.2, batch_norm=False, *, n_train=300, n_test=1000, depth=5, width=100, num_epochs=50,
                   batch_size=100, lr=0.05, seed=0, eval_every=3, fig=None):
    """Overfit a deep MLP on ``n_train`` images with dropout of drop probability ``p`` after each hidden layer.

    Inverted dropout: in training each unit is zeroed with probability ``p`` and
    the survivors are scaled by 1/(1-p); at test time nothing is dropped.  The
    accuracies are measured in eval mode (no dropout, BN with its running
    statistics) for both sets.  With ``batch_norm`` each hidden layer is
    linear -> BN -> ReLU -> dropout, so the next layer's BN sees the dropped
    units' statistics in training but not at test time (the "variance shift"
    of Li et al., arXiv:1801.05134).
    """
    if not 0 <= p < 1:
        raise ValueError(f"p is a drop probability in [0, 1), got {p}")
    return _overfit_figure(data, weight_decay=0.0, dropout=p, batch_norm=batch_norm, n_train=n_train,
                           n_test=n_test, depth=depth, width=width, num_epochs=num_epochs, batch_size=batch_size,
                           lr=lr, seed=seed, eval_every=eval_every, what=f"Dropout p = {p:g}", fig=fig)


__all__ = ["init_histograms", "bn_batch_stats", "depth_curves", "batch_size_effects", "batch_size_budget",
           "dw_tiles_figure", "weight_decay_curves", "dropout_curves", "POWERS_OF_TWO", "NORM_CHOICES", "HOLD_FIXED"]
