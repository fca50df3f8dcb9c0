"""Hyperparameter search whose trials run serially, on the local cores, or on a Dask cluster.

>>> space = {"lr": LogUniform(1e-6, 1e-2), "weight_decay": LogUniform(1e-8, 1e-4)}
>>> objective = MLPObjective(data, sizes=[784, 100, 100, 10], num_epochs=3)
>>> result = random_search(objective, space, n_trials=20, seed=0, n_jobs=2)
>>> result.best.params, result.best.val_acc

Every trial's parameters and seed are drawn up front in the calling process from
``seed``, so a search returns the same results whether it runs serially
(``n_jobs=1``), in parallel on local worker processes (``n_jobs=2``, ``-1`` = all cores;
joblib's loky processes), or on a Dask cluster (``client=distributed.Client(...)`` or
``client="tcp://host:8786"``; Dask is an optional extra).

An objective is a picklable callable ``objective(params: dict, seed: int) -> dict``
returning at least ``"val_acc"`` (a real number); it may also return ``"diverged": True``,
a ``"message"`` and any other numbers or curves.  Every trial ends with one status, and no
status stops the search or drops the trial:

========== ====================================================================================
``ok``       the objective returned a finite number as ``val_acc``
``diverged`` it said ``diverged=True``, or ``val_acc`` is NaN or infinite (``trial.error`` says which)
``failed``   it raised, returned no ``val_acc`` or a non-number (the string ``"0.9"``, ``None``),
             or its worker process died (out of memory, a crash in native code)
``timeout``  it ran longer than ``timeout`` seconds and was abandoned
========== ====================================================================================

**Timeouts** (``timeout=`` seconds per trial, default None = wait forever) work in every mode:

* serial: with a timeout the trials run one at a time in *one worker process* (not in the
  calling process), which is killed when a trial overruns and replaced for the next one.
  Costs: starting that process (about a second, once per session and after each kill), and
  the objective is pickled for every trial; a lambda or local function works (cloudpickle).
* ``n_jobs``: each worker process runs one trial at a time; the one that overruns is killed
  and replaced, the other trials go on.
* Dask: a worker cannot kill a running task, so the trial runs in a thread of the task and
  is *abandoned* at the deadline: the search moves on, but that thread keeps running on the
  worker until the objective returns (``client.restart()`` stops it).

The clock starts when the trial starts on a ready worker (process start-up is not counted,
but the objective's own imports are: allow a few seconds of margin).

**Dead workers**: a local worker process that dies (joblib/loky ``TerminatedWorkerError``) or a
Dask ``KilledWorker`` marks its trial ``failed`` with the reason; the search goes on on a
fresh worker and keeps every finished trial.  **Ctrl-C** (KeyboardInterrupt) stops the search
and returns what finished: ``result.interrupted`` is True and the unfinished trials keep the
status ``"pending"``.

**Progress**: ``progress=None`` (default) shows a ``tqdm.auto`` bar only for searches of at
least :data:`PROGRESS_MIN_TRIALS` trials (so small default-scale notebook cells stay quiet);
``True``/``False`` force it on or off.
"""
from __future__ import annotations

import math
import numbers
import os
import threading
import time
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product

import numpy as np

#: A search of at least this many trials shows a progress bar when ``progress=None``.
PROGRESS_MIN_TRIALS = 50
#: How long a fresh worker process may take to start before the search gives up (seconds).
WORKER_START_TIMEOUT = 120.0
#: How long ``client="tcp://..."`` tries to reach the Dask scheduler (seconds).
CONNECT_TIMEOUT = 10.0
STATUSES = ("ok", "diverged", "failed", "timeout")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


# ------------------------------------------------------------------------ validation
def _real(what, value, *, example):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {value!r} ({type(value).__name__}); e.g. {example}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}; e.g. {example}")
    return value


def _integer(what, value, *, minimum, example):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}); "
                        f"e.g. {example}")
    if value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value}; e.g. {example}")
    return int(value)


