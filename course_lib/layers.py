"""Thin stateful layers over :mod:`course_lib.functional`, and the container that holds them.

Every layer has ``forward(x)``, ``backward(dout)``, ``params`` and ``grads``
(dicts with the same keys), and ``train()`` / ``eval()``.  Buffers that are not
learned (BN's running statistics) live in ``buffers``.  A layer reads its
parameters from ``self.params`` on every call, so an optimizer that updates them
in place, or a gradient check that swaps them, is seen at once.

State: ``state_dict()`` returns copies of every parameter AND buffer (plus integer
counters such as BN's ``num_batches_tracked``); ``load_state_dict(state)`` checks
keys, shapes, dtypes and devices before it changes anything, and copies the values
in (it never keeps a reference to the caller's arrays).  ``to("cpu" | "gpu" |
"standin")`` moves a layer's arrays to another device.

Roles: a layer says what it is with two class attributes, the one place that
decides: ``is_norm`` (a normalization layer: BN, Batch Renorm, LayerNorm,
GroupNorm) and ``has_batch_stats`` (it normalises with the statistics of the
batch in training mode and keeps running statistics: BN, Batch Renorm).  Use
:func:`is_norm` / :func:`has_batch_stats`, which also accept foreign objects.

:class:`Sequential` chains named layers and is itself a layer; keys of its
``params``/``grads``/``buffers``/``state_dict`` are ``"<layer name>.<key>"``.
:func:`eval_mode` switches a layer (or a whole model) to eval mode for a block
and restores every layer's previous mode afterwards.
"""
from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Mapping

import numpy as np

from course_lib import backend
from course_lib import functional as F
from course_lib import init as init_mod
from course_lib._validate import check_int, check_real

#: Written into every saved file; :meth:`Sequential.load` refuses files without it.
STATE_FORMAT = "course_lib.state/1"


def _float_dtype(dtype):
    dtype = np.dtype(dtype or backend.default_dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a float type (float32 or float64), got {dtype}; "
                        "pass dtype='float32' or leave it out")
    return dtype.type


