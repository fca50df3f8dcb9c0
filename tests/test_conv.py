"""Convolutional layers (chapter 09): every backward against a float64 numerical gradient on
every backend, a loop-by-loop reference convolution (no library needed), PyTorch as an oracle
when it is installed, and the BN conventions carried over to BatchNorm2d."""
import numpy as np
import pytest
from _helpers import randn

from course_lib import backend
from course_lib import conv as C
from course_lib import functional as F
from course_lib import gradcheck as G

GEOMETRIES = [(1, 0), (1, 1), (2, 1), ((2, 1), (0, 2))]  # (stride, padding)


def naive_conv(x, W, b, stride, padding):
    """The definition, one output value at a time (host numpy)."""
    (sh, sw), (ph, pw) = F._pair(stride, "s"), F._pair(padding, "p")
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _, h, w = x.shape
    f, _, kh, kw = W.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = np.tensordot(patch, W, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


@pytest.mark.parametrize("stride,padding", GEOMETRIES)
def test_conv2d_matches_the_definition_and_its_gradient(xp, stride, padding):
    x, W, b = randn(3, 2, 7, 6), randn(4, 2, 3, 3, seed=2), randn(4, seed=3)
    out, _ = F.conv2d_forward(x, W, b, stride, padding)
    ref = naive_conv(*(backend.to_numpy(a) for a in (x, W, b)), stride, padding)
    assert backend.get_array_module(out) is xp and out.shape == ref.shape
    assert np.allclose(backend.to_numpy(out), ref, rtol=0, atol=1e-12)
    errs = G.check_pair(lambda x, W, b: F.conv2d_forward(x, W, b, stride, padding), F.conv2d_backward,
                        x, W, b, names=["x", "W", "b"], quiet=True)
    assert set(errs) == {"x", "W", "b"} and max(errs.values()) < 1e-7


def test_im2col_and_col2im_are_adjoint(xp):
    # <im2col(x), c> == <x, col2im(c)> for any x, c: the backward of the unfolding is the folding
    x = randn(2, 3, 6, 5)
    cols = F.im2col(x, 3, 2, stride=(2, 1), padding=1)
    c = randn(*cols.shape, seed=9)
    lhs = float((cols * c).sum())
    rhs = float((x * F.col2im(c, x.shape, 3, 2, stride=(2, 1), padding=1)).sum())
    assert abs(lhs - rhs) < 1e-10 * max(1.0, abs(lhs))


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2), (2, 1)])
def test_maxpool_forward_and_gradient(xp, kernel, stride):
    x = randn(2, 3, 7, 6)
    out, _ = F.maxpool2d_forward(x, kernel, stride)
    s = kernel if stride is None else stride
    xh = backend.to_numpy(x)
    oh, ow = (7 - kernel) // s + 1, (6 - kernel) // s + 1
    ref = np.array([[[[xh[n, c, i * s:i * s + kernel, j * s:j * s + kernel].max() for j in range(ow)]
                      for i in range(oh)] for c in range(3)] for n in range(2)])
    assert np.array_equal(backend.to_numpy(out), ref)
    errs = G.check_pair(lambda x: F.maxpool2d_forward(x, kernel, stride),
                        lambda d, c: (F.maxpool2d_backward(d, c),), x, quiet=True)
    assert errs["x"] < 1e-7


def test_maxpool_ties_send_the_gradient_to_one_input(xp):
    x = xp.zeros((1, 1, 2, 2))
    out, cache = F.maxpool2d_forward(x, 2)
    dx = F.maxpool2d_backward(xp.ones((1, 1, 1, 1)), cache)
    assert float(out.sum()) == 0.0 and backend.to_numpy(dx).ravel().tolist() == [1.0, 0.0, 0.0, 0.0]


