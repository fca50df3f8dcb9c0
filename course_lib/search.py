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
import os
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
        from joblib import Parallel, delayed, parallel_config
        # Trials are the parallel unit: each worker gets cpu_count // workers BLAS threads, even if
        # the parent asks for more (OPENBLAS_NUM_THREADS=2 with 2 workers on 2 cores would make
        # 4 spinning BLAS threads fight for 2 cores, several times slower).
        n_cpu = os.cpu_count() or 1
        n_workers = n_cpu if n_jobs < 0 else max(min(n_jobs, n_cpu), 1)
        with parallel_config(backend="loky", inner_max_num_threads=max(n_cpu // n_workers, 1)):
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


class SearchEdgeWarning(UserWarning):
    """The best trials sit at an edge of the search space: the optimum may lie beyond it."""


def _widened(dist, vals, margin):
    """The range ``vals`` spans, widened by ``margin`` (decades for LogUniform, a fraction of the
    span for Uniform), before any clamping to ``dist``'s bounds."""
    if isinstance(dist, LogUniform):
        return 10 ** (math.log10(min(vals)) - margin), 10 ** (math.log10(max(vals)) + margin)
    span = (max(vals) - min(vals)) or (dist.high - dist.low) * 0.1
    return min(vals) - margin * span, max(vals) + margin * span


def edges_hit(space, result, top_k=5, margin=0.5):
    """Which bounds of ``space`` the ``top_k`` best trials press against: ``{name: "low" | "high" |
    "both"}`` for every LogUniform/Uniform parameter whose widened top-k range (as in :func:`narrow`)
    crosses a bound.  An edge that is hit means the optimum may lie outside the searched range."""
    top = result.top(top_k)
    if not top:
        raise ValueError("no successful trials to look at")
    hit = {}
    for name, dist in space.items():
        if not isinstance(dist, (LogUniform, Uniform)):
            continue
        lo, hi = _widened(dist, [t.params[name] for t in top], margin)
        low, high = lo < dist.low, hi > dist.high
        if low or high:
            hit[name] = "both" if low and high else "low" if low else "high"
    return hit


def narrow(space, result, top_k=5, margin=0.5, *, at_edge="warn"):
    """A finer space around the ``top_k`` best trials: for each LogUniform/Uniform
    parameter, the range the top trials span, widened by ``margin`` (in decades for
    LogUniform, as a fraction of the span for Uniform).  The coarse → fine step.

    When the widened range crosses a bound of the coarse space (:func:`edges_hit`), the best
    trials sit at its edge and the optimum may lie beyond it.  ``at_edge`` says what to do:
    ``"extend"`` lets the fine range go past that bound (search where the evidence points),
    ``"clamp"`` keeps it inside the coarse bounds, ``"warn"`` (default) clamps and warns with
    :class:`SearchEdgeWarning`.  A parameter whose top trials press against *both* bounds shows
    no direction (the top trials span its whole range: it barely matters); it keeps its coarse
    range and is never warned about.
    """
    if at_edge not in ("warn", "clamp", "extend"):
        raise ValueError(f"at_edge must be 'warn', 'clamp' or 'extend', got {at_edge!r}")
    top = result.top(top_k)
    if not top:
        raise ValueError("no successful trials to narrow around")
    hit = {name: side for name, side in edges_hit(space, result, top_k, margin).items() if side != "both"}
    if hit and at_edge == "warn":
        import warnings
        where = ", ".join(f"{name} ({side} edge)" for name, side in hit.items())
        warnings.warn(f"the {top_k} best trials sit at the edge of the search space: {where}; the fine "
                      "range is clamped there, so the optimum may lie outside it. Pass "
                      "at_edge='extend' to search beyond the edge.", SearchEdgeWarning, stacklevel=2)
    new = {}
    for name, dist in space.items():
        if not isinstance(dist, (LogUniform, Uniform)):
            new[name] = dist
            continue
        lo, hi = _widened(dist, [t.params[name] for t in top], margin)
        if at_edge != "extend" or name not in hit:
            lo, hi = max(lo, dist.low), min(hi, dist.high)
        if isinstance(dist, LogUniform):
            lo = max(lo, np.finfo(float).tiny)
        new[name] = type(dist)(lo, hi)
    return new


def successive_halving(objective, space, n_trials, *, min_budget=1, eta=3, rounds=None, seed=0,
                       n_jobs=1, client=None, max_budget=None):
    """Successive halving (Jamieson & Talwalkar 2016): evaluate ``n_trials`` settings on a
    small budget, keep the best ``1/eta``, give them ``eta`` times the budget, repeat.

    The objective receives the budget as ``params["budget"]`` (e.g. epochs), capped at
    ``max_budget`` if given.  Returns the list of :class:`SearchResult` per round (the last one
    holds the winners).  The settings and trial seeds are those of
    ``random_search(objective, space, n_trials, seed=seed)``, so a round run at the full budget
    repeats that search's trials exactly.

    The minimum budget must be large enough for the first round's ranking to mean something:
    if every trial is still at chance after ``min_budget``, the survivors are a random pick.
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
        if max_budget is not None:
            budget = min(budget, max_budget)
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


class ToyObjective:
    """A fast stand-in for training: a smooth bump of "validation accuracy" in log space,

        val_acc = 0.98 * exp(-d / 2) + N(0, noise^2),
        d = (log10 lr - log10 lr_opt)^2 + wd_weight * (log10 wd - log10 wd_opt)^2,

    seeded by the trial seed.  ``wd_weight`` says how much the weight decay matters relative to
    the learning rate (0: not at all, as in chapter 08's real search).  Diverges (NaN) for
    lr > 0.5 and raises for non-positive values, like a real objective can."""

    def __init__(self, lr_opt=1e-3, wd_opt=1e-6, wd_weight=0.25, noise=0.005):
        self.lr_opt, self.wd_opt, self.wd_weight, self.noise = lr_opt, wd_opt, wd_weight, noise

    def __call__(self, params, seed):
        lr, wd = params["lr"], params.get("weight_decay", self.wd_opt)
        if lr <= 0 or wd <= 0:
            raise ValueError(f"lr and weight_decay must be positive, got lr={lr}, weight_decay={wd}")
        if lr > 0.5:
            return {"val_acc": float("nan"), "diverged": True}
        d = ((math.log10(lr) - math.log10(self.lr_opt)) ** 2
             + self.wd_weight * (math.log10(wd) - math.log10(self.wd_opt)) ** 2)
        noise = np.random.default_rng(seed).normal(0, self.noise)
        return {"val_acc": float(0.98 * math.exp(-d / 2) + noise)}


def grid_vs_random_toy(space, n_draws, *, points_per_axis=4, wd_weight=0.25, seed=0, optimum=None):
    """Best-of-budget of grid search vs random search (same number of trials) on
    :class:`ToyObjective` bumps whose optimum is drawn log-uniformly over ``space`` (an ``lr``
    and a ``weight_decay`` LogUniform), once per draw.

    The optima and the searches' seeds come from separate streams, so where the optimum sits
    is independent of where the random search looks.  ``optimum=(lr, weight_decay)`` fixes the
    optimum instead (only the searches' seeds then vary).  Returns ``{"grid": array, "random":
    array}`` of the best validation accuracy per draw."""
    lr_d, wd_d = space["lr"], space["weight_decay"]
    where = np.random.default_rng([seed, 0])
    search_seeds = np.random.default_rng([seed, 1]).integers(0, 2**31 - 1, n_draws)
    n_trials = points_per_axis ** len(space)
    grid, rand = np.empty(n_draws), np.empty(n_draws)
    for k in range(n_draws):
        lr_opt, wd_opt = optimum if optimum is not None else (lr_d.sample(where), wd_d.sample(where))
        bump = ToyObjective(lr_opt=lr_opt, wd_opt=wd_opt, wd_weight=wd_weight)
        grid[k] = grid_search(bump, space, points_per_axis, seed=int(search_seeds[k])).best.val_acc
        rand[k] = random_search(bump, space, n_trials, seed=int(search_seeds[k])).best.val_acc
    return {"grid": grid, "random": rand}


def toy_objective(params, seed):
    """A fast stand-in for training, for demos and tests: a smooth bump of "validation accuracy"
    peaking at lr = 1e-3, weight_decay = 1e-6 (in log space) plus seeded noise; diverges for
    lr > 0.5 and fails (raises) for negative values.  (:class:`ToyObjective` with its defaults,
    except that a zero weight decay is allowed here.)"""
    lr, wd = params["lr"], params.get("weight_decay", 1e-6)
    if lr <= 0 or wd < 0:
        raise ValueError(f"lr and weight_decay must be positive, got lr={lr}, weight_decay={wd}")
    if lr > 0.5:
        return {"val_acc": float("nan"), "diverged": True}
    d = (math.log10(lr) + 3) ** 2 + 0.25 * (math.log10(wd) + 6) ** 2
    noise = np.random.default_rng(seed).normal(0, 0.005)
    return {"val_acc": float(0.98 * math.exp(-d / 2) + noise)}
