"""Training loop, evaluation, and diagnostic hooks.

>>> history = fit(model, (x_train, y_train), val=(x_val, y_val),
...               optimizer=Momentum(lr=0.1), num_epochs=5, batch_size=128, seed=0)
>>> history.val_acc[-1]

``fit`` stops when the loss becomes NaN or inf and marks the history as
diverged (``history.diverged``, ``history.message``) instead of raising: a
diverging run is a result worth plotting.  A batch that already contains NaN or
inf raises, naming the step and sample, since that is a data bug.

Hooks see the model after every step and/or epoch; each stores what it measures
in ``history.extras[hook.name]``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from course_lib.backend import get_array_module, to_numpy
from course_lib.functional import softmax_cross_entropy
from course_lib.optim import make_optimizer


@dataclass
class History:
    """Per-epoch and per-step records of one training run."""

    train_loss: list = field(default_factory=list)   # mean over the epoch's batches
    train_acc: list = field(default_factory=list)    # on the epoch's batches, training mode
    val_loss: list = field(default_factory=list)     # eval mode, after each epoch
    val_acc: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)    # every step
    diverged: bool = False
    diverged_at_step: int | None = None
    message: str = ""
    extras: dict = field(default_factory=dict)       # what the hooks measured

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def summary(self) -> str:
        if self.diverged:
            return self.message
        parts = [f"{self.epochs} epochs", f"train loss {self.train_loss[-1]:.4f}",
                 f"train acc {self.train_acc[-1]:.4f}"] if self.train_loss else ["no epoch finished"]
        if self.val_acc:
            parts.append(f"val acc {self.val_acc[-1]:.4f}")
        return ", ".join(parts)


class Hook:
    """Base class for diagnostics: override ``on_step`` and/or ``on_epoch``."""

    name = "hook"

    def on_step(self, step, model, history):
        pass

    def on_epoch(self, epoch, model, history):
        pass

    def _record(self, history, value):
        history.extras.setdefault(self.name, []).append(value)


def _predict_batches(model, x, batch_size):
    xp = get_array_module(x)
    return xp.concatenate([model.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(model, x, y, batch_size=1000):
    """Mean loss and accuracy in eval mode (the model's mode is restored). Returns floats."""
    was_training = model.training
    model.eval()
    keep, model.keep_activations = model.keep_activations, False
    try:
        logits = _predict_batches(model, x, batch_size)
        loss, _ = softmax_cross_entropy(logits, y)
        return float(loss), accuracy(logits, y)
    finally:
        model.keep_activations = keep
        if was_training:
            model.train()


def accuracy(logits, y) -> float:
    """Fraction of rows whose argmax matches the label (ints or one-hot)."""
    pred = logits.argmax(axis=1)
    target = y.argmax(axis=1) if y.ndim == 2 else y
    return float((pred == target).mean())


def iterate_minibatches(n, batch_size, rng, shuffle=True, drop_last=False):
    """Index arrays (host numpy) for one epoch of mini-batches."""
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]


def _take(x, idx):
    """Rows ``idx`` (host indices) of x, on x's backend."""
    xp = get_array_module(x)
    return x[xp.asarray(idx)] if xp is not np else x[idx]


def _first_nonfinite(x):
    """Index of the first sample with NaN/inf, or None."""
    xp = get_array_module(x)
    bad = ~xp.isfinite(x).reshape(len(x), -1).all(axis=1)
    if not bool(bad.any()):
        return None
    return int(to_numpy(bad).argmax())


