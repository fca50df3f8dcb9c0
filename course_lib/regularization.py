r"""Measurements for the regularization chapters (weight decay, dropout).

* :func:`weight_norms` and the hook :class:`WeightNorms`: the Frobenius norm
  ``||W||`` of every weight matrix and the *effective learning rate*
  ``lr / ||W||^2`` of a weight matrix that feeds a batch-norm layer.  BN makes
  the loss invariant to the scale of such a W (``L(cW) = L(W)`` for c > 0), so its
  gradient scales like ``1 / ||W||`` and one SGD step turns the direction
  ``W / ||W||`` by about ``lr * ||grad_hat|| / ||W||^2``, where ``grad_hat`` is
  the gradient at the unit-norm point.  Weight decay shrinks ``||W||`` and so
  raises the effective step (van Laarhoven 2017, arXiv:1706.05350).
* :class:`EvalEvery`: loss and accuracy on a held-out set every few epochs,
  cheaper than evaluating after every epoch.
* :func:`classic_dropout_forward`: the non-inverted dropout of the DLFS book
  (scale by ``1 - p`` at test time), for comparison with
  :func:`course_lib.functional.dropout_forward` (inverted: scale by
  ``1 / (1 - p)`` while training).  Both use ``p`` = DROP probability.
* :func:`reestimate_bn_stats`: recompute the running statistics of every batch
  norm layer with dropout switched off, the fix for the train/test "variance
  shift" of dropout placed before BN (Li et al. 2019, arXiv:1801.05134), and
  :func:`bn_input_variances` to measure that shift.
* :class:`ClassicDropout` and :func:`use_classic_dropout`: the DLFS book's dropout as a
  layer, and :func:`overfit_run` / :func:`overfit_seeds`: the book's overfitting
  experiments (``overfit_weight_decay.py``, ``overfit_dropout.py``: 300 training images,
  6 hidden layers of 100 ReLU units, He init, batches of 100) for one random seed or
  several, the seed choosing the weights, the 300 images, the batches and the masks.
"""
from __future__ import annotations

import numpy as np

from course_lib import layers as _layers
from course_lib import optim as _optim
from course_lib.backend import get_array_module, to_float
from course_lib.model import MLP
from course_lib.trainer import Hook, evaluate, fit


def _is_weight(key: str) -> bool:
    return key == "W" or key.endswith(".W")


# ------------------------------------------------------------------------ weight norms
def weight_norms(model, keys=None) -> dict:
    """``{key: ||W||_F}`` (Python floats) for the weight matrices of ``model.params``
    (keys ending in ``".W"``), or for the given ``keys``."""
    params = model.params
    keys = [k for k in params if _is_weight(k)] if keys is None else list(keys)
    missing = [k for k in keys if k not in params]
    if missing:
        raise KeyError(f"no parameter {missing}; the model has {sorted(params)}")
    return {k: to_float(((params[k] * params[k]).sum()) ** 0.5) for k in keys}


def effective_lr(lr, norm):
    r"""``lr / norm**2``: the step that SGD takes on the *direction* ``W / ||W||`` of a
    scale-invariant weight matrix (one followed by batch norm).  ``norm`` may be a float
    or an array of norms."""
    return lr / (norm * norm)


class WeightNorms(Hook):
    """Records ``||W||`` of the weight matrices every ``every`` steps.  Hooks run after the
    update, so the record of step 0 is the norm after the first step.

    ``history.extras["weight_norms"]`` is a list of ``{"step": s, key: norm, ...}`` dicts.
    ``keys`` restricts the matrices (default: every key ending in ``".W"``).
    """

    name = "weight_norms"

    def __init__(self, every=10, keys=None):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every, self.keys = every, keys

    def on_step(self, step, model, history):
        if step % self.every == 0:
            self._record(history, {"step": step, **weight_norms(model, self.keys)})


def series(history, hook_name, key):
    """``(steps_or_epochs, values)`` lists from a hook's records, e.g.
    ``series(history, "weight_norms", "linear1.W")`` or ``series(history, "test", "acc")``."""
    rows = history.extras.get(hook_name)
    if not rows:
        raise KeyError(f"history has no records of {hook_name!r}; it has {sorted(history.extras)}")
    x_key = "step" if "step" in rows[0] else "epoch"
    return [r[x_key] for r in rows], [r[key] for r in rows]


