"""Thin stateful layers over :mod:`course_lib.functional`.

Every layer has ``forward(x)``, ``backward(dout)``, ``params`` and ``grads``
(dicts with the same keys), and ``train()`` / ``eval()``.  Buffers that are not
learned (BN's running statistics) live in ``buffers``.  A layer reads its
parameters from ``self.params`` on every call, so an optimizer that updates them
in place, or a gradient check that swaps them, is seen at once.
"""
from __future__ import annotations

from course_lib import backend
from course_lib import functional as F
from course_lib import init as init_mod


class Layer:
    """Base class: no parameters, training mode on."""

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.training = True
        self._cache = None

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def __call__(self, x):
        return self.forward(x)

    def _check_input(self, x, features=None):
        """Name the expected and actual shape/dtype instead of failing deep inside numpy."""
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"{self!r} expects an array, got {type(x).__name__}")
        if x.ndim != 2 or (features is not None and x.shape[1] != features):
            want = f"(N, {features})" if features is not None else "(N, D)"
            raise ValueError(f"{self!r} expected input of shape {want}, got {tuple(x.shape)}")
        if x.dtype.kind != "f":
            raise TypeError(f"{self!r} expected a float array, got dtype {x.dtype}; "
                            "convert with x.astype(backend.default_dtype)")
        for name, p in self.params.items():
            if p.dtype != x.dtype:
                raise TypeError(f"{self!r} has {name} of dtype {p.dtype} but the input is {x.dtype}; "
                                f"convert the input with x.astype('{p.dtype}')")

    def __repr__(self):
        return f"{type(self).__name__}()"


