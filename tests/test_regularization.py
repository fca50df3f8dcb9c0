"""course_lib.regularization: weight norms, the evaluation hook, classic dropout and BN
re-estimation.  Runs on every backend (``xp``)."""
import numpy as np
import pytest

from course_lib import backend, optim
from course_lib import functional as F
from course_lib import layers as L
from course_lib import regularization as R
from course_lib.model import MLP
from course_lib.trainer import fit


def randn(*shape, seed=1, scale=1.0, shift=0.0, dtype=np.float64):
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape) * scale + shift,
                           dtype=dtype)


def toy_data(n=64, d=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.integers(0, c, n)
    return backend.asarray(x), backend.asarray(y)


# ----------------------------------------------------------------------- weight norms
def test_weight_norms_are_frobenius_norms_of_weight_matrices(xp):
    model = MLP([6, 5, 4, 3], norm="batch", seed=0)
    norms = R.weight_norms(model)
    assert sorted(norms) == ["linear0.W", "linear1.W", "linear2.W"]
    for k, v in norms.items():
        assert isinstance(v, float)
        assert v == pytest.approx(float(np.linalg.norm(backend.to_numpy(model.params[k]))), rel=1e-6)
    assert list(R.weight_norms(model, ["linear1.W"])) == ["linear1.W"]
    with pytest.raises(KeyError, match="linear9.W"):
        R.weight_norms(model, ["linear9.W"])


def test_effective_lr():
    assert R.effective_lr(0.1, 2.0) == pytest.approx(0.025)
    assert np.allclose(R.effective_lr(1.0, np.array([1.0, 10.0])), [1.0, 0.01])


def test_weight_norms_hook_and_series(xp):
    x, y = toy_data()
    model = MLP([12, 8, 3], seed=0)
    h = fit(model, (x, y), optimizer=optim.SGD(0.1, weight_decay=0.5), num_epochs=2, batch_size=16,
            hooks=[R.WeightNorms(every=3)], progress=False)
    steps, norms = R.series(h, "weight_norms", "linear0.W")
    assert steps == [0, 3, 6]
    assert norms[-1] < norms[0]  # strong decay shrinks the weights
    assert norms[-1] == pytest.approx(R.weight_norms(model)["linear0.W"], rel=0.2)
    with pytest.raises(KeyError, match="no records"):
        R.series(h, "test", "acc")
    with pytest.raises(ValueError):
        R.WeightNorms(every=0)


def test_eval_every_records_epochs(xp):
    x, y = toy_data()
    model = MLP([12, 8, 3], seed=0)
    h = fit(model, (x, y), optimizer="sgd", num_epochs=7, batch_size=32,
            hooks=[R.EvalEvery(x, y, every=3, name="train_eval", last_epoch=6)], progress=False)
    epochs, accs = R.series(h, "train_eval", "acc")
    assert epochs == [3, 6, 7]
    assert all(0.0 <= a <= 1.0 for a in accs)


# ------------------------------------------------------------------------- dropout
def test_classic_dropout_is_inverted_dropout_times_keep_probability(xp):
    x = randn(50, 40, dtype=np.float32)
    p = 0.3
    classic, keep = R.classic_dropout_forward(x, p, training=True, rng=backend.default_rng(3))
    inverted, mask = F.dropout_forward(x, p, training=True, rng=backend.default_rng(3))
    assert np.allclose(backend.to_numpy(classic) / (1 - p), backend.to_numpy(inverted), atol=1e-6)
    assert np.array_equal(backend.to_numpy(keep) > 0, backend.to_numpy(mask) > 0)
    test_out, none = R.classic_dropout_forward(x, p, training=False, rng=None)
    assert none is None
    assert np.allclose(backend.to_numpy(test_out), backend.to_numpy(x) * (1 - p))
    assert R.classic_dropout_forward(x, 0.0, training=True, rng=None)[0] is x
    with pytest.raises(ValueError, match="drop probability"):
        R.classic_dropout_forward(x, 1.0, training=True, rng=None)


def test_classic_dropout_expected_training_output_equals_test_output(xp):
    x = randn(1, 20)
    rng = backend.default_rng(0)
    p = 0.4
    outs = np.stack([backend.to_numpy(R.classic_dropout_forward(x, p, training=True, rng=rng)[0])
                     for _ in range(4000)])
    test_out = backend.to_numpy(R.classic_dropout_forward(x, p, training=False, rng=None)[0])
    se = np.abs(backend.to_numpy(x)).max() * 0.5 / np.sqrt(4000)
    assert np.abs(outs.mean(axis=0) - test_out).max() < 5 * se


# --------------------------------------------------------------- BN re-estimation
def test_reestimate_bn_stats_matches_eval_mode_statistics(xp):
    x, y = toy_data(n=200, seed=1)
    model = MLP([12, 16, 16, 3], norm="batch", dropout=0.5, seed=0)
    fit(model, (x, y), optimizer="sgd", num_epochs=2, batch_size=20, progress=False)
    R.reestimate_bn_stats(model, x)
    assert not model.training
    # with dropout off, the input of each BN layer now has exactly the running statistics
    for name in ("batchnorm0", "batchnorm1"):
        bn = model.layer(name)
        h = x
        for _ln, layer in model.layers[:model.layer_names.index(name)]:
            h = layer.forward(h)
        h = backend.to_numpy(h).astype(np.float64)
        assert np.allclose(backend.to_numpy(bn.buffers["running_mean"]), h.mean(0), atol=1e-5)
        assert np.allclose(backend.to_numpy(bn.buffers["running_var"]), h.var(0, ddof=1), rtol=1e-4)
        assert bn.buffers["running_var"].dtype == bn.params["gamma"].dtype


def test_reestimate_bn_stats_removes_the_variance_shift_of_dropout(xp):
    # zero-mean features -> Dropout(p) -> BN: training-mode variance is 1/(1-p) times larger
    p = 0.5
    x = randn(4000, 30, seed=2, dtype=np.float32)
    model = MLP([30, 30], norm=None, seed=0)  # a container; replace its layers
    model.layers = [("dropout0", L.Dropout(p, seed=1)), ("batchnorm0", L.BatchNorm1d(30, momentum=1.0))]
    model.train()
    v_train = backend.to_numpy(R.bn_input_variances(model, x, "batchnorm0", dropout=True))
    v_eval = backend.to_numpy(R.bn_input_variances(model, x, "batchnorm0", dropout=False))
    assert np.mean(v_train / v_eval) == pytest.approx(1 / (1 - p), rel=0.03)
    assert all(layer.training for _, layer in model.layers)  # modes restored
    model.forward(x)  # running_var := training-mode variance (momentum 1)
    shifted = backend.to_numpy(model.layer("batchnorm0").buffers["running_var"])
    assert np.mean(shifted / v_eval) == pytest.approx(1 / (1 - p), rel=0.03)
    R.reestimate_bn_stats(model, x, batch_size=1000)
    fixed = backend.to_numpy(model.layer("batchnorm0").buffers["running_var"])
    assert np.mean(fixed / v_eval) == pytest.approx(1.0, rel=0.01)


def test_bn_input_variances_changes_nothing(xp):
    x, y = toy_data(n=100, seed=3)
    model = MLP([12, 16, 16, 3], norm="batch", dropout=0.3, seed=0)
    fit(model, (x, y), optimizer="sgd", num_epochs=1, batch_size=20, progress=False)
    before = {k: backend.to_numpy(v).copy() for k, v in model.layer("batchnorm0").buffers.items()}
    v_on = R.bn_input_variances(model, x, "batchnorm1", dropout=True)
    v_off = R.bn_input_variances(model, x, "batchnorm1", dropout=False)
    for k, v in model.layer("batchnorm0").buffers.items():
        assert np.array_equal(backend.to_numpy(v), before[k])
    assert model.training and all(layer.training for _, layer in model.layers)
    # eval-mode reference computed by hand
    model.eval()
    h = x
    for _, layer in model.layers[:model.layer_names.index("batchnorm1")]:
        h = layer.forward(h)
    assert np.allclose(backend.to_numpy(v_off), backend.to_numpy(h).var(0), rtol=1e-5)
    assert float(backend.to_numpy(v_on).mean()) > float(backend.to_numpy(v_off).mean())


def test_reestimate_bn_stats_errors(xp):
    x, _ = toy_data()
    with pytest.raises(ValueError, match="no batch-norm"):
        R.reestimate_bn_stats(MLP([12, 4, 3], seed=0), x)
    with pytest.raises(ValueError, match="batch_size"):
        R.reestimate_bn_stats(MLP([12, 4, 3], norm="batch", seed=0), x, batch_size=1)
    with pytest.raises(KeyError, match="batchnorm7"):
        R.bn_input_variances(MLP([12, 4, 3], norm="batch", seed=0), x, "batchnorm7", dropout=True)


# ------------------------------------------------- classic dropout layer, DLFS overfitting runs
def test_classic_dropout_layer_masks_scales_and_backward(xp):
    x = randn(50, 8, dtype=np.float32)
    layer = R.ClassicDropout(0.25, seed=7)
    out = layer.forward(x)
    ref, keep = R.classic_dropout_forward(x, 0.25, training=True, rng=backend.default_rng(7))
    assert float(abs(out - ref).max()) == 0
    dout = randn(50, 8, seed=2, dtype=np.float32)
    assert float(abs(layer.backward(dout) - dout * keep).max()) == 0
    layer.eval()
    assert float(abs(layer.forward(x) - x * np.float32(0.75)).max()) < 1e-7
    with pytest.raises(ValueError):
        R.ClassicDropout(1.0)


def test_classic_net_equals_inverted_net_with_weights_times_keep_probability(xp):
    """The identity the chapter uses: classic dropout with W == inverted dropout with (1-p) W on
    every layer that dropout feeds, in training (same masks) and at test time."""
    p, x = 0.3, randn(16, 6, seed=4)
    classic = R.use_classic_dropout(MLP([6, 8, 8, 3], dropout=p, seed=5, dtype=np.float64))
    inverted = MLP([6, 8, 8, 3], dropout=p, seed=5, dtype=np.float64)
    assert sum(isinstance(l, R.ClassicDropout) for _, l in classic.layers) == 2
    for key, w in inverted.params.items():
        if key.endswith(".W") and not key.startswith("linear0."):
            w *= 1 - p
    for mode in ("train", "eval"):
        getattr(classic, mode)()
        getattr(inverted, mode)()
        a, b = classic.forward(x), inverted.forward(x)
        assert float(abs(a - b).max()) < 1e-12, mode


def test_overfit_run_seeds_images_and_continues(xp):
    splits = type("S", (), {})()
    x, y = toy_data(n=200, d=12, c=3, seed=1)
    splits.x_train, splits.y_train, splits.x_test, splits.y_test = x, y, x[:50], y[:50]
    kw = dict(n_train=40, n_test=50, num_epochs=3, batch_size=20, sizes=[12, 8, 8, 3])
    a = R.overfit_run(splits, seed=1, dropout=0.2, classic=True, curves_every=1, **kw)
    b = R.overfit_run(splits, seed=1, dropout=0.2, classic=True, **kw)
    assert a["test"] == b["test"] and a["epochs"] == 3 and not a["diverged"]
    assert 0 <= a["train"] <= 1 and abs(a["gap"] - (a["train"] - a["test"])) < 1e-12
    assert len(R.series(a["history"], "test", "acc")[1]) == 3
    c = R.overfit_run(splits, seed=2, images=1, **kw)
    assert float(abs(c["data"][0] - a["data"][0]).max()) == 0, "images=1 draws seed 1's images"
    first = R.overfit_run(splits, seed=3, images="first", **kw)
    assert float(abs(first["data"][0] - x[:40]).max()) == 0
    more = R.continue_run(a, 2, curves_every=1)
    assert more["epochs"] == 5 and R.series(more["history"], "test", "acc")[0] == [4, 5]
    many = R.overfit_seeds(splits, [0, 1], **kw)
    assert many["test"].shape == (2,) and not many["diverged"].any()
    assert R.mean_sd([0.5, 0.7]) == "0.600 ± 0.141" and R.mean_sd([float("nan")]) == "diverged"


def test_overfit_run_reports_divergence_instead_of_raising(xp):
    splits = type("S", (), {})()
    x, y = toy_data(n=100, d=12, c=3, seed=1)
    splits.x_train, splits.y_train, splits.x_test, splits.y_test = x, y, x[:20], y[:20]
    r = R.overfit_run(splits, seed=0, n_train=40, n_test=20, num_epochs=20, batch_size=20,
                      sizes=[12, 8, 8, 3], optimizer=optim.SGD(lr=1e20))
    assert r["diverged"] and np.isnan(r["test"])
