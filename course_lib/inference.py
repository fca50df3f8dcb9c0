r"""Batch normalization at inference time.

In eval mode a BN layer is a fixed per-feature affine map: it normalises with
the running statistics, which no longer change.  Two consequences:

* **Folding.**  A Linear followed by an eval-mode BN is one Linear.  With
  ``s = gamma / sqrt(running_var + eps)``::

      BN(x @ W + b) = (x @ W + b - mu) * s + beta
                    = x @ (W * s) + ((b - mu) * s + beta)

  so ``W' = W * s`` (each column j of W scaled by s_j) and
  ``b' = (b - mu) * s + beta`` (:func:`fold_linear_bn`, :func:`fold_batchnorm`).
  The folded network computes the same function with one layer fewer.

* **The train -> eval switch matters.**  A model left in training mode at test
  time normalises each *test* batch with that batch's own statistics, so its
  predictions depend on which other samples share the batch — badly so for
  tiny batches.  :func:`predict_with_batch_stats` reproduces that mistake
  on purpose (without touching the running statistics) so that it can be
  measured.

>>> folded = fold_batchnorm(model)            # doctest: +SKIP
>>> model.eval(); folded.eval()               # doctest: +SKIP
>>> allclose(model.forward(x), folded.forward(x))   # doctest: +SKIP
"""
from __future__ import annotations

import copy

from course_lib.backend import get_array_module
from course_lib.functional import softmax_cross_entropy
from course_lib.layers import Linear, eval_mode, has_batch_stats


def fold_linear_bn(W, b, gamma, beta, running_mean, running_var, eps=1e-5):
    r"""Fold an eval-mode batch norm into the Linear before it.

    ``BN(x @ W + b)`` with running statistics equals ``x @ W_f + b_f`` where, with
    ``s = gamma / sqrt(running_var + eps)``::

        W_f = W * s                      (column j of W times s_j)
        b_f = (b - running_mean) * s + beta

    W: (D, M); b: (M,) or None (no bias: taken as 0); gamma, beta,
    running_mean, running_var: (M,).  Returns ``W_f (D, M), b_f (M,)`` in W's dtype.
    """
    xp = get_array_module(W)
    if W.ndim != 2 or gamma.shape != (W.shape[1],):
        raise ValueError(f"fold_linear_bn: W must be (D, M) and gamma (M,), got W {tuple(W.shape)}, "
                         f"gamma {tuple(gamma.shape)}")
    s = gamma / xp.sqrt(running_var + eps)
    W_f = W * s
    b0 = xp.zeros_like(running_mean) if b is None else b
    b_f = (b0 - running_mean) * s + beta
    return W_f.astype(W.dtype, copy=False), b_f.astype(W.dtype, copy=False)


def fold_batchnorm(model):
    """A copy of ``model`` in which every BatchNorm1d (or BatchRenorm1d, whose eval mode is
    BN's) that directly follows a Linear is folded into that Linear and removed.

    ``model`` is anything with a ``layers`` list of ``(name, layer)`` pairs, such as
    :class:`course_lib.model.MLP`; it is not modified.  The copy computes the same
    function as ``model`` in eval mode and is meant for inference only (it has no
    batch statistics left to train with).  A BN layer that does not follow a Linear
    raises ValueError.
    """
    folded = copy.deepcopy(model)
    new_layers = []
    for name, layer in folded.layers:
        if has_batch_stats(layer):
            if not new_layers or not isinstance(new_layers[-1][1], Linear):
                raise ValueError(f"cannot fold {name}: it does not directly follow a Linear layer")
            linear = new_layers[-1][1]
            linear.params["W"], linear.params["b"] = fold_linear_bn(
                linear.params["W"], linear.params.get("b"), layer.params["gamma"], layer.params["beta"],
                layer.buffers["running_mean"], layer.buffers["running_var"], layer.eps)
            linear.grads.clear()
            continue
        new_layers.append((name, layer))
    folded.layers = new_layers
    if hasattr(folded, "norm"):
        folded.norm = None
    if hasattr(folded, "activations"):
        folded.activations = {}
    return folded


def _norm_layers(model):
    mods = model.modules() if hasattr(model, "modules") else (layer for _, layer in model.layers)
    return [m for m in mods if m is not model and has_batch_stats(m) and not hasattr(m, "layers")]


def predict_with_batch_stats(model, x, batch_size):
    """Logits computed the WRONG way, for study: every normalization layer in training
    mode, so each test batch of ``batch_size`` rows is normalised with its own mean and
    variance.  Everything else (dropout included) runs in eval mode, and the running
    statistics and step counters are restored afterwards: the model is left as it was.

    A final batch of a single row (BN cannot normalise one sample) is merged into the
    batch before it.  x: (N, D) -> logits (N, C).
    """
    if batch_size < 2:
        raise ValueError("batch statistics need a batch of at least 2 samples "
                         f"(got batch_size={batch_size}); in eval mode any batch size works")
    xp = get_array_module(x)
    norms = _norm_layers(model)
    saved = [(layer, dict(layer.buffers), getattr(layer, "num_batches_tracked", None))
             for layer in norms]
    with eval_mode(model, keep_activations=False):
        for layer in norms:
            layer.train()
        try:
            n = len(x)
            starts = list(range(0, n, batch_size))
            if len(starts) > 1 and n - starts[-1] == 1:
                starts.pop()
            ends = starts[1:] + [n]
            return xp.concatenate([model.forward(x[s:e]) for s, e in zip(starts, ends)])
        finally:
            for layer, buffers, count in saved:
                layer.buffers.update(buffers)
                if count is not None:
                    layer.num_batches_tracked = count


def evaluate_with_batch_stats(model, x, y, batch_size):
    """``(loss, accuracy)`` of :func:`predict_with_batch_stats`: the model evaluated with the
    statistics of each test batch instead of its running statistics. Returns floats."""
    logits = predict_with_batch_stats(model, x, batch_size)
    loss, _ = softmax_cross_entropy(logits, y)
    pred = logits.argmax(axis=1)
    target = y.argmax(axis=1) if y.ndim == 2 else y
    return float(loss), float((pred == target).mean())


__all__ = ["fold_linear_bn", "fold_batchnorm", "predict_with_batch_stats", "evaluate_with_batch_stats"]
