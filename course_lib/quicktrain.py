"""Quick training runs on data subsets, for figures: build a small MLP, train it briefly with
momentum SGD and one BLAS thread, and record eval-mode curves on named sets.

>>> model, history = train_small(data, depth=4, width=64, norm="batch", steps=100, batch_size=64,
...                              lr=0.1, init="he", n_train=1000, n_eval=500)   # doctest: +SKIP
>>> t, loss, acc = eval_curve(history, "eval")                                   # doctest: +SKIP
"""
from __future__ import annotations

import math

import numpy as np

from course_lib.model import MLP
from course_lib.optim import Momentum
from course_lib.regularization import EvalEvery
from course_lib.subsets import subset
from course_lib.threads import one_blas_thread
from course_lib.trainer import fit

_PREFIX = "eval_curves/"


def train_small(data, *, depth, width, norm, steps=None, num_epochs=None, batch_size, lr, init, activation="relu",
                dropout=0.0, weight_decay=0.0, n_train, n_eval, eval_split="val", eval_every=20, per="step",
                train_curve=False, seed=0, hooks=()):
    """Build and train a small MLP on the first ``n_train`` training images; returns ``(model, history)``.

    With ``steps``: that many updates (epochs as needed); with ``num_epochs``: that many epochs.
    Eval-mode loss and accuracy on the first ``n_eval`` images of ``eval_split`` (set "eval"), and
    on the training subset (set "train") when ``train_curve``, every ``eval_every`` steps or
    epochs (``per``), after the first and after the last; read them with :func:`eval_curve`.
    """
    x, y = subset(data, "train", n_train)
    sets = {"eval": subset(data, eval_split, n_eval)}
    if train_curve:
        sets = {"train": (x, y), **sets}
    model = MLP([x.shape[1]] + [width] * depth + [10], activation=activation, norm=norm, init=init,
                dropout=dropout, seed=seed)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    if num_epochs is None:
        num_epochs = math.ceil(steps / steps_per_epoch)
    last = (steps if per == "step" else num_epochs) - 1
    # per="step" keeps the first measurement at step `eval_every` (as the curves always were)
    evals = [EvalEvery(sx, sy, eval_every, name=_PREFIX + name, last_epoch=last, per=per, first=per == "epoch")
             for name, (sx, sy) in sets.items()]
    with one_blas_thread():
        history = fit(model, (x, y), optimizer=Momentum(lr, weight_decay=weight_decay), num_epochs=num_epochs,
                      batch_size=batch_size, seed=seed, max_steps=steps, progress=False, hooks=[*evals, *hooks])
    return model, history


def eval_curve(history, name):
    """``(t, loss, acc)`` arrays of set ``name`` ("eval" or "train") recorded by :func:`train_small`;
    ``t`` counts steps or epochs (from 1)."""
    rows = history.extras.get(_PREFIX + name, [])
    key = "step" if rows and "step" in rows[0] else "epoch"
    t = np.array([r[key] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    acc = np.array([r["acc"] for r in rows])
    return t, loss, acc


def smooth(y, k):
    """Moving average of ``y`` over ``k`` points: ``(x, y_smooth)`` (unchanged if too short)."""
    y = np.asarray(y, dtype=float)
    if len(y) < k or k < 2:
        return np.arange(len(y)), y
    return np.arange(k - 1, len(y)), np.convolve(y, np.ones(k) / k, mode="valid")


__all__ = ["train_small", "eval_curve", "smooth"]
