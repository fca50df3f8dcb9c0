"""Hyperparameter search whose trials run serially, on the local cores, or on a Dask cluster.

>>> space = {"lr": LogUniform(1e-6, 1e-2), "weight_decay": LogUniform(1e-8, 1e-4)}
>>> objective = MLPObjective(data, sizes=[784, 100, 100, 10], num_epochs=3)
>>> result = random_search(objective, space, n_trials=20, seed=0, n_jobs=2)
>>> result.best.params, result.best.val_acc

Every trial's parameters and seed are drawn up front in the calling process from
``seed``, so a search returns the same results whether it runs serially
(``n_jobs=1``), in parallel on local processes (``n_jobs=-1``, joblib), or on a
Dask cluster (``client=distributed.Client(...)``; Dask is an optional extra).

An objective is a picklable callable ``objective(params: dict, seed: int) ->
dict`` returning at least ``"val_acc"``; it may also return ``"diverged": True``
and any other numbers or curves.  A trial that raises is recorded as
``status="failed"`` with its error message; one that diverges as
``status="diverged"``.  Neither stops the search, and neither is dropped.
"""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from itertools import product

import numpy as np


# --------------------------------------------------------------------- search spaces
@dataclass(frozen=True)
class LogUniform:
    """``10 ** U(log10 low, log10 high)``: every decade equally likely (the right prior for
    scale parameters like learning rates and weight decay)."""

    low: float
    high: float

    def __post_init__(self):
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got ({self.low}, {self.high})")

    def sample(self, rng):
        return float(10 ** rng.uniform(math.log10(self.low), math.log10(self.high)))

    def grid(self, n):
        return [float(v) for v in np.logspace(math.log10(self.low), math.log10(self.high), n)]


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"Uniform needs low < high, got ({self.low}, {self.high})")

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def grid(self, n):
        return [float(v) for v in np.linspace(self.low, self.high, n)]


@dataclass(frozen=True)
class Choice:
    options: tuple

    def sample(self, rng):
        return self.options[int(rng.integers(len(self.options)))]

    def grid(self, n):
        return list(self.options)


def _check_space(space):
    if not space:
        raise ValueError("the search space is empty: give a dict like {'lr': LogUniform(1e-6, 1e-2)}")
    for name, dist in space.items():
        if not hasattr(dist, "sample"):
            raise TypeError(f"space[{name!r}] = {dist!r} is not a distribution; use LogUniform, Uniform or Choice")


# --------------------------------------------------------------------------- trials
@dataclass
class Trial:
    """One evaluated setting: its parameters, seed, outcome, and what the objective returned."""

    index: int
    params: dict
    seed: int
    status: str = "pending"          # "ok" | "diverged" | "failed"
    val_acc: float = float("nan")
    error: str = ""
    metrics: dict = field(default_factory=dict)

    @property
    def ok(self):
        return self.status == "ok"


def run_trial(objective, index, params, seed) -> Trial:
    """Evaluate one trial, turning exceptions and divergence into a recorded status."""
    trial = Trial(index, dict(params), int(seed))
    try:
        metrics = dict(objective(dict(params), int(seed)))
    except Exception as e:  # a broken trial is a result, not a crash of the whole search
        trial.status = "failed"
        trial.error = f"{type(e).__name__}: {e}"
        trial.metrics = {"traceback": traceback.format_exc(limit=3)}
        return trial
    trial.metrics = metrics
    trial.val_acc = float(metrics.get("val_acc", float("nan")))
    if metrics.get("diverged") or not math.isfinite(trial.val_acc):
        trial.status = "diverged"
    else:
        trial.status = "ok"
    return trial


