"""The momentum/decay converter and its claim: both conventions give the same running statistics."""
import math

import numpy as np
import pytest

from course_lib import backend
from course_lib import functional as F
from course_lib.conventions import decay_from_momentum, momentum_from_decay


@pytest.mark.parametrize("decay, momentum", [(0.9, 0.1), (0.99, 0.01), (0.999, 0.001),
                                             (0.0, 1.0), (1.0, 0.0), (0.5, 0.5)])
def test_known_pairs(decay, momentum):
    assert momentum_from_decay(decay) == momentum
    assert decay_from_momentum(momentum) == decay


@pytest.mark.parametrize("value", [0.0, 0.03, 0.1, 0.37, 0.9, 0.97, 1.0])
def test_round_trip_and_sum(value):
    assert math.isclose(decay_from_momentum(momentum_from_decay(value)), value, abs_tol=1e-15)
    assert math.isclose(value + momentum_from_decay(value), 1.0, abs_tol=1e-15)


def test_accepts_numpy_scalars_and_returns_float():
    out = momentum_from_decay(np.float32(0.9))
    assert isinstance(out, float) and math.isclose(out, 0.1, abs_tol=1e-7)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_out_of_range(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        momentum_from_decay(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        decay_from_momentum(bad)


@pytest.mark.parametrize("bad", ["0.9", None, True, [0.9]])
def test_wrong_type(bad):
    with pytest.raises(TypeError):
        momentum_from_decay(bad)


def test_decay_update_matches_batchnorm_forward(xp):
    """A running average written with ``decay`` (Chainer/Keras/DLFS style, with the unbiased
    variance as in Chainer) equals batchnorm_forward's update with ``momentum_from_decay(decay)``."""
    decay = 0.9
    momentum = momentum_from_decay(decay)
    rng = backend.default_rng(0)
    D, m = 5, 16
    gamma, beta = xp.ones(D, dtype=xp.float64), xp.zeros(D, dtype=xp.float64)
    rm, rv = xp.zeros(D, dtype=xp.float64), xp.ones(D, dtype=xp.float64)
    rm_decay, rv_decay = rm.copy(), rv.copy()
    for _ in range(30):
        x = rng.normal(2.0, 3.0, size=(m, D), dtype=np.float64)
        _, _, rm, rv = F.batchnorm_forward(x, gamma, beta, rm, rv, momentum=momentum)
        mean = x.mean(axis=0)
        var_unbiased = ((x - mean) ** 2).sum(axis=0) / (m - 1)
        rm_decay = decay * rm_decay + (1 - decay) * mean
        rv_decay = decay * rv_decay + (1 - decay) * var_unbiased
    assert backend.get_array_module(rm) is xp
    np.testing.assert_allclose(backend.to_numpy(rm), backend.to_numpy(rm_decay), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(rv), backend.to_numpy(rv_decay), rtol=1e-12)