LAYERS = {
    "conv": lambda: C.Conv2d(2, 3, 3, padding=1, dtype=np.float64, seed=3),
    "conv_strided": lambda: C.Conv2d(2, 3, (3, 2), stride=2, padding=(1, 0), dtype=np.float64, seed=4),
    "maxpool": lambda: C.MaxPool2d(2),
    "batchnorm2d": lambda: C.BatchNorm2d(2, dtype=np.float64),
    "groupnorm2d": lambda: C.GroupNorm2d(2, 2, dtype=np.float64),
    "layernorm2d": lambda: C.GroupNorm2d(2, 1, dtype=np.float64),
    "flatten": C.Flatten,
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_backward_matches_numerical_gradient(xp, name):
    layer = LAYERS[name]()
    x = randn(3, 2, 5, 6, scale=2.0, shift=0.3)
    if "b" in layer.params:
        layer.params["b"] = randn(3, seed=6)
    if "gamma" in layer.params:  # non-trivial gamma/beta
        layer.params["gamma"] = randn(2, seed=4) + 1.5
        layer.params["beta"] = randn(2, seed=5)
    errors = G.check_layer(layer, x, quiet=True)
    assert "x" in errors and max(errors.values()) < 1e-7, errors
    assert set(errors) == {"x", *layer.params}


def test_batchnorm2d_eval_mode_gradient(xp):
    bn = C.BatchNorm2d(3, dtype=np.float64)
    bn.buffers["running_mean"], bn.buffers["running_var"] = randn(3, seed=2), randn(3, seed=3) ** 2 + 0.5
    assert max(G.check_layer(bn.eval(), randn(2, 3, 4, 4), quiet=True).values()) < 1e-7


def test_batchnorm2d_is_batchnorm1d_over_pixels(xp):
    # per-channel statistics over N, H, W: exactly the 1-d BN of the (N*H*W, C) reshape
    x = randn(4, 3, 5, 2, scale=3.0, shift=1.0)
    bn = C.BatchNorm2d(3, dtype=np.float64)
    out = bn(x)
    x2 = x.transpose(0, 2, 3, 1).reshape(-1, 3)
    out1, _, rm, rv = F.batchnorm_forward(x2, bn.params["gamma"], bn.params["beta"],
                                          xp.zeros(3), xp.ones(3))
    assert G.rel_error(out.transpose(0, 2, 3, 1).reshape(-1, 3), out1) < 1e-14
    o = backend.to_numpy(out)
    assert np.allclose(o.mean(axis=(0, 2, 3)), 0, atol=1e-12) and np.allclose(o.var(axis=(0, 2, 3)), 1, atol=1e-4)
    # running variance: momentum 0.1 on the UNBIASED variance with m = N*H*W = 40
    xh = backend.to_numpy(x)
    unbiased = xh.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1, ddof=1)
    assert np.allclose(backend.to_numpy(bn.buffers["running_var"]), 0.9 + 0.1 * unbiased, rtol=1e-12)
    assert np.allclose(backend.to_numpy(rv), 0.9 + 0.1 * unbiased, rtol=1e-12)
    assert bn.num_batches_tracked == 1


def test_groupnorm2d_statistics_are_per_sample_and_group(xp):
    x = randn(3, 4, 3, 3, scale=2.0, shift=-1.0)
    out = backend.to_numpy(C.GroupNorm2d(4, 2, dtype=np.float64)(x)).reshape(3, 2, -1)
    assert np.allclose(out.mean(axis=2), 0, atol=1e-12) and np.allclose(out.var(axis=2), 1, atol=1e-3)
    # no batch statistics: a sample's output does not depend on the rest of the batch
    gn = C.GroupNorm2d(4, 2, dtype=np.float64)
    assert np.allclose(backend.to_numpy(gn(x[:1])), backend.to_numpy(gn(x))[:1], atol=1e-14)


def test_layers_keep_dtype_backend_and_state(xp):
    conv, bn = C.Conv2d(1, 4, 3, padding=1, seed=0, bias=False), C.BatchNorm2d(4)
    x = xp.ones((2, 1, 6, 6), dtype=np.float32)
    out = bn(conv(x))
    assert backend.get_array_module(out) is xp and out.dtype == np.float32 and out.shape == (2, 4, 6, 6)
    state = bn.state_dict()
    assert set(state) == {"gamma", "beta", "running_mean", "running_var", "num_batches_tracked"}
    fresh = C.BatchNorm2d(4)
    fresh.load_state_dict(state)
    assert np.array_equal(backend.to_numpy(fresh.buffers["running_var"]),
                          backend.to_numpy(bn.buffers["running_var"]))
    # same seed, same filters, on every backend
    assert np.array_equal(backend.to_numpy(C.Conv2d(2, 3, 3, seed=5).params["W"]),
                          backend.to_numpy(C.Conv2d(2, 3, 3, seed=5).params["W"]))


def test_he_init_of_conv_filters_has_the_fan_in_std():
    W = backend.to_numpy(C.Conv2d(16, 64, 3, seed=0, dtype=np.float64).params["W"])
    assert W.shape == (64, 16, 3, 3)
    assert abs(W.std() / np.sqrt(2 / (16 * 9)) - 1) < 0.05


