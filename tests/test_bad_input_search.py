"""The search's part of the bad-input catalogue (issue 13, item 9): every case either raises a
clear error, or ends as a recorded trial status with a reason — and in both the message says
what to do.  One table of raising cases, one of trial statuses; each row is one catalogue entry.
"""
import math
import threading

import numpy as np
import pytest

from course_lib import search as S
from course_lib.data import Splits

LR = {"lr": S.LogUniform(1e-4, 1e-2)}


def _toy(**kw):
    return lambda: S.random_search(S.toy_objective, LR, **{"n_trials": 2, **kw})


def _halving(**kw):
    return lambda: S.successive_halving(lambda p, s: {"val_acc": 0.5}, LR, **{"n_trials": 3, **kw})


class _Locked:
    """An objective holding a lock: it cannot be pickled for worker processes."""

    def __init__(self):
        self.lock = threading.Lock()

    def __call__(self, params, seed):
        return {"val_acc": 0.5}


def _no_val_data():
    x = np.zeros((4, 784), np.float32)
    y = np.zeros(4, np.int64)
    return Splits(x, y, x[:0], y[:0], x, y, name="no-val", class_names=tuple("0123456789"))


def _tiny_data():
    rng = np.random.default_rng(0)
    x = rng.random((40, 784)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    return Splits(x, y, x[:20], y[:20], x[:5], y[:5], name="tiny", class_names=tuple("0123456789"))


def _no_ok_trials():
    return S.random_search(lambda p, s: {"val_acc": float("nan")}, LR, 2).best


def _unreachable_scheduler(monkeypatch):
    pytest.importorskip("distributed", reason="Dask is an optional extra")
    monkeypatch.setattr(S, "CONNECT_TIMEOUT", 1.0)
    return S.random_search(S.toy_objective, LR, 2, client="tcp://127.0.0.1:9")


# (case id, call, error type, a regex the message must match: what was wrong AND what to do)
RAISES = [
    ("LogUniform(0, 1)", lambda: S.LogUniform(0, 1), ValueError, r"0 < low < high.*e\.g\. LogUniform\(1e-6"),
    ("LogUniform(1e-3, inf)", lambda: S.LogUniform(1e-3, math.inf), ValueError, r"finite.*e\.g\."),
    ("LogUniform(nan, 1)", lambda: S.LogUniform(math.nan, 1.0), ValueError, r"finite.*e\.g\."),
    ("LogUniform('1e-3', 1)", lambda: S.LogUniform("1e-3", 1.0), TypeError, r"must be a number.*str.*e\.g\."),
    ("Uniform(1, 1)", lambda: S.Uniform(1.0, 1.0), ValueError, r"low < high.*Choice\(\(value,\)\)"),
    ("Choice(())", lambda: S.Choice(()), ValueError, r"at least one option.*e\.g\. Choice\(\(32, 64, 128\)\)"),
    ("Choice('relu')", lambda: S.Choice("relu"), TypeError, r"the string 'relu'.*Choice\(\('relu',\)\)"),
    ("Choice(5)", lambda: S.Choice(5), TypeError, r"sequence of options.*e\.g\."),
    ("space={}", lambda: S.random_search(S.toy_objective, {}, 2), ValueError, r"empty.*give a dict like"),
    ("space=list", lambda: S.random_search(S.toy_objective, [("lr", 0.1)], 2), TypeError,
     r"dict of distributions.*e\.g\."),
    ("space value 0.1", lambda: S.random_search(S.toy_objective, {"lr": 0.1}, 2), TypeError,
     r"not a distribution.*Choice\(\(0\.1,\)\)"),
    ("n_trials=0", _toy(n_trials=0), ValueError, r"n_trials must be an integer >= 1.*e\.g\. n_trials="),
    ("n_trials=2.5", _toy(n_trials=2.5), TypeError, r"n_trials must be an integer >= 1"),
    ("points_per_axis=0", lambda: S.grid_search(S.toy_objective, LR, 0), ValueError,
     r"points_per_axis must be an integer >= 1.*e\.g\. points_per_axis=4"),
    ("points_per_axis=2.0", lambda: S.grid_search(S.toy_objective, LR, 2.0), TypeError,
     r"points_per_axis must be an integer"),
    ("halving eta=1", _halving(eta=1), ValueError, r"eta must be an integer >= 2.*e\.g\. eta=3"),
    ("halving eta=0", _halving(eta=0), ValueError, r"eta must be an integer >= 2"),
    ("halving eta=2.5", _halving(eta=2.5), TypeError, r"eta must be an integer >= 2"),
    ("halving min_budget=0", _halving(min_budget=0), ValueError, r"min_budget must be > 0.*e\.g\."),
    ("halving max_budget<min", _halving(min_budget=5, max_budget=2), ValueError, r"below min_budget.*raise max_budget"),
    ("halving rounds=0", _halving(rounds=0), ValueError, r"rounds must be an integer >= 1.*or None"),
    ("timeout=0", _toy(timeout=0), ValueError, r"seconds per trial.*> 0.*or None to wait forever"),
    ("timeout=nan", _toy(timeout=math.nan), ValueError, r"finite.*or None to wait forever"),
    ("timeout='60'", _toy(timeout="60"), TypeError, r"must be a number.*timeout=600"),
    ("n_jobs=0", _toy(n_jobs=0), ValueError, r"non-zero integer \(1: serial.*-1: all cores\)"),
    ("client=42", _toy(client=42), TypeError, r"distributed\.Client or a scheduler address like 'tcp://"),
    ("progress='yes'", _toy(progress="yes"), TypeError, r"True, False or None"),
    ("unpicklable objective, n_jobs=2", lambda: S.random_search(_Locked(), LR, 2, n_jobs=2), TypeError,
     r"cannot be sent to worker processes.*module-level.*n_jobs=1 and timeout=None"),
    ("MLPObjective without a val split", lambda: S.MLPObjective(_no_val_data()), ValueError,
     r"non-empty val split.*load_mnist\(val_size="),
    ("MLPObjective num_epochs=0", lambda: S.MLPObjective(_tiny_data(), num_epochs=0), ValueError,
     r"num_epochs must be an integer >= 1.*e\.g\."),
    ("result.best, no ok trial", _no_ok_trials, ValueError, r"no trial finished successfully; look at result\.trials"),
    ("narrow(at_edge='grow')", lambda: S.narrow(LR, S.random_search(S.toy_objective, LR, 3), at_edge="grow"),
     ValueError, r"at_edge must be 'warn', 'clamp' or 'extend'"),
]


@pytest.mark.parametrize("call, error, advice", [pytest.param(c, e, a, id=i) for i, c, e, a in RAISES])
def test_bad_input_raises_with_advice(call, error, advice):
    with pytest.raises(error, match=advice):
        call()


def test_unreachable_scheduler_address_says_how_to_start_one(monkeypatch):
    with pytest.raises(ConnectionError, match=r"could not reach a Dask scheduler at 'tcp://127\.0\.0\.1:9'.*"
                                              r"dask scheduler"):
        _unreachable_scheduler(monkeypatch)


def _returns(value):
    return lambda params, seed: value


def _raises(params, seed):
    raise RuntimeError("CUDA out of memory; lower the batch size")


# (case id, objective, expected status, a regex the trial's error must match ("" for ok))
STATUSES = [
    ("val_acc is the string '0.9'", _returns({"val_acc": "0.9"}), "failed", r"str '0\.9', not a number.*float"),
    ("val_acc is None", _returns({"val_acc": None}), "failed", r"NoneType.*not a number; return a float"),
    ("val_acc is a list", _returns({"val_acc": [0.9]}), "failed", r"list.*not a number"),
    ("val_acc is True", _returns({"val_acc": True}), "failed", r"bool.*not a number"),
    ("returns None", _returns(None), "failed", r"returned NoneType.*not a dict; return a dict like"),
    ("returns a bare 0.9", _returns(0.9), "failed", r"returned float.*not a dict; return a dict like"),
    ("no val_acc key", _returns({"acc": 0.9}), "failed", r"no 'val_acc' \(keys: \['acc'\]\).*return the validation"),
    ("val_acc NaN", _returns({"val_acc": float("nan")}), "diverged", r"val_acc is nan.*smaller learning rate"),
    ("val_acc inf", _returns({"val_acc": float("inf")}), "diverged", r"val_acc is inf.*smaller learning rate"),
    ("diverged=True with a message", _returns({"val_acc": 0.1, "diverged": True, "message": "loss 1e21; lower lr"}),
     "diverged", r"loss 1e21; lower lr"),
    ("diverged=True, no message", _returns({"val_acc": 0.1, "diverged": True}), "diverged", r"reported diverged"),
    ("objective raises", _raises, "failed", r"RuntimeError: CUDA out of memory; lower the batch size"),
    ("val_acc np.float32", _returns({"val_acc": np.float32(0.75)}), "ok", ""),
    ("val_acc 0-d array", _returns({"val_acc": np.array(0.75)}), "ok", ""),
]


@pytest.mark.parametrize("objective, status, reason", [pytest.param(o, s, r, id=i) for i, o, s, r in STATUSES])
def test_bad_objective_results_are_recorded_with_a_reason(objective, status, reason):
    res = S.random_search(objective, LR, 2, seed=0)
    assert [t.status for t in res.trials] == [status] * 2
    for t in res.trials:
        if status == "ok":
            assert t.val_acc == pytest.approx(0.75) and t.error == ""
        else:
            assert t.error and __import__("re").search(reason, t.error), t.error
            if status == "failed":
                assert math.isnan(t.val_acc)


def test_mlp_objective_without_lr_fails_with_advice():
    obj = S.MLPObjective(_tiny_data(), sizes=[784, 8, 10], num_epochs=1, batch_size=20)
    res = S.random_search(obj, {"weight_decay": S.LogUniform(1e-6, 1e-4)}, 1)
    assert res.trials[0].status == "failed"
    assert "needs an 'lr' in the search space" in res.trials[0].error and "LogUniform" in res.trials[0].error
