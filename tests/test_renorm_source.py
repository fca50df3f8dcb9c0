"""course_lib.renorm_source: the Chainer BN-vs-Batch-Renorm comparison (BN after the ReLU)."""
import numpy as np

from course_lib import layers
from course_lib import renorm_source as R


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = (rng.random((10, 784))[y] + 0.3 * rng.random((n, 784))).astype(np.float32)
    return x, y


def test_model_is_linear_relu_norm_linear_with_biases():
    for norm, name in (("batch", "batchnorm0"), ("renorm", "batchrenorm0")):
        m = R.make_model(norm, seed=0)
        assert m.layer_names == ["linear0", "relu0", name, "linear1"]
        assert "linear0.b" in m.params and "linear1.b" in m.params
        assert m.layer(name).eps == R.CHAINER_EPS
        out = m.forward(_data()[0])
        assert out.shape == (120, 10)


def test_batch_renorm_with_chainer_defaults_is_batch_norm():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((32, 400)) * 3 + 1).astype(np.float32)
    dout = rng.standard_normal((32, 400)).astype(np.float32)
    rn = layers.BatchRenorm1d(400, schedule=R.chainer_defaults)
    bn = layers.BatchNorm1d(400)
    for _ in range(3):                        # running statistics move away from (0, 1): r, d would matter
        np.testing.assert_array_equal(rn.forward(x * 2 + 0.5), bn.forward(x * 2 + 0.5))
    np.testing.assert_array_equal(rn.forward(x), bn.forward(x))      # forward: bit for bit
    np.testing.assert_allclose(rn.backward(dout), bn.backward(dout), rtol=1e-5, atol=1e-6)
    relaxed = layers.BatchRenorm1d(400, schedule=lambda step: (3.0, 5.0))
    for _ in range(3):
        relaxed.forward(x * 2 + 0.5)
    assert np.abs(relaxed.forward(x) - bn.forward(x)).max() > 1e-2   # relaxed bounds do renormalise


def test_full_batch_runs_of_bn_and_renorm_agree():
    train, test = _data(), _data(n=60, seed=1)
    a = R.run(train, test, norm="batch", steps=5, seed=0)
    b = R.run(train, test, norm="renorm", steps=5, seed=0)
    assert len(a["test_acc"]) == len(a["test_loss"]) == len(a["train_loss"]) == 5
    assert R.max_param_difference(a["model"], b["model"]) < 1e-5
    assert a["train_loss"][-1] < a["train_loss"][0]      # it learns
    c = R.run(train, test, norm="renorm", steps=5, seed=0, schedule=lambda step: (3.0, 5.0))
    assert R.max_param_difference(a["model"], c["model"]) > 1e-6