# ---------------------------------------------------------------------- evaluation hook
class EvalEvery(Hook):
    """Eval-mode loss and accuracy on ``(x, y)`` after every ``every``-th epoch (epochs
    ``every - 1, 2 * every - 1, ...``, counting from 0) and after epoch ``last_epoch`` if given.

    Records ``{"epoch": e + 1, "loss": .., "acc": ..}`` (epochs counted from 1, i.e. the
    number of epochs trained) in ``history.extras[name]``.

    ``per="step"`` counts steps instead (``every`` steps; ``last_epoch`` is then the last step,
    counting from 0) and records ``{"step": s + 1, ...}``; ``first=True`` also measures after the
    first epoch (or step).
    """

    def __init__(self, x, y, every=5, name="test", last_epoch=None, *, per="epoch", first=False):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if per not in ("epoch", "step"):
            raise ValueError(f"per must be 'epoch' or 'step', got {per!r}")
        self.x, self.y, self.every, self.name, self.last_epoch = x, y, every, name, last_epoch
        self.per, self.first = per, first

    def _due(self, i):
        return (i + 1) % self.every == 0 or i == self.last_epoch or (self.first and i == 0)

    def _measure(self, i, model, history):
        loss, acc = evaluate(model, self.x, self.y)
        self._record(history, {self.per: i + 1, "loss": loss, "acc": acc})

    def on_step(self, step, model, history):
        if self.per == "step" and self._due(step):
            self._measure(step, model, history)

    def on_epoch(self, epoch, model, history):
        if self.per == "epoch" and self._due(epoch):
            self._measure(epoch, model, history)


