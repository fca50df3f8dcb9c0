r"""BN vs Batch Renormalization in the configuration of the Japanese Chainer tutorial blog
"バッチ規格化とバッチ再規格化の比較" (a comparison of batch normalization and batch
renormalization, run on Google Colab).

The source's network is ``Linear(784, 400) -> ReLU -> BatchNormalization(400) -> Linear(400, 10)``
(note: the normalization comes *after* the ReLU), or the same with
``BatchRenormalization(400)``, trained for 50 iterations of one full-batch step each with
Chainer's ``MomentumSGD()`` defaults (lr 0.01, momentum 0.9), recording the test loss and
accuracy (test mode) after every step.  It found the two curves "almost the same".

Chainer's ``BatchRenormalization(size, rmax=1, dmax=0, ...)`` defaults clip r to [1, 1] and d
to [0, 0], so in training it computes exactly batch normalization: the two runs are the same
computation.  :func:`chainer_defaults` is that clipping as a course_lib renorm schedule.
"""
from __future__ import annotations

import numpy as np

from course_lib.backend import to_numpy
from course_lib.functional import softmax_cross_entropy
from course_lib.layers import has_batch_stats
from course_lib.model import MLP
from course_lib.optim import Momentum
from course_lib.trainer import evaluate

SOURCE_SIZES = (784, 400, 10)
CHAINER_EPS = 2e-5          # chainer.links.BatchNormalization / BatchRenormalization default eps


def chainer_defaults(step):
    """Chainer's BatchRenormalization defaults as a schedule: r_max = 1, d_max = 0 at every step."""
    return 1.0, 0.0


def make_model(norm="batch", seed=0, schedule=chainer_defaults, sizes=SOURCE_SIZES):
    """Linear -> ReLU -> BN (or Batch Renorm) -> Linear, with biases and LeCun-normal weights
    (Chainer's default initialisation, std sqrt(1 / fan_in)).  ``norm``: "batch" | "renorm"."""
    kwargs = {"eps": CHAINER_EPS}
    if norm == "renorm":
        kwargs["schedule"] = schedule
    model = MLP(list(sizes), norm=norm, init="lecun", linear_bias=True, seed=seed, norm_kwargs=kwargs)
    layers = dict(model.layers)
    norm_name = [n for n, layer in model.layers if has_batch_stats(layer)][0]
    model.layers = [(n, layers[n]) for n in ("linear0", "relu0", norm_name, "linear1")]   # BN after the ReLU
    return model


def run(train, test, *, norm="batch", steps=50, lr=0.01, momentum=0.9, seed=0, schedule=chainer_defaults):
    """The source's schedule: ``steps`` full-batch momentum-SGD steps on all of ``train``
    (training mode), the test loss and accuracy (eval mode) after each.

    Returns a dict of lists: ``train_loss`` (the loss of each full batch, before its step),
    ``test_loss``, ``test_acc``, and the final ``model``."""
    (x, y), (x_test, y_test) = train, test
    model = make_model(norm, seed, schedule)
    opt = Momentum(lr, momentum=momentum)
    out = {"train_loss": [], "test_loss": [], "test_acc": []}
    for _ in range(steps):
        model.train()
        logits = model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        model.backward(dlogits)
        opt.update(model.params, model.grads)
        out["train_loss"].append(float(loss))
        test_loss, test_acc = evaluate(model, x_test, y_test)
        out["test_loss"].append(test_loss)
        out["test_acc"].append(test_acc)
    model.train()
    out["model"] = model
    return out


def max_param_difference(model_a, model_b):
    """Largest absolute difference between the two models' parameters and buffers (0.0 = identical)."""
    diffs = [float(np.max(np.abs(to_numpy(a) - to_numpy(b))))   # by position: the layer names differ
             for a, b in zip(model_a.params.values(), model_b.params.values())]
    for (_name, layer), (_, other) in zip(model_a.layers, model_b.layers):
        for k, buf in getattr(layer, "buffers", {}).items():
            diffs.append(float(np.max(np.abs(to_numpy(buf) - to_numpy(other.buffers[k])))))
    return max(diffs)
