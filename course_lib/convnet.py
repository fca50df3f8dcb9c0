"""A small convolutional network, the chapter-09 experiments, and BN folding.

``CNN(channels=(8, 16), norm="batch")`` builds, for 28x28 MNIST rows (N, 784)::

    Unflatten(1, 28, 28) -> Conv2d(1->8, 3x3, padding=1) -> BatchNorm2d(8) -> ReLU -> MaxPool2d(2)
    -> Conv2d(8->16, 3x3, padding=1) -> BatchNorm2d(16) -> ReLU -> MaxPool2d(2)
    -> Flatten -> Linear(784->10)

A convolution that feeds a normalization layer has no bias (the normalization subtracts the
mean: such a bias does nothing).  Only the first ``pool_blocks`` blocks pool, so the number of
conv blocks can grow without the image vanishing.  :func:`course_lib.trainer.fit` trains it
like an MLP (it takes flat (N, 784) rows or (N, 1, 28, 28) images).
"""
from __future__ import annotations

import time

import numpy as np

from course_lib import backend
from course_lib import conv as C
from course_lib import layers as L
from course_lib.backend import get_array_module, to_numpy

__all__ = ["CNN", "NORMS", "cnn_layers", "fold_bn", "fold_bn_model", "train_cnn", "compare_runs",
           "RunSummary", "values_per_statistic", "batch_mean_noise", "time_epoch"]

NORMS = (None, "batch", "group")
_NORM_NAMES = {"batch": "bn", "group": "gn"}


def cnn_layers(channels=(8, 16), *, norm=None, num_groups=4, kernel_size=3, pool_blocks=2,
               input_shape=(1, 28, 28), num_classes=10, init="he", seed=None, dtype=None):
    """The ``[(name, layer), ...]`` list of :class:`CNN` (see the module docstring).

    channels:    output channels of each conv block (its length is the depth)
    norm:        None | "batch" (BatchNorm2d) | "group" (GroupNorm2d with ``num_groups``)
    pool_blocks: how many of the first blocks end in a 2x2 max-pool
    """
    channels = [int(c) for c in channels]
    if not channels or min(channels) < 1:
        raise ValueError(f"channels must list at least one block (all >= 1), got {channels}")
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; use one of {list(NORMS)}")
    if norm == "group" and any(c % num_groups for c in channels):
        raise ValueError(f"num_groups={num_groups} must divide every block's channels {channels}")
    rng = backend.host_rng(seed)
    c_in, h, w = (int(s) for s in input_shape)
    layers = [("input", C.Unflatten((c_in, h, w)))]
    for i, c_out in enumerate(channels):
        layers.append((f"conv{i}", C.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2,
                                            init=init, bias=norm is None, dtype=dtype,
                                            seed=int(rng.integers(2**31)), need_input_grad=i > 0)))
        if norm == "batch":
            layers.append((f"bn{i}", C.BatchNorm2d(c_out, dtype=dtype)))
        elif norm == "group":
            layers.append((f"gn{i}", C.GroupNorm2d(c_out, num_groups, dtype=dtype)))
        layers.append((f"relu{i}", L.ReLU()))
        if i < pool_blocks and h >= 2 and w >= 2:
            layers.append((f"pool{i}", C.MaxPool2d(2)))
            h, w = h // 2, w // 2
        c_in = c_out
    layers.append(("flatten", C.Flatten()))
    layers.append(("fc", L.Linear(c_in * h * w, num_classes, init=init, dtype=dtype,
                                  seed=int(rng.integers(2**31)))))
    return layers


class CNN(L.Sequential):
    """A small convolutional network for 28x28 images (see the module docstring): a
    :class:`course_lib.layers.Sequential` of the layers :func:`cnn_layers` lists.

    Everything of ``Sequential`` applies: ``params``/``grads``/``buffers``/``state_dict()`` keyed
    ``"<layer>.<name>"`` (e.g. ``"conv0.W"``, ``"bn0.running_var"``), ``train()``/``eval()``,
    ``forward``/``backward``/``loss``, ``save``/``load``.  ``keep_activations`` is off by default
    (feature maps are large); switch it on to read ``activations`` after a forward pass.
    """

    def __init__(self, channels=(8, 16), *, norm=None, num_groups=4, kernel_size=3, pool_blocks=2,
                 input_shape=(1, 28, 28), num_classes=10, init="he", seed=None, dtype=None,
                 keep_activations=False):
        self.channels, self.norm = tuple(int(c) for c in channels), norm
        super().__init__(cnn_layers(channels, norm=norm, num_groups=num_groups,
                                    kernel_size=kernel_size, pool_blocks=pool_blocks,
                                    input_shape=input_shape, num_classes=num_classes, init=init,
                                    seed=seed, dtype=dtype),
                         keep_activations=keep_activations)


