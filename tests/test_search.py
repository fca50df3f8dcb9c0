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
    fine = S.narrow(SPACE, S.random_search(S.toy_objective, SPACE, 30, seed=1), top_k=5)
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
