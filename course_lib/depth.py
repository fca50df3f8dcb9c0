r"""Deep plain networks vs deep BN networks: the 3-vs-15-layer experiment of Source A.

Source A is the blog post "Batch Normalization を実装する" (takataka, まんぼう日記, Dec 2015;
see SOURCES.md).  Its experiment (chapter 04 at a small size, ``python -m tools.full_scale``
at the source's size)::

    784 - W - ... - W - 10   ReLU MLP, ``depth`` Linear layers (3 or 15),
    with or without BN after every hidden Linear,
    momentum SGD (lr 0.1, momentum 0.9), mini-batches of 128.

>>> from course_lib import data, depth
>>> splits = data.load_mnist()                                        # doctest: +SKIP
>>> runs = depth.depth_experiment(splits, width=100, num_epochs=5)    # doctest: +SKIP
>>> print(depth.results_table(runs))                                  # doctest: +SKIP

Besides the runner this module holds the small calculations the chapter is
built on:

* :func:`predicted_preactivation_std` — the variance recursion of a deep
  stack at initialisation.  A Linear layer with ``n`` inputs of mean square
  ``q`` and weights of std ``s`` gives pre-activations of variance
  ``n s^2 q``; a ReLU keeps half of that second moment, so

      Var(y_l) = n_l s_l^2 * Var(y_{l-1}) / 2,

  i.e. every ReLU layer multiplies the signal's std by ``s sqrt(n / 2)``.
* :func:`run_verdict` — is a finished run diverged, at chance, or above chance?
  A 10-class classifier whose output does not depend on its input has a
  cross-entropy near ln 10 = 2.3026 and an accuracy near 10 %.
* :func:`bias_only_answer` — which class such a classifier answers: its output bias
  trained alone on the same mini-batches (momentum noise, not the class frequencies).
* :func:`dlfs_init_scale_sweep` — the init-scale sweep of ``batch_norm_test.py`` in the
  DLFS book (Source C), in the book's settings.

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

#: Source A, by title, author and year.
SOURCE_A = '"Batch Normalization を実装する" (takataka, 2015)'
#: Test errors (percent) Source A reports after 50 epochs on 50,000 MNIST images, width 1000,
#: momentum SGD lr 0.1, batch 128 (its init is not stated).  Keys: (depth, norm).
SOURCE_A_TEST_ERRORS = {(3, None): 1.56, (3, "batch"): 1.31, (15, None): 88.65, (15, "batch"): 1.58}
#: Source A's setting, as keyword arguments of :func:`depth_experiment` (dataset: full MNIST).
#: The init is not stated in the source; "lecun" (std 1/sqrt(n)) is the usual reading.
SOURCE_A_SETTING = {"width": 1000, "num_epochs": 50, "n_train": 50_000, "init": "lecun", "lr": 0.1,
                    "momentum": 0.9, "batch_size": 128}
#: Old names of the two above (kept for compatibility; "seed" now only means a random seed).
SEED_TEST_ERRORS, SEED_SETTING = SOURCE_A_TEST_ERRORS, SOURCE_A_SETTING
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
    init:       any :class:`course_lib.model.MLP` init (Source A does not state its init;
                "lecun", std 1/sqrt(n), is the usual reading; see :data:`INIT_CANDIDATES`)
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


SOURCE_A_COLUMN = "Source A, takataka 2015 (50k MNIST, 50 epochs, width 1000)"


def results_table(runs, reference=SOURCE_A_TEST_ERRORS, *, ours="ours", source=SOURCE_A_COLUMN,
                  digits=2, seed=None):
    """A markdown table of the test errors of ``runs`` beside ``reference`` (percent).

    reference: ``{(depth, norm): test error in %}`` or None for no reference column.
    source:    the reference column's header (``seed=`` is its old name, still accepted).
    """
    source = seed if seed is not None else source
    head = ["network", *([source] if reference else []), f"{ours}: test error", "verdict"]
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
                       "source": SOURCE_A,
                       "source_test_errors": [{"depth": d, "norm": n, "test_error_percent": e}
                                              for (d, n), e in SOURCE_A_TEST_ERRORS.items()]}, indent=2)





# ----------------------------------------------------------------------------- over seeds
def glorot_uniform(fan_in, fan_out, rng):
    """Glorot & Bengio's uniform init, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)): an init callable."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, (fan_in, fan_out))


