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
"""
from __future__ import annotations

from course_lib.backend import get_array_module, to_float
from course_lib.trainer import Hook, evaluate


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
    """

    def __init__(self, x, y, every=5, name="test", last_epoch=None):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.x, self.y, self.every, self.name, self.last_epoch = x, y, every, name, last_epoch

    def on_epoch(self, epoch, model, history):
        if (epoch + 1) % self.every == 0 or epoch == self.last_epoch:
            loss, acc = evaluate(model, self.x, self.y)
            self._record(history, {"epoch": epoch + 1, "loss": loss, "acc": acc})


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


# ------------------------------------------------------------------- BN re-estimation
def _bn_layers(model):
    return [(name, layer) for name, layer in model.layers if "running_var" in getattr(layer, "buffers", {})]


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
    modes = [lyr.training for _, lyr in below]
    try:
        h = x
        for _, lyr in below:
            lyr.training = bool(dropout) and type(lyr).__name__ == "Dropout"
            h = lyr.forward(h)
    finally:
        for (_, lyr), mode in zip(below, modes):
            lyr.training = mode
    xp = get_array_module(h)
    return xp.var(h, axis=0)


__all__ = ["weight_norms", "effective_lr", "WeightNorms", "series", "EvalEvery",
           "classic_dropout_forward", "reestimate_bn_stats", "bn_input_variances"]