@dataclass
class SearchResult:
    trials: list

    @property
    def ok_trials(self):
        return [t for t in self.trials if t.ok]

    @property
    def best(self) -> Trial:
        ok = self.ok_trials
        if not ok:
            raise ValueError("no trial finished successfully; look at result.trials for their errors")
        return max(ok, key=lambda t: (t.val_acc, -t.index))

    def top(self, k):
        return sorted(self.ok_trials, key=lambda t: (-t.val_acc, t.index))[:k]

    def counts(self) -> dict:
        out = {"ok": 0, "diverged": 0, "failed": 0}
        for t in self.trials:
            out[t.status] = out.get(t.status, 0) + 1
        return out

    def table(self, keys=None):
        """Rows ``(index, *params, val_acc, status)`` as a list of dicts (pandas-free)."""
        return [{"trial": t.index, **t.params, "val_acc": t.val_acc, "status": t.status}
                for t in self.trials]

    def values(self, name):
        """A parameter's values over all trials, as a numpy array."""
        return np.array([t.params[name] for t in self.trials])


def _execute(objective, settings, n_jobs=1, client=None):
    """Run ``[(params, seed), ...]``; results come back in the order given, whatever the executor."""
    jobs = [(i, p, s) for i, (p, s) in enumerate(settings)]
    if client is not None:
        futures = client.map(run_trial, [objective] * len(jobs), *zip(*jobs), pure=False)
        trials = client.gather(futures)
    elif n_jobs == 1:
        trials = [run_trial(objective, *job) for job in jobs]
    else:
        from joblib import Parallel, delayed
        trials = Parallel(n_jobs=n_jobs)(delayed(run_trial)(objective, *job) for job in jobs)
    return SearchResult(sorted(trials, key=lambda t: t.index))


def shutdown_workers():
    """Stop the local worker processes kept alive between parallel searches (joblib keeps them
    for reuse and would otherwise let them idle for minutes)."""
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)


def _seeds(rng, n):
    return [int(s) for s in rng.integers(0, 2**31 - 1, n)]


def random_search(objective, space, n_trials, *, seed=0, n_jobs=1, client=None) -> SearchResult:
    """Sample ``n_trials`` settings from ``space`` and evaluate them (see the module docstring)."""
    _check_space(space)
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    rng = np.random.default_rng(seed)
    settings = [{name: dist.sample(rng) for name, dist in space.items()} for _ in range(n_trials)]
    return _execute(objective, list(zip(settings, _seeds(rng, n_trials))), n_jobs, client)


def grid_search(objective, space, points_per_axis, *, seed=0, n_jobs=1, client=None) -> SearchResult:
    """Evaluate the Cartesian grid with ``points_per_axis`` values per parameter
    (log-spaced for :class:`LogUniform`)."""
    _check_space(space)
    names = list(space)
    axes = [space[n].grid(points_per_axis) for n in names]
    settings = [dict(zip(names, combo)) for combo in product(*axes)]
    rng = np.random.default_rng(seed)
    return _execute(objective, list(zip(settings, _seeds(rng, len(settings)))), n_jobs, client)


def narrow(space, result, top_k=5, margin=0.5):
    """A finer space around the ``top_k`` best trials: for each LogUniform/Uniform
    parameter, the range the top trials span, widened by ``margin`` (in decades for
    LogUniform, as a fraction of the span for Uniform).  The coarse → fine step."""
    top = result.top(top_k)
    if not top:
        raise ValueError("no successful trials to narrow around")
    new = {}
    for name, dist in space.items():
        vals = [t.params[name] for t in top]
        if isinstance(dist, LogUniform):
            lo, hi = math.log10(min(vals)) - margin, math.log10(max(vals)) + margin
            new[name] = LogUniform(max(10 ** lo, dist.low), min(10 ** hi, dist.high))
        elif isinstance(dist, Uniform):
            span = (max(vals) - min(vals)) or (dist.high - dist.low) * 0.1
            new[name] = Uniform(max(min(vals) - margin * span, dist.low), min(max(vals) + margin * span, dist.high))
        else:
            new[name] = dist
    return new