def _check_timeout(timeout):
    if timeout is None:
        return None
    _real("timeout (seconds per trial)", timeout, example="timeout=600, or None to wait forever")
    if timeout <= 0:
        raise ValueError(f"timeout is in seconds per trial and must be > 0, got {timeout}; "
                         "e.g. timeout=600, or None to wait forever")
    return float(timeout)


def _check_n_jobs(n_jobs):
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer (1: serial, 2: two worker processes, -1: all "
                         f"cores), got {n_jobs!r}")
    return int(n_jobs)


def _check_progress(progress):
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True, False or None (a bar for searches of at least "
                        f"{PROGRESS_MIN_TRIALS} trials), got {progress!r}")
    return progress


# --------------------------------------------------------------------- search spaces
@dataclass(frozen=True)
class LogUniform:
    """``10 ** U(log10 low, log10 high)``: every decade equally likely (the right prior for
    scale parameters like learning rates and weight decay).  Needs finite ``0 < low < high``."""

    low: float
    high: float

    def __post_init__(self):
        for name in ("low", "high"):
            _real(f"LogUniform {name}", getattr(self, name), example="LogUniform(1e-6, 1e-2)")
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got ({self.low}, {self.high}); e.g. "
                             "LogUniform(1e-6, 1e-2). For a range that includes 0 or negatives use Uniform")

    def sample(self, rng):
        return float(10 ** rng.uniform(math.log10(self.low), math.log10(self.high)))

    def grid(self, n):
        return [float(v) for v in np.logspace(math.log10(self.low), math.log10(self.high), n)]


@dataclass(frozen=True)
class Uniform:
    """``U(low, high)``; needs finite ``low < high``."""

    low: float
    high: float

    def __post_init__(self):
        for name in ("low", "high"):
            _real(f"Uniform {name}", getattr(self, name), example="Uniform(0.0, 0.5)")
        if not self.low < self.high:
            raise ValueError(f"Uniform needs low < high, got ({self.low}, {self.high}); e.g. Uniform(0.0, 0.5). "
                             "For a fixed value leave the parameter out of the space (or use Choice((value,)))")

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def grid(self, n):
        return [float(v) for v in np.linspace(self.low, self.high, n)]


@dataclass(frozen=True)
class Choice:
    """One of a non-empty sequence of ``options``, each equally likely: ``Choice((32, 64, 128))``."""

    options: tuple

    def __post_init__(self):
        opts = self.options
        if isinstance(opts, (str, bytes)):
            raise TypeError(f"Choice takes a sequence of options, got the string {opts!r}; write "
                            f"Choice(({opts!r},)) for one option or Choice(('relu', 'tanh')) for several")
        try:
            opts = tuple(opts)
        except TypeError:
            raise TypeError(f"Choice takes a sequence of options, got {opts!r} ({type(opts).__name__}); "
                            "e.g. Choice((32, 64, 128))") from None
        if not opts:
            raise ValueError("Choice needs at least one option, got none; e.g. Choice((32, 64, 128))")
        object.__setattr__(self, "options", opts)

    def sample(self, rng):
        return self.options[int(rng.integers(len(self.options)))]

    def grid(self, n):
        return list(self.options)


def _check_space(space):
    if not isinstance(space, Mapping):
        raise TypeError(f"the search space must be a dict of distributions, got {type(space).__name__}; "
                        "e.g. {'lr': LogUniform(1e-6, 1e-2)}")
    if not space:
        raise ValueError("the search space is empty: give a dict like {'lr': LogUniform(1e-6, 1e-2)}")
    for name, dist in space.items():
        if not isinstance(name, str):
            raise TypeError(f"the space's keys are parameter names (str), got {name!r}; "
                            "e.g. {'lr': LogUniform(1e-6, 1e-2)}")
        if not hasattr(dist, "sample"):
            raise TypeError(f"space[{name!r}] = {dist!r} is not a distribution; use LogUniform, Uniform or Choice "
                            f"(a fixed value v: Choice(({dist!r},)))")


