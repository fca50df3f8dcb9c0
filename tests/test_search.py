"""Hyperparameter search: serial, local-parallel (joblib) and Dask runs agree; failures are recorded."""
import math

import numpy as np
import pytest

from course_lib import search as S
from course_lib.data import load_mnist

SPACE = {"lr": S.LogUniform(1e-6, 1e-2), "weight_decay": S.LogUniform(1e-8, 1e-4)}


def test_log_uniform_covers_decades_evenly():
    rng = np.random.default_rng(0)
    v = np.array([S.LogUniform(1e-6, 1e-2).sample(rng) for _ in range(4000)])
    assert v.min() >= 1e-6 and v.max() <= 1e-2
    counts = np.histogram(np.log10(v), bins=4, range=(-6, -2))[0]
    assert counts.min() > 0.85 * counts.max()  # each decade about equally likely
    with pytest.raises(ValueError, match="0 < low < high"):
        S.LogUniform(0, 1)


def test_random_search_is_deterministic_and_finds_the_peak():
    a = S.random_search(S.toy_objective, SPACE, 40, seed=3)
    b = S.random_search(S.toy_objective, SPACE, 40, seed=3)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.val_acc for t in a.trials] == [t.val_acc for t in b.trials]
    assert abs(math.log10(a.best.params["lr"]) + 3) < 0.7


def test_failed_and_diverged_trials_are_recorded_not_dropped():
    space = {"lr": S.Uniform(-0.2, 1.0)}
    res = S.random_search(S.toy_objective, space, 30, seed=0)
    counts = res.counts()
    assert len(res.trials) == 30 and counts["failed"] > 0 and counts["diverged"] > 0 and counts["ok"] > 0
    failed = next(t for t in res.trials if t.status == "failed")
    assert "ValueError" in failed.error
    assert res.best.status == "ok"


def test_grid_narrow_and_successive_halving():
    grid = S.grid_search(S.toy_objective, SPACE, 4)
    assert len(grid.trials) == 16 and sorted(set(grid.values("lr"))) == pytest.approx(np.logspace(-6, -2, 4))
    fine = S.narrow(SPACE, S.random_search(S.toy_objective, SPACE, 30, seed=1), top_k=5, at_edge="clamp")
    assert fine["lr"].high / fine["lr"].low < SPACE["lr"].high / SPACE["lr"].low

    def budget_objective(params, seed):
        return S.toy_objective({k: v for k, v in params.items() if k != "budget"}, seed)

    rounds = S.successive_halving(budget_objective, SPACE, 9, eta=3)
    assert [len(r.trials) for r in rounds] == [9, 3, 1]
    assert [r.trials[0].params["budget"] for r in rounds] == [1, 3, 9]


@pytest.fixture(scope="module")
def tiny_objective():
    data = load_mnist(n_train=300, val_size=200, n_test=10)
    return S.MLPObjective(data, sizes=[784, 32, 10], num_epochs=2, batch_size=50)


def _summary(res):
    return [(t.index, t.status, round(t.val_acc, 12), tuple(sorted(t.params.items()))) for t in res.trials]


@pytest.mark.slow
def test_serial_and_local_parallel_runs_agree(tiny_objective):
    space = {"lr": S.LogUniform(1e-3, 1.0), "weight_decay": S.LogUniform(1e-8, 1e-4)}
    serial = S.random_search(tiny_objective, space, 4, seed=7)
    parallel = S.random_search(tiny_objective, space, 4, seed=7, n_jobs=2)
    assert _summary(serial) == _summary(parallel)
    assert serial.best.val_acc > 0.5


@pytest.mark.slow
def test_dask_local_cluster_agrees_with_serial(tiny_objective):
    distributed = pytest.importorskip("distributed", reason="Dask is an optional extra")
    space = {"lr": S.LogUniform(1e-3, 1.0)}
    serial = S.random_search(tiny_objective, space, 3, seed=11)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, processes=True) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = S.random_search(tiny_objective, space, 3, seed=11, client=client)
    assert _summary(on_dask) == _summary(serial)


