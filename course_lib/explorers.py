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

The parts live in modules with one job each; this module binds them together and
re-exports every public name, so ``from course_lib import explorers`` is all a notebook needs:

* :mod:`course_lib.explorer_figures` -- the pure figure functions;
* :mod:`course_lib.widgets` -- the :class:`Explorer` widget class;
* :mod:`course_lib.quicktrain` -- small training runs on subsets, with eval curves;
* :mod:`course_lib.subsets` -- cached subsets of a data split;
* :mod:`course_lib.synthetic` -- synthetic data (:func:`synthetic_splits`, :func:`skewed_population`);
* :mod:`course_lib.threads` -- one BLAS thread for a block (``threadpoolctl``).

Controls that tie an explorer to its chapter: the batch-size explorer (chapter 05) picks the
normalization compared with the plain network (none, BN, Batch Renorm, LayerNorm, GroupNorm) and
what stays equal across batch sizes (the number of updates, or the number of images seen); the
weight-decay and dropout explorers (chapters 06, 07) have a BN switch.  Their defaults draw the
figures these explorers drew before the controls existed.

The explorers that train keep each redraw around a second on a 2-core laptop by
training small networks (width 64-100) for a few hundred steps on a subset of
the data; pass larger sizes as keyword arguments for a closer look.
"""
from __future__ import annotations

import ipywidgets as W

from course_lib import init as init_mod
from course_lib import widgets as _widgets
from course_lib.explorer_figures import (  # noqa: F401
    HOLD_FIXED,
    NORM_CHOICES,
    POWERS_OF_TWO,
    batch_size_budget,
    batch_size_effects,
    bn_batch_stats,
    depth_curves,
    dropout_curves,
    dw_tiles_figure,
    init_histograms,
    weight_decay_curves,
)
from course_lib.subsets import subset as _subset  # noqa: F401  (kept for old callers and tests)
from course_lib.synthetic import skewed_population, synthetic_splits  # noqa: F401
from course_lib.threads import one_blas_thread as _one_blas_thread  # noqa: F401
from course_lib.widgets import STYLE, wide, with_value

WEIGHT_DECAYS = (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)
INIT_CHOICES = (("std = 1", 1.0), ("std = 0.01", 0.01), ("Xavier (Glorot)", "xavier"), ("He", "he"),
                ("custom std (slider)", "custom"))
#: The batch-size explorer's normalization menu: (label, value); "none" stands for norm=None.
NORM_OPTIONS = (("none (plain network only)", "none"), ("BN (batch norm)", "batch"), ("Batch Renorm", "renorm"),
                ("LN (LayerNorm)", "layer"), ("GN (GroupNorm, 8 groups)", "group"))
#: Tests set this to True: an error in a redraw is then raised, not only shown in the status line.
RAISE_ERRORS = False
#: Resolution of the explorers' PNGs (72 = what ``%matplotlib inline`` uses).
DPI = 72


class Explorer(_widgets.Explorer):
    """:class:`course_lib.widgets.Explorer` whose defaults for ``raise_errors`` and ``dpi`` are this
    module's :data:`RAISE_ERRORS` and :data:`DPI` (read when an explorer is built)."""

    __doc__ += "\n\n" + (_widgets.Explorer.__doc__ or "")

    def __init__(self, render, controls, *, dpi=None, raise_errors=None, **kwargs):
        super().__init__(render, controls, dpi=dpi or DPI,
                         raise_errors=RAISE_ERRORS if raise_errors is None else raise_errors, **kwargs)


def init_explorer(depth=5, init_scale="xavier", activation="tanh", **kwargs):
    """Sliders for :func:`init_histograms`: depth, init scheme (or a std on a log slider), activation.

    ``kwargs`` (width, n_samples, seed, bins) go to :func:`init_histograms`.
    """
    named = [v for _, v in INIT_CHOICES if v != "custom"]
    custom = not (isinstance(init_scale, str) or init_scale in named)
    width = kwargs.get("width", 100)
    start_std = float(init_scale) if custom else init_mod.std_for(init_scale, width, width)
    depth_w = W.IntSlider(value=depth, min=1, max=30, step=1, description="depth (layers)",
                          continuous_update=False, style=STYLE, layout=wide())
    choice = W.Dropdown(options=INIT_CHOICES, value="custom" if custom else init_scale, description="init",
                        style=STYLE)
    std_w = W.FloatLogSlider(value=start_std, base=10, min=-3, max=1, step=0.05, description="init std",
                             readout_format=".3g", continuous_update=False, style=STYLE, layout=wide())
    act = W.Dropdown(options=["sigmoid", "tanh", "relu"], value=activation, description="activation",
                     style=STYLE)
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


def bn_stats_explorer(batch_size=32, **kwargs):
    """A log-scale batch-size slider (2 .. 512) for :func:`bn_batch_stats`; ``kwargs`` go to it."""
    m = W.SelectionSlider(options=with_value(POWERS_OF_TWO, batch_size), value=batch_size, description="batch size",
                          continuous_update=False, style=STYLE, layout=wide())
    return Explorer(bn_batch_stats, {"batch_size": m}, fixed=kwargs,
                    title="Batch statistics: how noisy is a mini-batch's mean and variance?",
                    note="Many mini-batches drawn from one fixed population; no training.")