# --------------------------------------------------------------------------- trials
@dataclass
class Trial:
    """One evaluated setting: its parameters, seed, outcome, and what the objective returned.

    ``status``: "ok" | "diverged" | "failed" | "timeout" (see the module docstring), or
    "pending" when the search was interrupted before the trial finished.  ``error`` gives
    the reason for any status but "ok"; ``seconds`` the trial's wall time."""

    index: int
    params: dict
    seed: int
    status: str = "pending"
    val_acc: float = float("nan")
    error: str = ""
    metrics: dict = field(default_factory=dict)
    seconds: float = float("nan")

    @property
    def ok(self):
        return self.status == "ok"


def _as_number(value):
    """``float(value)`` for a real number (Python, numpy or a 0-d array), else None."""
    if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _judge(trial, out):
    """Fill ``trial``'s status, val_acc, error and metrics from the objective's return value."""
    if not isinstance(out, Mapping):
        trial.status = "failed"
        trial.error = (f"the objective returned {type(out).__name__} {str(out)[:60]!r}, not a dict; "
                       "return a dict like {'val_acc': 0.93}")
        return trial
    trial.metrics = metrics = dict(out)
    if "val_acc" not in metrics:
        trial.status = "failed"
        trial.error = (f"the objective's result has no 'val_acc' (keys: {sorted(map(str, metrics))}); "
                       "return the validation accuracy as {'val_acc': 0.93, ...}")
        return trial
    raw = metrics["val_acc"]
    value = _as_number(raw)
    if value is None:
        trial.status = "failed"
        trial.error = (f"val_acc is {type(raw).__name__} {str(raw)[:40]!r}, not a number; "
                       "return a float, e.g. {'val_acc': float(acc)}")
        return trial
    trial.val_acc = value
    if metrics.get("diverged"):
        trial.status = "diverged"
        trial.error = str(metrics.get("message") or "the objective reported diverged=True")
    elif not math.isfinite(value):
        trial.status = "diverged"
        trial.error = str(metrics.get("message") or f"val_acc is {value}: the training diverged or produced "
                                                     "NaN; try a smaller learning rate")
    else:
        trial.status = "ok"
    return trial


def run_trial(objective, index, params, seed) -> Trial:
    """Evaluate one trial, turning exceptions, divergence and bad results into a recorded status.

    KeyboardInterrupt is not caught (it stops the search, see the module docstring)."""
    trial = Trial(index, dict(params), int(seed))
    start = time.perf_counter()
    try:
        out = objective(dict(params), int(seed))
    except Exception as e:  # a broken trial is a result, not a crash of the whole search
        trial.seconds = time.perf_counter() - start
        trial.status = "failed"
        trial.error = f"{type(e).__name__}: {e}"
        trial.metrics = {"traceback": traceback.format_exc(limit=3)}
        return trial
    trial.seconds = time.perf_counter() - start
    return _judge(trial, out)


def _lost_trial(job, status, error, seconds=float("nan")):
    index, params, seed = job
    return Trial(index, dict(params), int(seed), status=status, error=error, seconds=seconds)


def _timeout_error(timeout, where):
    return (f"timed out after {timeout:g} s and was abandoned{where}; if trials of this size need longer, "
            "raise timeout=, else make the trial smaller (fewer epochs, a smaller budget or model)")


def _run_trial_with_deadline(objective, index, params, seed, timeout):
    """:func:`run_trial` in a daemon thread that is abandoned after ``timeout`` seconds (Dask tasks:
    a Dask worker cannot kill a running task)."""
    if timeout is None:
        return run_trial(objective, index, params, seed)
    box = []
    thread = threading.Thread(target=lambda: box.append(run_trial(objective, index, params, seed)),
                              name=f"course-lib-trial-{index}", daemon=True)
    thread.start()
    thread.join(timeout)
    if box:
        return box[0]
    return _lost_trial((index, params, seed), "timeout", _timeout_error(
        timeout, " (its thread keeps running on the Dask worker until the objective returns; "
                 "client.restart() stops it)"), seconds=timeout)