# ------------------------------------------------------------------ edges, halving cap, toy comparison
def _edge_result():
    """A coarse search on a bump peaking at lr = 0.05, above the space's ceiling of 1e-2."""
    return S.random_search(S.ToyObjective(lr_opt=0.05), SPACE, 40, seed=0)


def test_narrow_clamps_and_warns_at_an_edge_or_extends_past_it():
    res = _edge_result()
    hit = S.edges_hit(SPACE, res, top_k=5)
    assert hit["lr"] == "high" and hit["weight_decay"] == "both"   # the top 5 span the whole λ axis
    with pytest.warns(S.SearchEdgeWarning, match="lr \\(high edge\\)"):
        warned = S.narrow(SPACE, res, top_k=5)
    clamped = S.narrow(SPACE, res, top_k=5, at_edge="clamp")
    extended = S.narrow(SPACE, res, top_k=5, at_edge="extend")
    assert warned == clamped and clamped["lr"].high == SPACE["lr"].high
    top_lr = max(t.params["lr"] for t in res.top(5))
    assert extended["lr"].high == pytest.approx(top_lr * 10 ** 0.5) and extended["lr"].high > SPACE["lr"].high
    assert extended["lr"].low == clamped["lr"].low          # only the edge that was hit moves
    assert extended["weight_decay"] == SPACE["weight_decay"]  # no direction on λ: it keeps its range
    # a fine search in the extended range gets closer to the true optimum than the clamped one
    fine_c = S.random_search(S.ToyObjective(lr_opt=0.05), clamped, 20, seed=1)
    fine_e = S.random_search(S.ToyObjective(lr_opt=0.05), extended, 20, seed=1)
    assert fine_e.best.val_acc > fine_c.best.val_acc + 0.02
    with pytest.raises(ValueError, match="at_edge"):
        S.narrow(SPACE, res, at_edge="grow")


def test_narrow_inside_the_space_does_not_warn():
    import warnings
    res = S.random_search(S.toy_objective, SPACE, 40, seed=0)          # peak at lr 1e-3: inside
    assert "lr" not in S.edges_hit(SPACE, res, top_k=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", S.SearchEdgeWarning)
        fine = S.narrow({"lr": SPACE["lr"]}, res, top_k=5)
    assert SPACE["lr"].low < fine["lr"].low < fine["lr"].high < SPACE["lr"].high


def test_successive_halving_caps_the_budget_and_repeats_the_random_search():
    def budget_objective(params, seed):
        return S.toy_objective({k: v for k, v in params.items() if k != "budget"}, seed)

    rounds = S.successive_halving(budget_objective, SPACE, 27, min_budget=6, eta=3, rounds=3, max_budget=50)
    assert [len(r.trials) for r in rounds] == [27, 9, 3]
    assert [r.trials[0].params["budget"] for r in rounds] == [6, 18, 50]
    full = S.random_search(S.toy_objective, SPACE, 27, seed=0)
    for t in rounds[-1].trials:      # same settings and trial seeds as the plain random search
        twin = full.trials[t.index]
        assert {k: v for k, v in t.params.items() if k != "budget"} == twin.params and t.seed == twin.seed


def test_toy_objective_class_matches_the_function_and_grid_vs_random_is_seeded():
    for lr, wd in [(1e-3, 1e-6), (3e-5, 1e-8), (0.2, 1e-4)]:
        assert S.ToyObjective()({"lr": lr, "weight_decay": wd}, 5) == S.toy_objective({"lr": lr, "weight_decay": wd}, 5)
    assert S.ToyObjective()({"lr": 0.9}, 0)["diverged"]
    space = {"lr": S.LogUniform(1e-5, 1e-1), "weight_decay": S.LogUniform(1e-8, 1e-4)}
    a = S.grid_vs_random_toy(space, 50, seed=3)
    b = S.grid_vs_random_toy(space, 50, seed=3)
    assert np.array_equal(a["grid"], b["grid"]) and np.array_equal(a["random"], b["random"])
    # with a weight decay that does not matter, random search wins clearly more often than not
    flat = S.grid_vs_random_toy(space, 400, wd_weight=0.0, seed=0)
    assert np.mean(flat["random"] > flat["grid"]) > 0.65


def _worker_blas_threads(params, seed):
    import os
    return {"val_acc": 0.5, "threads": os.environ.get("OPENBLAS_NUM_THREADS")}


@pytest.mark.slow
def test_parallel_workers_do_not_oversubscribe_blas(monkeypatch):
    import os
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "8")      # the parent asks for many BLAS threads
    n_cpu = os.cpu_count() or 1
    res = S.random_search(_worker_blas_threads, {"lr": S.LogUniform(1e-3, 1e-1)}, 4, seed=0, n_jobs=n_cpu)
    S.shutdown_workers()
    assert {t.metrics["threads"] for t in res.trials} == {"1"}   # cpu_count // workers


