"""A multi-layer perceptron assembled from :mod:`course_lib.layers`.

``MLP([784, 100, 100, 10], activation="relu", norm="batch")`` builds::

    Linear(784->100) -> BatchNorm1d(100) -> ReLU -> Linear(100->100) -> BatchNorm1d(100) -> ReLU
    -> Linear(100->10)

and, with ``dropout=p``, a Dropout after each hidden activation.  A Linear that
feeds a normalization layer gets no bias by default: the normalization subtracts
the mean, so such a bias has no effect and receives a gradient of ~0.
"""
from __future__ import annotations

from course_lib import backend
from course_lib import layers as L
from course_lib.functional import softmax_cross_entropy

ACTIVATIONS = tuple(k for k in L.ACTIVATION_LAYERS)
NORMS = tuple(L.NORM_LAYERS)
_NORM_NAMES = {"batch": "batchnorm", "renorm": "batchrenorm", "layer": "layernorm", "group": "groupnorm"}


class MLP:
    """Fully connected network: ``sizes = [in, hidden..., out]``.

    activation: "relu" | "leaky_relu" | "sigmoid" | "tanh" | "identity"
    norm:       None | "batch" | "renorm" | "layer" | "group"
    init:       "he" | "xavier" | "lecun" | a std | a callable (see :mod:`course_lib.init`)
    dropout:    drop probability after each hidden activation (0 = none)
    seed:       weights and dropout masks are drawn from it (None: the global stream)

    After ``forward``, ``activations`` maps each layer's name to its output, for
    diagnostics (histograms, dead-unit counts).
    """

    def __init__(self, sizes, *, activation="relu", norm=None, dropout=0.0, init="he", seed=None,
                 dtype=None, leaky_slope=0.01, linear_bias=None, norm_kwargs=None):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least input and output sizes (all >= 1), got {sizes}")
        if activation not in L.ACTIVATION_LAYERS:
            raise ValueError(f"Unknown activation {activation!r}; use one of {list(L.ACTIVATION_LAYERS)}")
        if norm not in L.NORM_LAYERS:
            raise ValueError(f"Unknown norm {norm!r}; use one of {list(L.NORM_LAYERS)}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout is a drop probability in [0, 1), got {dropout}")
        self.sizes, self.activation, self.norm, self.dropout = sizes, activation, norm, dropout
        rng = backend.host_rng(seed)
        if linear_bias is None:
            linear_bias = norm is None
        self.layers: list[tuple[str, L.Layer]] = []
        n_hidden = len(sizes) - 2
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == n_hidden
            self._add(f"linear{i}", L.Linear(fan_in, fan_out, init=init, dtype=dtype,
                                              bias=True if last else linear_bias,
                                              seed=int(rng.integers(2**31)), need_input_grad=i > 0))
            if last:
                break
            if norm is not None:
                self._add(f"{_NORM_NAMES[norm]}{i}", L.NORM_LAYERS[norm](fan_out, dtype=dtype, **(norm_kwargs or {})))
            act = L.ACTIVATION_LAYERS[activation]
            if act is not None:
                self._add(f"{activation}{i}", act(leaky_slope) if activation == "leaky_relu" else act())
            if dropout > 0:
                self._add(f"dropout{i}", L.Dropout(dropout, seed=int(rng.integers(2**31))))
        self.activations: dict = {}
        self.keep_activations = True
        self.training = True

    def _add(self, name, layer):
        self.layers.append((name, layer))

    # -- parameters ------------------------------------------------------------------------
    @property
    def params(self) -> dict:
        """All learnable arrays, keyed ``"<layer>.<name>"`` (e.g. ``"linear0.W"``, ``"batchnorm0.gamma"``)."""
        return {f"{ln}.{k}": v for ln, layer in self.layers for k, v in layer.params.items()}

    @property
    def grads(self) -> dict:
        """Gradients from the last ``backward``, same keys as :attr:`params`."""
        return {f"{ln}.{k}": v for ln, layer in self.layers for k, v in layer.grads.items()}

    def parameters(self):
        """``(name, param, grad)`` triples; ``grad`` is None before the first backward."""
        return [(f"{ln}.{k}", v, layer.grads.get(k)) for ln, layer in self.layers
                for k, v in layer.params.items()]

    def set_params(self, params: dict):
        """Replace parameters by name (e.g. to load a copy); shapes must match."""
        for key, value in params.items():
            ln, k = key.rsplit(".", 1)
            layer = dict(self.layers)[ln]
            if value.shape != layer.params[k].shape:
                raise ValueError(f"{key}: expected shape {layer.params[k].shape}, got {value.shape}")
            layer.params[k] = value

    def num_parameters(self) -> int:
        return sum(int(p.size) for p in self.params.values())

    def layer(self, name):
        """The layer called ``name`` (see :attr:`layer_names`)."""
        for ln, layer in self.layers:
            if ln == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers are {self.layer_names}")

    @property
    def layer_names(self):
        return [ln for ln, _ in self.layers]

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
        """x: (N, sizes[0]) float  ->  logits: (N, sizes[-1])."""
        if getattr(x, "ndim", None) != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"MLP{tuple(self.sizes)} expected input of shape (N, {self.sizes[0]}), "
                             f"got {tuple(getattr(x, 'shape', ()))}")
        keep = self.keep_activations
        acts = {}
        for name, layer in self.layers:
            x = layer.forward(x)
            if keep:
                acts[name] = x
        if keep:  # a pass with keep_activations off (evaluate) leaves the last record alone
            self.activations = acts
        return x

    __call__ = forward

    def backward(self, dout):
        """dout: (N, sizes[-1]) gradient of the loss w.r.t. the logits; fills every layer's grads."""
        for _, layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def loss(self, x, y):
        """Forward pass and mean softmax cross-entropy: returns ``(loss, dlogits, logits)``."""
        logits = self.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        return loss, dlogits, logits

    def __repr__(self):
        return "MLP(\n  " + "\n  ".join(f"{n}: {l!r}" for n, l in self.layers) + "\n)"
