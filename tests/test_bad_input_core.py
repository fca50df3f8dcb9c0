# ruff: noqa: E501  (the catalogue is a table: one case per line reads best)
"""The bad-input catalogue of the core (issue 13, item 9): every careless or hostile input to
layers, model, optimizers, initialisers, trainer, state and backend, with the error it must
give.  Each case asserts the error TYPE and that the message says what to do (a pattern
with the valid range or the fix).  Cases that already worked before issue 13 are kept here
too, so that they stay working.  The second table lists bad runs that must be *reported*
(diverged, interrupted, dropped batch) rather than raised.
"""
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from _helpers import blobs

from course_lib import backend, optim
from course_lib import functional as F
from course_lib import gradcheck as G
from course_lib import layers as L
from course_lib.init import initialize
from course_lib.model import MLP
from course_lib.trainer import Hook, evaluate, fit


@pytest.fixture(autouse=True)
def _cpu():
    previous = backend.device
    backend.use("cpu")
    backend.seed(0)
    yield
    backend.use(previous)


def _data(n=64):
    x, y = blobs(np, n=n)
    return x, y


def _fit(model=None, x=None, y=None, **kw):
    x0, y0 = _data()
    kw.setdefault("num_epochs", 1)
    kw.setdefault("batch_size", 16)
    kw.setdefault("progress", False)
    return fit(model or MLP([10, 8, 3], seed=0), (x0 if x is None else x, y0 if y is None else y), **kw)


def _with_nan(rows):
    x, y = _data()
    x[rows, 2] = np.nan
    return x


def _labels(values):
    x, y = _data()
    y = y.copy()
    for i, v in values.items():
        y[i] = v
    return y


def _onehot_nan():
    x, y = _data()
    oh = np.eye(3, dtype=np.float32)[y]
    oh[5, 1] = np.nan
    return oh


NAN, INF = float("nan"), float("inf")