# ------------------------------------------------------------------ a search that survives (issue 13.6)
KINDS = ("ok", "hang", "die", "text", "none", "nan", "ok2")


def _mixed(params, seed):
    """One trial of each kind: finishes, hangs, kills its process, returns junk or NaN."""
    import os
    import time
    kind = params["kind"]
    if kind == "hang":
        time.sleep(120)
    if kind == "die":
        os._exit(3)
    if kind == "text":
        return {"val_acc": "0.9"}
    if kind == "none":
        return {"val_acc": None}
    if kind == "nan":
        return {"val_acc": float("nan")}
    return {"val_acc": 0.5 + (seed % 100) / 1000}


def _check_mixed(res, elapsed, timeout):
    status = {t.params["kind"]: t.status for t in res.trials}
    assert status == {"ok": "ok", "hang": "timeout", "die": "failed", "text": "failed", "none": "failed",
                      "nan": "diverged", "ok2": "ok"}, status
    err = {t.params["kind"]: t.error for t in res.trials}
    assert f"timed out after {timeout:g} s" in err["hang"] and "raise timeout=" in err["hang"]
    assert "died" in err["die"] or "lost" in err["die"], err["die"]
    assert "not a number" in err["text"] and "float" in err["text"]
    assert "not a number" in err["none"]
    assert "smaller learning rate" in err["nan"]
    assert res.counts() == {"ok": 2, "diverged": 1, "failed": 3, "timeout": 1}
    assert res.best.params["kind"] in ("ok", "ok2") and not res.interrupted
    assert next(t for t in res.trials if t.status == "timeout").seconds == timeout
    assert elapsed < 60, f"the search waited {elapsed:.0f} s: the hanging trial was not abandoned"


@pytest.mark.slow
@pytest.mark.parametrize("n_jobs", [1, 2], ids=["serial", "joblib"])
def test_timeout_and_dead_worker_keep_the_search_going(n_jobs):
    import time
    start = time.monotonic()
    res = S.grid_search(_mixed, {"kind": S.Choice(KINDS)}, 1, n_jobs=n_jobs, timeout=3)
    _check_mixed(res, time.monotonic() - start, 3)
    # the replacement workers run the next search normally, with the same results as in-process
    again = S.random_search(S.toy_objective, SPACE, 4, seed=5, n_jobs=n_jobs, timeout=30)
    assert _summary(again) == _summary(S.random_search(S.toy_objective, SPACE, 4, seed=5))
    S.shutdown_workers()


@pytest.mark.slow
def test_dask_timeout_killed_worker_and_address_string():
    distributed = pytest.importorskip("distributed", reason="Dask is an optional extra")
    import time

    import dask
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                     dashboard_address=None, processes=True) as cluster:
        start = time.monotonic()
        res = S.grid_search(_mixed, {"kind": S.Choice(KINDS)}, 1, client=cluster.scheduler_address, timeout=3)
        _check_mixed(res, time.monotonic() - start, 3)
    assert "KilledWorker" in next(t.error for t in res.trials if t.params["kind"] == "die")


