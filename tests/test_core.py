"""The numerical core: every backward against a float64 numerical gradient, the BN
conventions, optimizers, trainer and error messages.  Runs on every backend (``xp``)."""
import math

import numpy as np
import pytest
from _helpers import blobs, randn

from course_lib import backend, optim
from course_lib import functional as F
from course_lib import gradcheck as G
from course_lib import init as I
from course_lib import layers as L
from course_lib.model import MLP
from course_lib.trainer import ActivationStats, DeadUnits, GradSnapshots, UpdateRatios, evaluate, fit

# ---------------------------------------------------------------- gradient checks
LAYERS = {
    "linear": lambda: L.Linear(5, 4, dtype=np.float64, seed=3),
    "relu": L.ReLU,
    "leaky_relu": lambda: L.LeakyReLU(0.1),
    "sigmoid": L.Sigmoid,
    "tanh": L.Tanh,
    "batchnorm": lambda: L.BatchNorm1d(5, dtype=np.float64),
    "layernorm": lambda: L.LayerNorm(5, dtype=np.float64),
    "groupnorm": lambda: L.GroupNorm(6, 3, dtype=np.float64),
    "dropout": lambda: L.Dropout(0.4, seed=7),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_backward_matches_numerical_gradient(xp, name):
    layer = LAYERS[name]()
    width = 6 if name == "groupnorm" else 5
    # shifted so that no input sits on ReLU's kink and BN sees a non-trivial mean
    x = randn(7, width, scale=2.0, shift=0.3)
    if isinstance(layer, L._Norm):  # non-trivial gamma/beta
        layer.params["gamma"] = randn(layer.num_features, seed=4) + 1.5
        layer.params["beta"] = randn(layer.num_features, seed=5)
    errors = G.check_layer(layer, x, quiet=True)
    assert errors and max(errors.values()) < 1e-7, errors
    assert ("x" in errors) and all(k.split(".")[-1] in ("x", *layer.params) for k in errors)


def test_batchnorm_eval_mode_gradient(xp):
    bn = L.BatchNorm1d(5, dtype=np.float64)
    bn.buffers["running_mean"], bn.buffers["running_var"] = randn(5, seed=2), randn(5, seed=3) ** 2 + 0.5
    assert max(G.check_layer(bn.eval(), randn(4, 5), quiet=True).values()) < 1e-7


def test_batchrenorm_gradient_with_r_and_d_clipped(xp):
    # r and d are constants in the backward (as in the paper); where they are clipped they are
    # constants of the forward too, so the numerical gradient must agree.
    layer = L.BatchRenorm1d(5, schedule=lambda step: (2.0, 1.0), dtype=np.float64)
    layer.buffers["running_mean"] = xp.full(5, 10.0)
    layer.buffers["running_var"] = xp.full(5, 1e-4)
    assert max(G.check_layer(layer, randn(8, 5), quiet=True).values()) < 1e-7


def test_functional_pairs_and_loss_gradient(xp):
    x, W, b = randn(6, 5), randn(5, 3, seed=2), randn(3, seed=3)
    errs = G.check_pair(F.linear_forward, F.linear_backward, x, W, b, names=["x", "W", "b"], quiet=True)
    assert max(errs.values()) < 1e-7
    logits, y = randn(6, 4, scale=3), xp.asarray(np.array([0, 3, 1, 2, 3, 0]))
    _, dlogits = F.softmax_cross_entropy(logits, y)
    num = G.numerical_gradient(lambda: F.softmax_cross_entropy(logits, y)[0], logits)
    assert G.rel_error(dlogits, num) < 1e-7


def test_whole_model_gradient_with_l2(xp):
    model = MLP([5, 6, 6, 3], norm="batch", dtype=np.float64, seed=1, dropout=0.2)
    x, y = randn(8, 5), xp.asarray(np.arange(8) % 3)

    def loss():
        value, _, _ = model.loss(x, y)
        return float(value) + optim.l2_penalty(model.params, 0.1)[0]

    for _, layer in model.layers:  # fixed dropout masks
        if hasattr(layer, "rng"):
            layer.rng = backend.default_rng(0)
    _, dlogits, _ = model.loss(x, y)
    model.backward(dlogits)
    grads = dict(model.grads)
    for key, g in optim.l2_penalty(model.params, 0.1)[1].items():
        grads[key] = grads[key] + g
    for key, p in model.params.items():
        def f():
            for _, layer in model.layers:
                if hasattr(layer, "rng"):
                    layer.rng = backend.default_rng(0)
            return loss()
        assert G.rel_error(grads[key], G.numerical_gradient(f, p)) < 1e-7, key


def test_staged_and_closed_form_bn_backward_agree(xp):
    x, gamma, beta = randn(16, 7, scale=3, shift=1), randn(7, seed=2), randn(7, seed=3)
    for training in (True, False):
        out, cache, _, _ = F.batchnorm_forward(x, gamma, beta, xp.zeros(7), xp.ones(7), training=training)
        dout = randn(*out.shape, seed=9)
        for a, b in zip(F.batchnorm_backward(dout, cache), F.batchnorm_backward_staged(dout, cache)):
            assert G.rel_error(a, b) < 1e-10


def test_vacuous_gradient_checks_are_vacuous(xp):
    """The traps the gradient-check gallery shows: both give dx == 0 on both sides."""
    gamma, beta = randn(4, seed=2), randn(4, seed=3)
    with pytest.raises(ValueError, match="more than 1 value"):
        F.batchnorm_forward(randn(1, 4), gamma, beta, None, None)
    out, cache, _, _ = F.batchnorm_forward(randn(6, 4), gamma, beta, None, None)
    dx, _, _ = F.batchnorm_backward(xp.ones_like(out), cache)
    assert float(abs(dx).max()) < 1e-12


# ---------------------------------------------------------------- BN conventions
def test_bn_train_mode_normalizes_and_updates_running_stats(xp):
    x = randn(32, 4, scale=3, shift=2)
    bn = L.BatchNorm1d(4, dtype=np.float64)
    assert np.allclose(backend.to_numpy(bn.buffers["running_var"]), 1)
    out = backend.to_numpy(bn(x))
    assert np.allclose(out.mean(0), 0, atol=1e-12) and np.allclose(out.std(0), 1, atol=1e-4)
    xh = backend.to_numpy(x)
    # momentum = weight of the new batch; unbiased variance for the running estimate
    assert np.allclose(backend.to_numpy(bn.buffers["running_mean"]), 0.1 * xh.mean(0))
    assert np.allclose(backend.to_numpy(bn.buffers["running_var"]), 0.9 + 0.1 * xh.var(0, ddof=1))


def test_bn_eval_mode_uses_running_stats(xp):
    bn = L.BatchNorm1d(3, dtype=np.float64)
    for s in range(20):
        bn(randn(16, 3, seed=s, scale=2, shift=5))
    rm, rv = (backend.to_numpy(bn.buffers[k]).copy() for k in ("running_mean", "running_var"))
    x = randn(5, 3, seed=99)
    out = backend.to_numpy(bn.eval()(x))
    assert np.allclose(out, (backend.to_numpy(x) - rm) / np.sqrt(rv + 1e-5))
    assert np.array_equal(backend.to_numpy(bn.buffers["running_mean"]), rm)  # not updated in eval


def test_renorm_with_rmax1_dmax0_is_batchnorm(xp):
    x, gamma, beta = randn(10, 4, scale=2, shift=1), randn(4, seed=2), randn(4, seed=3)
    rm, rv = randn(4, seed=5), randn(4, seed=6) ** 2 + 0.1
    a = F.batchnorm_forward(x, gamma, beta, rm, rv)
    b = F.batchrenorm_forward(x, gamma, beta, rm, rv, r_max=1.0, d_max=0.0)
    for u, v in zip((a[0], a[2], a[3]), (b[0], b[2], b[3])):
        assert np.array_equal(backend.to_numpy(u), backend.to_numpy(v))
    dout = randn(10, 4, seed=7)
    for u, v in zip(F.batchnorm_backward(dout, a[1]), F.batchrenorm_backward(dout, b[1])):
        assert G.rel_error(u, v) < 1e-12
    assert L.renorm_schedule(0) == (1.0, 0.0) and L.renorm_schedule(10**9) == (3.0, 5.0)


def test_batch_of_one_in_training_raises_clearly(xp):
    with pytest.raises(ValueError, match="more than 1 value per feature"):
        L.BatchNorm1d(3)(xp.ones((1, 3), dtype=np.float32))
    L.BatchNorm1d(3).eval()(xp.ones((1, 3), dtype=np.float32))  # fine in eval mode


# ---------------------------------------------------------------- other layers
def test_dropout_is_inverted_with_p_the_drop_probability(xp):
    x = xp.ones((400, 250), dtype=np.float32)
    layer = L.Dropout(0.3, seed=0)
    out = backend.to_numpy(layer(x))
    assert abs((out == 0).mean() - 0.3) < 0.01
    assert abs(out.mean() - 1.0) < 0.02 and np.allclose(out[out > 0], 1 / 0.7)
    assert np.array_equal(backend.to_numpy(layer.eval()(x)), backend.to_numpy(x))
    with pytest.raises(ValueError, match="drop probability"):
        L.Dropout(1.0)


def test_softmax_cross_entropy_is_stable_and_validates(xp):
    logits = xp.asarray(np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]], dtype=np.float32))
    loss, d = F.softmax_cross_entropy(logits, xp.asarray(np.array([0, 2])))
    assert math.isclose(float(loss), math.log(3) / 2, rel_tol=1e-5)
    assert np.isfinite(backend.to_numpy(d)).all()
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        F.softmax_cross_entropy(logits, xp.asarray(np.array([0, 3])))
    onehot = xp.asarray(np.eye(3, dtype=np.float32)[[0, 2]])
    assert math.isclose(float(F.softmax_cross_entropy(logits, onehot)[0]), float(loss), rel_tol=1e-6)