#: The usual inits a 2015 write-up that does not state its init may have used (chapter 04).
INIT_CANDIDATES = {"1/sqrt(n) normal (LeCun)": "lecun", "Glorot normal": "xavier",
                   "Glorot uniform": glorot_uniform, "He normal": "he"}

#: A run "learns" when its test accuracy is above this (Source A's nets reach 98 %, chance is 10 %).
LEARNS = 0.8


def summarize_seeds(runs_by_seed, learns=LEARNS):
    """Aggregate :func:`depth_experiment` runs over seeds.

    runs_by_seed: ``{seed: [DepthRun, ...]}`` (the same (depth, norm) list for every seed)
    Returns ``{(depth, norm): dict}`` with the per-seed test accuracies (NaN when diverged) and
    ``mean``, ``sd`` (over the finite ones, ddof 1), ``min``, ``max``, ``n``, and the counts
    ``diverged``, ``chance`` (verdict "chance") and ``learns`` (test accuracy > ``learns``).
    """
    out = {}
    for seed, runs in runs_by_seed.items():
        for r in runs:
            out.setdefault((r.depth, r.norm), {"label": r.label, "seeds": [], "acc": [], "verdicts": []})
            row = out[r.depth, r.norm]
            row["seeds"].append(seed)
            row["acc"].append(float("nan") if r.history.diverged else r.test_acc)
            row["verdicts"].append(r.verdict)
    for row in out.values():
        acc = np.array(row["acc"], dtype=np.float64)
        ok = acc[np.isfinite(acc)]
        row.update(n=len(acc), mean=float(ok.mean()) if len(ok) else float("nan"),
                   sd=float(ok.std(ddof=1)) if len(ok) > 1 else 0.0,
                   min=float(ok.min()) if len(ok) else float("nan"), max=float(ok.max()) if len(ok) else float("nan"),
                   diverged=row["verdicts"].count("diverged"), chance=row["verdicts"].count("chance"),
                   learns=int((ok > learns).sum()))
    return out


