r"""Numerical gradient checks.

The centred difference ``(f(x + h) - f(x - h)) / 2h`` has error O(h^2), so in
float64 with h ~ 1e-6 an analytic gradient should agree to a relative error of
about 1e-9; > 1e-7 means a bug.  In float32 the rounding error of f (~1e-7 * |f|)
divided by 2h swamps the comparison: always check in float64.

A gradient check can pass while proving nothing.  Use a batch of several
samples and a *random* upstream gradient ``dout``: with a batch of 1, BN's
output is beta whatever x is (both gradients are 0: the check passes and proves
nothing), and with ``dout`` all ones BN's true dx is 0 (its outputs sum to
N * beta), so only rounding noise is compared (any backward, right or wrong,
gives the same verdict).

Checker lines print as ``name | max rel. error | ok``.
"""
from __future__ import annotations

import numpy as np

from course_lib import backend
from course_lib.backend import get_array_module, to_numpy


def rel_error(a, b, floor=1e-12) -> float:
    """``max_i |a_i - b_i| / max(max_i |a_i|, max_i |b_i|)``: the largest error relative to the
    gradient's scale.  (An elementwise ratio would flag entries whose true value is ~0 and whose
    numerical estimate is pure rounding noise.)  Works on host or device arrays; returns a float.
    Two all-zero arrays give 0: a check of a gradient that is identically zero passes vacuously.
    """
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare shapes {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.abs(a).max(), np.abs(b).max(), floor)
    return float(np.abs(a - b).max() / scale)


def numerical_gradient(f, x, h=1e-6):
    """Centred-difference gradient of a scalar function ``f()`` with respect to array ``x``,
    perturbing ``x`` in place (and restoring it).  Returns an array like x (float64 on the host
    for accuracy, moved back to x's backend)."""
    if x.dtype != np.float64:
        raise TypeError(f"numerical gradients need float64 inputs (got {x.dtype}): float32 rounding "
                        "noise divided by 2h swamps the check. Use x.astype('float64').")
    grad = np.zeros(x.shape)
    flat = x.reshape(-1)
    if flat.size and get_array_module(x) is np and not np.shares_memory(flat, x):
        raise ValueError("numerical_gradient needs a contiguous array it can perturb in place")
    for i in range(flat.size):
        old = float(flat[i])
        flat[i] = old + h
        fp = float(f())
        flat[i] = old - h
        fm = float(f())
        flat[i] = old
        grad.reshape(-1)[i] = (fp - fm) / (2 * h)
    xp = get_array_module(x)
    return xp.asarray(grad) if xp is not np else grad  # back on x's own device


def report(name, error, tol=1e-7, quiet=False) -> bool:
    """Print ``name | max rel. error | ok/FAIL`` and return whether error <= tol."""
    ok = error <= tol
    if not quiet:
        print(f"{name} | max rel. error {error:.1e} | {'ok' if ok else f'FAIL (tol {tol:.0e})'}")
    return ok


def compare(name, ours, reference, tol=1e-7, quiet=False) -> float:
    """Assert ``rel_error(ours, reference) <= tol``, printing the one-line checker report."""
    if ours is None:
        raise AssertionError(f"{name}: got None — is the exercise implemented and returning a value?")
    if tuple(ours.shape) != tuple(reference.shape):
        raise AssertionError(f"{name}: shape {tuple(ours.shape)}, expected {tuple(reference.shape)}")
    err = rel_error(ours, reference)
    if not report(name, err, tol, quiet):
        raise AssertionError(f"{name}: max rel. error {err:.2e} exceeds {tol:.0e}")
    return err


def _upstream_rng(seed):
    # A stream of its own: drawing dout from the same seed as x (seed 0, say) gives dout == x,
    # for which BN's dx is ~0 and the check is as vacuous as with dout = ones.
    return np.random.default_rng((seed, 0x5EED))


def _float64(a):
    """A float64 copy of ``a`` on a's own device (not the active backend's)."""
    return backend.move(a, backend.device_of(a), dtype=np.float64)


def _upstream(seed, out):
    """The random upstream gradient, drawn on the host and put on ``out``'s device."""
    g = _upstream_rng(seed).standard_normal(out.shape)
    xp = get_array_module(out)
    return g if xp is np else xp.asarray(g)


