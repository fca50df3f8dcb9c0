"""The backend switch and the stand-in device that fails where cupy fails."""
import numpy as np
import pytest

from course_lib import backend
from course_lib import _standin
from course_lib.layers import Linear


def test_unknown_device_lists_valid_ones():
    with pytest.raises(ValueError, match="cpu"):
        backend.use("tpu")


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is visible here")
def test_gpu_request_without_gpu_says_what_to_do():
    with pytest.raises(RuntimeError, match="cupy|GPU"):
        backend.use("gpu")
    assert backend.device in backend.DEVICES  # the failed switch left a valid backend


def test_env_var_selects_device(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "standin")
    try:
        assert backend.use() is _standin.module
    finally:
        backend.use("cpu")


def test_array_type_in_is_array_type_out(xp):
    a = xp.ones((3, 2), dtype=np.float32)
    assert backend.get_array_module(a) is xp
    out = Linear(2, 4)(a)
    assert backend.get_array_module(out) is xp and out.dtype == np.float32
    assert isinstance(backend.to_numpy(out), np.ndarray)


def test_standin_refuses_host_arrays_and_implicit_conversion():
    xp = backend.use("standin")
    try:
        a = xp.ones((2, 3))
        with pytest.raises(TypeError, match="Unsupported type"):
            a + np.ones((2, 3))
        with pytest.raises(TypeError, match="Implicit conversion"):
            np.asarray(a)
        with pytest.raises(TypeError, match="Unsupported type"):
            xp.maximum(a, np.zeros(3))
        assert float(a.sum()) == 6.0 and backend.get_array_module(a.sum()) is xp  # 0-d, as cupy
        assert np.array_equal(backend.to_numpy(a), np.ones((2, 3)))
        b = xp.asarray(np.arange(3.0))  # explicit transfer is allowed
        assert backend.to_numpy(a + b)[1].tolist() == [1.0, 2.0, 3.0]
    finally:
        backend.use("cpu")


def test_seeded_generator_gives_same_numbers_on_every_backend(xp):
    a = backend.to_numpy(backend.default_rng(5).normal(size=(3, 3)))
    backend.use("cpu")
    assert np.array_equal(a, backend.default_rng(5).normal(size=(3, 3)))
    backend.seed(1)
    w1 = Linear(4, 4).params["W"]
    backend.seed(1)
    assert np.array_equal(backend.to_numpy(w1), backend.to_numpy(Linear(4, 4).params["W"]))


def test_default_dtype(float64):
    assert Linear(2, 2).params["W"].dtype == np.float64
    with pytest.raises(ValueError):
        backend.set_default_dtype("int32")
