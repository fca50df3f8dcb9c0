"""The chapter-09 CNN: built on Sequential, trained by fit on every backend, a whole-model
gradient check, BN folding, the counting helpers and the slider."""
import numpy as np
import pytest

from course_lib import backend
from course_lib import conv as C
from course_lib import convnet as CN
from course_lib import gradcheck as G
from course_lib.layers import Sequential, eval_mode
from course_lib.trainer import evaluate, fit


def tiny_images(xp, n=96, seed=0, dtype=np.float32):
    """Two classes of 8x8 images: a bright square top-left or bottom-right, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 1, 8, 8)) * 0.3
    for i, c in enumerate(y):
        x[i, 0, :4, :4] += 1.5 if c == 0 else 0
        x[i, 0, 4:, 4:] += 1.5 if c == 1 else 0
    return xp.asarray(x.astype(dtype)), xp.asarray(y)


def small_cnn(norm, dtype=None, seed=0):
    return CN.CNN((4, 4), norm=norm, num_groups=2, input_shape=(1, 8, 8), num_classes=2, seed=seed,
                  dtype=dtype)


def test_cnn_structure():
    model = CN.CNN(norm="batch", seed=0)
    assert isinstance(model, Sequential)
    assert model.layer_names == ["input", "conv0", "bn0", "relu0", "pool0", "conv1", "bn1", "relu1",
                                 "pool1", "flatten", "fc"]
    assert "conv0.b" not in model.params and "conv0.b" in CN.CNN(seed=0).params  # no bias before BN
    assert model.layer("fc").in_features == 16 * 7 * 7
    deep = CN.CNN((8, 8, 8, 8), norm="group", num_groups=4, seed=0)
    assert sum(isinstance(lyr, C.MaxPool2d) for _, lyr in deep.layers) == 2
    assert deep.layer("fc").in_features == 8 * 7 * 7
    with pytest.raises(ValueError, match="norm"):
        CN.CNN(norm="instance")
    with pytest.raises(ValueError, match="num_groups"):
        CN.CNN((6, 8), norm="group", num_groups=4)


@pytest.mark.parametrize("norm", CN.NORMS)
def test_whole_cnn_gradient(xp, norm):
    model = small_cnn(norm, dtype=np.float64, seed=1)
    x, y = tiny_images(xp, n=6, dtype=np.float64)

    def loss():
        return float(model.loss(x, y)[0])

    _, dlogits, _ = model.loss(x, y)
    model.backward(dlogits)
    grads = {k: backend.to_numpy(g).copy() for k, g in model.grads.items()}
    assert set(grads) == set(model.params)
    for key, p in model.params.items():
        err = G.rel_error(grads[key], G.numerical_gradient(loss, p))
        assert err < 1e-7, (key, err)


@pytest.mark.parametrize("norm", CN.NORMS)
def test_fit_trains_the_cnn_on_every_backend(xp, norm):
    x, y = tiny_images(xp)
    model = small_cnn(norm)
    h = fit(model, (x, y), val=(x, y), num_epochs=4, batch_size=16, lr=0.05, progress=False)
    assert not h.diverged and h.val_acc[-1] > 0.9, h.summary()
    again = fit(small_cnn(norm), (x, y), val=(x, y), num_epochs=4, batch_size=16, lr=0.05, progress=False)
    assert again.step_loss == h.step_loss  # a seed gives the same run, bit for bit
    if norm == "batch":
        assert model.layer("bn0").num_batches_tracked == 4 * 6


def test_same_seed_same_cnn_numbers_on_every_backend(xp):
    x, y = tiny_images(xp, n=32)
    h = fit(small_cnn("batch"), (x, y), num_epochs=1, batch_size=8, progress=False)
    backend.use("cpu")  # the fixture switches back afterwards
    x, y = tiny_images(np, n=32)
    ref = fit(small_cnn("batch"), (x, y), num_epochs=1, batch_size=8, progress=False).step_loss
    assert np.allclose(h.step_loss, ref, rtol=1e-5)


def test_divergence_is_reported_not_raised(xp):
    x, _ = tiny_images(xp)
    y = xp.asarray(np.random.default_rng(1).integers(0, 2, len(x)))  # random labels: no perfect fit
    h = fit(small_cnn(None), (x, y), num_epochs=3, batch_size=16, lr=1e6, progress=False)
    assert h.diverged and "diverged" in h.message


def test_fold_bn_gives_the_same_function(xp):
    model = small_cnn("batch", dtype=np.float64)
    x, y = tiny_images(xp, n=32, dtype=np.float64)
    fit(model, (x, y), num_epochs=2, batch_size=8, lr=0.05, progress=False)  # non-trivial stats
    for i in (0, 1):
        assert float(abs(model.layer(f"bn{i}").buffers["running_mean"]).max()) > 1e-3
    folded = CN.fold_bn_model(model)
    assert not any(isinstance(lyr, C.BatchNorm2d) for _, lyr in folded.layers)
    assert len(folded.layers) == len(model.layers) - 2
    with eval_mode(model):
        ref = model.forward(x)
    assert model.training  # eval_mode restored it
    assert G.rel_error(folded.forward(x), ref) < 1e-12
    conv = model.layer("conv0")
    single = CN.fold_bn(conv, model.layer("bn0"))
    assert "b" in single.params and "b" not in conv.params  # the fold adds the bias BN removed
    with pytest.raises(TypeError, match="BatchNorm2d"):
        CN.fold_bn(conv, model.layer("relu0"))


def test_fold_bn_in_float32_is_close():
    model = CN.CNN(norm="batch", seed=0)
    x = backend.asarray(np.random.default_rng(0).random((64, 784)), dtype=np.float32)
    model.forward(x)  # one training batch moves the running statistics
    with eval_mode(model):
        ref = model.forward(x)
    assert G.rel_error(CN.fold_bn_model(model).forward(x), ref) < 1e-5


def test_values_per_statistic_counts():
    assert CN.values_per_statistic(32, 16, 14, 14) == (32 * 14 * 14, 16)
    assert CN.values_per_statistic(32, 16, 14, 14, kind="batch1d") == (32, 16 * 14 * 14)
    assert CN.values_per_statistic(2, 16, 7, 7, kind="group", num_groups=4) == (4 * 49, 8)
    assert CN.values_per_statistic(2, 16, 7, 7, kind="layer") == (16 * 49, 2)
    with pytest.raises(ValueError, match="num_groups"):
        CN.values_per_statistic(2, 16, 7, 7, kind="group", num_groups=5)


def test_batch_mean_noise_shrinks_like_one_over_root_m():
    rng = np.random.default_rng(0)
    # independent pixels: the effective count is m*H*W; one value per image: it is m
    iid = rng.standard_normal((4000, 2, 4, 4))
    r = CN.batch_mean_noise(iid, (2, 8, 32), n_batches=400)
    assert np.all(np.abs(r["effective"] / r["values"] - 1) < 0.25)
    same = np.repeat(np.repeat(rng.standard_normal((4000, 2, 1, 1)), 4, axis=2), 4, axis=3)
    r = CN.batch_mean_noise(same, (2, 8, 32), n_batches=400)
    assert np.all(np.abs(r["effective"] / np.array([2, 8, 32]) - 1) < 0.25)


def test_compare_runs_and_summary_table():
    from course_lib.data import load_mnist
    data = load_mnist()
    runs = CN.compare_runs(data, {"plain": {}, "huge lr": {"lr": 1e4}}, seeds=(0, 1), n_train=128,
                           n_val=64, batch_size=32)
    assert runs["huge lr"]["diverged"] == 2 and np.isnan(runs["huge lr"]["val_acc"]).all()
    assert np.isfinite(runs["plain"]["val_acc"]).all()
    assert "2 of 2" in runs.table() and "plain" in runs.table()


def test_time_epoch_and_evaluate_on_images():
    x, y = tiny_images(np, n=64)
    model = small_cnn("group")
    assert CN.time_epoch(model, x, y, batch_size=16) > 0
    loss, acc = evaluate(model, x, y)
    assert np.isfinite(loss) and 0 <= acc <= 1


def test_explorer_redraws():
    pytest.importorskip("ipywidgets")
    from course_lib import convnet_explorer as CE
    from course_lib.data import load_mnist
    data = load_mnist()
    ex = CE.cnn_batch_size_explorer(data, batch_size=8, n_train=64, n_val=64)
    ex.raise_errors = True
    assert ex.n_draws == 1 and ex.png[:4] == b"\x89PNG"
    ex.controls["batch_size"].value = 32
    assert ex.n_draws == 2 and ex.last_error is None
