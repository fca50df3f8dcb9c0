r"""Weight initialisation schemes.

A linear layer ``y = x @ W`` with ``n = fan_in`` independent inputs of variance
Var(x) and zero-mean weights of variance Var(w) gives

    Var(y) = n * Var(w) * Var(x).

Keeping Var(y) = Var(x) layer after layer asks for Var(w) = 1 / n.  ReLU zeroes
half of its inputs, halving the second moment, so it needs twice that:
Var(w) = 2 / n (He et al. 2015).

=============  ==============================  ======================================
name           std of W                        origin
=============  ==============================  ======================================
``"lecun"``    sqrt(1 / fan_in)                LeCun et al. 1998 (the DLFS book's "Xavier")
``"xavier"``   sqrt(2 / (fan_in + fan_out))    Glorot & Bengio 2010 (normal variant)
``"he"``       sqrt(2 / fan_in)                He et al. 2015, for ReLU
number ``s``   s                               a plain normal with std s (e.g. 0.01)
=============  ==============================  ======================================

With fan_in = fan_out, "xavier" and "lecun" coincide.  A scheme can be given by
name, by number, or as a callable ``f(fan_in, fan_out, rng) -> W``.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

SCHEMES = {
    "lecun": lambda fan_in, fan_out: math.sqrt(1.0 / fan_in),
    "xavier": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "glorot": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "he": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
    "kaiming": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
}


def std_for(scheme, fan_in: int, fan_out: int) -> float:
    """The standard deviation that ``scheme`` (a name or a number) gives a (fan_in, fan_out) weight."""
    if isinstance(scheme, Real) and not isinstance(scheme, bool):
        if not math.isfinite(scheme) or scheme < 0:
            raise ValueError(f"an init std must be a finite number >= 0, got {scheme}; pass e.g. "
                             "init=0.01, or a scheme name such as init='he'")
        return float(scheme)
    if isinstance(scheme, str):
        key = scheme.lower()
        if key in SCHEMES:
            return SCHEMES[key](fan_in, fan_out)
    raise ValueError(f"Unknown init {scheme!r}; use one of {sorted(SCHEMES)}, "
                     "a number (the std of a normal), or a callable f(fan_in, fan_out, rng)")


def normal(std: float):
    """A scheme drawing W ~ N(0, std^2), as a callable ``f(fan_in, fan_out, rng)``."""
    return lambda fan_in, fan_out, rng: rng.standard_normal((fan_in, fan_out)) * std


def _named(name):
    def scheme(fan_in, fan_out, rng):
        return rng.standard_normal((fan_in, fan_out)) * std_for(name, fan_in, fan_out)
    scheme.__name__ = name
    return scheme


xavier, he, lecun = _named("xavier"), _named("he"), _named("lecun")


def initialize(scheme, fan_in: int, fan_out: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A host (numpy, float64) weight matrix of shape (fan_in, fan_out) drawn by ``scheme``.

    Drawn on the host so that a seed gives the same weights on every backend.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    if callable(scheme):
        W = np.asarray(scheme(fan_in, fan_out, rng))
        if W.shape != (fan_in, fan_out):
            raise ValueError(f"init callable returned shape {W.shape}, expected {(fan_in, fan_out)}")
        if W.dtype.kind not in "fiu" or not np.isfinite(W).all():
            raise ValueError(f"init callable {getattr(scheme, '__name__', scheme)!r} returned "
                             "non-finite or non-numeric weights; it must return finite floats "
                             "f(fan_in, fan_out, rng) -> (fan_in, fan_out)")
        return W
    return rng.standard_normal((fan_in, fan_out)) * std_for(scheme, fan_in, fan_out)