def check_pair(forward, backward, x, *params, names=None, seed=0, h=1e-6, tol=1e-7, quiet=False,
               **kwargs):
    """Gradient-check a functional pair ``forward(x, *params, **kwargs) -> (out, cache, ...)`` and
    ``backward(dout, cache) -> (dx, *dparams)`` in float64 with a random upstream gradient.

    Returns ``{name: rel. error}`` and raises AssertionError when any exceeds ``tol``.
    """
    x = _float64(x)
    params = [None if p is None else _float64(p) for p in params]
    names = names or ["x"] + [f"param{i}" for i in range(len(params))]
    out = forward(x, *params, **kwargs)[0]
    dout = _upstream(seed, out)
    grads = backward(dout, forward(x, *params, **kwargs)[1])
    grads = grads if isinstance(grads, tuple) else (grads,)

    def loss():
        return (forward(x, *params, **kwargs)[0] * dout).sum()

    errors = {}
    for name, arr, g in zip(names, [x, *params], grads):
        if arr is None or g is None:
            continue
        errors[name] = rel_error(g, numerical_gradient(loss, arr, h))
    _assert_all(errors, tol, quiet, forward.__name__)
    return errors


def check_layer(layer, x, *, seed=0, h=1e-6, tol=1e-7, quiet=False):
    """Gradient-check a :mod:`course_lib.layers` layer (or a model with forward/backward/params):
    the input gradient and every parameter, in float64, with a random upstream gradient.

    The layer's parameters are temporarily converted to float64 and restored afterwards,
    as are BN's running statistics.  ``x`` is copied (float64) onto the layer's device if it
    lives elsewhere (a host array for a layer on the GPU), and the random upstream gradient
    is drawn onto that device too, whatever the active backend is.  A layer with an ``rng`` (dropout) is reseeded before
    every forward pass so that the mask stays fixed.  A functional pair can be passed as
    ``(forward, backward)``; see :func:`check_pair`.
    """
    if isinstance(layer, tuple):
        return check_pair(*layer, x, seed=seed, h=h, tol=tol, quiet=quiet)
    if hasattr(layer, "named_modules"):  # a container (Sequential, MLP): its leaf layers
        named = [(n, m) for n, m in layer.named_modules() if not hasattr(m, "named_modules")]
    elif hasattr(layer, "layers"):
        named = list(layer.layers)
    else:
        named = [("", layer)]
    sublayers = [lyr for _, lyr in named]
    saved = [(lyr, dict(lyr.params), dict(getattr(lyr, "buffers", {}))) for lyr in sublayers]
    rng_seeds = [(lyr, lyr.rng.seed) for lyr in sublayers if hasattr(lyr, "rng")]
    counters = [(lyr, lyr.num_batches_tracked) for lyr in sublayers if hasattr(lyr, "num_batches_tracked")]
    try:
        for lyr, params, buffers in saved:
            lyr.params.update({k: _float64(v) for k, v in params.items()})
            lyr.buffers.update({k: _float64(v) for k, v in buffers.items()})
        device = next((lyr.device for lyr in sublayers if getattr(lyr, "device", None)), None)
        x = backend.move(x, device, dtype=np.float64) if device else _float64(x)

        def run():
            for lyr, s in rng_seeds:
                lyr.rng = backend.default_rng(s)
            for lyr, _, buffers in saved:  # keep running stats (and renorm's schedule) fixed
                lyr.buffers.update({k: _float64(v) for k, v in buffers.items()})
            for lyr, n in counters:
                lyr.num_batches_tracked = n
            return layer.forward(x)

        out = run()
        dout = _upstream(seed, out)
        dx = layer.backward(dout)

        def loss():
            return (run() * dout).sum()

        errors = {}
        if dx is not None:
            errors["x"] = rel_error(dx, numerical_gradient(loss, x, h))
        for lyr_name, lyr in named:
            for k, p in lyr.params.items():
                key = f"{lyr_name}.{k}" if lyr_name else k
                errors[key] = rel_error(lyr.grads[k], numerical_gradient(loss, p, h))
        _assert_all(errors, tol, quiet, repr(layer).splitlines()[0])
        return errors
    finally:
        for lyr, params, buffers in saved:
            lyr.params.update(params)
            lyr.buffers.update(buffers)
        for lyr, s in rng_seeds:
            lyr.rng = backend.default_rng(s)
        for lyr, n in counters:
            lyr.num_batches_tracked = n


def _assert_all(errors, tol, quiet, what):
    bad = {k: v for k, v in errors.items() if not report(f"{what}: d{k}", v, tol, quiet)}
    if bad:
        raise AssertionError(f"gradient check of {what} failed for {sorted(bad)}: "
                             + ", ".join(f"{k}={v:.2e}" for k, v in bad.items()))