class Linear(Layer):
    """``out = x @ W + b``; W: (in_features, out_features), b: (out_features,).

    ``init`` is a scheme name ("he", "xavier", "lecun"), a number (the std of a
    normal) or a callable — see :mod:`course_lib.init`.  ``need_input_grad=False``
    skips computing dx (the first layer's input is data).
    """

    def __init__(self, in_features, out_features, *, init="he", bias=True, seed=None, dtype=None,
                 need_input_grad=True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.init = init
        self.need_input_grad = need_input_grad
        dtype = dtype or backend.default_dtype
        rng = backend.host_rng(seed)
        W = init_mod.initialize(init, self.in_features, self.out_features, rng)
        self.params["W"] = backend.asarray(W, dtype=dtype)
        if bias:
            self.params["b"] = backend.xp.zeros(self.out_features, dtype=dtype)

    def forward(self, x):
        self._check_input(x, self.in_features)
        out, self._cache = F.linear_forward(x, self.params["W"], self.params.get("b"))
        return out

    def backward(self, dout):
        dx, self.grads["W"], db = F.linear_backward(dout, self._cache, self.need_input_grad)
        if db is not None:
            self.grads["b"] = db
        return dx

    def __repr__(self):
        return f"Linear({self.in_features}->{self.out_features})"


class _Activation(Layer):
    kind = ""

    def forward(self, x):
        out, self._cache = F.ACTIVATIONS[self.kind][0](x)
        return out

    def backward(self, dout):
        return F.ACTIVATIONS[self.kind][1](dout, self._cache)


class ReLU(_Activation):
    kind = "relu"


class Sigmoid(_Activation):
    kind = "sigmoid"


class Tanh(_Activation):
    kind = "tanh"


class LeakyReLU(Layer):
    def __init__(self, slope=0.01):
        super().__init__()
        if not 0 <= slope < 1:
            raise ValueError(f"LeakyReLU slope must be in [0, 1), got {slope}")
        self.slope = slope

    def forward(self, x):
        out, self._cache = F.leaky_relu_forward(x, self.slope)
        return out

    def backward(self, dout):
        return F.leaky_relu_backward(dout, self._cache)

    def __repr__(self):
        return f"LeakyReLU({self.slope})"


class _Norm(Layer):
    """Shared parts of the normalization layers: gamma = 1, beta = 0."""

    def __init__(self, num_features, dtype=None):
        super().__init__()
        self.num_features = int(num_features)
        dtype = dtype or backend.default_dtype
        self.params["gamma"] = backend.xp.ones(self.num_features, dtype=dtype)
        self.params["beta"] = backend.xp.zeros(self.num_features, dtype=dtype)

    def _backward3(self, fn, dout):
        dx, self.grads["gamma"], self.grads["beta"] = fn(dout, self._cache)
        return dx

    def __repr__(self):
        return f"{type(self).__name__}({self.num_features})"


class BatchNorm1d(_Norm):
    """Batch normalization over the batch axis of (N, D) inputs.

    Conventions (see :func:`course_lib.functional.batchnorm_forward`):
    ``momentum`` is the weight of the new batch (0.1):
    ``running = (1 - momentum) * running + momentum * batch``; the batch is
    normalised with its biased variance and the running variance is updated with
    the unbiased one (N / (N - 1)); the running variance starts at 1, the mean at 0.
    In ``eval()`` mode the running statistics are used and not updated.
    """

    def __init__(self, num_features, *, momentum=0.1, eps=1e-5, dtype=None):
        super().__init__(num_features, dtype)
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum is the weight of the new batch and must be in [0, 1], got {momentum}")
        self.momentum, self.eps = momentum, eps
        dtype = self.params["gamma"].dtype
        self.buffers["running_mean"] = backend.xp.zeros(self.num_features, dtype=dtype)
        self.buffers["running_var"] = backend.xp.ones(self.num_features, dtype=dtype)
        self.num_batches_tracked = 0

    def _stats_kwargs(self):
        return {"momentum": self.momentum, "eps": self.eps, "training": self.training}

    def _forward_fn(self):
        return F.batchnorm_forward

    def forward(self, x):
        self._check_input(x, self.num_features)
        out, self._cache, rm, rv = self._forward_fn()(
            x, self.params["gamma"], self.params["beta"], self.buffers["running_mean"],
            self.buffers["running_var"], **self._stats_kwargs())
        if self.training:
            self.buffers["running_mean"], self.buffers["running_var"] = rm, rv
            self.num_batches_tracked += 1
        return out

    def backward(self, dout):
        return self._backward3(F.batchnorm_backward, dout)


def renorm_schedule(step, *, warmup=5000, ramp=25000, r_max_final=3.0, d_max_final=5.0):
    """A schedule of the paper's shape (its step counts are for ImageNet-scale runs): plain BN
    (r_max = 1, d_max = 0) for ``warmup`` steps, then r_max and d_max grow linearly to their
    final values over ``ramp`` steps.
    Returns ``(r_max, d_max)``."""
    t = min(max(step - warmup, 0) / max(ramp, 1), 1.0)
    return 1.0 + t * (r_max_final - 1.0), t * d_max_final


class BatchRenorm1d(BatchNorm1d):
    """Batch Renormalization: BN whose batch statistics are corrected towards the
    running ones by r and d (see :func:`course_lib.functional.batchrenorm_forward`).

    ``schedule(step) -> (r_max, d_max)`` is called with the number of training
    batches seen; the default is :func:`renorm_schedule` (plain BN first, then relaxed).
    Pass fixed numbers with ``schedule=lambda step: (3.0, 5.0)``.
    """

    def __init__(self, num_features, *, momentum=0.1, eps=1e-5, schedule=renorm_schedule, dtype=None):
        super().__init__(num_features, momentum=momentum, eps=eps, dtype=dtype)
        self.schedule = schedule

    def _stats_kwargs(self):
        r_max, d_max = self.schedule(self.num_batches_tracked)
        return {**super()._stats_kwargs(), "r_max": r_max, "d_max": d_max}

    def _forward_fn(self):
        return F.batchrenorm_forward

    def backward(self, dout):
        return self._backward3(F.batchrenorm_backward, dout)


class LayerNorm(_Norm):
    """Layer normalization over the features of each sample (no batch statistics)."""

    def __init__(self, num_features, *, eps=1e-5, dtype=None):
        super().__init__(num_features, dtype)
        self.eps = eps

    def forward(self, x):
        self._check_input(x, self.num_features)
        out, self._cache = F.layernorm_forward(x, self.params["gamma"], self.params["beta"], self.eps)
        return out

    def backward(self, dout):
        return self._backward3(F.layernorm_backward, dout)


class GroupNorm(_Norm):
    """Group normalization: layer norm within ``num_groups`` groups of features."""

    def __init__(self, num_features, num_groups=8, *, eps=1e-5, dtype=None):
        super().__init__(num_features, dtype)
        if num_features % num_groups:
            raise ValueError(f"num_features={num_features} is not divisible by num_groups={num_groups}")
        self.num_groups, self.eps = num_groups, eps

    def forward(self, x):
        self._check_input(x, self.num_features)
        out, self._cache = F.groupnorm_forward(x, self.params["gamma"], self.params["beta"],
                                               self.num_groups, self.eps)
        return out

    def backward(self, dout):
        return self._backward3(F.groupnorm_backward, dout)


class Dropout(Layer):
    """Inverted dropout; ``p`` is the probability of DROPPING a unit.

    Training: ``out = x * mask / (1 - p)`` with ``mask ~ Bernoulli(1 - p)``;
    eval: ``out = x``.  Seeded: the same seed gives the same masks.
    """

    def __init__(self, p=0.5, *, seed=None):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout p is the drop probability and must be in [0, 1), got {p}")
        self.p = p
        self.rng = backend.default_rng(seed)

    def forward(self, x):
        out, self._cache = F.dropout_forward(x, self.p, training=self.training, rng=self.rng)
        return out

    def backward(self, dout):
        return F.dropout_backward(dout, self._cache)

    def __repr__(self):
        return f"Dropout(p={self.p})"


ACTIVATION_LAYERS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh,
                     "identity": None}
NORM_LAYERS = {None: None, "batch": BatchNorm1d, "renorm": BatchRenorm1d, "layer": LayerNorm,
               "group": GroupNorm}