def test_clear_errors_for_bad_input(xp):
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\).*reshape"):
        C.Conv2d(1, 2, 3)(xp.ones((2, 784), dtype=np.float32))
    with pytest.raises(ValueError, match="3 input channels|\\(N, 3, H, W\\)"):
        C.Conv2d(3, 2, 3)(xp.ones((2, 1, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        F.conv2d_forward(randn(1, 1, 2, 2), randn(1, 1, 3, 3), None)
    with pytest.raises(ValueError, match="divisible"):
        C.GroupNorm2d(6, 4)
    with pytest.raises(ValueError, match="more than 1 value"):
        C.BatchNorm2d(2)(xp.ones((1, 2, 1, 1), dtype=np.float32))
    with pytest.raises(TypeError, match="float64"):
        C.Conv2d(1, 2, 3)(xp.ones((2, 1, 5, 5), dtype=np.float64))
    with pytest.raises(ValueError, match="stride"):
        C.Conv2d(1, 2, 3, stride=0)


# ------------------------------------------------------------------ PyTorch as an oracle
torch = pytest.importorskip("torch", reason="PyTorch (an optional test oracle) is not installed")


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("stride,padding", GEOMETRIES)
def test_conv2d_agrees_with_torch(stride, padding):
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((3, 2, 7, 6)), rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    out, cache = F.conv2d_forward(x, W, b, stride, padding)
    dout = rng.standard_normal(out.shape)
    tx, tW, tb = _t(x), _t(W), _t(b)
    tout = torch.nn.functional.conv2d(tx, tW, tb, stride=stride, padding=padding)
    tout.backward(torch.tensor(dout))
    dx, dW, db = F.conv2d_backward(dout, cache)
    for ours, ref in ((out, tout), (dx, tx.grad), (dW, tW.grad), (db, tb.grad)):
        assert G.rel_error(ours, ref.detach().numpy()) < 1e-12


def test_maxpool_batchnorm2d_groupnorm_agree_with_torch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 4, 6, 6)) * 2 + 1
    dout_pool = rng.standard_normal((4, 4, 2, 2))
    out, cache = F.maxpool2d_forward(x, 3, 2)
    tx = _t(x)
    tout = torch.nn.functional.max_pool2d(tx, 3, 2)
    tout.backward(torch.tensor(dout_pool))
    assert G.rel_error(out, tout.detach().numpy()) == 0
    assert G.rel_error(F.maxpool2d_backward(dout_pool, cache), tx.grad.numpy()) < 1e-14

    dout = rng.standard_normal(x.shape)
    gamma, beta = rng.standard_normal(4) + 1, rng.standard_normal(4)
    for ours_fn, torch_layer in (
            (lambda: F.batchnorm2d_forward(x, gamma, beta, np.zeros(4), np.ones(4))[:2],
             torch.nn.BatchNorm2d(4).double()),
            (lambda: F.groupnorm2d_forward(x, gamma, beta, 2), torch.nn.GroupNorm(2, 4).double())):
        with torch.no_grad():
            torch_layer.weight.copy_(torch.tensor(gamma))
            torch_layer.bias.copy_(torch.tensor(beta))
        out, cache = ours_fn()
        tx = _t(x)
        tout = torch_layer(tx)
        tout.backward(torch.tensor(dout))
        backward = F.batchnorm2d_backward if len(cache) == 2 else F.groupnorm2d_backward
        dx, dgamma, dbeta = backward(dout, cache)
        assert G.rel_error(out, tout.detach().numpy()) < 1e-12
        assert G.rel_error(dx, tx.grad.numpy()) < 1e-10
        assert G.rel_error(dgamma, torch_layer.weight.grad.numpy()) < 1e-12
        assert G.rel_error(dbeta, torch_layer.bias.grad.numpy()) < 1e-12


def test_batchnorm2d_running_statistics_agree_with_torch():
    rng = np.random.default_rng(2)
    ours, ref = C.BatchNorm2d(3, dtype=np.float64), torch.nn.BatchNorm2d(3).double()
    for _ in range(3):
        x = rng.standard_normal((2, 3, 4, 4)) * 3 + 2
        ours(x)
        ref(torch.tensor(x))
    assert G.rel_error(ours.buffers["running_mean"], ref.running_mean.numpy()) < 1e-12
    assert G.rel_error(ours.buffers["running_var"], ref.running_var.numpy()) < 1e-12
    x = rng.standard_normal((2, 3, 4, 4))
    ref.eval()
    assert G.rel_error(ours.eval()(x), ref(torch.tensor(x)).detach().numpy()) < 1e-12