@dataclass
class SearchResult:
    """The trials of one search, in the order they were drawn (``trials[i].index == i``).

    ``interrupted`` is True when Ctrl-C stopped the search; the unfinished trials are then
    "pending"."""

    trials: list
    interrupted: bool = False

    @property
    def ok_trials(self):
        return [t for t in self.trials if t.ok]

    @property
    def best(self) -> Trial:
        ok = self.ok_trials
        if not ok:
            reasons = sorted({f"{t.status}: {t.error}" for t in self.trials})[:3]
            raise ValueError("no trial finished successfully; look at result.trials (status and error) — "
                             f"e.g. {reasons}")
        return max(ok, key=lambda t: (t.val_acc, -t.index))

    def top(self, k):
        return sorted(self.ok_trials, key=lambda t: (-t.val_acc, t.index))[:k]

    def counts(self) -> dict:
        out = {s: 0 for s in STATUSES}
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


# ------------------------------------------------------------------------- progress
class _NoBar:
    def update(self, trial):
        pass

    def close(self):
        pass


class _Bar:
    """A tqdm.auto bar over the trials, with the best val_acc and the count of non-ok trials."""

    def __init__(self, total, desc, force):
        from tqdm.auto import tqdm
        # progress=True overrides TQDM_DISABLE; the automatic bar respects it
        self.bar = tqdm(total=total, desc=desc, unit="trial", **({"disable": False} if force else {}))
        self.best, self.bad = -math.inf, 0

    def update(self, trial):
        if trial.ok:
            self.best = max(self.best, trial.val_acc)
        else:
            self.bad += 1
        post = f"best val_acc {self.best:.4f}" if self.best > -math.inf else "no ok trial yet"
        self.bar.set_postfix_str(post + (f", {self.bad} not ok" if self.bad else ""), refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()


def _progress_bar(total, progress, desc):
    show = total >= PROGRESS_MIN_TRIALS if progress is None else bool(progress)
    if not show:
        return _NoBar()
    try:
        return _Bar(total, desc, force=progress is not None)
    except ImportError:
        if progress:
            raise ImportError("progress=True needs tqdm: pip install tqdm (or pass progress=False)") from None
        return _NoBar()


# -------------------------------------------------------------------- worker processes
def _ready():
    return os.getpid()


class _Slots:
    """``n`` worker processes, each in its own single-worker loky executor, so that one that
    overruns or dies can be killed and replaced without touching the others."""

    def __init__(self, n, threads):
        self.n, self.threads = n, threads
        self.executors = [None] * n

    def _start(self, i):
        from joblib.externals.loky.process_executor import ProcessPoolExecutor
        env = None if self.threads is None else {v: str(self.threads) for v in _THREAD_VARS}
        ex = ProcessPoolExecutor(max_workers=1, env=env, timeout=300)
        try:
            ex.submit(_ready).result(timeout=WORKER_START_TIMEOUT)
        except BaseException as e:
            ex.shutdown(wait=False, kill_workers=True)
            if isinstance(e, KeyboardInterrupt):
                raise
            raise RuntimeError(f"could not start a worker process for the search ({type(e).__name__}: {e}); "
                               "check the memory and process limits, or run serially (n_jobs=1, no timeout)") \
                from e
        self.executors[i] = ex
        return ex

    def get(self, i):
        """Slot ``i``'s executor, started (or checked: an idle worker may have exited) and ready."""
        ex = self.executors[i]
        if ex is None:
            return self._start(i)
        try:  # a cheap round trip; respawns an idle-timed-out worker before a trial's clock starts
            ex.submit(_ready).result(timeout=WORKER_START_TIMEOUT)
            return ex
        except Exception:
            self.kill(i)
            return self._start(i)

    def kill(self, i):
        ex, self.executors[i] = self.executors[i], None
        if ex is not None:
            ex.shutdown(wait=False, kill_workers=True)

    def shutdown(self):
        for i in range(self.n):
            ex, self.executors[i] = self.executors[i], None
            if ex is not None:
                ex.shutdown(wait=True)


_SLOTS: list = []   # at most one _Slots, reused by the next search with the same shape


def _slots(n, threads):
    if _SLOTS and (_SLOTS[0].n, _SLOTS[0].threads) != (n, threads):
        _SLOTS.pop().shutdown()
    if not _SLOTS:
        _SLOTS.append(_Slots(n, threads))
    return _SLOTS[0]


def shutdown_workers():
    """Stop the local worker processes kept alive between searches (they would otherwise idle
    for minutes): those of ``n_jobs`` / ``timeout`` searches, and joblib's reusable ones."""
    while _SLOTS:
        _SLOTS.pop().shutdown()
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)