# (id, thunk, exception type, pattern the message must match: what was wrong AND what to do)
CASES = [
    # -- optimizers ------------------------------------------------------------------------------
    ("sgd-lr-nan", lambda: optim.SGD(NAN), ValueError, r"lr must be a finite number in \(0, inf\).*e\.g\. lr="),
    ("sgd-lr-inf", lambda: optim.SGD(INF), ValueError, r"lr must be a finite number in \(0, inf\)"),
    ("sgd-lr-zero", lambda: optim.SGD(0.0), ValueError, r"lr must be in \(0, inf\).*pass a value in that range"),
    ("sgd-lr-negative", lambda: optim.SGD(-1), ValueError, r"lr must be in \(0, inf\)"),
    ("sgd-lr-string", lambda: optim.SGD("0.1"), TypeError, r"lr must be a number.*pass a Python float"),
    ("sgd-lr-none", lambda: optim.SGD(None), TypeError, r"lr must be a number"),
    ("weight-decay-nan", lambda: optim.SGD(0.1, weight_decay=NAN), ValueError, r"weight_decay must be a finite number in \[0, inf\)"),
    ("weight-decay-negative", lambda: optim.SGD(0.1, weight_decay=-1e-4), ValueError, r"weight_decay must be in \[0, inf\)"),
    ("momentum-1.5", lambda: optim.Momentum(0.1, momentum=1.5), ValueError, r"momentum must be in \[0, 1\).*velocity.*momentum=0\.9"),
    ("momentum-1", lambda: optim.Momentum(0.1, momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    ("nesterov-momentum-nan", lambda: optim.Nesterov(0.1, momentum=NAN), ValueError, r"momentum must be a finite"),
    ("adam-beta1-1", lambda: optim.Adam(beta1=1.0), ValueError, r"beta1 must be in \[0, 1\).*e\.g\. beta1=0\.9"),
    ("adam-beta2-negative", lambda: optim.Adam(beta2=-0.1), ValueError, r"beta2 must be in \[0, 1\)"),
    ("adam-eps-zero", lambda: optim.Adam(eps=0.0), ValueError, r"eps must be in \(0, inf\).*eps=1e-08"),
    ("adagrad-eps-zero", lambda: optim.AdaGrad(0.1, eps=0), ValueError, r"eps must be in \(0, inf\)"),
    ("decay-filter-not-callable", lambda: optim.SGD(0.1, decay_filter="W"), TypeError, r"decay_filter must be a function"),
    ("unknown-optimizer", lambda: optim.make_optimizer("rmsprop", lr=0.1), ValueError, r"use one of \["),
    ("update-before-backward", lambda: optim.SGD(0.1).update({"W": np.zeros(2)}, {}), KeyError, r"call backward\(\) before update\(\)"),
    # -- initialisation --------------------------------------------------------------------------
    ("init-nan", lambda: L.Linear(3, 2, init=NAN), ValueError, r"init std must be a finite number >= 0.*init=0\.01"),
    ("init-inf", lambda: L.Linear(3, 2, init=INF), ValueError, r"finite number >= 0"),
    ("init-negative", lambda: L.Linear(3, 2, init=-1.0), ValueError, r"finite number >= 0"),
    ("init-unknown-name", lambda: L.Linear(3, 2, init="glorious"), ValueError, r"use one of \[.*a number"),
    ("init-callable-nan", lambda: initialize(lambda i, o, r: np.full((i, o), np.nan), 3, 2), ValueError, r"non-finite.*must return finite floats"),
    ("init-callable-shape", lambda: initialize(lambda i, o, r: np.zeros((o, i)), 3, 2), ValueError, r"expected \(3, 2\)"),
    # -- layers ----------------------------------------------------------------------------------
    ("linear-zero-features", lambda: L.Linear(0, 3), ValueError, r"in_features must be an integer >= 1"),
    ("linear-float-features", lambda: L.Linear(3.5, 2), TypeError, r"in_features must be an integer.*pass e\.g\."),
    ("linear-int-dtype", lambda: L.Linear(3, 2, dtype="int32"), TypeError, r"float type.*dtype='float32'"),
    ("bn-eps-zero", lambda: L.BatchNorm1d(4, eps=0), ValueError, r"eps must be in \(0, inf\).*variance"),
    ("bn-eps-nan", lambda: L.BatchNorm1d(4, eps=NAN), ValueError, r"eps must be a finite number"),
    ("bn-momentum-1.5", lambda: L.BatchNorm1d(4, momentum=1.5), ValueError, r"momentum must be in \[0, 1\].*weight of the new batch"),
    ("bn-zero-features", lambda: L.BatchNorm1d(0), ValueError, r"num_features must be an integer >= 1"),
    ("layernorm-eps-negative", lambda: L.LayerNorm(4, eps=-1e-5), ValueError, r"eps must be in \(0, inf\)"),
    ("groupnorm-zero-groups", lambda: L.GroupNorm(4, 0), ValueError, r"num_groups must be an integer >= 1"),
    ("groupnorm-not-dividing", lambda: L.GroupNorm(6, 4), ValueError, r"not divisible.*one of \[1, 2, 3, 6\]"),
    ("groupnorm-zero-features", lambda: L.GroupNorm(0, 1), ValueError, r"num_features must be an integer >= 1"),
    ("renorm-schedule-not-callable", lambda: L.BatchRenorm1d(4, schedule=(3, 5)), TypeError, r"schedule must be a function.*lambda step"),
    ("dropout-p-1", lambda: L.Dropout(1.0), ValueError, r"Dropout p must be in \[0, 1\).*drop probability"),
    ("dropout-p-nan", lambda: L.Dropout(NAN), ValueError, r"Dropout p must be a finite"),
    ("leaky-slope-negative", lambda: L.LeakyReLU(-0.1), ValueError, r"slope must be in \[0, 1\)"),
    ("layer-input-list", lambda: L.Linear(2, 2).forward([[1.0, 2.0]]), TypeError, r"Python list.*backend\.asarray"),
    ("layer-input-int", lambda: L.Linear(2, 2).forward(np.ones((3, 2), int)), TypeError, r"float array.*astype"),
    ("layer-input-dtype", lambda: L.Linear(2, 2).forward(np.ones((3, 2))), TypeError, r"float64.*x\.astype\('float32'\)"),
    ("layer-input-shape", lambda: L.BatchNorm1d(4).forward(np.ones((3, 5), np.float32)), ValueError, r"expected input of shape \(N, 4\), got \(3, 5\)"),
    ("bn-batch-of-one", lambda: L.BatchNorm1d(4).forward(np.ones((1, 4), np.float32)), ValueError, r"batch of 2 or more.*eval\(\)"),
    ("layer-input-other-device", lambda: L.Linear(2, 2).forward(backend.move(np.ones((3, 2), np.float32), "standin")), TypeError, r"lives on 'cpu' but the input is on 'standin'.*model\.to\('standin'\)"),
    # -- model -----------------------------------------------------------------------------------
    ("mlp-sizes-string", lambda: MLP("784"), TypeError, r"list of layer widths such as \[784, 100, 10\]"),
    ("mlp-sizes-one", lambda: MLP([784]), ValueError, r"at least input and output sizes.*sizes=\[784, 100, 10\]"),
    ("mlp-sizes-zero", lambda: MLP([784, 0, 10]), ValueError, r"all >= 1"),
    ("mlp-sizes-float", lambda: MLP([784, 10.5, 10]), TypeError, r"sizes must hold integers"),
    ("mlp-activation", lambda: MLP([4, 2], activation="gelu"), ValueError, r"Unknown activation 'gelu'; use one of"),
    ("mlp-norm", lambda: MLP([4, 2], norm="instance"), ValueError, r"Unknown norm 'instance'; use one of"),
    ("mlp-dropout-1", lambda: MLP([4, 2], dropout=1.0), ValueError, r"dropout must be in \[0, 1\).*drop probability"),
    ("mlp-forward-list", lambda: MLP([2, 2]).forward([[1.0, 2.0]]), TypeError, r"Python list.*backend\.asarray"),
    ("mlp-forward-shape", lambda: MLP([4, 2]).forward(np.ones((3, 5), np.float32)), ValueError, r"expected input of shape \(N, 4\)"),
    ("mlp-backward-after-eval-pass", lambda: _backward_after_eval_pass(), RuntimeError, r"keep_activations=True"),
    ("set-params-wrong-shape", lambda: MLP([4, 3, 2]).set_params({"linear0.W": np.zeros((3, 4), np.float32)}), ValueError, r"shape \(3, 4\).*expects \(4, 3\)"),
    ("set-params-wrong-dtype", lambda: MLP([4, 3, 2]).set_params({"linear0.W": np.zeros((4, 3))}), ValueError, r"dtype float64.*astype\('float32'\)"),
    ("set-params-unknown-layer", lambda: MLP([4, 3, 2]).set_params({"conv0.W": np.zeros((4, 3), np.float32)}), ValueError, r"no layer 'conv0'; layers are"),
    ("load-state-not-dict", lambda: MLP([4, 2]).load_state_dict([1, 2]), TypeError, r"dict of arrays \(from state_dict\(\)\)"),
    ("load-state-missing-key", lambda: MLP([4, 2]).load_state_dict({"linear0.W": np.zeros((4, 2), np.float32)}), ValueError, r"missing linear0\.b.*same architecture"),
    ("load-state-unexpected-key", lambda: _load_with_extra_key(), ValueError, r"unexpected linear7\.W"),
    ("load-missing-file", lambda: MLP([4, 2]).load("/nonexistent/model.npz"), FileNotFoundError, r"model\.save"),
    ("to-unknown-device", lambda: MLP([4, 2]).to("tpu"), ValueError, r"choose one of \('cpu', 'gpu', 'standin'\)"),
    ("sequential-bad-name", lambda: L.Sequential([("a.b", L.ReLU())]), ValueError, r"without dots"),
    ("sequential-not-a-layer", lambda: L.Sequential([("a", 3)]), TypeError, r"expected a layer"),
    # -- loss --------------------------------------------------------------------------------------
    ("loss-labels-list", lambda: F.softmax_cross_entropy(np.zeros((2, 3)), [0, 1]), TypeError, r"labels must be an array.*backend\.asarray"),
    ("loss-labels-range", lambda: F.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError, r"labels must be in \[0, 2\]"),
    ("loss-labels-float", lambda: F.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])), TypeError, r"integer class labels expected"),
    # -- fit / evaluate: checked before the first step -------------------------------------------
    ("fit-lr-nan", lambda: _fit(lr=NAN), ValueError, r"lr must be a finite number"),
    ("fit-lr-inf", lambda: _fit(lr=INF), ValueError, r"lr must be a finite number"),
    ("fit-weight-decay-nan", lambda: _fit(weight_decay=NAN), ValueError, r"weight_decay must be a finite"),
    ("fit-lr-with-optimizer-object", lambda: _fit(optimizer=optim.SGD(0.1), lr=0.5), ValueError, r"set them on the optimizer object"),
    ("fit-empty", lambda: _fit(x=np.zeros((0, 10), np.float32), y=np.zeros(0, int)), ValueError, r"training data is empty.*at least one sample"),
    ("evaluate-empty", lambda: evaluate(MLP([10, 3]), np.zeros((0, 10), np.float32), np.zeros(0, int)), ValueError, r"evaluation data is empty"),
    ("fit-length-mismatch", lambda: _fit(y=np.zeros(10, int)), ValueError, r"64 vs 10.*one label per sample"),
    ("fit-two-nan-samples", lambda: _fit(x=_with_nan([40, 3])), ValueError, r"2 samples of x contain NaN or inf \(samples 3, 40\).*not a learning-rate one"),
    ("fit-many-nan-samples", lambda: _fit(x=_with_nan(list(range(10, 20)))), ValueError, r"10 samples.*samples 10, 11, 12, 13, 14 and 5 more"),
    ("fit-val-nan", lambda: _fit(val=(_with_nan([7]), _data()[1])), ValueError, r"validation data: 1 sample of x contains NaN"),
    ("fit-labels-out-of-range", lambda: _fit(y=_labels({3: 42, 9: -1})), ValueError, r"2 labels are outside 0\.\.2 \(samples 3, 9: \[42, -1\]\).*fix the labels"),
    ("fit-val-labels-out-of-range", lambda: _fit(val=(_data()[0], _labels({0: 7}))), ValueError, r"validation data: 1 label is outside 0\.\.2"),
    ("fit-float-labels", lambda: _fit(y=_data()[1].astype(np.float32)), TypeError, r"integer class labels expected.*y\.astype\(int\)"),
    ("fit-onehot-nan", lambda: _fit(y=_onehot_nan()), ValueError, r"one-hot label rows contain NaN.*\(rows 5\)"),
    ("fit-onehot-wrong-width", lambda: _fit(y=np.eye(4, dtype=np.float32)[_data()[1]]), ValueError, r"4 columns but the model has 3 outputs"),
    ("fit-int-x", lambda: _fit(x=np.ones((64, 10), int)), TypeError, r"float array.*astype"),
    ("fit-eval-batch-size-0", lambda: _fit(val=_data(), eval_batch_size=0), ValueError, r"eval_batch_size must be an integer >= 1"),
    ("evaluate-batch-size-0", lambda: evaluate(MLP([10, 3]), *_data(), batch_size=0), ValueError, r"batch_size must be an integer >= 1.*batch_size=1000"),
    ("fit-batch-size-0", lambda: _fit(batch_size=0), ValueError, r"batch_size must be an integer >= 1.*batch_size=128"),
    ("fit-batch-size-float", lambda: _fit(batch_size=16.5), TypeError, r"batch_size must be an integer"),
    ("fit-batch-of-1-with-bn", lambda: _fit(MLP([10, 8, 3], norm="batch"), batch_size=1), ValueError, r"batch_size must be >= 2 .*batch normalization.*LayerNorm"),
    ("fit-negative-epochs", lambda: _fit(num_epochs=-1), ValueError, r"num_epochs must be an integer >= 0"),
    ("fit-train-not-a-pair", lambda: fit(MLP([10, 3]), _data()[0]), TypeError, r"train must be a pair \(x, y\)"),
    # -- backend and gradient checks ---------------------------------------------------------------
    ("backend-unknown-device", lambda: backend.use("tpu"), ValueError, r"choose one of.*COURSE_LIB_DEVICE"),
    ("backend-int-dtype", lambda: backend.set_default_dtype("int32"), ValueError, r"must be a float type"),
    ("backend-negative-seed", lambda: backend.seed(-1), ValueError, r"non-negative int"),
    ("gradcheck-float32", lambda: G.numerical_gradient(lambda: 0.0, np.zeros(3, np.float32)), TypeError, r"float64.*astype\('float64'\)"),
    ("functional-dropout-p", lambda: F.dropout_forward(np.ones(3), 1.5, training=True, rng=None), ValueError, r"drop probability.*\[0, 1\)"),
]


