r"""Translate batch-norm hyperparameters between the conventions of other code bases.

The running statistics of batch normalization are an exponential moving average,
and libraries disagree on which of its two weights they call "momentum":

* course_lib and PyTorch, ``momentum`` (default 0.1) = weight of the NEW batch::

      running = (1 - momentum) * running + momentum * batch

* Chainer's ``decay`` (default 0.9), Keras's ``momentum`` (default 0.99) and the
  DLFS book's ``momentum`` (default 0.9) = weight of the OLD running value::

      running = decay * running + (1 - decay) * batch

Both are the same update with ``momentum = 1 - decay``: PyTorch's
``momentum=0.1`` is Chainer's ``decay=0.9`` and the DLFS book's
``momentum=0.9``; Keras's ``momentum=0.99`` is course_lib's ``momentum=0.01``.
The conversion is its own inverse.

>>> momentum_from_decay(0.9)
0.1
>>> decay_from_momentum(0.01)
0.99
"""
from __future__ import annotations

from numbers import Real

__all__ = ["momentum_from_decay", "decay_from_momentum"]


def _complement(value, name):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    # 1 - 0.9 is 0.09999999999999998 in binary floating point; rounding to 15
    # decimals gives back the number a person would write (0.1) and moves no
    # value by more than 5e-16.
    return round(1.0 - value, 15)


def momentum_from_decay(decay: float) -> float:
    """course_lib/PyTorch ``momentum`` (weight of the new batch) for a ``decay`` (weight of the
    old running value: Chainer's ``decay``, Keras's and the DLFS book's ``momentum``).

    ``momentum = 1 - decay``; ``decay`` must lie in [0, 1].
    """
    return _complement(decay, "decay")


def decay_from_momentum(momentum: float) -> float:
    """The ``decay`` (weight of the old running value) for a course_lib/PyTorch ``momentum``
    (weight of the new batch).

    ``decay = 1 - momentum``; ``momentum`` must lie in [0, 1].
    """
    return _complement(momentum, "momentum")
