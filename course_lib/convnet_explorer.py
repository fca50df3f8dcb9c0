"""Chapter 09's slider: a small CNN with BN, with GroupNorm and without normalization,
retrained for the chosen batch size.

Kept apart from :mod:`course_lib.convnet` because it draws (matplotlib) and builds widgets
(ipywidgets); the core modules import neither.
"""
from __future__ import annotations

import math

import numpy as np

from course_lib import plots
from course_lib.backend import to_numpy
from course_lib.convnet import batch_mean_noise, cnn_layers, train_cnn  # noqa: F401

__all__ = ["cnn_batch_size_effects", "cnn_batch_size_explorer", "BATCH_SIZES"]

BATCH_SIZES = (2, 4, 8, 16, 32, 64)
_RUNS = (("none", None, "C1"), ("BN", "batch", "C0"), ("GroupNorm", "group", "C2"))
_NOISE_CACHE: dict = {}


def _noise(data, n_images, seed):
    """BatchNorm2d's per-channel batch-mean noise in the first conv layer at init; cached per data."""
    key = (id(data), n_images, seed)
    hit = _NOISE_CACHE.get(key)
    if hit is not None and hit[0] is data:
        return hit[1]
    layers = dict(cnn_layers((8, 16), seed=seed))
    x = data.x_train[:n_images]
    maps = layers["conv0"].forward(layers["input"].forward(x))
    out = batch_mean_noise(maps, BATCH_SIZES, seed=seed)
    _NOISE_CACHE.clear()
    _NOISE_CACHE[key] = (data, out)
    return out


def cnn_batch_size_effects(data, batch_size=8, *, n_train=600, n_val=500, lr=0.02, channels=(8, 16),
                           seed=0, fig=None):
    """Train the chapter's CNN three times (no normalization, BatchNorm2d, GroupNorm with 4
    groups) for one epoch over the first ``n_train`` training images at ``batch_size``
    (momentum SGD, ``lr``), and plot: the training loss per step, the validation accuracy of
    each (eval mode, on ``n_val`` images), and the noise of BN's per-channel batch mean against
    the batch size (with the count m*H*W it averages).  Every batch size sees the same images,
    so small batches take more steps.  Returns the Figure."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    results = {}
    for label, norm, _ in _RUNS:
        _, h = train_cnn(data, channels=channels, norm=norm, lr=lr, batch_size=batch_size,
                         num_epochs=1, n_train=n_train, n_val=n_val, seed=seed)
        results[label] = h
    fig = fig if fig is not None else Figure(figsize=(11.0, 3.4))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.16, top=0.80, wspace=0.32)
    for (label, _, color), h in zip(_RUNS, results.values()):
        loss = np.asarray(h.step_loss, dtype=float)
        k = max(1, len(loss) // 15)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid") if len(loss) >= k else loss
        ax1.plot(np.arange(len(smooth)) + k - 1, smooth, color=color,
                 label=label + (" (diverged)" if h.diverged else ""))
    ax1.axhline(math.log(10), color="gray", ls=":", lw=1)
    ax1.set(xlabel="training step", ylabel="training loss", title="Training loss (moving average)",
            ylim=(0, 2.6))
    ax1.legend(fontsize=7)
    accs = [h.val_acc[-1] if h.val_acc and not h.diverged else 0.0 for h in results.values()]
    bars = ax2.bar([r[0] for r in _RUNS], accs, color=[r[2] for r in _RUNS])
    for bar, a in zip(bars, accs):
        ax2.text(bar.get_x() + bar.get_width() / 2, a + 0.02, f"{a:.2f}", ha="center", fontsize=8)
    ax2.axhline(0.1, color="gray", ls=":", lw=1)
    ax2.set(ylim=(0, 1.05), ylabel="validation accuracy (eval mode)",
            title=f"After one epoch at batch {batch_size}")
    noise = _noise(data, 1000, seed)
    ax3.loglog(noise["batch_sizes"], noise["rel_sd"], "o-", color="C0", ms=4,
               label="measured (first conv layer)")
    ms = noise["batch_sizes"].astype(float)
    hw = noise["values"][0] / ms[0]
    ax3.loglog(ms, 1 / np.sqrt(ms * hw), "--", color="gray", lw=1, label="1/√(m·H·W): independent pixels")
    ax3.loglog(ms, 1 / np.sqrt(ms), ":", color="gray", lw=1, label="1/√m: one value per image")
    i = list(noise["batch_sizes"]).index(batch_size) if batch_size in noise["batch_sizes"] else None
    if i is not None:
        ax3.plot([ms[i]], [noise["rel_sd"][i]], "o", ms=10, mfc="none", color="k")
    ax3.set(xlabel="batch size m", ylabel="SD of batch mean / SD of one value",
            title="Noise of BN's per-channel mean")
    ax3.set_xticks(list(BATCH_SIZES), labels=[str(b) for b in BATCH_SIZES])
    ax3.xaxis.set_minor_locator(NullLocator())
    ax3.legend(fontsize=6.5)
    for ax in (ax1, ax2, ax3):
        ax.title.set_fontsize(10)
    ax1.grid(alpha=0.3)
    n = len(to_numpy(data.y_train[:n_train]))
    fig.suptitle(f"CNN {channels}, batch size {batch_size}: one epoch over {n} images "
                 f"({math.ceil(n / batch_size)} steps, momentum SGD lr {lr})", fontsize=10)
    return fig


def cnn_batch_size_explorer(data, batch_size=8, **kwargs):
    """A batch-size slider (2 .. 64) for :func:`cnn_batch_size_effects`; ``kwargs`` go to it."""
    import ipywidgets as W

    from course_lib.explorers import Explorer

    slider = W.SelectionSlider(options=tuple(sorted(set(BATCH_SIZES) | {batch_size})), value=batch_size,
                               description="batch size", continuous_update=False,
                               style={"description_width": "initial"}, layout=W.Layout(width="430px"))
    return Explorer(cnn_batch_size_effects, {"batch_size": slider}, fixed={"data": data, **kwargs},
                    title="Batch size in a CNN: BN, GroupNorm, or nothing",
                    note="Each change retrains three small CNNs for one epoch (about a second).")


del plots  # imported so that matplotlib's backend is configured the course's way
