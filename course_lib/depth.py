r"""Deep plain networks vs deep BN networks: the seed's 3-vs-15-layer experiment.

The experiment (chapter 04, and ``python -m tools.full_scale`` at the seed's size)::

    784 - W - ... - W - 10   ReLU MLP, ``depth`` Linear layers (3 or 15),
    with or without BN after every hidden Linear,
    momentum SGD (lr 0.1, momentum 0.9), mini-batches of 128.

>>> from course_lib import data, depth
>>> splits = data.load_mnist()                                        # doctest: +SKIP
>>> runs = depth.depth_experiment(splits, width=100, num_epochs=5)    # doctest: +SKIP
>>> print(depth.results_table(runs))                                  # doctest: +SKIP

Besides the runner this module holds the two small calculations the chapter is
built on:

* :func:`predicted_preactivation_std` — the variance recursion of a deep
  stack at initialisation.  A Linear layer with ``n`` inputs of mean square
  ``q`` and weights of std ``s`` gives pre-activations of variance
  ``n s^2 q``; a ReLU keeps half of that second moment, so

      Var(y_l) = n_l s_l^2 * Var(y_{l-1}) / 2,

  i.e. every ReLU layer multiplies the signal's std by ``s sqrt(n / 2)``.
* :func:`run_verdict` — is a finished run diverged, at chance, or above chance?
  A 10-class classifier that has learnt nothing predicts the class
  frequencies: its cross-entropy is ln 10 = 2.3026 and its accuracy ~10 %.

The core imports no plotting code.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from course_lib.model import MLP
from course_lib.optim import Momentum
from course_lib.trainer import History, evaluate, fit

#: Test errors (percent) the seed reports after 50 epochs on 50,000 MNIST images,
#: width 1000, std 1/sqrt(n) init, momentum SGD lr 0.1, batch 128.  Keys: (depth, norm).
SEED_TEST_ERRORS = {(3, None): 1.56, (3, "batch"): 1.31, (15, None): 88.65, (15, "batch"): 1.58}
#: The seed's setting, as keyword arguments of :func:`depth_experiment` (dataset: full MNIST).
SEED_SETTING = {"width": 1000, "num_epochs": 50, "n_train": 50_000, "init": "lecun", "lr": 0.1,
                "momentum": 0.9, "batch_size": 128}
#: The verdicts :func:`run_verdict` can give.
VERDICTS = ("diverged", "chance", "above chance")

_GAIN = {"relu": 0.5, "identity": 1.0, "linear": 1.0}


def predicted_preactivation_std(x_ms, fan_ins, stds, activation="relu", leaky_slope=0.01):
    """Predicted std of every Linear layer's output in a freshly initialised stack.

    x_ms:       mean square E[x^2] of one input component (e.g. ~0.1 for MNIST in [0, 1])
    fan_ins:    (L,) number of inputs of each Linear layer
    stds:       (L,) std of each layer's zero-mean weights (a single number: the same for all)
    activation: between the Linear layers: "relu" (keeps half the second moment), "leaky_relu"
                (keeps (1 + slope^2) / 2), or "identity"

    Returns a float64 numpy array of shape (L,): ``sqrt(Var(y_l))``, where
    ``Var(y_1) = n_1 s_1^2 x_ms`` and ``Var(y_l) = n_l s_l^2 g Var(y_{l-1})`` with the
    activation's gain ``g``.  Zero-mean weights make ``Var(y) = n s^2 E[a^2]`` whatever
    the mean of ``a``.
    """
    fan_ins = np.asarray(fan_ins, dtype=np.float64).reshape(-1)
    stds = np.broadcast_to(np.asarray(stds, dtype=np.float64), fan_ins.shape)
    if activation == "leaky_relu":
        gain = (1.0 + leaky_slope ** 2) / 2
    elif activation in _GAIN:
        gain = _GAIN[activation]
    else:
        raise ValueError(f"activation must be 'relu', 'leaky_relu' or 'identity', got {activation!r}")
    if x_ms < 0 or (fan_ins < 1).any() or (stds < 0).any():
        raise ValueError("x_ms and stds must be >= 0 and fan_ins >= 1")
    var = np.empty_like(fan_ins)
    second_moment = float(x_ms)
    for l, (n, s) in enumerate(zip(fan_ins, stds)):
        var[l] = n * s * s * second_moment
        second_moment = gain * var[l]
    return np.sqrt(var)


def run_verdict(diverged, loss, acc, *, num_classes=10, loss_tol=0.05, acc_tol=0.05):
    """``"diverged"``, ``"chance"`` or ``"above chance"`` for a finished run.

    diverged: the run hit a NaN/inf loss (``History.diverged``): nothing else counts
    loss, acc: its final (test or validation) cross-entropy and accuracy
    "chance":  ``|loss - ln C| <= loss_tol`` and ``acc <= 1/C + acc_tol``: the outputs carry no
               information about the input (C = ``num_classes``)
    "above chance":  anything else (how far above: look at the accuracy)
    """
    if diverged or loss is None or not math.isfinite(loss):
        return "diverged"
    if abs(loss - math.log(num_classes)) <= loss_tol and acc <= 1.0 / num_classes + acc_tol:
        return "chance"
    return "above chance"


@dataclass
class DepthRun:
    """One trained network of :func:`depth_experiment`."""

    depth: int                  # number of Linear layers (3 = 784-W-W-10)
    norm: str | None            # None or "batch"
    init: object
    width: int
    history: History
    test_loss: float            # NaN when the run diverged
    test_acc: float
    seconds: float
    model: MLP | None = field(default=None, repr=False)

    @property
    def verdict(self) -> str:
        return run_verdict(self.history.diverged, self.test_loss, self.test_acc)

    @property
    def test_error(self) -> float:
        """Test error in percent (NaN when diverged)."""
        return 100.0 * (1.0 - self.test_acc)

    @property
    def label(self) -> str:
        return f"{self.depth} layers, {'BN' if self.norm else 'no BN'}"

    def as_dict(self) -> dict:
        """JSON-friendly summary (no arrays)."""
        h = self.history
        return {"depth": self.depth, "norm": self.norm, "init": str(self.init), "width": self.width,
                "epochs": h.epochs, "train_loss": h.train_loss, "val_acc": h.val_acc,
                "diverged": h.diverged, "diverged_at_step": h.diverged_at_step,
                "test_loss": _finite_or_none(self.test_loss), "test_acc": _finite_or_none(self.test_acc),
                "test_error_percent": _finite_or_none(self.test_error), "verdict": self.verdict,
                "seconds": round(self.seconds, 2)}


def _finite_or_none(v):
    return float(v) if v is not None and math.isfinite(v) else None


def mlp_sizes(depth, width, n_in=784, n_out=10):
    """``[n_in, width, ..., width, n_out]`` with ``depth`` Linear layers (depth >= 1)."""
    if depth < 1:
        raise ValueError(f"depth counts Linear layers and must be >= 1, got {depth}")
    return [n_in] + [width] * (depth - 1) + [n_out]


def depth_experiment(splits, *, depths=(3, 15), norms=(None, "batch"), init="lecun", width=100,
                     num_epochs=5, lr=0.1, momentum=0.9, batch_size=128, seed=0, n_train=None,
                     keep_models=False, progress=False, log=None, hooks=None):
    """Train one ReLU MLP per (depth, norm) and evaluate it on the test set.

    splits:     a :class:`course_lib.data.Splits` (train / val / test arrays); the validation
                accuracy is recorded after every epoch, the test set is used once at the end
    depths:     numbers of Linear layers; ``width`` units in each hidden layer
    norms:      None (plain) and/or "batch" (BN after every hidden Linear, no bias before it)
    init:       any :class:`course_lib.model.MLP` init (the seed's: "lecun", std 1/sqrt(n))
    n_train:    use only the first ``n_train`` training images (None: all)
    hooks:      optional callable ``(depth, norm) -> list of hooks`` for each run
    log:        optional callable receiving one line per finished run (e.g. ``print``)

    Every run gets the same ``seed`` for its weights and its shuffling.  A run whose
    loss turns NaN/inf stops there (``history.diverged``) and gets NaN test numbers.
    Returns a list of :class:`DepthRun` in the order depth-major, norm-minor.
    """
    x, y = splits.x_train, splits.y_train
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    val = (splits.x_val, splits.y_val) if len(splits.x_val) else None
    runs = []
    for depth in depths:
        for norm in norms:
            start = time.perf_counter()
            model = MLP(mlp_sizes(depth, width, x.shape[1]), activation="relu", norm=norm, init=init,
                        seed=seed)
            history = fit(model, (x, y), optimizer=Momentum(lr=lr, momentum=momentum),
                          num_epochs=num_epochs, batch_size=batch_size, val=val, seed=seed,
                          hooks=hooks(depth, norm) if hooks else (), progress=progress)
            if history.diverged:
                test_loss, test_acc = float("nan"), float("nan")
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    test_loss, test_acc = evaluate(model, splits.x_test, splits.y_test)
            run = DepthRun(depth, norm, init, width, history, test_loss, test_acc,
                           time.perf_counter() - start, model if keep_models else None)
            runs.append(run)
            if log is not None:
                log(f"{run.label:22s} {run.verdict:12s} test error {_fmt_error(run)}  "
                    f"({run.seconds:.0f} s)")
    return runs


def _fmt_error(run):
    if run.history.diverged:
        return f"diverged at step {run.history.diverged_at_step}"
    return f"{run.test_error:.2f} %"


def results_table(runs, reference=SEED_TEST_ERRORS, *, ours="ours", seed="seed (50k MNIST, 50 epochs, width 1000)",
                  digits=2):
    """A markdown table of the test errors of ``runs`` beside ``reference`` (percent).

    reference: ``{(depth, norm): test error in %}`` or None for no reference column.
    """
    head = ["network", *([seed] if reference else []), f"{ours}: test error", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in runs:
        row = [r.label]
        if reference:
            ref = reference.get((r.depth, r.norm))
            row.append("—" if ref is None else f"{ref:.2f} %")
        row.append("diverged (NaN)" if r.history.diverged else f"{r.test_error:.{digits}f} %")
        row.append(r.verdict)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def results_json(runs, **setting) -> str:
    """The runs (and any ``setting`` keywords) as a JSON document."""
    return json.dumps({"setting": setting, "runs": [r.as_dict() for r in runs],
                       "seed_test_errors": [{"depth": d, "norm": n, "test_error_percent": e}
                                            for (d, n), e in SEED_TEST_ERRORS.items()]}, indent=2)


__all__ = ["SEED_TEST_ERRORS", "SEED_SETTING", "VERDICTS", "predicted_preactivation_std", "run_verdict",
           "DepthRun", "mlp_sizes", "depth_experiment", "results_table", "results_json"]