def _interrupt_at_3(params, seed):
    if params["lr"] == _interrupt_at_3.lrs[3]:
        raise KeyboardInterrupt
    return S.toy_objective(params, seed)


def test_ctrl_c_returns_the_finished_trials():
    space = {"lr": S.LogUniform(1e-5, 1e-1)}
    full = S.random_search(S.toy_objective, space, 8, seed=2)
    _interrupt_at_3.lrs = [t.params["lr"] for t in full.trials]
    with pytest.warns(RuntimeWarning, match="3 of 8 trials finished"):
        res = S.random_search(_interrupt_at_3, space, 8, seed=2)
    assert res.interrupted and [t.status for t in res.trials] == ["ok"] * 3 + ["pending"] * 5
    assert [t.val_acc for t in res.trials[:3]] == [t.val_acc for t in full.trials[:3]]
    assert res.best.index in (0, 1, 2)


def test_progress_bar_on_long_searches_only(capsys, monkeypatch):
    made = []
    monkeypatch.setattr(S, "_Bar", lambda total, desc, force: made.append((total, force)) or S._NoBar())
    S.random_search(S.toy_objective, SPACE, S.PROGRESS_MIN_TRIALS - 1, seed=0)   # default: quiet when short
    S.random_search(S.toy_objective, SPACE, S.PROGRESS_MIN_TRIALS, seed=0)       # long: a bar
    assert made == [(S.PROGRESS_MIN_TRIALS, False)]
    monkeypatch.undo()
    # (the test session sets TQDM_DISABLE=1, which the automatic bar respects; progress=True overrides it)
    S.random_search(S.toy_objective, SPACE, 5, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "random search" in err and "5/5" in err and "best val_acc" in err
    S.random_search(S.toy_objective, SPACE, S.PROGRESS_MIN_TRIALS, seed=0, progress=False)
    assert "trial" not in capsys.readouterr().err
    S.successive_halving(S.toy_objective, SPACE, 9, eta=3, progress=True)
    assert "halving round 2 (budget 3)" in capsys.readouterr().err


@pytest.mark.slow
def test_progress_bar_in_parallel_mode(capsys):
    S.random_search(S.toy_objective, SPACE, 4, seed=0, n_jobs=2, progress=True)
    assert "4/4" in capsys.readouterr().err


@pytest.mark.parametrize("lr", [1e7, float("inf")], ids=["lr=1e7", "lr=inf"])
def test_mlp_objective_never_calls_a_blown_up_run_ok(tiny_objective, lr):
    res = S.random_search(tiny_objective, {"lr": S.Choice((lr,))}, 1, seed=0)
    t = res.trials[0]
    assert t.status in ("diverged", "failed") and not t.ok, (t.status, t.val_acc)
    assert math.isnan(t.val_acc) and ("learning rate" in t.error or "lr" in t.error), t.error


def test_ctrl_c_inside_fit_stops_the_search_not_just_the_trial(tiny_objective, monkeypatch):
    from course_lib import trainer
    real_fit, calls = trainer.fit, []

    def fit_interrupted_on_the_second_trial(*args, **kwargs):
        calls.append(1)
        h = real_fit(*args, **kwargs)
        if len(calls) == 2:
            h.interrupted = True     # what fit returns after Ctrl-C: a partial history
        return h

    monkeypatch.setattr(trainer, "fit", fit_interrupted_on_the_second_trial)
    with pytest.warns(RuntimeWarning, match="1 of 3 trials finished"):
        res = S.random_search(tiny_objective, {"lr": S.LogUniform(1e-2, 1e-1)}, 3, seed=0)
    assert res.interrupted and [t.status for t in res.trials] == ["ok", "pending", "pending"] and len(calls) == 2