# ------------------------------------------------------------------------------ dropout
def classic_dropout_forward(x, p, *, training, rng):
    r"""Classic ("non-inverted") dropout as in the DLFS book and the original paper;
    ``p`` is the DROP probability.

    Training: ``out = x * keep`` with ``keep_ij = [u_ij >= p]`` (no rescaling);
    test: ``out = x * (1 - p)``, so that the test output equals the *expected* training
    output.  With the same ``rng`` state the training mask is the one
    :func:`course_lib.functional.dropout_forward` draws, and its output is this one
    divided by ``1 - p``.  Returns ``(out, keep)``; ``keep`` is None at test time.
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout p is the drop probability and must be in [0, 1), got {p}")
    if not training:
        return x * x.dtype.type(1.0 - p), None
    if p == 0:
        return x, None
    keep = (rng.random(x.shape, dtype=x.dtype) >= p).astype(x.dtype)
    return x * keep, keep


class ClassicDropout(_layers.Layer):
    """Classic dropout as a layer (the DLFS book's ``Dropout``): training ``out = x * keep``,
    eval ``out = x * (1 - p)``; ``p`` is the DROP probability.  Seeded like
    :class:`course_lib.layers.Dropout`: with the same generator state it draws the same masks."""

    def __init__(self, p=0.5, *, seed=None, rng=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"ClassicDropout p is the drop probability and must be in [0, 1), got {p}")
        from course_lib import backend
        self.p = p
        self.rng = backend.default_rng(seed) if rng is None else rng

    def forward(self, x):
        out, self._cache = classic_dropout_forward(x, self.p, training=self.training, rng=self.rng)
        return out

    def backward(self, dout):
        keep = self._cache
        if keep is None:
            return dout if self.training else dout * dout.dtype.type(1.0 - self.p)
        return dout * keep

    def __repr__(self):
        return f"ClassicDropout(p={self.p})"


def use_classic_dropout(model):
    """Replace every inverted :class:`course_lib.layers.Dropout` of ``model`` by a
    :class:`ClassicDropout` with the same ``p`` and the same random generator (so the masks
    are the ones the inverted layers would have drawn).  Returns the model (changed in place)."""
    for i, (name, layer) in enumerate(model.layers):
        if isinstance(layer, _layers.Dropout):
            model.layers[i] = (name, ClassicDropout(layer.p, rng=layer.rng))
    return model


# ------------------------------------------------------- the DLFS overfitting experiments
DLFS_SIZES = [784] + [100] * 6 + [10]


def overfit_run(splits, *, seed=0, weight_decay=0.0, dropout=0.0, classic=False, optimizer=None,
                num_epochs=201, n_train=300, n_test=2000, batch_size=100, sizes=None,
                init_scale=1.0, curves_every=None, images=None):
    r"""One run of the DLFS book's overfitting setup (chapter 6): ``n_train`` training images
    drawn (without replacement) from ``splits.x_train`` with ``seed``, an MLP ``sizes``
    (default 784-100x6-10, ReLU, He init; the weight matrices behind the first layer, the ones
that dropout feeds, are multiplied by ``init_scale``) seeded with ``seed``, mini-batches
    of ``batch_size`` shuffled with ``seed``, ``num_epochs`` epochs of ``optimizer`` (default: plain
    SGD, lr 0.01, L2 ``weight_decay`` on every weight matrix), dropout ``p = dropout`` after every
    hidden ReLU (``classic=True``: the book's classic dropout, else inverted).  ``images``: None
    (the images are drawn with ``seed``), an int (drawn with that seed, the same for every
    ``seed``) or ``"first"`` (the first ``n_train`` images).

    Accuracies are measured in eval mode on the training images and the first ``n_test`` test
    images.  With ``curves_every`` they are also recorded every so many epochs (hooks named
    "train" and "test", see :func:`series`).  Returns a dict with ``train``, ``test`` (final
    accuracies), ``gap``, ``train_loss``, ``test_loss``, ``norm`` (Frobenius norm of all weight
    matrices together), ``diverged``, ``history`` and ``model``.  A diverged run reports
    ``diverged=True`` and NaN accuracies instead of raising.
    """
    if isinstance(images, str) and images == "first":
        idx = np.arange(n_train)
    else:
        rng = np.random.default_rng(seed if images is None else images)
        idx = np.sort(rng.choice(len(splits.x_train), n_train, replace=False))
    x_tr, y_tr = splits.x_train[idx], splits.y_train[idx]
    x_te, y_te = splits.x_test[:n_test], splits.y_test[:n_test]
    model = MLP(sizes or DLFS_SIZES, dropout=dropout, init="he", seed=seed)
    if init_scale != 1.0:   # the weight matrices that dropout feeds: all but the first
        for key, w in model.params.items():
            if _is_weight(key) and not key.startswith("linear0."):
                w *= w.dtype.type(init_scale)
    if classic:
        use_classic_dropout(model)
    opt = optimizer() if callable(optimizer) else optimizer
    if opt is None:
        opt = _optim.SGD(lr=0.01, weight_decay=weight_decay)
    hooks = []
    if curves_every:
        hooks = [EvalEvery(x, y, every=curves_every, name=name, last_epoch=num_epochs - 1)
                 for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te))]
    history = fit(model, (x_tr, y_tr), optimizer=opt, num_epochs=num_epochs, batch_size=batch_size,
                  seed=seed, hooks=hooks, progress=False)
    out = {"history": history, "model": model, "optimizer": opt, "data": (x_tr, y_tr, x_te, y_te),
           "epochs": num_epochs, "seed": seed}
    return _finish(out, history)


def continue_run(run, num_epochs, *, curves_every=None):
    """Train a run of :func:`overfit_run` for ``num_epochs`` more epochs (same model, optimizer
    and images; the batches are shuffled with ``seed + 1000``) and return a new result dict
    like :func:`overfit_run`'s, whose ``epochs`` counts all epochs.  The model is changed in
    place.  With ``curves_every`` the "train"/"test" records count epochs from the start of
    the run (the continuation's first epoch is ``run["epochs"] + 1``)."""
    x_tr, y_tr, x_te, y_te = run["data"]
    start = run["epochs"]
    hooks = []
    if curves_every:
        hooks = [EvalEvery(x, y, every=curves_every, name=name, last_epoch=num_epochs - 1)
                 for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te))]
    history = fit(run["model"], (x_tr, y_tr), optimizer=run["optimizer"], num_epochs=num_epochs,
                  batch_size=100, seed=run["seed"] + 1000, hooks=hooks, progress=False)
    for name in ("train", "test"):
        for row in history.extras.get(name, []):
            row["epoch"] += start
    out = dict(run, history=history, epochs=start + num_epochs)
    return _finish(out, history)


def _finish(out, history):
    model = out["model"]
    x_tr, y_tr, x_te, y_te = out["data"]
    out["diverged"] = bool(history.diverged)
    if history.diverged:
        nan = float("nan")
        out.update(train=nan, test=nan, gap=nan, train_loss=nan, test_loss=nan, norm=nan)
        return out
    train_loss, train_acc = evaluate(model, x_tr, y_tr)
    test_loss, test_acc = evaluate(model, x_te, y_te)
    norm = sum(v * v for v in weight_norms(model).values()) ** 0.5
    out.update(train=train_acc, test=test_acc, gap=train_acc - test_acc, train_loss=train_loss,
               test_loss=test_loss, norm=norm)
    return out


def overfit_seeds(splits, seeds, **kwargs):
    """:func:`overfit_run` for every seed in ``seeds``.  Returns ``{metric: np.array over seeds}``
    for train, test, gap, train_loss, test_loss, norm (NaN for diverged runs), plus ``diverged``
    (bool array) and ``runs`` (the list of per-seed dicts, with histories and models)."""
    runs = [overfit_run(splits, seed=s, **kwargs) for s in seeds]
    out = {k: np.array([r[k] for r in runs], dtype=float)
           for k in ("train", "test", "gap", "train_loss", "test_loss", "norm")}
    out["diverged"] = np.array([r["diverged"] for r in runs])
    out["runs"] = runs
    return out


def mean_sd(values):
    """``"mean ± SD"`` of the finite values (SD with ddof=1), as a short string."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "diverged"
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.3f} ± {sd:.3f}"


# ------------------------------------------------------------------- BN re-estimation
def _bn_layers(model):
    return [(name, layer) for name, layer in model.layers if _layers.has_batch_stats(layer)]


def reestimate_bn_stats(model, x, batch_size=None):
    r"""Recompute the running mean and variance of every batch-norm layer of ``model`` on
    ``x`` with dropout switched off, i.e. with the statistics the layers see at test time.

    Dropout before BN inflates the variance BN sees while training (the masks add noise,
    by a factor up to ``1 / (1 - p)``); the running variance keeps that inflated value and
    the test-time network is normalised with the wrong scale: the *variance shift* of
    Li et al. (arXiv:1801.05134).  Re-estimating the statistics with the test-time network
    removes it without retraining.

    The layers are re-estimated one at a time, first to last, so each sees the output of
    already corrected layers below it.  Statistics are averaged over batches of
    ``batch_size`` rows (default: all of x in one batch): the mean of the batch means and of
    the unbiased batch variances.  Returns the model, in eval mode.
    """
    bns = _bn_layers(model)
    if not bns:
        raise ValueError("the model has no batch-norm layer to re-estimate")
    n = len(x)
    batch_size = n if batch_size is None else int(batch_size)
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 to estimate a variance, got {batch_size}")
    model.eval()
    names = [name for name, _ in model.layers]
    for bn_name, bn in bns:
        upto = names.index(bn_name)
        sums_mean, sums_var, count = 0.0, 0.0, 0
        for i in range(0, n, batch_size):
            h = x[i:i + batch_size]
            if len(h) < 2:
                continue
            for _, layer in model.layers[:upto]:
                h = layer.forward(h)
            mean = h.mean(axis=0)
            var = ((h - mean) ** 2).sum(axis=0) / (len(h) - 1)
            sums_mean = sums_mean + mean
            sums_var = sums_var + var
            count += 1
        dtype = bn.buffers["running_var"].dtype
        bn.buffers["running_mean"] = (sums_mean / count).astype(dtype)
        bn.buffers["running_var"] = (sums_var / count).astype(dtype)
    return model


def bn_input_variances(model, x, layer, *, dropout):
    """Per-feature variance over the rows of ``x`` of the input of layer ``layer`` (e.g.
    ``"batchnorm1"``), with every layer below it in eval mode except the dropout layers,
    which drop units when ``dropout`` is True.  Comparing ``dropout=True`` with
    ``dropout=False`` isolates what dropout alone does to the statistics a batch-norm layer
    sees.  Nothing is updated (no running statistics change) and the layers' modes are
    restored.  Returns an array (D,).
    """
    names = [name for name, _ in model.layers]
    if layer not in names:
        raise KeyError(f"no layer {layer!r}; layers are {names}")
    below = model.layers[:names.index(layer)]
    with _layers.eval_mode(model):   # every mode comes back afterwards
        h = x
        for _, lyr in below:
            lyr.training = bool(dropout) and isinstance(lyr, _layers.Dropout)
            h = lyr.forward(h)
    xp = get_array_module(h)
    return xp.var(h, axis=0)


__all__ = ["weight_norms", "effective_lr", "WeightNorms", "series", "EvalEvery",
           "classic_dropout_forward", "reestimate_bn_stats", "bn_input_variances",
           "ClassicDropout", "use_classic_dropout", "DLFS_SIZES", "overfit_run", "continue_run",
           "overfit_seeds", "mean_sd"]