class Layer:
    """Base class: no parameters, training mode on.

    Subclasses fill ``params`` (learned arrays), ``buffers`` (arrays that are not
    learned) and list integer attributes that are part of their state in
    ``state_attrs``.  The generic machinery here (state, devices, modes) makes no
    assumption about array shapes; only :meth:`_check_input` checks (N, D) input.
    A layer that keeps its forward cache somewhere else than ``self._cache``
    overrides :meth:`_drop_caches`.
    """

    #: a normalization layer (BN, Batch Renorm, LayerNorm, GroupNorm, ...)
    is_norm = False
    #: normalises with batch statistics in training mode and keeps running statistics (BN, Renorm)
    has_batch_stats = False
    #: integer attributes saved by state_dict (e.g. ``("num_batches_tracked",)``)
    state_attrs: tuple = ()

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.training = True
        self._cache = None

    # -- modes ---------------------------------------------------------------------------
    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def modules(self):
        """This layer and, for containers, every layer inside it (depth first)."""
        yield self

    def _drop_caches(self):
        """Forget what the last forward kept for backward (frees memory after an eval pass)."""
        self._cache = None

    def __call__(self, x):
        return self.forward(x)

    # -- devices -------------------------------------------------------------------------
    @property
    def device(self):
        """"cpu", "gpu" or "standin": where the layer's arrays live (None if it has none)."""
        for a in list(self.params.values()) + list(self.buffers.values()):
            return backend.device_of(a)
        return None

    def to(self, device):
        """Move every parameter, buffer and gradient to ``device`` ("cpu", "gpu", "standin"),
        in place; returns the layer.  Optimizer state made before the move is not moved:
        make a new optimizer afterwards."""
        backend.array_module(device)  # an unknown device or an unusable GPU fails here, clearly
        for d in (self.params, self.buffers, self.grads):
            for k, v in list(d.items()):
                if v is not None and hasattr(v, "shape"):
                    d[k] = backend.move(v, device)
        self._drop_caches()
        return self

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Copies of every parameter and buffer (on the layer's device), and the integer
        counters in ``state_attrs`` (as 0-d int64 host arrays)."""
        state = {k: v.copy() for k, v in self.params.items()}
        state.update({k: v.copy() for k, v in self.buffers.items()})
        state.update({k: np.array(int(getattr(self, k)), dtype=np.int64) for k in self.state_attrs})
        return state

    def _state_keys(self):
        return list(self.params) + list(self.buffers) + list(self.state_attrs)

    def _plan_load(self, state, prefix, problems):
        """Check ``state`` (keys without ``prefix``) against this layer; append problems;
        return a list of zero-argument functions that apply it."""
        actions = []
        expected = self._state_keys()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing:
            problems.append(f"missing {', '.join(prefix + k for k in missing)}")
        if unexpected:
            problems.append(f"unexpected {', '.join(prefix + k for k in unexpected)}")
        for k in self.state_attrs:
            if k in state:
                v = state[k]
                try:
                    n = int(backend.to_numpy(v).reshape(-1)[0]) if hasattr(v, "shape") else int(v)
                except (TypeError, ValueError, IndexError):
                    problems.append(f"{prefix}{k} must be an integer, got {v!r}")
                    continue
                actions.append(lambda k=k, n=n: setattr(self, k, n))
        for store in (self.params, self.buffers):
            for k, cur in store.items():
                if k not in state:
                    continue
                v = state[k]
                if isinstance(v, (list, tuple)) or not hasattr(v, "shape") or not hasattr(v, "dtype"):
                    problems.append(f"{prefix}{k} must be an array, got {type(v).__name__}")
                    continue
                if tuple(v.shape) != tuple(cur.shape):
                    problems.append(f"{prefix}{k} has shape {tuple(v.shape)}, the model expects "
                                    f"{tuple(cur.shape)}")
                    continue
                if v.dtype != cur.dtype:
                    problems.append(f"{prefix}{k} has dtype {v.dtype}, the model has {cur.dtype} "
                                    f"(convert with .astype('{cur.dtype}') or build the model with "
                                    f"dtype='{v.dtype}')")
                    continue
                src, dst = backend.device_of(v), backend.device_of(cur)
                if src not in ("cpu", dst):
                    problems.append(f"{prefix}{k} lives on {src!r} but the model is on {dst!r} "
                                    f"(move the model with .to({src!r}) or pass host arrays, "
                                    "backend.to_numpy(...))")
                    continue
                actions.append(lambda store=store, k=k, v=v, dst=dst: store.__setitem__(k, backend.move(v, dst)))
        return actions

    def load_state_dict(self, state):
        """Load a :meth:`state_dict` (or the arrays of a saved file): every key must match,
        with the same shapes and dtypes; host (numpy) arrays or arrays on the layer's own
        device.  Values are copied in.  Raises (and changes nothing) on any mismatch."""
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict expects a dict of arrays (from state_dict()), "
                            f"got {type(state).__name__}")
        problems = []
        actions = self._plan_load(dict(state), "", problems)
        if problems:
            raise ValueError(f"cannot load this state into {self!r}: " + "; ".join(problems)
                             + ". Build the model with the same architecture and dtype as the one "
                             "the state came from.")
        for act in actions:
            act()
        for mod in self.modules():
            mod.grads.clear() if isinstance(mod.grads, dict) else None
            mod._drop_caches()
        return self

    # -- input checks ---------------------------------------------------------------------
    def _check_input(self, x, features=None):
        """Name the expected and actual shape/dtype/device instead of failing deep inside numpy."""
        if isinstance(x, (list, tuple)):
            raise TypeError(f"{self!r} expects an array, got a Python {type(x).__name__}; convert it "
                            "with backend.asarray(x, dtype=backend.default_dtype)")
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"{self!r} expects an array, got {type(x).__name__}; convert it with "
                            "backend.asarray(x, dtype=backend.default_dtype)")
        if x.ndim != 2 or (features is not None and x.shape[1] != features):
            want = f"(N, {features})" if features is not None else "(N, D)"
            raise ValueError(f"{self!r} expected input of shape {want}, got {tuple(x.shape)}")
        if x.dtype.kind != "f":
            raise TypeError(f"{self!r} expected a float array, got dtype {x.dtype}; "
                            "convert with x.astype(backend.default_dtype)")
        xd = backend.device_of(x)
        for name, p in self.params.items():
            pd = backend.device_of(p)
            if xd != pd:
                raise TypeError(f"{self!r} lives on {pd!r} but the input is on {xd!r}; move the model "
                                f"with model.to({xd!r}) or the input with backend.move(x, {pd!r})")
            if p.dtype != x.dtype:
                raise TypeError(f"{self!r} has {name} of dtype {p.dtype} but the input is {x.dtype}; "
                                f"convert the input with x.astype('{p.dtype}')")

    def __repr__(self):
        return f"{type(self).__name__}()"


def is_norm(layer) -> bool:
    """True for normalization layers (BN, Batch Renorm, LayerNorm, GroupNorm, ...)."""
    return bool(getattr(layer, "is_norm", False))


def has_batch_stats(layer) -> bool:
    """True for layers that use batch statistics in training mode (BN, Batch Renorm); for a
    container, True if any layer inside does."""
    return bool(getattr(layer, "has_batch_stats", False))


@contextlib.contextmanager
def eval_mode(module, *, keep_activations=None):
    """``with eval_mode(model): ...`` runs the block in eval mode and afterwards restores
    the mode every layer had before (a layer that was in eval mode stays there).

    ``keep_activations``: if given, the model's ``keep_activations`` is set to it for the
    block and restored afterwards (``False`` keeps no layer caches: less memory).
    Works for any object with ``train()``/``eval()``/``training``.
    """
    mods = list(module.modules()) if hasattr(module, "modules") else [module]
    modes = [(m, getattr(m, "training", True)) for m in mods]
    keep = getattr(module, "keep_activations", None)
    module.eval()
    if keep_activations is not None and keep is not None:
        module.keep_activations = keep_activations
    try:
        yield module
    finally:
        if keep_activations is not None and keep is not None:
            module.keep_activations = keep
        for m, was in modes:
            if hasattr(m, "modules"):
                m.training = was
            elif was:
                m.train()
            else:
                m.eval()


class Linear(Layer):
    """``out = x @ W + b``; W: (in_features, out_features), b: (out_features,).

    ``init`` is a scheme name ("he", "xavier", "lecun"), a number (the std of a
    normal) or a callable — see :mod:`course_lib.init`.  ``need_input_grad=False``
    skips computing dx (the first layer's input is data).
    """

    def __init__(self, in_features, out_features, *, init="he", bias=True, seed=None, dtype=None,
                 need_input_grad=True):
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1)
        self.out_features = check_int("out_features", out_features, 1)
        self.init = init
        self.need_input_grad = need_input_grad
        dtype = _float_dtype(dtype)
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
        self.slope = check_real("LeakyReLU slope", slope, 0, 1, hi_incl=False)

    def forward(self, x):
        out, self._cache = F.leaky_relu_forward(x, self.slope)
        return out

    def backward(self, dout):
        return F.leaky_relu_backward(dout, self._cache)

    def __repr__(self):
        return f"LeakyReLU({self.slope})"


class _Norm(Layer):
    """Shared parts of the normalization layers: gamma = 1, beta = 0; ``eps > 0``."""

    is_norm = True

    def __init__(self, num_features, dtype=None, eps=1e-5):
        super().__init__()
        self.num_features = check_int("num_features", num_features, 1)
        # eps = 0 divides by zero on a feature whose variance is 0 (a constant input): NaN
        self.eps = check_real("eps", eps, 0, None, lo_incl=False,
                              meaning=" (added to the variance before the square root)", example=1e-5)
        dtype = _float_dtype(dtype)
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
    State: params gamma, beta; buffers running_mean, running_var; ``num_batches_tracked``.
    """

    has_batch_stats = True
    state_attrs = ("num_batches_tracked",)

    def __init__(self, num_features, *, momentum=0.1, eps=1e-5, dtype=None):
        super().__init__(num_features, dtype, eps)
        self.momentum = check_real("momentum", momentum, 0, 1,
                                   meaning=" (BN momentum is the weight of the new batch)", example=0.1)
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
        if not callable(schedule):
            raise TypeError(f"schedule must be a function step -> (r_max, d_max), got {schedule!r}; "
                            "e.g. schedule=lambda step: (3.0, 5.0)")
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
        super().__init__(num_features, dtype, eps)

    def forward(self, x):
        self._check_input(x, self.num_features)
        out, self._cache = F.layernorm_forward(x, self.params["gamma"], self.params["beta"], self.eps)
        return out

    def backward(self, dout):
        return self._backward3(F.layernorm_backward, dout)


class GroupNorm(_Norm):
    """Group normalization: layer norm within ``num_groups`` groups of features
    (``num_features`` must be a multiple of ``num_groups``)."""

    def __init__(self, num_features, num_groups=8, *, eps=1e-5, dtype=None):
        num_features = check_int("num_features", num_features, 1)
        num_groups = check_int("num_groups", num_groups, 1)
        if num_features % num_groups:
            divisors = [g for g in range(1, num_features + 1) if num_features % g == 0]
            raise ValueError(f"num_features={num_features} is not divisible by num_groups={num_groups}; "
                             f"use a num_groups that divides it, one of {divisors[:12]}")
        super().__init__(num_features, dtype, eps)
        self.num_groups = num_groups

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
        self.p = check_real("Dropout p", p, 0, 1, hi_incl=False, meaning=" (the drop probability)")
        self.rng = backend.default_rng(seed)

    def forward(self, x):
        out, self._cache = F.dropout_forward(x, self.p, training=self.training, rng=self.rng)
        return out

    def backward(self, dout):
        return F.dropout_backward(dout, self._cache)

    def __repr__(self):
        return f"Dropout(p={self.p})"


class Sequential(Layer):
    """Named layers applied in order; itself a layer.

    ``Sequential([("linear0", Linear(784, 100)), ("relu0", ReLU()), ("linear1", Linear(100, 10))])``
    (a plain list of layers is named "0", "1", ...).  ``layers`` is the list of
    ``(name, layer)`` pairs and may be edited in place (insert, replace); everything
    else is computed from it.

    ``params``, ``grads``, ``buffers`` and ``state_dict()`` are keyed
    ``"<layer name>.<key>"`` (e.g. ``"linear0.W"``, ``"batchnorm0.running_var"``); the
    dicts are fresh views: change a parameter in place or with :meth:`set_params`.
    After ``forward``, ``activations`` maps each layer's name to its output (when
    ``keep_activations`` is on).  An eval-mode pass with ``keep_activations = False``
    keeps nothing: no activations and no layer caches (so no backward either).
    """

    def __init__(self, layers=(), *, keep_activations=True):
        self.training = True
        self._cache = None
        self._caches_dropped = False
        self.layers: list = []
        self.activations: dict = {}
        self.keep_activations = keep_activations
        if isinstance(layers, Mapping):
            layers = list(layers.items())
        for i, item in enumerate(layers):
            name, layer = item if isinstance(item, tuple) else (str(i), item)
            self.add(name, layer)

    def add(self, name, layer):
        """Append ``layer`` under ``name`` (unique, no dots); returns the container."""
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"a layer name must be a non-empty string without dots, got {name!r}")
        if name in self.layer_names:
            raise ValueError(f"there is already a layer called {name!r}; pick another name")
        if not (hasattr(layer, "forward") and hasattr(layer, "backward")):
            raise TypeError(f"{name}: expected a layer (with forward and backward), got {type(layer).__name__}")
        self.layers.append((name, layer))
        return self

    # -- structure -------------------------------------------------------------------------
    def modules(self):
        yield self
        for _, layer in self.layers:
            yield from (layer.modules() if hasattr(layer, "modules") else [layer])

    def named_modules(self, prefix=""):
        """``(dotted name, layer)`` for every layer inside, depth first (containers included)."""
        for name, layer in self.layers:
            full = prefix + name
            yield full, layer
            if isinstance(layer, Sequential):
                yield from layer.named_modules(full + ".")

    def layer(self, name):
        """The layer called ``name`` (see :attr:`layer_names`); dotted names reach inside."""
        head, _, rest = name.partition(".")
        for ln, layer in self.layers:
            if ln == head:
                return layer.layer(rest) if rest else layer
        raise KeyError(f"no layer {name!r}; layers are {self.layer_names}")

    @property
    def layer_names(self):
        return [ln for ln, _ in self.layers]

    @property
    def is_norm(self):
        return False

    @property
    def has_batch_stats(self):
        return any(has_batch_stats(layer) for _, layer in self.layers)

    def to(self, device):
        """Move every layer's arrays to ``device`` ("cpu", "gpu", "standin"); returns the model."""
        backend.array_module(device)
        for _, layer in self.layers:
            layer.to(device)
        self._caches_dropped = False
        self.activations = {}
        return self

    def _drop_caches(self):
        for _, layer in self.layers:
            if hasattr(layer, "_drop_caches"):
                layer._drop_caches()
            else:
                layer._cache = None

    # -- parameters ------------------------------------------------------------------------
    def _collect(self, attr):
        return {f"{ln}.{k}": v for ln, layer in self.layers for k, v in getattr(layer, attr, {}).items()}

    @property
    def params(self) -> dict:
        """All learnable arrays, keyed ``"<layer>.<name>"`` (e.g. ``"linear0.W"``, ``"batchnorm0.gamma"``)."""
        return self._collect("params")

    @property
    def grads(self) -> dict:
        """Gradients from the last ``backward``, same keys as :attr:`params`."""
        return self._collect("grads")

    @property
    def buffers(self) -> dict:
        """Arrays that are not learned (BN's running statistics), keyed like :attr:`params`."""
        return self._collect("buffers")

    def parameters(self):
        """``(name, param, grad)`` triples; ``grad`` is None before the first backward."""
        return [(k, v, self.grads.get(k)) for k, v in self.params.items()]

    def num_parameters(self) -> int:
        return sum(int(p.size) for p in self.params.values())

    def _owner(self, key):
        """(layer, local key) for a dotted key such as ``"linear0.W"``."""
        head, _, rest = key.partition(".")
        if not rest:
            raise KeyError(f"{key!r} is not a '<layer>.<name>' key; keys are like {list(self.params)[:3]}")
        layer = self.layer(head)
        return layer._owner(rest) if isinstance(layer, Sequential) else (layer, rest)

    def set_params(self, params: dict):
        """Replace parameters by name (values are copied in; shape, dtype and device must match).

        Only parameters: to restore a trained model, BN's running statistics included,
        use :meth:`load_state_dict` or :meth:`save` / :meth:`load`.
        """
        if not isinstance(params, Mapping):
            raise TypeError(f"set_params expects a dict {{name: array}}, got {type(params).__name__}")
        problems, actions = [], []
        for key, value in params.items():
            try:
                layer, k = self._owner(key)
            except KeyError as e:
                problems.append(str(e.args[0]))
                continue
            if k not in layer.params:
                problems.append(f"{key}: no such parameter (layer has {sorted(layer.params)})")
                continue
            sub_problems = []
            acts = Layer._plan_load(_ParamsOnly(layer), {k: value}, key[: -len(k)], sub_problems)
            problems += [p for p in sub_problems if not p.startswith("missing")]
            actions += acts
        if problems:
            raise ValueError("set_params: " + "; ".join(problems))
        for act in actions:
            act()

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Copies of every parameter, buffer and counter of every layer, keyed ``"<layer>.<key>"``."""
        return {f"{ln}.{k}": v for ln, layer in self.layers for k, v in layer.state_dict().items()}

    def _state_keys(self):
        return [f"{ln}.{k}" for ln, layer in self.layers for k in layer._state_keys()]

    def _plan_load(self, state, prefix, problems):
        names = self.layer_names
        unexpected = sorted({k for k in state if k.partition(".")[0] not in names})
        if unexpected:
            problems.append(f"unexpected {', '.join(prefix + k for k in unexpected[:8])}"
                            + (f" (and {len(unexpected) - 8} more)" if len(unexpected) > 8 else ""))
        actions = []
        for ln, layer in self.layers:
            sub = {k.partition(".")[2]: v for k, v in state.items() if k.partition(".")[0] == ln}
            actions += layer._plan_load(sub, f"{prefix}{ln}.", problems)
        return actions

    def architecture(self) -> list:
        """``["<dotted name>:<class name>", ...]`` for every layer: what :meth:`load` compares."""
        return [f"{name}:{type(layer).__name__}" for name, layer in self.named_modules()]

    def save(self, path) -> str:
        """Write the model's state (parameters, buffers, counters) to an ``.npz`` file (no pickle),
        atomically.  Returns the path written (``.npz`` is appended if missing).  Load it into a
        model of the same architecture with :meth:`load`."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        arrays = {k: backend.to_numpy(v) for k, v in self.state_dict().items()}
        arrays["__format__"] = np.array(STATE_FORMAT)
        arrays["__architecture__"] = np.array(self.architecture())
        tmp = f"{path}.part-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    def load(self, path):
        """Load a file written by :meth:`save` into this model (built with the same architecture)
        and return the model.  The file is checked first: its format, its architecture, and every
        array's shape and dtype; arrays are copied to the model's device."""
        path = os.fspath(path)
        if not os.path.exists(path) and os.path.exists(path + ".npz"):
            path += ".npz"
        if not os.path.exists(path):
            raise FileNotFoundError(f"no model file at {path!r}; write one with model.save({path!r})")
        advice = "give the path of a file written by model.save(path), or save the model again"
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path!r} is not a course_lib model file ({type(e).__name__}: {e}); {advice}") from e
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path!r} holds a single array, not a course_lib model file; {advice}")
        try:
            with data:
                if "__format__" not in data.files:
                    raise ValueError(f"{path!r} is an .npz file but not a course_lib model file "
                                     f"(no __format__ entry); {advice}")
                arrays = {k: data[k] for k in data.files}
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
            if isinstance(e, ValueError) and "course_lib model file" in str(e):
                raise
            raise ValueError(f"{path!r} is damaged ({type(e).__name__}: {e}); {advice}") from e
        fmt = str(arrays.pop("__format__"))
        if fmt != STATE_FORMAT:
            raise ValueError(f"{path!r} has format {fmt!r}; this course_lib reads {STATE_FORMAT!r}. "
                             "Save the model again with this version.")
        saved_arch = [str(s) for s in arrays.pop("__architecture__", np.array([]))]
        if saved_arch and saved_arch != self.architecture():
            raise ValueError(f"{path!r} holds a model with layers {saved_arch}, but this model has "
                             f"{self.architecture()}; build the model with the same sizes, norm, "
                             "activation and dropout as the saved one, then load")
        return self.load_state_dict(arrays)

    # -- modes -----------------------------------------------------------------------------
    def train(self):
        self.training = True
        for _, layer in self.layers:
            layer.train()
        return self

    def eval(self):
        self.training = False
        for _, layer in self.layers:
            layer.eval()
        return self

    # -- passes ----------------------------------------------------------------------------
    def forward(self, x):
        """Apply the layers in order; records ``activations`` if ``keep_activations``."""
        keep = self.keep_activations
        drop = not self.training and not keep   # nothing to keep for a backward: free as we go
        acts = {}
        for name, layer in self.layers:
            x = layer.forward(x)
            if drop:
                layer._drop_caches() if hasattr(layer, "_drop_caches") else setattr(layer, "_cache", None)
            if keep:
                acts[name] = x
        if keep:  # a pass with keep_activations off (evaluate) leaves the last record alone
            self.activations = acts
        self._caches_dropped = drop
        return x

    def backward(self, dout):
        """dout: gradient of the loss w.r.t. the output; fills every layer's grads; returns dx."""
        if self._caches_dropped:
            raise RuntimeError("backward needs the caches of a forward pass, but the last forward ran "
                               "in eval mode with keep_activations=False, which keeps none; run "
                               "forward again in train() mode (or with keep_activations=True)")
        for _, layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def loss(self, x, y):
        """Forward pass and mean softmax cross-entropy: returns ``(loss, dlogits, logits)``."""
        logits = self.forward(x)
        loss, dlogits = F.softmax_cross_entropy(logits, y)
        return loss, dlogits, logits

    def __repr__(self):
        return f"{type(self).__name__}(\n  " + "\n  ".join(
            f"{n}: {l!r}".replace("\n", "\n  ") for n, l in self.layers) + "\n)"


class _ParamsOnly:
    """A view of a layer's params alone, for :meth:`Sequential.set_params`'s checks."""

    state_attrs = ()

    def __init__(self, layer):
        self.params, self.buffers = layer.params, {}

    def _state_keys(self):
        return list(self.params)


ACTIVATION_LAYERS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh,
                     "identity": None}
NORM_LAYERS = {None: None, "batch": BatchNorm1d, "renorm": BatchRenorm1d, "layer": LayerNorm,
               "group": GroupNorm}
