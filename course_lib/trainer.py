"""Training loop, evaluation, and diagnostic hooks.

>>> history = fit(model, (x_train, y_train), val=(x_val, y_val),
...               optimizer=Momentum(lr=0.1), num_epochs=5, batch_size=128, seed=0)
>>> history.val_acc[-1]

Before the first step ``fit`` checks everything it was given (hyperparameters,
train AND val data, labels): a data problem raises at once, naming every bad
sample (the count and the first few indices), instead of after an epoch.

A diverging run is a result worth plotting, so it is reported in the history
(``history.diverged``, ``history.diverged_at_step``, ``history.diverge_kind``,
``history.message``) instead of raised.  The rule: a run has diverged when

* the loss of a step is NaN or inf, or
* the loss of a step exceeds ``diverge_factor`` (1e4) times ``max(first step's loss, 1)``, or
* a parameter is NaN or inf at the end of an epoch, or
* the validation loss is NaN or inf.

``diverge_kind`` says whose problem it is: ``"optimisation"`` (learning rate, init
scale: the message suggests a smaller lr), ``"data"`` (inputs so large that a layer
overflows, or labels that make the loss non-finite), ``"numerics"`` (a normalization
layer divided by ~0: a feature with zero variance and a tiny ``eps``) or
``"validation"`` (the eval-mode model overflows on the validation data).

Nothing is lost: Ctrl-C during ``fit`` returns the History so far with
``history.interrupted = True`` (the model keeps its last parameters and is usable);
any other exception carries the partial History as ``exc.history``.

Hooks see the model after every step and/or epoch; each stores what it measures
in ``history.extras[hook.name]``.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from course_lib import backend
from course_lib._validate import check_int, check_real
from course_lib.backend import get_array_module, to_numpy
from course_lib.functional import softmax_cross_entropy
from course_lib.layers import LeakyReLU, ReLU, eval_mode, has_batch_stats, is_norm
from course_lib.optim import make_optimizer

#: ``fit``'s default for "the loss exploded": this many times max(first loss, 1).
DIVERGE_FACTOR = 1e4
#: |x| above this in a batch whose first layer overflowed: a data problem, not an optimisation one.
_HUGE_INPUT = 1e6


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
    diverge_kind: str = ""                           # "optimisation" | "data" | "numerics" | "validation"
    message: str = ""
    interrupted: bool = False                        # stopped by Ctrl-C: the records so far
    notes: list = field(default_factory=list)        # things fit did on its own and says once
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
        if self.interrupted:
            parts.append(f"interrupted after {len(self.step_loss)} steps")
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


# ------------------------------------------------------------------------ data checks
def _model_device_dtype(model):
    for p in model.params.values():
        return backend.device_of(p), p.dtype
    return backend.device, np.dtype(backend.default_dtype)


def _num_classes(model):
    sizes = getattr(model, "sizes", None)
    if sizes:
        return int(sizes[-1])
    n = getattr(model, "num_classes", None)
    return int(n) if n is not None else None


def _first_few(idx, k=5):
    idx = [int(i) for i in idx]
    more = f" and {len(idx) - k} more" if len(idx) > k else ""
    return ", ".join(map(str, idx[:k])) + more


def _as_data(model, x, y, what):
    """(x, y) as arrays on the model's device: Python lists are converted; empty or mismatched
    data raise, naming ``what`` ("training data", "validation data")."""
    device, dtype = _model_device_dtype(model)
    if isinstance(x, (list, tuple)):
        x = backend.move(np.asarray(x, dtype=dtype), device)
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
        y = backend.move(y.astype(np.int64) if y.dtype.kind in "iub" else y, device)
    for name, a in (("x", x), ("y", y)):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"{what}: {name} must be an array, got {type(a).__name__}; "
                            f"convert it with backend.asarray(...)")
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"{what} is empty (x has shape {tuple(x.shape)}); pass at least one sample")
    if len(x) != len(y):
        raise ValueError(f"{what}: x and y disagree on the number of samples: {len(x)} vs {len(y)}; "
                         "pass one label per sample")
    return x, y


def _check_data(model, x, y, what):
    """Raise before the first step if x has NaN/inf or y has bad labels (every bad index counted)."""
    if x.dtype.kind != "f":
        raise TypeError(f"{what}: x must be a float array, got dtype {x.dtype}; convert with "
                        "x.astype(backend.default_dtype)")
    xp = get_array_module(x)
    bad = ~xp.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bool(bad.any()):
        idx = np.flatnonzero(to_numpy(bad))
        raise ValueError(f"{what}: {len(idx)} sample{'s' if len(idx) > 1 else ''} of x "
                         f"contain{'' if len(idx) > 1 else 's'} NaN or inf "
                         f"(sample{'s' if len(idx) > 1 else ''} {_first_few(idx)}). This is a data problem, "
                         "not a learning-rate one: clean or drop these samples first, e.g. "
                         "keep = np.isfinite(x).all(axis=1); x, y = x[keep], y[keep]")
    c = _num_classes(model)
    if y.ndim == 2:
        if c is not None and y.shape[1] != c:
            raise ValueError(f"{what}: one-hot labels have {y.shape[1]} columns but the model has {c} "
                             "outputs; pass (N, C) targets with C = the number of classes")
        bad = ~xp.isfinite(y).all(axis=1)
        if bool(bad.any()):
            idx = np.flatnonzero(to_numpy(bad))
            raise ValueError(f"{what}: {len(idx)} one-hot label rows contain NaN or inf (rows "
                             f"{_first_few(idx)}); fix the labels (each row: finite, >= 0, summing to 1)")
        return
    if y.ndim != 1:
        raise ValueError(f"{what}: labels must have shape (N,) or (N, C), got {tuple(y.shape)}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{what}: integer class labels expected, got dtype {y.dtype}; convert with "
                        "y.astype(int) (after checking they are whole numbers)")
    bad = y < 0
    if c is not None:
        bad = bad | (y >= c)
    if bool(bad.any()):
        idx = np.flatnonzero(to_numpy(bad))
        vals = to_numpy(y)[idx[:5]].tolist()
        top = f"0..{c - 1}" if c is not None else ">= 0"
        raise ValueError(f"{what}: {len(idx)} label{'s are' if len(idx) > 1 else ' is'} outside {top} "
                         f"(samples {_first_few(idx)}: {vals}); fix the labels or build the model "
                         "with as many outputs as classes")


def _predict_batches(model, x, batch_size):
    xp = get_array_module(x)
    return xp.concatenate([model.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(model, x, y, batch_size=1000):
    """Mean loss and accuracy in eval mode (every layer's mode is restored). Returns floats.

    Keeps no layer caches (``keep_activations`` off), so a large x costs no more memory
    than one batch's activations.  Data and labels are checked first.
    """
    batch_size = check_int("batch_size", batch_size, 1, example=1000)
    x, y = _as_data(model, x, y, "evaluation data")
    _check_data(model, x, y, "evaluation data")
    return _evaluate(model, x, y, batch_size)


def _evaluate(model, x, y, batch_size):
    with eval_mode(model, keep_activations=False):
        logits = _predict_batches(model, x, batch_size)
        loss, _ = softmax_cross_entropy(logits, y)
        return float(loss), accuracy(logits, y)


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


def _finite(a) -> bool:
    return bool(get_array_module(a).isfinite(a).all())


def _nonfinite_params(model):
    return [k for k, p in model.params.items() if not _finite(p)]


def _diagnose(model, xb, loss, step, epoch, lr_text):
    """(kind, message) for a step whose loss is ``loss`` (non-finite or exploded)."""
    where = f"at step {step} (epoch {epoch})"
    bad_params = _nonfinite_params(model)
    if bad_params:
        return "optimisation", (f"diverged: the loss became {loss:.4g} {where}: the last update made "
                                f"{', '.join(bad_params[:3])} non-finite; try a smaller learning rate"
                                f"{lr_text} or a normalization layer")
    acts = getattr(model, "activations", {}) if getattr(model, "keep_activations", False) else {}
    layers = getattr(model, "layers", [])
    big = float(to_numpy(abs(xb).max()))
    huge_data = (f"because the inputs are huge (max |x| = {big:.3g}); this is a data problem, not a "
                 "learning-rate one: standardise the inputs (e.g. x / 255, or subtract the mean and "
                 "divide by the std)")
    prev, prev_name = xb, "the input"
    for name, layer in layers:
        a = acts.get(name)
        if a is None:
            break
        if not _finite(a):
            if is_norm(layer):
                return "numerics", (f"diverged: {name} produced NaN/inf {where} from finite input ({prev_name}): "
                                    f"a feature with (near) zero variance in the batch divided by "
                                    f"sqrt(var + eps) with eps={getattr(layer, 'eps', '?')}; use a larger eps "
                                    "(the default 1e-5) or drop constant features")
            if prev is xb and big > _HUGE_INPUT:
                return "data", f"diverged: {name} overflowed {where} {huge_data}"
            return "optimisation", (f"diverged: the loss became {loss:.4g} {where}: the output of {name} "
                                    f"overflowed; try a smaller learning rate{lr_text}, a smaller init "
                                    "scale, or a normalization layer")
        prev, prev_name = a, name
    if big > _HUGE_INPUT:
        return "data", f"diverged: the loss became {loss:.4g} {where} {huge_data}"
    if acts and len(acts) == len(layers) and not math.isfinite(loss):
        logits = acts[layers[-1][0]]
        top = float(to_numpy(abs(logits).max()))
        if top > _HUGE_INPUT:
            return "optimisation", (f"diverged: the loss became {loss:.4g} {where}: the logits are huge "
                                    f"(max |logit| = {top:.3g}); try a smaller learning rate{lr_text}, a "
                                    "smaller init scale, or a normalization layer")
        return "data", (f"diverged: the loss became {loss:.4g} {where} although every layer's output is "
                        "finite; check the labels (one-hot rows must be finite, >= 0 and sum to 1)")
    if math.isfinite(loss):
        return "optimisation", (f"diverged: the loss exploded to {loss:.4g} {where}, far above its start; "
                                f"try a smaller learning rate{lr_text} or a normalization layer")
    return "optimisation", (f"diverged: the loss became {loss:.4g} {where}; try a smaller learning "
                            f"rate{lr_text} or a normalization layer")


def _mark(history, kind, message, step):
    history.diverged, history.diverged_at_step = True, step
    history.diverge_kind, history.message = kind, message


def fit(model, train, *, optimizer="momentum", num_epochs=10, batch_size=128, val=None, seed=0,
        hooks=(), progress=True, drop_last=False, max_steps=None, lr=None, weight_decay=None,
        eval_batch_size=1000, diverge_factor=DIVERGE_FACTOR):
    """Train ``model`` with mini-batch gradient descent; returns a :class:`History`.

    train:     (x, y) with x (N, D) float and y (N,) int labels (or (N, C) one-hot);
               Python lists are converted to arrays on the model's device
    optimizer: an :class:`course_lib.optim.Optimizer`, or a name ("sgd", "momentum", "adam", ...)
               built with ``lr`` (default 0.1) and ``weight_decay``
    val:       optional (x, y) evaluated in eval mode after every epoch
    seed:      the shuffling order (and nothing else: the model carries its own seed)
    hooks:     :class:`Hook` objects; results go to ``history.extras``
    progress:  a tqdm bar over epochs (also silenced by the env var TQDM_DISABLE=1)
    max_steps: stop after this many steps in total (for quick explorers)
    drop_last: drop the last, smaller batch of every epoch.  With batch statistics (BN) a
               last batch of ONE sample cannot be normalised: it is then dropped
               automatically, and ``history.notes`` and a warning say so once.
    diverge_factor: the loss "explodes" above this times max(first loss, 1) (None: never)

    Everything is checked before the first step (see the module docstring for the
    divergence rule, Ctrl-C and exceptions).
    """
    if not isinstance(train, (tuple, list)) or len(train) != 2:
        raise TypeError(f"train must be a pair (x, y), got {type(train).__name__}")
    num_epochs = check_int("num_epochs", num_epochs, 0)
    batch_size = check_int("batch_size", batch_size, 1, example=128)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size, 1, example=1000)
    if max_steps is not None:
        max_steps = check_int("max_steps", max_steps, 1)
    if diverge_factor is not None:
        diverge_factor = check_real("diverge_factor", diverge_factor, 1, None, lo_incl=False)
    x, y = _as_data(model, *train, "training data")
    batch_stats = has_batch_stats(model) or any(has_batch_stats(l) for _, l in getattr(model, "layers", []))
    if batch_size == 1 and batch_stats:
        raise ValueError("batch_size must be >= 2 for a model with batch normalization (the variance "
                         "of one sample is 0), got 1; use batch_size >= 2 or a LayerNorm/GroupNorm model")
    if isinstance(optimizer, str):
        kw = {"lr": 0.1 if lr is None else lr}
        if weight_decay is not None:
            kw["weight_decay"] = weight_decay
        optimizer = make_optimizer(optimizer, **kw)
    elif lr is not None or weight_decay is not None:
        raise ValueError("lr and weight_decay are used only with an optimizer name; set them on the "
                         "optimizer object instead, e.g. Momentum(lr=0.1, weight_decay=1e-4)")
    _check_data(model, x, y, "training data")
    if val is not None:
        if not isinstance(val, (tuple, list)) or len(val) != 2:
            raise TypeError(f"val must be a pair (x_val, y_val), got {type(val).__name__}")
        val = _as_data(model, *val, "validation data")
        _check_data(model, *val, "validation data")
    history = History()
    n = len(x)
    if batch_stats and not drop_last and n > 1 and n % batch_size == 1:
        drop_last = True
        note = (f"the last batch of every epoch would hold 1 sample ({n} = {n // batch_size} x {batch_size} + 1), "
                "which batch normalization cannot normalise: it is dropped (pass drop_last=True to say "
                "so yourself, or pick another batch_size)")
        history.notes.append(note)
        warnings.warn(note, UserWarning, stacklevel=2)
    if n < 2 and batch_stats:
        raise ValueError("a model with batch normalization needs at least 2 training samples, got 1")
    lr_text = f" (lr={getattr(optimizer, 'lr', '?')})"
    rng = np.random.default_rng(seed)
    bar = _progress(num_epochs, progress)
    step = 0
    loss0 = None
    model.train()
    # a diverging run overflows on purpose in some lessons: report it once, in the history
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            for epoch in range(num_epochs):
                losses, correct, seen = [], 0.0, 0
                for idx in iterate_minibatches(n, batch_size, rng, drop_last=drop_last):
                    xb, yb = _take(x, idx), _take(y, idx)
                    logits = model.forward(xb)
                    loss, dlogits = softmax_cross_entropy(logits, yb)
                    loss = float(loss)
                    history.step_loss.append(loss)
                    if loss0 is None:
                        loss0 = loss
                    exploded = (diverge_factor is not None and math.isfinite(loss) and math.isfinite(loss0)
                                and loss > diverge_factor * max(loss0, 1.0))
                    if not math.isfinite(loss) or exploded:
                        _mark(history, *_diagnose(model, xb, loss, step, epoch, lr_text), step)
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
                bad_params = _nonfinite_params(model)
                if bad_params:
                    _mark(history, "optimisation",
                          f"diverged: after epoch {epoch} the parameters {', '.join(bad_params[:3])} are not "
                          f"finite; try a smaller learning rate{lr_text} or a normalization layer", step - 1)
                    return history
                if val is not None:
                    vl, va = _evaluate(model, *val, eval_batch_size)
                    history.val_loss.append(vl)
                    history.val_acc.append(va)
                    if not math.isfinite(vl):
                        _mark(history, "validation",
                              f"diverged: the validation loss is {vl} after epoch {epoch} although training "
                              "is finite: the eval-mode model overflows on the validation data (a BN "
                              "running variance near 0 for a feature that varies in validation? use a "
                              "larger eps, or check the validation data's scale)", step - 1)
                        return history
                for hook in hooks:
                    hook.on_epoch(epoch, model, history)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(history.summary())
                if max_steps is not None and step >= max_steps:
                    break
        except KeyboardInterrupt:
            history.interrupted = True
            history.message = (f"interrupted at step {step}: the history holds the {len(history.step_loss)} "
                               "steps so far and the model keeps its current parameters")
            _drop_caches(model)
            return history
        except Exception as exc:
            try:
                exc.history = history
            except (AttributeError, TypeError):  # an exception type that takes no attributes
                pass
            if hasattr(exc, "add_note"):
                exc.add_note(f"fit stopped at step {step}; the History so far is in exc.history")
            raise
        finally:
            if bar is not None:
                bar.close()
            model.train()
    return history


def _drop_caches(model):
    if hasattr(model, "_drop_caches"):
        model._drop_caches()


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
    with eval_mode(model, keep_activations=True):
        model.forward(x)
    counts = {}
    for name, layer in model.layers:
        if isinstance(layer, (ReLU, LeakyReLU)):
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