def successive_halving(objective, space, n_trials, *, min_budget=1, eta=3, rounds=None, seed=0,
                       n_jobs=1, client=None):
    """Successive halving (Jamieson & Talwalkar 2016): evaluate ``n_trials`` settings on a
    small budget, keep the best ``1/eta``, give them ``eta`` times the budget, repeat.

    The objective receives the budget as ``params["budget"]`` (e.g. epochs).  Returns the
    list of :class:`SearchResult` per round (the last one holds the winners).
    """
    _check_space(space)
    rng = np.random.default_rng(seed)
    settings = [{name: dist.sample(rng) for name, dist in space.items()} for _ in range(n_trials)]
    seeds = _seeds(rng, n_trials)
    survivors = list(range(n_trials))
    budget, rounds_out = min_budget, []
    while survivors:
        batch = [({**settings[i], "budget": budget}, seeds[i]) for i in survivors]
        res = _execute(objective, batch, n_jobs, client)
        for t, i in zip(res.trials, survivors):
            t.index = i
        rounds_out.append(res)
        keep = max(len(survivors) // eta, 1)
        if len(survivors) == 1 or (rounds is not None and len(rounds_out) >= rounds):
            break
        ranked = sorted(res.ok_trials, key=lambda t: (-t.val_acc, t.index))[:keep]
        survivors = [t.index for t in ranked]
        budget *= eta
    return rounds_out


# ------------------------------------------------------------------ a ready objective
class MLPObjective:
    """Train an MLP with the trial's ``lr`` and ``weight_decay`` (and any MLP/fit keyword given
    in the space) and report validation accuracy — never test accuracy.

    ``data``: a :class:`course_lib.data.Splits` (train and val are used; test is not touched).
    The instance is picklable, so it runs unchanged on joblib or Dask workers.
    """

    MODEL_KEYS = ("activation", "norm", "dropout", "init")

    def __init__(self, data, sizes=(784, 100, 100, 10), *, num_epochs=3, batch_size=100,
                 optimizer="sgd", device="cpu", **model_kwargs):
        from course_lib.backend import to_numpy
        # store host copies so the objective pickles the same way on every backend
        self.x_train, self.y_train = to_numpy(data.x_train), to_numpy(data.y_train)
        self.x_val, self.y_val = to_numpy(data.x_val), to_numpy(data.y_val)
        self.sizes, self.num_epochs, self.batch_size = list(sizes), num_epochs, batch_size
        self.optimizer, self.device, self.model_kwargs = optimizer, device, model_kwargs

    def __call__(self, params, seed):
        from course_lib import backend
        from course_lib.model import MLP
        from course_lib.optim import make_optimizer
        from course_lib.trainer import fit
        backend.use(self.device)
        params = dict(params)
        num_epochs = int(params.pop("budget", self.num_epochs))
        model_kw = {**self.model_kwargs, **{k: params.pop(k) for k in list(params) if k in self.MODEL_KEYS}}
        lr, wd = params.pop("lr"), params.pop("weight_decay", 0.0)
        model = MLP(self.sizes, seed=seed, **model_kw)
        opt = make_optimizer(self.optimizer, lr=lr, weight_decay=wd, **params)
        train = (backend.asarray(self.x_train), backend.asarray(self.y_train))
        val = (backend.asarray(self.x_val), backend.asarray(self.y_val))
        h = fit(model, train, val=val, optimizer=opt, num_epochs=num_epochs,
                batch_size=self.batch_size, seed=seed, progress=False)
        final = h.val_acc[-1] if h.val_acc and not h.diverged else float("nan")
        return {"val_acc": final, "diverged": h.diverged,
                "val_curve": list(h.val_acc), "train_curve": list(h.train_acc),
                "train_acc": h.train_acc[-1] if h.train_acc else float("nan")}


def toy_objective(params, seed):
    """A fast stand-in for training, for demos and tests: a smooth bump of "validation accuracy"
    peaking at lr = 1e-3, weight_decay = 1e-6 (in log space) plus seeded noise; diverges for
    lr > 0.5 and fails (raises) for negative values."""
    lr, wd = params["lr"], params.get("weight_decay", 1e-6)
    if lr <= 0 or wd < 0:
        raise ValueError(f"lr and weight_decay must be positive, got lr={lr}, weight_decay={wd}")
    if lr > 0.5:
        return {"val_acc": float("nan"), "diverged": True}
    d = (math.log10(lr) + 3) ** 2 + 0.25 * (math.log10(wd) + 6) ** 2
    noise = np.random.default_rng(seed).normal(0, 0.005)
    return {"val_acc": float(0.98 * math.exp(-d / 2) + noise)}