def _check_picklable(objective):
    from joblib.externals.loky.backend.reduction import dumps  # what the workers will receive
    try:
        dumps(objective)
    except Exception as e:
        raise TypeError(f"the objective cannot be sent to worker processes ({type(e).__name__}: {e}); "
                        "make it a module-level function or a class instance without open files, locks or "
                        "generators — or run in this process with n_jobs=1 and timeout=None") from e


def _on_processes(objective, jobs, n_workers, threads, timeout, bar, done):
    """Run ``jobs`` on ``n_workers`` worker processes, at most one trial each, with deadlines."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool
    _check_picklable(objective)
    slots = _slots(n_workers, threads)
    queue, running, free = list(reversed(jobs)), {}, list(range(min(n_workers, len(jobs))))[::-1]

    def finish(trial):
        done.append(trial)
        bar.update(trial)

    try:
        while queue or running:
            while queue and free:
                slot, job = free.pop(), queue.pop()
                ex = slots.get(slot)
                fut = ex.submit(run_trial, objective, *job)
                running[fut] = (job, slot, None if timeout is None else time.monotonic() + timeout)
            deadlines = [d for _, _, d in running.values() if d is not None]
            wait_s = None if not deadlines else max(min(deadlines) - time.monotonic(), 0.0)
            finished, _ = wait(list(running), timeout=wait_s, return_when=FIRST_COMPLETED)
            for fut in finished:
                job, slot, _ = running.pop(fut)
                try:
                    trial = fut.result()
                except BrokenProcessPool as e:   # loky's TerminatedWorkerError: the process died
                    slots.kill(slot)
                    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    trial = _lost_trial(job, "failed", (
                        f"the worker process running this trial died ({type(e).__name__}: {first}); the search "
                        "went on without it. Usually out of memory or a crash in native code: try a smaller "
                        "model or batch, or fewer n_jobs"))
                except Exception as e:           # e.g. the result could not be sent back
                    trial = _lost_trial(job, "failed", f"the trial's result was lost: {type(e).__name__}: {e}")
                free.append(slot)
                finish(trial)
            now = time.monotonic()
            for fut, (job, slot, deadline) in list(running.items()):
                if deadline is not None and now >= deadline and not fut.done():
                    running.pop(fut)
                    slots.kill(slot)
                    free.append(slot)
                    finish(_lost_trial(job, "timeout", _timeout_error(timeout, " (its worker process was "
                                                                               "killed and replaced)"),
                                       seconds=timeout))
    except BaseException:
        for _, slot, _ in running.values():   # stop what still runs, keep what finished
            slots.kill(slot)
        raise


def _connect(client):
    """``client`` as a distributed.Client: an address string is connected to (and closed after)."""
    if client is None or hasattr(client, "submit"):
        return client, False
    if not isinstance(client, str):
        raise TypeError(f"client must be a distributed.Client or a scheduler address like "
                        f"'tcp://127.0.0.1:8786', got {type(client).__name__}")
    try:
        from distributed import Client
    except ImportError:
        raise ImportError(f"client={client!r} needs Dask: pip install 'distributed' "
                          "(or run on local processes with n_jobs=2)") from None
    try:
        return Client(client, timeout=CONNECT_TIMEOUT, set_as_default=False), True
    except (OSError, TimeoutError) as e:
        raise ConnectionError(f"could not reach a Dask scheduler at {client!r} ({type(e).__name__}: {e}); start "
                              "one (`dask scheduler`, then `dask worker ADDRESS`), check the address and port, "
                              "or pass a connected distributed.Client") from e


def _on_dask(objective, jobs, client, timeout, bar, done):
    """Run ``jobs`` on a Dask cluster, no more at a time than it has threads: a trial then starts
    when it is submitted, and a dying worker takes no queued trial down with it."""
    from distributed import as_completed
    queue, futures = list(reversed(jobs)), {}
    stream = as_completed(loop=client.loop)

    def fill():
        capacity = max(sum(client.nthreads().values()), 1)
        while queue and len(futures) < capacity:
            job = queue.pop()
            fut = client.submit(_run_trial_with_deadline, objective, *job, timeout, pure=False)
            futures[fut] = job
            stream.add(fut)

    try:
        fill()
        for fut in stream:
            job = futures.pop(fut)
            try:
                trial = fut.result()
            except Exception as e:   # KilledWorker, a lost or cancelled task: the trial's, not the search's
                trial = _lost_trial(job, "failed", (
                    f"the Dask worker running this trial was lost ({type(e).__name__}: {e}); the search went on "
                    "without it. Usually the worker ran out of memory or crashed: give workers more memory or "
                    "make the trial smaller"))
            done.append(trial)
            bar.update(trial)
            fill()
    except BaseException:
        client.cancel(list(futures))
        raise


def _execute(objective, settings, n_jobs=1, client=None, *, timeout=None, progress=None, desc="trials"):
    """Run ``[(params, seed), ...]``; results come back in the order given, whatever the executor."""
    jobs = [(i, p, s) for i, (p, s) in enumerate(settings)]
    done, interrupted = [], False
    bar = _progress_bar(len(jobs), progress, desc)
    try:
        if client is not None:
            _on_dask(objective, jobs, client, timeout, bar, done)
        elif n_jobs == 1 and timeout is None:
            for job in jobs:
                trial = run_trial(objective, *job)
                done.append(trial)
                bar.update(trial)
        elif n_jobs == 1:
            _on_processes(objective, jobs, 1, None, timeout, bar, done)
        else:
            # Trials are the parallel unit: each worker gets cpu_count // workers BLAS threads, even if
            # the parent asks for more (OPENBLAS_NUM_THREADS=2 with 2 workers on 2 cores would make
            # 4 spinning BLAS threads fight for 2 cores, several times slower).
            n_cpu = os.cpu_count() or 1
            n_workers = max(n_cpu + 1 + n_jobs, 1) if n_jobs < 0 else n_jobs
            _on_processes(objective, jobs, n_workers, max(n_cpu // min(n_workers, n_cpu), 1), timeout, bar, done)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    finished = {t.index for t in done}
    trials = done + [Trial(i, dict(p), int(s)) for i, p, s in jobs if i not in finished]
    if interrupted:
        warnings.warn(f"search interrupted: {len(done)} of {len(jobs)} trials finished; the result keeps them "
                      "(result.interrupted is True, the others are 'pending')", RuntimeWarning, stacklevel=3)
    return SearchResult(sorted(trials, key=lambda t: t.index), interrupted=interrupted)


def _seeds(rng, n):
    return [int(s) for s in rng.integers(0, 2**31 - 1, n)]


def _prepare(space, n_jobs, client, timeout, progress):
    _check_space(space)
    return _check_n_jobs(n_jobs), _connect(client), _check_timeout(timeout), _check_progress(progress)


def random_search(objective, space, n_trials, *, seed=0, n_jobs=1, client=None, timeout=None,
                  progress=None) -> SearchResult:
    """Sample ``n_trials`` settings from ``space`` and evaluate them (see the module docstring for
    ``n_jobs``, ``client``, ``timeout`` and ``progress``)."""
    n_trials = _integer("n_trials", n_trials, minimum=1, example="n_trials=20")
    n_jobs, (client, own), timeout, progress = _prepare(space, n_jobs, client, timeout, progress)
    try:
        rng = np.random.default_rng(seed)
        settings = [{name: dist.sample(rng) for name, dist in space.items()} for _ in range(n_trials)]
        return _execute(objective, list(zip(settings, _seeds(rng, n_trials))), n_jobs, client,
                        timeout=timeout, progress=progress, desc="random search")
    finally:
        if own:
            client.close()


def grid_search(objective, space, points_per_axis, *, seed=0, n_jobs=1, client=None, timeout=None,
                progress=None) -> SearchResult:
    """Evaluate the Cartesian grid with ``points_per_axis`` values per parameter
    (log-spaced for :class:`LogUniform`, every option of a :class:`Choice`)."""
    points_per_axis = _integer("points_per_axis", points_per_axis, minimum=1, example="points_per_axis=4")
    n_jobs, (client, own), timeout, progress = _prepare(space, n_jobs, client, timeout, progress)
    try:
        names = list(space)
        axes = [space[n].grid(points_per_axis) for n in names]
        settings = [dict(zip(names, combo)) for combo in product(*axes)]
        rng = np.random.default_rng(seed)
        return _execute(objective, list(zip(settings, _seeds(rng, len(settings)))), n_jobs, client,
                        timeout=timeout, progress=progress, desc="grid search")
    finally:
        if own:
            client.close()


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
                       n_jobs=1, client=None, max_budget=None, timeout=None, progress=None):
    """Successive halving (Jamieson & Talwalkar 2016): evaluate ``n_trials`` settings on a
    small budget, keep the best ``1/eta``, give them ``eta`` times the budget, repeat.

    The objective receives the budget as ``params["budget"]`` (e.g. epochs), capped at
    ``max_budget`` if given.  Returns the list of :class:`SearchResult` per round (the last one
    holds the winners).  The settings and trial seeds are those of
    ``random_search(objective, space, n_trials, seed=seed)``, so a round run at the full budget
    repeats that search's trials exactly.  ``eta`` is an integer >= 2 (the factor by which the
    field shrinks and the budget grows); ``timeout`` applies to every trial of every round.
    A round in which no trial is "ok" ends the search (nothing to promote).

    The minimum budget must be large enough for the first round's ranking to mean something:
    if every trial is still at chance after ``min_budget``, the survivors are a random pick.
    """
    n_trials = _integer("n_trials", n_trials, minimum=1, example="n_trials=27")
    eta = _integer("eta", eta, minimum=2, example="eta=3 (keep the best third, triple the budget)")
    _real("min_budget", min_budget, example="min_budget=1 (epoch)")
    if min_budget <= 0:
        raise ValueError(f"min_budget must be > 0, got {min_budget}; e.g. min_budget=1 (epoch)")
    if max_budget is not None:
        _real("max_budget", max_budget, example="max_budget=27")
        if max_budget < min_budget:
            raise ValueError(f"max_budget ({max_budget}) is below min_budget ({min_budget}); raise max_budget "
                             "or leave it None")
    if rounds is not None:
        rounds = _integer("rounds", rounds, minimum=1, example="rounds=3, or None to halve down to one trial")
    n_jobs, (client, own), timeout, progress = _prepare(space, n_jobs, client, timeout, progress)
    try:
        rng = np.random.default_rng(seed)
        settings = [{name: dist.sample(rng) for name, dist in space.items()} for _ in range(n_trials)]
        seeds = _seeds(rng, n_trials)
        survivors = list(range(n_trials))
        budget, rounds_out = min_budget, []
        while survivors:
            batch = [({**settings[i], "budget": budget}, seeds[i]) for i in survivors]
            res = _execute(objective, batch, n_jobs, client, timeout=timeout, progress=progress,
                           desc=f"halving round {len(rounds_out) + 1} (budget {budget:g})")
            for t, i in zip(res.trials, survivors):
                t.index = i
            rounds_out.append(res)
            keep = max(len(survivors) // eta, 1)
            if res.interrupted or len(survivors) == 1 or (rounds is not None and len(rounds_out) >= rounds):
                break
            ranked = sorted(res.ok_trials, key=lambda t: (-t.val_acc, t.index))[:keep]
            survivors = [t.index for t in ranked]
            budget *= eta
            if max_budget is not None:
                budget = min(budget, max_budget)
        return rounds_out
    finally:
        if own:
            client.close()


# ------------------------------------------------------------------ a ready objective
def _finite(x):
    v = _as_number(x)
    return v is not None and math.isfinite(v)


class MLPObjective:
    """Train an MLP with the trial's ``lr`` and ``weight_decay`` (and any MLP/fit keyword given
    in the space) and report validation accuracy — never test accuracy.

    ``data``: a :class:`course_lib.data.Splits` (train and val are used; test is not touched).
    The instance is picklable, so it runs unchanged on joblib or Dask workers.

    A run counts as diverged (``"diverged": True``, so the search records it as "diverged", never
    "ok") when ``fit`` says so (``history.diverged``) or when the final training loss, validation
    loss or validation accuracy is not finite — e.g. lr 1e7, whose NaN logits would otherwise
    give a chance-level "accuracy" from argmax.  A Ctrl-C inside ``fit`` stops the search.
    """

    MODEL_KEYS = ("activation", "norm", "dropout", "init")

    def __init__(self, data, sizes=(784, 100, 100, 10), *, num_epochs=3, batch_size=100,
                 optimizer="sgd", device="cpu", **model_kwargs):
        from course_lib.backend import to_numpy
        for split in ("train", "val"):
            x, y = getattr(data, f"x_{split}", None), getattr(data, f"y_{split}", None)
            if x is None or y is None or len(x) == 0:
                raise ValueError(f"MLPObjective needs data with a non-empty {split} split (x_{split}, y_{split}); "
                                 "pass course_lib.data.load_mnist(val_size=1000) or a Splits")
        self.num_epochs = _integer("num_epochs", num_epochs, minimum=1, example="num_epochs=3")
        self.batch_size = _integer("batch_size", batch_size, minimum=1, example="batch_size=100")
        # store host copies so the objective pickles the same way on every backend
        self.x_train, self.y_train = to_numpy(data.x_train), to_numpy(data.y_train)
        self.x_val, self.y_val = to_numpy(data.x_val), to_numpy(data.y_val)
        self.sizes = list(sizes)
        self.optimizer, self.device, self.model_kwargs = optimizer, device, model_kwargs

    def __call__(self, params, seed):
        from course_lib import backend
        from course_lib.model import MLP
        from course_lib.optim import make_optimizer
        from course_lib.trainer import fit
        backend.use(self.device)
        params = dict(params)
        if "lr" not in params:
            raise KeyError(f"MLPObjective needs an 'lr' in the search space (got {sorted(params)}); "
                           "e.g. {'lr': LogUniform(1e-6, 1e-2)}")
        num_epochs = int(params.pop("budget", self.num_epochs))
        model_kw = {**self.model_kwargs, **{k: params.pop(k) for k in list(params) if k in self.MODEL_KEYS}}
        lr, wd = params.pop("lr"), params.pop("weight_decay", 0.0)
        model = MLP(self.sizes, seed=seed, **model_kw)
        opt = make_optimizer(self.optimizer, lr=lr, weight_decay=wd, **params)
        train = (backend.asarray(self.x_train), backend.asarray(self.y_train))
        val = (backend.asarray(self.x_val), backend.asarray(self.y_val))
        with np.errstate(all="ignore"):
            h = fit(model, train, val=val, optimizer=opt, num_epochs=num_epochs,
                    batch_size=self.batch_size, seed=seed, progress=False)
        if getattr(h, "interrupted", False):   # Ctrl-C inside fit: stop the search, not just this trial
            raise KeyboardInterrupt
        last = {"val_acc": h.val_acc[-1] if h.val_acc else float("nan"),
                "val_loss": h.val_loss[-1] if getattr(h, "val_loss", None) else float("nan"),
                "train_loss": h.train_loss[-1] if getattr(h, "train_loss", None) else float("nan")}
        bad = [k for k, v in last.items() if not _finite(v)]
        diverged = bool(h.diverged) or bool(bad)
        message = ""
        if diverged:
            message = h.message if h.diverged and h.message else (
                f"{', '.join(bad)} not finite after training ({', '.join(f'{k}={last[k]}' for k in bad)}): the "
                f"run diverged at lr={lr:g}; try a smaller learning rate")
        return {"val_acc": float("nan") if diverged else float(last["val_acc"]), "diverged": diverged,
                "message": message, "val_loss": float(last["val_loss"]) if _finite(last["val_loss"]) else float("nan"),
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
        grid[k] = grid_search(bump, space, points_per_axis, seed=int(search_seeds[k]),
                              progress=False).best.val_acc
        rand[k] = random_search(bump, space, n_trials, seed=int(search_seeds[k]),
                                progress=False).best.val_acc
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