def test_init_schemes_and_errors():
    rng = np.random.default_rng(0)
    assert I.std_for("he", 100, 50) == math.sqrt(2 / 100)
    assert I.std_for("xavier", 100, 300) == math.sqrt(2 / 400)
    assert I.std_for("lecun", 100, 300) == math.sqrt(1 / 100)
    assert I.std_for(0.01, 3, 3) == 0.01
    W = I.initialize("he", 2000, 500, rng)
    assert W.shape == (2000, 500) and abs(W.std() / math.sqrt(2 / 2000) - 1) < 0.01
    with pytest.raises(ValueError, match="he"):
        I.initialize("glorious", 3, 3)


def test_clear_errors_for_bad_input(xp):
    model = MLP([4, 3, 2])
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 4\), got \(2, 5\)"):
        model.forward(xp.ones((2, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="float64"):
        model.forward(xp.ones((2, 4), dtype=np.float64))
    with pytest.raises(TypeError, match="float array"):
        L.Linear(4, 3)(xp.ones((2, 4), dtype=np.int64))
    for kwargs, valid in [({"activation": "gelu"}, "relu"), ({"norm": "instance"}, "batch"),
                          ({"init": "nope"}, "xavier")]:
        with pytest.raises(ValueError, match=valid):
            MLP([4, 3, 2], **kwargs)
    with pytest.raises(ValueError, match="adam"):
        optim.make_optimizer("adamax", lr=0.1)


# ---------------------------------------------------------------- optimizers
@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_optimizers_minimize_a_quadratic(xp, name):
    target = randn(5, 3)
    params = {"W": xp.zeros((5, 3))}
    opt = optim.make_optimizer(name, lr=0.3 if name in ("adagrad", "adam", "adamw") else 0.1)
    for _ in range(300):
        opt.update(params, {"W": params["W"] - target})
    assert G.rel_error(params["W"], target) < 1e-2


def test_weight_decay_skips_biases_gamma_beta_and_equals_l2_for_sgd(xp):
    model_a = MLP([4, 5, 3], norm="batch", dtype=np.float64, seed=0)
    model_b = MLP([4, 5, 3], norm="batch", dtype=np.float64, seed=0)
    x, y = randn(8, 4), xp.asarray(np.arange(8) % 3)
    for model in (model_a, model_b):
        model.backward(model.loss(x, y)[1])
    optim.SGD(0.1, weight_decay=0.01).update(model_a.params, model_a.grads)
    penalty, extra = optim.l2_penalty(model_b.params, 0.01)
    assert sorted(extra) == ["linear0.W", "linear1.W"] and penalty > 0
    grads = {k: g + extra.get(k, 0) for k, g in model_b.grads.items()}
    optim.SGD(0.1).update(model_b.params, grads)
    for k in model_a.params:
        assert G.rel_error(model_a.params[k], model_b.params[k]) < 1e-12
    # Adam's coupled decay differs from AdamW's decoupled one
    pa, pb = {"W": randn(3, 3)}, {"W": randn(3, 3)}
    g = {"W": randn(3, 3, seed=4)}
    optim.Adam(0.1, weight_decay=0.5).update(pa, g)
    optim.AdamW(0.1, weight_decay=0.5).update(pb, g)
    assert G.rel_error(pa["W"], pb["W"]) > 1e-3


# ---------------------------------------------------------------- trainer
def test_fit_learns_and_is_bit_identical_for_a_seed(xp):
    x, y = blobs(xp)
    runs = []
    for _ in range(2):
        model = MLP([10, 16, 16, 3], norm="batch", dropout=0.1, seed=3)
        runs.append(fit(model, (x, y), val=(x, y), num_epochs=3, batch_size=32, progress=False, seed=1))
    assert runs[0].step_loss == runs[1].step_loss and runs[0].val_acc == runs[1].val_acc
    assert runs[0].val_acc[-1] > 0.9 and not runs[0].diverged
    assert evaluate(model, x, y)[1] == runs[1].val_acc[-1]


def test_same_seed_same_numbers_on_every_backend(xp):
    x, y = blobs(np)
    model = MLP([10, 8, 3], norm="batch", seed=0)
    h = fit(model, (backend.asarray(x), backend.asarray(y)), num_epochs=1, batch_size=64, progress=False)
    backend.use("cpu")
    ref = fit(MLP([10, 8, 3], norm="batch", seed=0), (x, y), num_epochs=1, batch_size=64, progress=False)
    np.testing.assert_allclose(h.step_loss, ref.step_loss, rtol=1e-5)


def test_divergence_is_reported_not_raised(xp):
    x, y = blobs(xp)
    h = fit(MLP([10, 64, 64, 3], init=30.0, seed=0), (x * 1000, y), optimizer=optim.SGD(10.0),
            num_epochs=5, batch_size=32, progress=False)
    assert h.diverged and "diverged" in h.message and h.diverged_at_step is not None


def test_nan_in_data_is_reported_before_the_first_step(xp):
    x, y = blobs(np)
    x[100, 3] = np.nan
    x[7, 0] = np.inf
    model = MLP([10, 8, 3])
    before = {k: backend.to_numpy(v).copy() for k, v in model.params.items()}
    with pytest.raises(ValueError, match=r"2 samples of x contain NaN or inf \(samples 7, 100\).*data problem"):
        fit(model, (backend.asarray(x), backend.asarray(y)), num_epochs=1, batch_size=32, progress=False)
    assert all(np.array_equal(backend.to_numpy(v), before[k]) for k, v in model.params.items())


def test_hooks_record_diagnostics(xp):
    x, y = blobs(xp)
    hooks = [ActivationStats(every=2), DeadUnits(x[:64]), UpdateRatios(every=2), GradSnapshots(every=4)]
    h = fit(MLP([10, 16, 3], seed=0), (x, y), num_epochs=2, batch_size=32, progress=False, hooks=hooks)
    ex = h.extras
    assert len(ex["dead_units"]) == 2 and "relu0" in ex["dead_units"][0]
    assert ex["activation_stats"][0]["relu0"]["p50"] >= 0
    assert -8 < ex["update_ratios"][0]["linear0.W"]["update"] < 0
    assert ex["grad_snapshots"][0]["dW"].shape == (10, 16) and isinstance(ex["grad_snapshots"][0]["dW"], np.ndarray)