def fit(model, train, *, optimizer="momentum", num_epochs=10, batch_size=128, val=None, seed=0,
        hooks=(), progress=True, drop_last=False, max_steps=None, lr=None, weight_decay=None,
        eval_batch_size=1000):
    """Train ``model`` with mini-batch gradient descent; returns a :class:`History`.

    train:     (x, y) with x (N, D) float and y (N,) int labels (or (N, C) one-hot)
    optimizer: an :class:`course_lib.optim.Optimizer`, or a name ("sgd", "momentum", "adam", ...)
               built with ``lr`` (default 0.1) and ``weight_decay``
    val:       optional (x, y) evaluated in eval mode after every epoch
    seed:      the shuffling order (and nothing else: the model carries its own seed)
    hooks:     :class:`Hook` objects; results go to ``history.extras``
    progress:  a tqdm bar over epochs (also silenced by the env var TQDM_DISABLE=1)
    max_steps: stop after this many steps in total (for quick explorers)
    """
    x, y = train
    if len(x) != len(y):
        raise ValueError(f"x and y disagree on the number of samples: {len(x)} vs {len(y)}")
    if batch_size < 1 or (batch_size == 1 and any(getattr(l, "buffers", None) for _, l in model.layers)):
        raise ValueError(f"batch_size must be >= 1 (and >= 2 for batch normalization), got {batch_size}")
    if isinstance(optimizer, str):
        kw = {"lr": 0.1 if lr is None else lr}
        if weight_decay is not None:
            kw["weight_decay"] = weight_decay
        optimizer = make_optimizer(optimizer, **kw)
    bad_sample = _first_nonfinite(x)
    rng = np.random.default_rng(seed)
    history = History()
    bar = _progress(num_epochs, progress)
    step = 0
    model.train()
    # a diverging run overflows on purpose in some lessons: report it once, in the history
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            for epoch in range(num_epochs):
                losses, correct, seen = [], 0.0, 0
                for idx in iterate_minibatches(len(x), batch_size, rng, drop_last=drop_last):
                    if bad_sample is not None and bad_sample in idx:
                        raise ValueError(f"the batch at step {step} (epoch {epoch}) contains NaN/inf: "
                                         f"training sample {bad_sample} is not finite. Clean the data first.")
                    xb, yb = _take(x, idx), _take(y, idx)
                    logits = model.forward(xb)
                    loss, dlogits = softmax_cross_entropy(logits, yb)
                    loss = float(loss)
                    history.step_loss.append(loss)
                    if not math.isfinite(loss):
                        history.diverged, history.diverged_at_step = True, step
                        history.message = (f"diverged: the loss became {loss} at step {step} (epoch {epoch}); "
                                           "try a smaller learning rate or a normalization layer")
                        return history
                    model.backward(dlogits)
                    optimizer.update(model.params, model.grads)
                    losses.append(loss)
                    correct += accuracy(logits, yb) * len(idx)
                    seen += len(idx)
                    for hook in hooks:
                        hook.on_step(step, model, history)
                    step += 1
                    if max_steps is not None and step >= max_steps:
                        break
                history.train_loss.append(float(np.mean(losses)) if losses else float("nan"))
                history.train_acc.append(correct / max(seen, 1))
                if val is not None:
                    vl, va = evaluate(model, *val, batch_size=eval_batch_size)
                    history.val_loss.append(vl)
                    history.val_acc.append(va)
                for hook in hooks:
                    hook.on_epoch(epoch, model, history)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(history.summary())
                if max_steps is not None and step >= max_steps:
                    break
        finally:
            if bar is not None:
                bar.close()
            model.train()
    return history


def _progress(total, progress):
    if not progress or os.environ.get("TQDM_DISABLE"):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="epoch", leave=False)


# ----------------------------------------------------------------------------- hooks
class ActivationStats(Hook):
    """Mean, std and the 15/50/85th percentiles of every layer's output, every ``every`` steps.

    ``history.extras["activation_stats"]`` is a list of ``{"step", "layer": {stat: value}}`` dicts.
    ``layers`` restricts which layers are recorded (names from ``model.layer_names``).
    """

    name = "activation_stats"

    def __init__(self, every=100, layers=None, percentiles=(15, 50, 85), units=None):
        self.every, self.layers, self.percentiles, self.units = every, layers, percentiles, units

    def on_step(self, step, model, history):
        if step % self.every:
            return
        row = {"step": step}
        for name, a in model.activations.items():
            if self.layers is not None and name not in self.layers:
                continue
            a = to_numpy(a if self.units is None else a[:, self.units])
            row[name] = {"mean": float(a.mean()), "std": float(a.std()),
                         **{f"p{q}": float(v) for q, v in zip(self.percentiles,
                                                               np.percentile(a, self.percentiles))}}
        self._record(history, row)


