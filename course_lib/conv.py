"""Layers for convolutional networks (chapter 09), over :mod:`course_lib.functional`.

Images are ``(N, C, H, W)`` (channels first, as in PyTorch); filters ``(F, C, KH, KW)``.
Each layer follows :mod:`course_lib.layers`: ``forward``/``backward``, ``params``/``grads``
with the same keys, ``buffers`` for running statistics, ``train()``/``eval()``.

>>> from course_lib.conv import Conv2d, BatchNorm2d, MaxPool2d, Flatten
>>> conv = Conv2d(1, 8, 3, padding=1, seed=0)
>>> conv(backend.xp.zeros((2, 1, 28, 28), dtype=backend.default_dtype)).shape
(2, 8, 28, 28)
"""
from __future__ import annotations

import numpy as np

from course_lib import backend
from course_lib import functional as F
from course_lib import init as init_mod
from course_lib.layers import BatchNorm1d, Layer, _Norm

__all__ = ["Conv2d", "MaxPool2d", "BatchNorm2d", "GroupNorm2d", "Flatten", "Unflatten"]


def _check_images(layer, x, channels=None):
    """Name the expected and actual shape/dtype instead of failing deep inside numpy."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{layer!r} expects an array, got {type(x).__name__}")
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        want = f"(N, {channels}, H, W)" if channels is not None else "(N, C, H, W)"
        raise ValueError(f"{layer!r} expected images of shape {want}, got {tuple(x.shape)}"
                         + ("; flat MNIST rows become images with x.reshape(-1, 1, 28, 28)"
                            if x.ndim == 2 else ""))
    if x.dtype.kind != "f":
        raise TypeError(f"{layer!r} expected a float array, got dtype {x.dtype}; "
                        "convert with x.astype(backend.default_dtype)")
    for name, p in layer.params.items():
        if p.dtype != x.dtype:
            raise TypeError(f"{layer!r} has {name} of dtype {p.dtype} but the input is {x.dtype}; "
                            f"convert the input with x.astype('{p.dtype}')")


class Conv2d(Layer):
    """2-D convolution ``out = conv(x, W) + b`` via im2col + one GEMM
    (:func:`course_lib.functional.conv2d_forward`).

    W: (out_channels, in_channels, KH, KW), b: (out_channels,).  ``init`` is a scheme name
    ("he", "xavier", "lecun"), a std or a callable, with fan-in ``in_channels * KH * KW`` and
    fan-out ``out_channels * KH * KW`` (PyTorch's fans); weights are drawn on the host from
    ``seed``, so a seed gives the same filters on every backend.  ``bias=False`` for a
    convolution that feeds batch norm (BN subtracts the mean: such a bias does nothing).
    ``need_input_grad=False`` skips dx (the first layer's input is data).
    """

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, init="he",
                 bias=True, seed=None, dtype=None, need_input_grad=True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride, self.padding = F._pair(stride, "stride"), F._pair(padding, "padding")
        if min(self.in_channels, self.out_channels, *self.kernel_size, *self.stride) < 1 \
                or min(self.padding) < 0:
            raise ValueError(f"Conv2d needs channels, kernel_size and stride >= 1 and padding >= 0, "
                             f"got {in_channels}, {out_channels}, {kernel_size}, stride={stride}, "
                             f"padding={padding}")
        self.need_input_grad = need_input_grad
        kh, kw = self.kernel_size
        dtype = dtype or backend.default_dtype
        rng = backend.host_rng(seed)
        fan_in = self.in_channels * kh * kw
        # initialize() draws an (fan_in, fan_out) matrix; its std depends on the fans, so draw
        # (fan_in, out_channels) with PyTorch's fan-out and transpose to (F, C, KH, KW)
        std_fan_out = self.out_channels * kh * kw
        if callable(init) or isinstance(init, (int, float)):
            W = init_mod.initialize(init, fan_in, self.out_channels, rng)
        else:
            W = rng.standard_normal((fan_in, self.out_channels)) * \
                init_mod.std_for(init, fan_in, std_fan_out)
        self.init = init
        W = np.ascontiguousarray(W.T).reshape(self.out_channels, self.in_channels, kh, kw)
        self.params["W"] = backend.asarray(W, dtype=dtype)
        if bias:
            self.params["b"] = backend.xp.zeros(self.out_channels, dtype=dtype)

    def forward(self, x):
        _check_images(self, x, self.in_channels)
        out, self._cache = F.conv2d_forward(x, self.params["W"], self.params.get("b"),
                                            self.stride, self.padding)
        return out

    def backward(self, dout):
        dx, self.grads["W"], db = F.conv2d_backward(dout, self._cache, self.need_input_grad)
        if db is not None:
            self.grads["b"] = db
        return dx

    def __repr__(self):
        kh, kw = self.kernel_size
        extra = "".join(f", {k}={v[0] if v[0] == v[1] else v}" for k, v, default in
                        (("stride", self.stride, (1, 1)), ("padding", self.padding, (0, 0)))
                        if v != default)
        return f"Conv2d({self.in_channels}->{self.out_channels}, {kh}x{kw}{extra})"


class MaxPool2d(Layer):
    """Max pooling over ``kernel_size`` windows (stride defaults to the kernel size)."""

    def __init__(self, kernel_size=2, stride=None):
        super().__init__()
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F._pair(stride, "stride")

    def forward(self, x):
        _check_images(self, x)
        out, self._cache = F.maxpool2d_forward(x, self.kernel_size, self.stride)
        return out

    def backward(self, dout):
        return F.maxpool2d_backward(dout, self._cache)

    def __repr__(self):
        return f"MaxPool2d({self.kernel_size[0]})"


class BatchNorm2d(BatchNorm1d):
    """Spatial batch normalization of (N, C, H, W) images: per-channel statistics over
    N, H and W (each averages m = N*H*W values); see
    :func:`course_lib.functional.batchnorm2d_forward`.  Same conventions, parameters and
    buffers as :class:`course_lib.layers.BatchNorm1d` (momentum = weight of the new batch,
    0.1; running variance unbiased with m = N*H*W), with ``num_features`` = channels.
    """

    def forward(self, x):
        _check_images(self, x, self.num_features)
        out, self._cache, rm, rv = F.batchnorm2d_forward(
            x, self.params["gamma"], self.params["beta"], self.buffers["running_mean"],
            self.buffers["running_var"], **self._stats_kwargs())
        if self.training:
            self.buffers["running_mean"], self.buffers["running_var"] = rm, rv
            self.num_batches_tracked += 1
        return out

    def backward(self, dout):
        return self._backward3(F.batchnorm2d_backward, dout)


class GroupNorm2d(_Norm):
    """Group normalization of (N, C, H, W) images: per sample, statistics over each group of
    C/num_groups channels and all positions (:func:`course_lib.functional.groupnorm2d_forward`).
    No running statistics: train and eval mode are the same."""

    def __init__(self, num_features, num_groups=4, *, eps=1e-5, dtype=None):
        super().__init__(num_features, dtype, eps)
        if int(num_groups) < 1 or self.num_features % int(num_groups):
            divisors = [g for g in range(1, self.num_features + 1) if self.num_features % g == 0]
            raise ValueError(f"GroupNorm2d: num_features={num_features} channels are not divisible "
                             f"by num_groups={num_groups}; use one of {divisors}")
        self.num_groups = int(num_groups)

    def forward(self, x):
        _check_images(self, x, self.num_features)
        out, self._cache = F.groupnorm2d_forward(x, self.params["gamma"], self.params["beta"],
                                                 self.num_groups, self.eps)
        return out

    def backward(self, dout):
        return self._backward3(F.groupnorm2d_backward, dout)

    def __repr__(self):
        return f"GroupNorm2d({self.num_features}, groups={self.num_groups})"


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), the bridge from convolutions to a Linear layer."""

    def forward(self, x):
        self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        return dout.reshape(self._cache)


class Unflatten(Layer):
    """(N, C*H*W) -> (N, C, H, W): lets a CNN take flat rows (e.g. MNIST's (N, 784))."""

    def __init__(self, shape=(1, 28, 28)):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x):
        size = 1
        for s in self.shape:
            size *= s
        if getattr(x, "ndim", None) == 4 and tuple(x.shape[1:]) == self.shape:
            self._cache = x.shape
            return x
        if getattr(x, "ndim", None) != 2 or x.shape[1] != size:
            raise ValueError(f"{self!r} expected input of shape (N, {size}) or (N, {self.shape}), "
                             f"got {tuple(getattr(x, 'shape', ()))}")
        self._cache = x.shape
        return x.reshape(x.shape[0], *self.shape)

    def backward(self, dout):
        return None if dout is None else dout.reshape(self._cache)

    def __repr__(self):
        return f"Unflatten{self.shape}"