def seeds_table(summary, reference=SOURCE_A_TEST_ERRORS, *, ours="ours", source=SOURCE_A_COLUMN):
    """Markdown table of :func:`summarize_seeds`: test error mean ± SD (min–max) over seeds, k of n verdicts."""
    head = ["network", *([source] if reference else []), f"{ours}: test error, mean ± SD (min–max)",
            "at chance", "diverged", f"learns (acc > {LEARNS:.0%})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for key, row in summary.items():
        cells = [row["label"]]
        if reference:
            ref = reference.get(key)
            cells.append("—" if ref is None else f"{ref:.2f} %")
        if math.isfinite(row["mean"]):
            err = (f"{100 * (1 - row['mean']):.1f} ± {100 * row['sd']:.1f} % "
                   f"({100 * (1 - row['max']):.1f}–{100 * (1 - row['min']):.1f})")
        else:
            err = "diverged (NaN)"
        n = row["n"]
        cells += [err, f"{row['chance']} of {n}", f"{row['diverged']} of {n}", f"{row['learns']} of {n}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bias_only_answer(y_train, *, num_epochs=5, batch_size=128, lr=0.1, momentum=0.9, seed=0, num_classes=10):
    """Train only a bias vector (logits = b, no input at all) on the mini-batches ``fit`` would draw.

    A deep plain network whose logits do not depend on its input is exactly this model: only the
    output bias gets a useful gradient, ``softmax(b) - (class frequencies of the batch)``.  With the
    same ``seed``, ``num_epochs`` and ``batch_size`` the batches are those of :func:`course_lib.trainer.fit`,
    and momentum SGD is ``v <- momentum v + g; b <- b - lr v`` (course_lib's ``Momentum``).
    Returns ``(answer, b)``: the argmax of the final bias (the class such a network answers for every
    input) and the bias itself (float64, host numpy).  Full-batch training would instead converge to
    ``log(class frequencies)``, whose argmax is the most frequent class.
    """
    from course_lib.backend import to_numpy
    from course_lib.trainer import iterate_minibatches
    y = np.asarray(to_numpy(y_train)).astype(np.int64).reshape(-1)
    rng = np.random.default_rng(seed)
    b, v = np.zeros(num_classes), np.zeros(num_classes)
    for _ in range(num_epochs):
        for idx in iterate_minibatches(len(y), batch_size, rng):
            p = np.exp(b - b.max())
            p /= p.sum()
            g = p - np.bincount(y[idx], minlength=num_classes) / len(idx)
            v = momentum * v + g
            b = b - lr * v
    return int(b.argmax()), b


#: ``batch_norm_test.py`` of the DLFS book (Source C, ch. 6.3): its settings.
DLFS_BN_SETTING = {"hidden": (100,) * 5, "n_train": 1000, "lr": 0.01, "batch_size": 100, "num_epochs": 20,
                   "scales": tuple(float(s) for s in np.logspace(0, -4, 16)), "bn_eps": 1e-6}


def dlfs_init_scale_sweep(x, y, *, seeds=(0, 1, 2), scales=DLFS_BN_SETTING["scales"], norms=("batch", None),
                          hidden=DLFS_BN_SETTING["hidden"], lr=DLFS_BN_SETTING["lr"],
                          batch_size=DLFS_BN_SETTING["batch_size"], num_epochs=DLFS_BN_SETTING["num_epochs"],
                          bn_eps=DLFS_BN_SETTING["bn_eps"], optimizer=None):
    """The DLFS book's BN init-scale sweep: a ReLU MLP with weights N(0, s^2) for every s in ``scales``.

    x, y:      the training images (the book: the first 1,000 MNIST training images)
    norms:     "batch" (BN after every hidden Linear, the Linear's bias kept as in the book, eps
               ``bn_eps``) and/or None; plain SGD with ``lr`` (or ``optimizer()``, a factory)
    Returns ``{norm: array (len(seeds), len(scales))}`` of the final accuracy on (x, y) in eval mode
    (the book's measure), NaN where the run diverged.  Differences from the book: the batches are
    a shuffle per epoch (the book draws them with replacement); course_lib's BN keeps PyTorch's
    running-statistics conventions (only eval-mode numbers are affected, and only slightly).
    """
    from course_lib.optim import SGD
    from course_lib.trainer import evaluate as _evaluate
    out = {}
    for norm in norms:
        acc = np.full((len(seeds), len(scales)), np.nan)
        for i, seed in enumerate(seeds):
            for j, s in enumerate(scales):
                model = MLP([x.shape[1], *hidden, 10], activation="relu", norm=norm, init=float(s), seed=seed,
                            linear_bias=True, norm_kwargs={"eps": bn_eps} if norm else None)
                opt = optimizer() if optimizer is not None else SGD(lr=lr)
                h = fit(model, (x, y), optimizer=opt, num_epochs=num_epochs, batch_size=batch_size, seed=seed,
                        progress=False)
                if not h.diverged:
                    with np.errstate(over="ignore", invalid="ignore"):
                        acc[i, j] = _evaluate(model, x, y)[1]
        out[norm] = acc
    return out


__all__ = ["SOURCE_A", "SOURCE_A_TEST_ERRORS", "SOURCE_A_SETTING", "SOURCE_A_COLUMN", "SEED_TEST_ERRORS",
           "SEED_SETTING", "VERDICTS", "INIT_CANDIDATES", "LEARNS", "DLFS_BN_SETTING",
           "predicted_preactivation_std", "run_verdict", "DepthRun", "mlp_sizes", "depth_experiment",
           "results_table", "results_json", "glorot_uniform", "summarize_seeds", "seeds_table",
           "bias_only_answer", "dlfs_init_scale_sweep"]