# ----------------------------------------------------------------------- counting
def values_per_statistic(batch_size, channels, height, width, *, kind="batch2d", num_groups=None):
    """How many numbers each mean/variance of a normalization layer averages, and how many
    statistics it computes per batch (integer arithmetic, no data needed).

    kind: "batch1d" (treat every (c, h, w) position as a feature: m values each),
    "batch2d" (per channel over N, H, W: m*H*W each), "group" (per sample and group of
    channels: C/G*H*W each), "layer" (per sample: C*H*W each).
    Returns ``(values_per_statistic, number_of_means)``.
    """
    m, c, h, w = (int(v) for v in (batch_size, channels, height, width))
    if kind == "batch1d":
        return m, c * h * w
    if kind == "batch2d":
        return m * h * w, c
    if kind == "layer":
        return c * h * w, m
    if kind == "group":
        if not num_groups or c % num_groups:
            raise ValueError(f"kind='group' needs num_groups dividing channels={c}, got {num_groups}")
        return c // num_groups * h * w, m * num_groups
    raise ValueError(f"Unknown kind {kind!r}; use 'batch1d', 'batch2d', 'group' or 'layer'")


# ------------------------------------------------------------------------ folding
def fold_bn(conv, bn):
    r"""A new :class:`course_lib.conv.Conv2d` equal to ``bn(conv(x))`` with BN in eval mode.

    With ``s = gamma / sqrt(running_var + eps)`` per output channel::

        W' = W * s[:, None, None, None]        b' = beta + (b - running_mean) * s

    (b = 0 when the conv has no bias).  One GEMM instead of a GEMM and a normalization pass:
    what inference engines do.  Valid for eval mode only (training uses batch statistics).
    """
    if not isinstance(conv, C.Conv2d) or not isinstance(bn, C.BatchNorm2d):
        raise TypeError(f"fold_bn folds a BatchNorm2d into the Conv2d before it, got "
                        f"{type(conv).__name__} and {type(bn).__name__}")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"{bn!r} does not match {conv!r}: {bn.num_features} vs "
                         f"{conv.out_channels} channels")
    xp = get_array_module(conv.params["W"])
    W = conv.params["W"]
    scale = bn.params["gamma"] / xp.sqrt(bn.buffers["running_var"] + bn.eps)
    b = conv.params.get("b")
    shift = bn.params["beta"] + ((0 if b is None else b) - bn.buffers["running_mean"]) * scale
    folded = C.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, init=0.0, bias=True, dtype=W.dtype,
                      need_input_grad=conv.need_input_grad)
    folded.params["W"] = (W * scale[:, None, None, None]).astype(W.dtype)
    folded.params["b"] = shift.astype(W.dtype)
    return folded.eval()


def fold_bn_model(model):
    """A copy of ``model``'s layer list for inference, every ``conv -> bn`` pair folded into one
    conv (the other layers are shared with ``model``).  Returns a
    :class:`course_lib.layers.Sequential` in eval mode; ``model``'s own layers are not changed."""
    out, i = [], 0
    layers = list(model.layers)
    while i < len(layers):
        name, layer = layers[i]
        nxt = layers[i + 1][1] if i + 1 < len(layers) else None
        if isinstance(layer, C.Conv2d) and isinstance(nxt, C.BatchNorm2d):
            out.append((name, fold_bn(layer, nxt)))
            i += 2
            continue
        out.append((name, layer))
        i += 1
    return L.Sequential(out, keep_activations=False).eval()


# --------------------------------------------------------------------- experiments
def _splits(data, n_train=None, n_val=None):
    """``(x_train, y_train), (x_val, y_val)`` from a :class:`course_lib.data.Splits`, cut to size."""
    xt, yt, xv, yv = data.x_train, data.y_train, data.x_val, data.y_val
    return (xt[:n_train], yt[:n_train]), (xv[:n_val], yv[:n_val])


def train_cnn(data, *, channels=(8, 16), norm=None, num_groups=4, lr=0.05, optimizer="momentum",
              batch_size=64, num_epochs=1, n_train=None, n_val=None, seed=0, max_steps=None,
              hooks=(), progress=False):
    """Build a :class:`CNN` (weights from ``seed``) and :func:`course_lib.trainer.fit` it on the
    first ``n_train`` training images (``seed`` also sets the batch order).  Validation in eval
    mode on the first ``n_val`` validation images after each epoch.  Returns ``(model, history)``;
    a diverged run comes back with ``history.diverged`` set, not as an error."""
    from course_lib.optim import make_optimizer
    from course_lib.trainer import fit
    train, val = _splits(data, n_train, n_val)
    model = CNN(channels, norm=norm, num_groups=num_groups, seed=seed)
    history = fit(model, train, val=val, optimizer=make_optimizer(optimizer, lr=lr),
                  num_epochs=num_epochs, batch_size=batch_size, seed=seed, max_steps=max_steps,
                  hooks=hooks, progress=progress)
    if max_steps is not None and not history.val_acc and not history.diverged:
        from course_lib.trainer import evaluate
        vl, va = evaluate(model, *val)
        history.val_loss.append(vl)
        history.val_acc.append(va)
    return model, history


