r"""Injected covariate shift: the "noisy BatchNorm" experiment of Santurkar et al. (2018).

The original explanation of batch normalization is that it reduces *internal
covariate shift*: the distribution of each layer's input keeps changing as the
layers below it learn, and normalising it keeps it still.  Santurkar, Tsipras,
Ilyas and Madry (arXiv:1805.11604) tested the claim by putting the shift back:
right after each BN layer they inject random noise whose distribution changes at
every step.  If stable input distributions were what made BN work, the noisy
network should train like a network without BN.  It trains like a BN network.

:class:`CovariateShiftNoise` is that noise for (N, D) activations.  On every
training forward pass it draws, for each unit j, a new scale ``a_j`` and shift
``b_j``::

    a_j = exp(u_j),  u_j ~ U(-log(scale), log(scale))     (a_j between 1/scale and scale)
    b_j ~ U(-shift, shift)
    out_ij = a_j * x_ij + b_j

so the layer above sees a differently scaled and shifted input at every step: a
non-stationary distribution.  In eval mode the layer is the identity (a = 1,
b = 0 are the typical values).  :class:`DistributionShift` measures how far a
layer's output distribution moves from one step to the next.
"""
from __future__ import annotations

import math
import re

import numpy as np

from course_lib import backend
from course_lib.backend import get_array_module, to_numpy
from course_lib.layers import Layer, is_norm
from course_lib.trainer import Hook


class CovariateShiftNoise(Layer):
    """Random per-unit scale and shift, redrawn on every training forward pass.

    num_features: D; scale >= 1: the scales lie in [1/scale, scale] (log-uniform);
    shift >= 0: the shifts lie in [-shift, shift] (uniform); seed: the noise stream.
    Training: ``out = x * a + b`` with a, b of shape (D,); backward ``dx = dout * a``.
    Eval: ``out = x``.  No learnable parameters.
    """

    def __init__(self, num_features, *, scale=2.0, shift=1.0, seed=None):
        super().__init__()
        if scale < 1 or shift < 0:
            raise ValueError(f"need scale >= 1 and shift >= 0, got scale={scale}, shift={shift}")
        self.num_features, self.scale, self.shift = int(num_features), float(scale), float(shift)
        self.rng = backend.default_rng(seed)
        self.last_scale = self.last_shift = None

    def forward(self, x):
        self._check_input(x, self.num_features)
        if not self.training:
            self._cache = None
            return x
        xp = get_array_module(x)
        log_s = math.log(self.scale)
        # drawn onto x's device: a model moved with .to() need not be on the active backend
        a = xp.exp(self.rng.uniform(-log_s, log_s, self.num_features, dtype=x.dtype, like=x))
        b = self.rng.uniform(-self.shift, self.shift, self.num_features, dtype=x.dtype, like=x)
        self.last_scale, self.last_shift = a, b
        self._cache = a
        return x * a + b

    def backward(self, dout):
        return dout if self._cache is None else dout * self._cache

    def __repr__(self):
        return f"CovariateShiftNoise({self.num_features}, scale={self.scale}, shift={self.shift})"


def add_noise_after_norm(model, *, scale=2.0, shift=1.0, seed=0):
    """Insert a :class:`CovariateShiftNoise` right after every normalization layer of
    ``model`` (an :class:`course_lib.model.MLP` or anything with a ``layers`` list of
    ``(name, layer)`` pairs), in place; the new layers are named ``noise<i>`` after
    ``batchnorm<i>`` etc.  Each gets its own seed derived from ``seed``.  Returns the model.
    """
    rng = np.random.default_rng(seed)
    new_layers, added = [], 0
    for name, layer in model.layers:
        new_layers.append((name, layer))
        if is_norm(layer):
            index = re.search(r"(\d+)$", name)
            noise_name = f"noise{index.group(1) if index else added}"
            new_layers.append((noise_name, CovariateShiftNoise(
                layer.num_features, scale=scale, shift=shift, seed=int(rng.integers(2**31)))))
            added += 1
    if not added:
        raise ValueError("the model has no normalization layer to put noise after")
    model.layers = new_layers
    return model


class DistributionShift(Hook):
    """Per-unit batch mean and standard deviation of one layer's output at every ``every``-th
    training step — the input distribution that the layer above sees.

    Records ``{"step", "mean": (D,), "std": (D,)}`` (host numpy) in
    ``history.extras["distribution_shift"]``; :func:`shift_per_step` turns the records
    into one number per step.
    """

    name = "distribution_shift"

    def __init__(self, layer, every=1):
        self.layer, self.every = layer, every

    def on_step(self, step, model, history):
        if step % self.every:
            return
        if self.layer not in model.activations:
            raise KeyError(f"no activations of {self.layer!r}; layers are {list(model.activations)}")
        a = to_numpy(model.activations[self.layer]).astype(np.float64)
        self._record(history, {"step": step, "mean": a.mean(axis=0), "std": a.std(axis=0)})


def shift_per_step(records):
    r"""How far the distribution moved between consecutive records, averaged over units:
    ``mean_j |mean_j(t) - mean_j(t-1)| + |std_j(t) - std_j(t-1)|``.

    records: the list a :class:`DistributionShift` hook stored.  Returns a numpy array
    of length ``len(records) - 1``.  Part of the change comes from drawing a new batch;
    that part is the same for any two networks compared on the same batches.
    """
    means = np.stack([r["mean"] for r in records])
    stds = np.stack([r["std"] for r in records])
    return (np.abs(np.diff(means, axis=0)) + np.abs(np.diff(stds, axis=0))).mean(axis=1)


__all__ = ["CovariateShiftNoise", "add_noise_after_norm", "DistributionShift", "shift_per_step"]
