"""A multi-layer perceptron assembled from :mod:`course_lib.layers`.

``MLP([784, 100, 100, 10], activation="relu", norm="batch")`` builds::

    Linear(784->100) -> BatchNorm1d(100) -> ReLU -> Linear(100->100) -> BatchNorm1d(100) -> ReLU
    -> Linear(100->10)

and, with ``dropout=p``, a Dropout after each hidden activation.  A Linear that
feeds a normalization layer gets no bias by default: the normalization subtracts
the mean, so such a bias has no effect and receives a gradient of ~0.

An MLP is a :class:`course_lib.layers.Sequential`: the same ``params`` /
``grads`` / ``buffers`` / ``train()`` / ``eval()`` / ``state_dict()`` as any layer,
plus ``save(path)`` / ``load(path)`` and ``to(device)``.  :func:`eval_mode` is
re-exported here.
"""
from __future__ import annotations

from course_lib import backend
from course_lib import layers as L
from course_lib._validate import check_real
from course_lib.layers import Sequential, eval_mode  # noqa: F401  (re-exported)

ACTIVATIONS = tuple(k for k in L.ACTIVATION_LAYERS)
NORMS = tuple(L.NORM_LAYERS)
_NORM_NAMES = {"batch": "batchnorm", "renorm": "batchrenorm", "layer": "layernorm", "group": "groupnorm"}


def _check_sizes(sizes):
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"sizes must be a list of layer widths such as [784, 100, 10], got "
                        f"{type(sizes).__name__} {sizes!r}")
    out = []
    for s in sizes:
        if isinstance(s, bool) or not (isinstance(s, int) or (hasattr(s, "dtype") and s.dtype.kind in "iu")
                                       or (isinstance(s, float) and s.is_integer())):
            raise TypeError(f"sizes must hold integers, got {s!r} in {list(sizes)!r}; "
                            "pass e.g. sizes=[784, 100, 10]")
        out.append(int(s))
    if len(out) < 2 or min(out) < 1:
        raise ValueError(f"sizes must list at least input and output sizes (all >= 1), got {out}; "
                         "pass e.g. sizes=[784, 100, 10]")
    return out


class MLP(Sequential):
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
        sizes = _check_sizes(sizes)
        if not isinstance(activation, str) or activation not in L.ACTIVATION_LAYERS:
            raise ValueError(f"Unknown activation {activation!r}; use one of {list(L.ACTIVATION_LAYERS)}")
        if not (norm is None or isinstance(norm, str)) or norm not in L.NORM_LAYERS:
            raise ValueError(f"Unknown norm {norm!r}; use one of {list(L.NORM_LAYERS)}")
        dropout = check_real("dropout", dropout, 0, 1, hi_incl=False, meaning=" (a drop probability)")
        super().__init__()
        self.sizes, self.activation, self.norm, self.dropout = sizes, activation, norm, dropout
        rng = backend.host_rng(seed)
        if linear_bias is None:
            linear_bias = norm is None
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

    def _add(self, name, layer):
        self.add(name, layer)

    def forward(self, x):
        """x: (N, sizes[0]) float  ->  logits: (N, sizes[-1])."""
        if isinstance(x, (list, tuple)):
            raise TypeError(f"MLP{tuple(self.sizes)}.forward expects an array, got a Python "
                            f"{type(x).__name__}; convert it with backend.asarray(x, dtype=backend.default_dtype)")
        if getattr(x, "ndim", None) != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"MLP{tuple(self.sizes)} expected input of shape (N, {self.sizes[0]}), "
                             f"got {tuple(getattr(x, 'shape', ()))}")
        return super().forward(x)

    __call__ = forward

    def __repr__(self):
        return "MLP(\n  " + "\n  ".join(f"{n}: {l!r}" for n, l in self.layers) + "\n)"
