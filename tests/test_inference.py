"""BN at inference: folding into the preceding Linear, and evaluation with batch statistics."""
import numpy as np
import pytest
from _helpers import blobs, randn

from course_lib import backend, inference
from course_lib import functional as F
from course_lib import layers as L
from course_lib.model import MLP
from course_lib.trainer import evaluate, fit


@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_linear_bn_equals_linear_then_eval_bn(xp, with_bias):
    x, W = randn(7, 5), randn(5, 4, seed=2)
    b = randn(4, seed=3) if with_bias else None
    gamma, beta = randn(4, seed=4) + 1.5, randn(4, seed=5)
    rm, rv = randn(4, seed=6), randn(4, seed=7) ** 2 + 0.2
    h, _ = F.linear_forward(x, W, b)
    ref, _, _, _ = F.batchnorm_forward(h, gamma, beta, rm, rv, training=False, eps=1e-3)
    W_f, b_f = inference.fold_linear_bn(W, b, gamma, beta, rm, rv, eps=1e-3)
    out, _ = F.linear_forward(x, W_f, b_f)
    assert W_f.shape == W.shape and b_f.shape == (4,) and W_f.dtype == W.dtype
    np.testing.assert_allclose(backend.to_numpy(out), backend.to_numpy(ref), rtol=1e-12, atol=1e-12)


def test_fold_linear_bn_validates_shapes(xp):
    with pytest.raises(ValueError, match="gamma"):
        inference.fold_linear_bn(randn(5, 4), None, randn(3), randn(3), randn(3), randn(3) ** 2)


@pytest.mark.parametrize("norm", ["batch", "renorm"])
def test_fold_batchnorm_keeps_the_eval_function(xp, norm):
    x, y = blobs(xp, 240)
    model = MLP([10, 16, 16, 3], norm=norm, seed=2, norm_kwargs={"momentum": 0.3})
    fit(model, (x, y), num_epochs=2, batch_size=32, progress=False)
    before = {k: backend.to_numpy(v).copy() for k, v in model.params.items()}
    folded = inference.fold_batchnorm(model)
    assert not any(isinstance(layer, L.BatchNorm1d) for _, layer in folded.layers)
    assert [n for n, _ in folded.layers] == ["linear0", "relu0", "linear1", "relu1", "linear2"]
    assert "linear0.b" in folded.params and folded.norm is None
    model.eval()
    folded.eval()
    ref, out = backend.to_numpy(model.forward(x)), backend.to_numpy(folded.forward(x))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    # the original is untouched (still has its BN layers and the same parameters)
    assert len(model.layers) == 7
    for k, v in model.params.items():
        assert np.array_equal(backend.to_numpy(v), before[k])
    # a model without BN folds to itself
    plain = MLP([10, 8, 3], seed=0).eval()
    np.testing.assert_array_equal(backend.to_numpy(inference.fold_batchnorm(plain).eval().forward(x)),
                                  backend.to_numpy(plain.forward(x)))


def test_fold_batchnorm_refuses_a_bn_that_does_not_follow_a_linear(xp):
    model = MLP([10, 8, 3], norm="batch", seed=0)
    model.layers.insert(0, ("batchnorm_in", L.BatchNorm1d(10)))
    with pytest.raises(ValueError, match="batchnorm_in"):
        inference.fold_batchnorm(model)


def test_predict_with_batch_stats_uses_each_batch_and_leaves_the_model_alone(xp):
    x, y = blobs(xp, 101)
    model = MLP([10, 16, 3], norm="batch", dropout=0.3, seed=1)
    fit(model, (x, y), num_epochs=1, batch_size=16, progress=False)
    model.eval()
    bn = model.layer("batchnorm0")
    rm, rv, count = bn.buffers["running_mean"], bn.buffers["running_var"], bn.num_batches_tracked
    logits = inference.predict_with_batch_stats(model, x, batch_size=len(x))
    assert bn.buffers["running_mean"] is rm and bn.buffers["running_var"] is rv
    assert bn.num_batches_tracked == count and not model.training and not bn.training
    # one batch of everything = BN in training mode, dropout off
    h = model.layer("linear0").forward(x)
    h, _, _, _ = F.batchnorm_forward(h, bn.params["gamma"], bn.params["beta"], None, None, training=True)
    h = model.layer("linear1").forward(F.relu_forward(h)[0])
    np.testing.assert_allclose(backend.to_numpy(logits), backend.to_numpy(h), rtol=1e-5, atol=1e-5)
    # 101 = 50 batches of 2 + 1: the lone last sample joins the batch before it
    assert inference.predict_with_batch_stats(model, x, batch_size=2).shape == (101, 3)
    model.train()
    inference.predict_with_batch_stats(model, x, batch_size=10)
    assert model.training and model.layer("dropout0").training
    with pytest.raises(ValueError, match="at least 2"):
        inference.predict_with_batch_stats(model, x, batch_size=1)


def test_evaluate_with_batch_stats_matches_eval_for_a_model_without_norm(xp):
    x, y = blobs(xp, 240)
    model = MLP([10, 8, 3], seed=0)
    fit(model, (x, y), num_epochs=1, batch_size=32, progress=False)
    loss, acc = inference.evaluate_with_batch_stats(model, x, y, batch_size=7)
    ref_loss, ref_acc = evaluate(model, x, y)
    assert isinstance(acc, float) and acc == ref_acc and abs(loss - ref_loss) < 1e-5
    # with BN, tiny test batches in training mode hurt; large ones are close to eval mode
    bn_model = MLP([10, 16, 3], norm="batch", seed=0)
    fit(bn_model, (x, y), num_epochs=3, batch_size=32, progress=False)
    _, big = inference.evaluate_with_batch_stats(bn_model, x, y, batch_size=len(x))
    assert abs(big - evaluate(bn_model, x, y)[1]) < 0.05
