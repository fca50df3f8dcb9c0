"""Checks at the door: a bad hyperparameter fails where it is given, with the valid range.

Used by layers, optimizers, initialisers and the trainer.  Every message names the
argument, the value received, and the range (or type) that works.
"""
from __future__ import annotations

import math
from numbers import Integral, Real


def _fmt_range(lo, hi, lo_incl, hi_incl):
    left = "[" if lo_incl and lo is not None else "("
    right = "]" if hi_incl and hi is not None else ")"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def check_real(name, value, lo=None, hi=None, *, lo_incl=True, hi_incl=True, meaning="", example=None):
    """Return ``float(value)`` if it is a finite real number in the given range, else raise.

    TypeError for non-numbers (strings, None, bools, arrays with more than one value);
    ValueError for NaN/inf or a value out of range.  The message gives the valid range and
    an ``example`` of a good value.
    """
    ex = example if example is not None else _example(lo, hi, lo_incl)
    if isinstance(value, bool) or not isinstance(value, Real):
        if hasattr(value, "shape") and getattr(value, "size", 2) == 1 and not isinstance(value, str):
            value = float(value.reshape(-1)[0]) if hasattr(value, "reshape") else float(value)
        else:
            raise TypeError(f"{name} must be a number in {_fmt_range(lo, hi, lo_incl, hi_incl)}"
                            f"{meaning}, got {type(value).__name__} {value!r}; pass a Python float, "
                            f"e.g. {name}={ex}")
    v = float(value)
    rng = _fmt_range(lo, hi, lo_incl, hi_incl)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number in {rng}{meaning}, got {value!r}; "
                         f"pass a finite value, e.g. {name}={ex}")
    bad = ((lo is not None and (v < lo or (v == lo and not lo_incl)))
           or (hi is not None and (v > hi or (v == hi and not hi_incl))))
    if bad:
        raise ValueError(f"{name} must be in {rng}{meaning}, got {value!r}; "
                         f"pass a value in that range, e.g. {name}={ex}")
    return v


def _example(lo, hi, lo_incl):
    if lo is not None and hi is not None:
        return round((lo + hi) / 2, 3) if not lo_incl or lo != 0 else round(hi / 10 if hi > 1 else hi / 2, 3)
    if lo is not None:
        return lo if lo_incl and lo != 0 else (lo * 10 if lo > 0 else 0.1)
    return 0.1


def check_int(name, value, lo=None, *, meaning="", example=None):
    """Return ``int(value)`` if it is an integer (not a bool, float or string) >= lo, else raise."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        if isinstance(value, Real) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer{meaning}, got {type(value).__name__} {value!r}; "
                            f"pass e.g. {name}={example if example is not None else (lo if lo is not None else 1)}")
    v = int(value)
    if lo is not None and v < lo:
        ex = f"; pass e.g. {name}={example}" if example is not None else ""
        raise ValueError(f"{name} must be an integer >= {lo}{meaning}, got {v}{ex}")
    return v