def depth_explorer(data, depth=10, batch_norm=True, **kwargs):
    """A depth slider (2 .. 20 hidden layers) and a BN switch for :func:`depth_curves`."""
    d = W.IntSlider(value=depth, min=2, max=20, description="depth (hidden layers)", continuous_update=False,
                    style=STYLE, layout=wide())
    bn = W.Checkbox(value=batch_norm, description="batch norm (BN)", indent=False)
    return Explorer(depth_curves, {"depth": d, "batch_norm": bn}, fixed={"data": data, **kwargs},
                    title="Depth with and without batch normalization",
                    note="Each change retrains a small ReLU network from scratch (about a second).")


def batch_size_explorer(data, batch_size=32, norm="batch", hold_fixed="steps", **kwargs):
    """Controls for :func:`batch_size_effects`: a log-scale batch-size slider (2 .. 512), the
    normalization layer compared with the plain network (BN, Batch Renorm, LayerNorm, GroupNorm or
    none), and what stays equal across batch sizes: the number of updates ("steps") or the number
    of images seen ("data").  ``kwargs`` (steps, images, sizes, lr, ...) go to :func:`batch_size_effects`.
    """
    norm = None if norm == "none" else norm
    if norm not in NORM_CHOICES:
        raise ValueError(f"norm must be one of {list(NORM_CHOICES)} (or 'none'), got {norm!r}")
    steps, images = kwargs.get("steps", 100), kwargs.get("images")
    batch_size_budget(batch_size, hold_fixed, steps=steps, images=images)   # checks hold_fixed, steps, images
    m = W.SelectionSlider(options=with_value(POWERS_OF_TWO, batch_size), value=batch_size, description="batch size",
                          continuous_update=False, style=STYLE, layout=wide())
    nw = W.Dropdown(options=NORM_OPTIONS, value="none" if norm is None else norm, description="normalization",
                    style=STYLE)
    n_images = batch_size_budget(1, "data", steps=steps, images=images)[1]
    hold = W.RadioButtons(options=[(f"equal steps: {steps} updates at every batch size (bigger batches see "
                                    "more images)", "steps"),
                                   (f"equal data: {n_images:,} images at every batch size (smaller batches take "
                                    "more steps)", "data")],
                          value=hold_fixed, description="hold fixed", style=STYLE, layout=W.Layout(width="auto"))

    def params(v):
        return {"batch_size": v["batch_size"], "norm": None if v["norm"] == "none" else v["norm"],
                "hold_fixed": v["hold_fixed"]}

    return Explorer(batch_size_effects, {"batch_size": m, "norm": nw, "hold_fixed": hold}, params=params,
                    fixed={"data": data, **kwargs},
                    title="Batch size: accuracy, dead units and BN's noise",
                    note="Each change retrains two small ReLU networks, with and without the chosen "
                         "normalization (about a second).")


def dw_tiles_explorer(records, epoch=None):
    """An epoch slider over :func:`dw_tiles_figure`: browse the dW tiles over training."""
    epochs = sorted(set.intersection(*(set(rec.tiles) for rec in records.values())))
    if not epochs:
        raise ValueError("the runs share no epoch with dW tiles: pass tile_epochs=range(...) to dying_relu.run")
    slider = W.SelectionSlider(options=epochs, value=epochs[-1] if epoch is None else epoch, description="epoch",
                               continuous_update=False, style=STYLE, layout=wide())
    return Explorer(dw_tiles_figure, {"epoch": slider}, fixed={"records": records},
                    title="dW of the first layer over training",
                    note="Recorded during training: moving the slider only redraws.")


def weight_decay_explorer(data, weight_decay=1e-3, batch_norm=False, **kwargs):
    """A log-scale λ slider (0, 1e-5 .. 0.3) and a BN switch for :func:`weight_decay_curves`."""
    options = [(("0" if v == 0 else f"{v:g}"), v) for v in with_value(WEIGHT_DECAYS, weight_decay)]
    lam = W.SelectionSlider(options=options, value=weight_decay, description="weight decay λ",
                            continuous_update=False, style=STYLE, layout=wide())
    bn = W.Checkbox(value=batch_norm, description="batch norm (BN)", indent=False)
    return Explorer(weight_decay_curves, {"weight_decay": lam, "batch_norm": bn}, fixed={"data": data, **kwargs},
                    title="Weight decay against overfitting",
                    note="Each change retrains a deep network on a few hundred images (about a second).")


def dropout_explorer(data, p=0.2, batch_norm=False, **kwargs):
    """A drop-probability slider (0 .. 0.8) and a BN switch for :func:`dropout_curves`."""
    pw = W.FloatSlider(value=p, min=0.0, max=0.8, step=0.05, description="dropout p (drop prob.)",
                       readout_format=".2f", continuous_update=False, style=STYLE, layout=wide())
    bn = W.Checkbox(value=batch_norm, description="batch norm (BN)", indent=False)
    return Explorer(dropout_curves, {"p": pw, "batch_norm": bn}, fixed={"data": data, **kwargs},
                    title="Dropout against overfitting",
                    note="Each change retrains a deep network on a few hundred images (about a second).")


__all__ = ["Explorer", "init_histograms", "init_explorer", "bn_batch_stats", "bn_stats_explorer",
           "depth_curves", "depth_explorer", "batch_size_effects", "batch_size_explorer",
           "weight_decay_curves", "weight_decay_explorer", "dropout_curves", "dropout_explorer",
           "dw_tiles_figure", "dw_tiles_explorer", "synthetic_splits", "skewed_population", "RAISE_ERRORS", "DPI",
           "batch_size_budget", "NORM_CHOICES", "NORM_OPTIONS", "HOLD_FIXED"]
