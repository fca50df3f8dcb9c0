r"""How smooth is the loss along the direction training actually moves?

Santurkar et al. (arXiv:1805.11604, Sec. 3) argue that batch normalization helps
because it makes the loss landscape smoother: the loss and its gradient change
less, and more predictably, along a gradient step.  At the current parameters
``w`` with gradient ``g`` on a probe batch, :func:`probe_along_gradient` steps to
``w - eta * g`` for a range of step sizes ``eta`` and records

* the loss there — its spread over the range is the *loss variation*;
* the gradient there — ``||grad(w - eta g) - g||`` is the *gradient change*,
  and its ratio to the distance moved, ``eta * ||g||``, an "effective
  beta-smoothness" (a local Lipschitz constant of the gradient).

A smooth landscape gives a small loss variation and a small beta: a gradient
step lands where the gradient said it would.  The probe works on a copy of the
model in training mode (batch statistics, as during training); the model itself
is not touched.
"""
from __future__ import annotations

import copy

import numpy as np

from course_lib.backend import to_float
from course_lib.functional import softmax_cross_entropy
from course_lib.trainer import Hook


def _loss_and_grads(model, x, y):
    logits = model.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    model.backward(dlogits)
    return to_float(loss), {k: g.copy() for k, g in model.grads.items()}


def _flat_norm(arrays):
    """The Euclidean norm of all arrays taken together as one vector."""
    return float(np.sqrt(sum(to_float((a * a).sum()) for a in arrays)))


def probe_along_gradient(model, x, y, step_sizes):
    """Loss and gradient at ``w - eta * g`` for each ``eta`` in ``step_sizes``.

    model: an :class:`course_lib.model.MLP` (not modified: the probe runs on a copy, in
    training mode); x: (N, D) probe batch; y: (N,) labels; step_sizes: increasing floats.
    Returns a dict with ``loss0`` (float), ``grad_norm`` (||g||), ``step_sizes``,
    ``loss`` and ``grad_change`` (numpy arrays, one entry per step size) and ``beta``
    (``grad_change / (eta * grad_norm)``).
    """
    probe = copy.deepcopy(model)
    probe.train()
    probe.keep_activations = False
    buffers = {name: dict(layer.buffers) for name, layer in probe.layers if layer.buffers}
    start = {k: p.copy() for k, p in probe.params.items()}
    loss0, g0 = _loss_and_grads(probe, x, y)
    gnorm = _flat_norm(g0.values())
    losses, changes = [], []
    for eta in step_sizes:
        for name, layer in probe.layers:
            if name in buffers:  # every probe point starts from the same running statistics
                layer.buffers.update(buffers[name])
            for k in layer.params:
                key = f"{name}.{k}"
                layer.params[k] = start[key] - g0[key] * start[key].dtype.type(eta)
        loss, g = _loss_and_grads(probe, x, y)
        losses.append(loss)
        changes.append(_flat_norm(g[k] - g0[k] for k in g0))
    step_sizes = np.asarray(step_sizes, dtype=np.float64)
    changes = np.asarray(changes)
    return {"loss0": loss0, "grad_norm": gnorm, "step_sizes": step_sizes, "loss": np.asarray(losses),
            "grad_change": changes, "beta": changes / np.maximum(step_sizes * gnorm, 1e-30)}


class SmoothnessProbe(Hook):
    """Run :func:`probe_along_gradient` on a fixed probe batch every ``every`` steps.

    Records ``{"step", "loss_range", "max_beta", "grad_norm"}`` in
    ``history.extras["smoothness"]``: the spread (max - min) of the loss over the step
    sizes (including eta = 0) and the largest effective beta.
    """

    name = "smoothness"

    def __init__(self, x, y, step_sizes, every=50):
        self.x, self.y, self.step_sizes, self.every = x, y, list(step_sizes), every

    def on_step(self, step, model, history):
        if step % self.every:
            return
        r = probe_along_gradient(model, self.x, self.y, self.step_sizes)
        losses = np.concatenate([[r["loss0"]], r["loss"]])
        self._record(history, {"step": step, "loss_range": float(np.ptp(losses)),
                               "max_beta": float(r["beta"].max()), "grad_norm": r["grad_norm"]})


__all__ = ["probe_along_gradient", "SmoothnessProbe"]