def _backward_after_eval_pass():
    model = MLP([4, 3, 2], seed=0)
    model.keep_activations = False
    model.eval()
    model.forward(np.ones((2, 4), np.float32))
    model.backward(np.ones((2, 2), np.float32))


def _load_with_extra_key():
    model = MLP([4, 2], seed=0)
    state = model.state_dict()
    state["linear7.W"] = np.zeros((2, 2), np.float32)
    model.load_state_dict(state)


@pytest.mark.parametrize("thunk, exc, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_and_says_what_to_do(thunk, exc, pattern):
    with pytest.raises(exc, match=pattern):
        thunk()


def test_catalogue_is_large_and_ids_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 45


def test_bad_data_is_refused_before_any_step():
    """Out-of-range validation labels used to be found after a full epoch: now no step is taken."""
    model = MLP([10, 8, 3], seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    seen = []

    class Count(Hook):
        def on_step(self, step, model, history):
            seen.append(step)

    with pytest.raises(ValueError, match="validation data"):
        _fit(model, val=(_data()[0], _labels({0: 7})), hooks=[Count()])
    assert not seen and all(np.array_equal(v, before[k]) for k, v in model.params.items())


def test_python_lists_are_converted_by_fit_and_evaluate():
    x, y = _data()
    model = MLP([10, 8, 3], seed=0)
    h = fit(model, (x.tolist(), y.tolist()), val=(x.tolist(), y.tolist()), num_epochs=1,
            batch_size=16, progress=False)
    assert h.epochs == 1 and not h.diverged
    assert evaluate(model, x.tolist(), y.tolist()) == evaluate(model, x, y)


# ---------------------------------------------------------------- reported, not raised
def _bn_momentum_big_lr():
    x, y = _data(256)
    return _fit(MLP([10, 32, 32, 3], norm="batch", seed=0), x, y, optimizer=optim.Momentum(1e3),
                num_epochs=5, batch_size=32)


def _huge_inputs():
    x, y = _data()
    return _fit(x=x * np.float32(3e37), y=y)


def _zero_variance_with_eps_zero():
    x, y = _data()
    x[:, 0] = 1.0                                  # a constant feature
    model = L.Sequential([("batchnorm_in", L.BatchNorm1d(10)), ("linear0", L.Linear(10, 3, seed=0))])
    model.layer("batchnorm_in").eps = 0.0          # set behind the constructor's back
    return _fit(model, x, y)


def _val_overflow():
    x, y = _data()
    return _fit(val=(x * np.float32(3e37), y))


@pytest.mark.parametrize("run, kind, pattern", [
    (lambda: _fit(x=_data()[0] * 1000, y=_data()[1], model=MLP([10, 64, 64, 3], init=30.0, seed=0),
                  optimizer=optim.SGD(10.0), num_epochs=5), "optimisation", r"smaller learning rate"),
    (_bn_momentum_big_lr, "optimisation", r"smaller learning rate \(lr=1000"),
    (_huge_inputs, "data", r"inputs are huge.*standardise"),
    (_zero_variance_with_eps_zero, "numerics", r"zero variance.*eps=0\.0.*larger eps"),
    (_val_overflow, "validation", r"validation loss is nan"),
], ids=["explodes-lr", "bn-momentum-lr-1e3", "inputs-3e37", "bn-eps-0-constant-feature", "val-nan"])
def test_divergence_is_reported_with_its_cause(run, kind, pattern):
    h = run()
    assert h.diverged and h.diverge_kind == kind and h.diverged_at_step is not None
    assert "diverged" in h.message and h.summary() == h.message
    assert re.search(pattern, h.message), h.message


def test_an_exploding_finite_loss_counts_as_diverged():
    x, y = _data(256)
    h = _fit(MLP([10, 32, 3], seed=0), x, y, optimizer=optim.SGD(50.0), num_epochs=3, batch_size=32)
    if h.diverged:
        assert max(h.step_loss) > 1e4 * max(h.step_loss[0], 1.0) or not math.isfinite(h.step_loss[-1])
    assert all(math.isfinite(v) for v in h.step_loss[:-1])   # stopped at the first bad step


def test_ctrl_c_returns_the_history_so_far_and_a_usable_model():
    class Interrupt(Hook):
        def on_step(self, step, model, history):
            if step == 5:
                raise KeyboardInterrupt

    model = MLP([10, 8, 3], norm="batch", seed=0)
    h = _fit(model, hooks=[Interrupt()], num_epochs=3)
    assert h.interrupted and len(h.step_loss) == 6 and "interrupted" in h.message
    assert "interrupted after 6 steps" in h.summary()
    loss, acc = evaluate(model, *_data())
    assert math.isfinite(loss) and model.training


def test_other_exceptions_carry_the_partial_history():
    class Boom(Hook):
        def on_step(self, step, model, history):
            if step == 3:
                raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed") as info:
        _fit(hooks=[Boom()])
    assert len(info.value.history.step_loss) == 4
    assert any("exc.history" in n for n in getattr(info.value, "__notes__", []))


def test_a_trailing_batch_of_one_with_bn_is_dropped_and_said_once():
    x, y = _data(65)                                     # 65 = 2 x 32 + 1
    with pytest.warns(UserWarning, match="1 sample.*dropped.*drop_last=True") as record:
        h = _fit(MLP([10, 8, 3], norm="batch", seed=0), x, y, batch_size=32, num_epochs=3)
    assert len(record) == 1 and len(h.notes) == 1
    assert len(h.step_loss) == 6 and not h.diverged      # 2 steps per epoch, no error mid-epoch
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # without BN nothing is dropped or said
        h = _fit(MLP([10, 8, 3], seed=0), x, y, batch_size=32, num_epochs=1)
    assert len(h.step_loss) == 3 and not h.notes


def test_gpu_env_var_without_gpu_does_not_break_import():
    if backend.gpu_available():
        pytest.skip("a GPU is visible here")
    code = ("import warnings; warnings.simplefilter('always');\n"
            "import course_lib, course_lib.backend as b; print('device', b.device)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "COURSE_LIB_DEVICE": "gpu"})
    assert proc.returncode == 0, proc.stderr
    assert "device cpu" in proc.stdout
    assert "RuntimeWarning" in proc.stderr and "runs on the CPU" in proc.stderr and "COURSE_LIB_DEVICE" in proc.stderr
    with pytest.raises(RuntimeError, match="use the CPU"):
        backend.use("gpu")                               # asked for explicitly: a clear error


import re  # noqa: E402  (used by the divergence table)