class RunSummary(dict):
    """``{config name: {"val_acc": array over seeds (NaN where diverged), "diverged": count,
    "seconds": total}}`` with :meth:`table` for printing."""

    def stats(self, name):
        a = self[name]["val_acc"]
        ok = a[np.isfinite(a)]
        if not len(ok):
            return float("nan"), float("nan"), float("nan"), float("nan")
        return float(ok.mean()), float(ok.std(ddof=1)) if len(ok) > 1 else 0.0, float(ok.min()), float(ok.max())

    def table(self) -> str:
        lines = [f"{'configuration':<28} {'val acc mean ± SD':>18} {'min–max':>13}  diverged"]
        for name, r in self.items():
            mean, sd, lo, hi = self.stats(name)
            n = len(r["val_acc"])
            lines.append(f"{name:<28} {mean:>10.3f} ± {sd:.3f} {lo:>6.3f}–{hi:.3f}  "
                         f"{r['diverged']} of {n}")
        return "\n".join(lines)


def compare_runs(data, configs, seeds=(0, 1, 2), **common):
    """Train every configuration for every seed and collect the final validation accuracy.

    configs: ``{name: keyword arguments of train_cnn}``; ``common`` is added to each.
    Returns a :class:`RunSummary`.
    """
    out = RunSummary()
    for name, cfg in configs.items():
        accs, diverged, start = [], 0, time.process_time()
        for s in seeds:
            _, h = train_cnn(data, seed=s, **{**common, **cfg})
            diverged += bool(h.diverged)
            accs.append(h.val_acc[-1] if h.val_acc and not h.diverged else np.nan)
        out[name] = {"val_acc": np.array(accs, dtype=float), "diverged": diverged,
                     "seconds": time.process_time() - start}
    return out


def time_epoch(model, x, y, batch_size=64, *, optimizer=None, repeats=1):
    """Seconds (CPU time of this process) for one training epoch of ``model`` on (x, y), best of
    ``repeats``: forward, loss, backward and a momentum-SGD update per batch, no validation."""
    from course_lib.optim import Momentum
    opt = optimizer or Momentum(lr=0.01)
    best = float("inf")
    model.train()
    for _ in range(repeats):
        start = time.process_time()
        for i in range(0, len(x), batch_size):
            _, dlogits, _ = model.loss(x[i:i + batch_size], y[i:i + batch_size])
            model.backward(dlogits)
            opt.update(model.params, model.grads)
        best = min(best, time.process_time() - start)
    return best


def batch_mean_noise(feature_maps, batch_sizes=(2, 8, 32), *, n_batches=200, seed=0):
    """How noisy is a batch's per-channel mean, and how many values is it really worth?

    feature_maps: (N, C, H, W), e.g. the first conv layer's output on N images.  For each batch
    size m, ``n_batches`` batches of m images are drawn; BatchNorm2d's statistic for channel c
    is the mean over the m*H*W values of the batch.  Returns a dict of (len(batch_sizes),)
    arrays, averaged over channels:

    ``rel_sd``      SD of the batch mean across batches / SD of a single value (population)
    ``effective``   ``1 / rel_sd**2``: the number of INDEPENDENT values that would be as
                    precise; m*H*W if the pixels were independent, m if every pixel of an
                    image carried the same information
    ``values``      m*H*W, the number of values each statistic averages
    """
    x = np.asarray(to_numpy(feature_maps), dtype=np.float64)
    n, c, h, w = x.shape
    per_image = x.mean(axis=(2, 3))                   # (N, C): each image's channel means
    pop_sd = x.transpose(1, 0, 2, 3).reshape(c, -1).std(axis=1) + 1e-12
    rng = np.random.default_rng(seed)
    rel, eff = [], []
    for m in batch_sizes:
        idx = rng.integers(0, n, size=(n_batches, int(m)))
        means = per_image[idx].mean(axis=1)           # (n_batches, C): batch means per channel
        r = means.std(axis=0, ddof=1) / pop_sd
        rel.append(float(r.mean()))
        eff.append(1.0 / rel[-1] ** 2)
    return {"batch_sizes": np.array(batch_sizes), "rel_sd": np.array(rel),
            "effective": np.array(eff), "values": np.array([int(m) * h * w for m in batch_sizes])}