class DeadUnits(Hook):
    """Units of each activation layer that output 0 for every probe sample, after each epoch.

    A ReLU unit that never fires on the data gets no gradient and stays dead.
    The probe runs in eval mode.  Records ``{"epoch", layer: count}``.
    """

    name = "dead_units"

    def __init__(self, x_probe, threshold=0.0):
        self.x_probe, self.threshold = x_probe, threshold

    def on_epoch(self, epoch, model, history):
        self._record(history, {"epoch": epoch, **dead_unit_counts(model, self.x_probe, self.threshold)})


def dead_unit_counts(model, x, threshold=0.0):
    """``{activation layer name: number of units with output <= threshold on all of x}`` (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        model.forward(x)
    finally:
        if was_training:
            model.train()
    counts = {}
    for name, layer in model.layers:
        if type(layer).__name__ in ("ReLU", "LeakyReLU"):
            a = model.activations[name]
            counts[name] = int((a.max(axis=0) <= threshold).sum())
    return counts


class UpdateRatios(Hook):
    """log10 of (std of the update) / (std of the parameter) and of grad/data, per weight matrix.

    The update is measured as the change of the parameter over the step, so it
    includes momentum and weight decay.  A healthy value is around -3.
    Records ``{"step", key: {"update": .., "grad": ..}}`` every ``every`` steps.
    """

    name = "update_ratios"

    def __init__(self, every=10, only_weights=True):
        self.every, self.only_weights = every, only_weights
        self._before = None

    def _keys(self, model):
        return [k for k in model.params if not self.only_weights or k.endswith(".W")]

    def on_step(self, step, model, history):
        params, grads = model.params, model.grads
        if self._before is not None:
            row = {"step": step - 1}
            for k in self._keys(model):
                p = params[k]
                pstd = float(p.std()) + 1e-12
                row[k] = {"update": math.log10(float((p - self._before[k]).std()) / pstd + 1e-30),
                          "grad": math.log10(float(self._grad[k].std()) / pstd + 1e-30)}
            self._record(history, row)
            self._before = None
        if step % self.every == 0:
            # remember this step's values; the next on_step measures the update it made
            self._before = {k: params[k].copy() for k in self._keys(model)}
            self._grad = {k: grads[k].copy() for k in self._keys(model)}


class GradSnapshots(Hook):
    """Copies (host numpy) of one layer's weight gradient every ``every`` steps — e.g. the first
    layer's dW, whose columns are 28x28 images for MNIST.  Records ``{"step", "dW"}``."""

    name = "grad_snapshots"

    def __init__(self, layer="linear0", key="W", every=50, units=None):
        self.layer, self.key, self.every, self.units = layer, key, every, units

    def on_step(self, step, model, history):
        if step % self.every == 0:
            g = model.layer(self.layer).grads[self.key]
            if self.units is not None:
                g = g[:, self.units]
            self._record(history, {"step": step, "dW": to_numpy(g).copy()})


def train_mlp(sizes, data, *, norm=None, activation="relu", init="he", optimizer="momentum", lr=0.1,
              num_epochs=5, batch_size=128, weight_decay=0.0, dropout=0.0, seed=0, hooks=(),
              progress=False, **fit_kwargs):
    """Build an :class:`course_lib.model.MLP` and :func:`fit` it on ``data`` (a
    :class:`course_lib.data.Splits` or ``((x_train, y_train), (x_val, y_val))``).
    Returns ``(model, history)`` — the few-lines recipe the notebooks use."""
    from course_lib.model import MLP
    if hasattr(data, "x_train"):
        train, val = (data.x_train, data.y_train), (data.x_val, data.y_val)
    else:
        train, val = data
    model = MLP(sizes, activation=activation, norm=norm, init=init, dropout=dropout, seed=seed)
    opt = make_optimizer(optimizer, lr=lr, weight_decay=weight_decay)
    history = fit(model, train, val=val, optimizer=opt, num_epochs=num_epochs, batch_size=batch_size,
                  seed=seed, hooks=hooks, progress=progress, **fit_kwargs)
    return model, history


__all__ = ["History", "Hook", "fit", "evaluate", "accuracy", "iterate_minibatches", "ActivationStats",
           "DeadUnits", "dead_unit_counts", "UpdateRatios", "GradSnapshots", "train_mlp"]
