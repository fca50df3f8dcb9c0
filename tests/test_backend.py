"""The backend switch and the stand-in device that fails where cupy fails."""
import numpy as np
import pytest

from course_lib import _standin, backend
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


def test_gradcheck_draws_dout_on_the_devices_of_x_not_the_active_one():
    """A layer moved to the stand-in while the active backend is the CPU: the upstream gradient,
    the float64 copies and the numerical gradients must all live on the layer's device."""
    from course_lib import gradcheck as G
    from course_lib.layers import BatchNorm1d, ReLU, Sequential
    backend.use("cpu")
    layer = Sequential([("lin", Linear(4, 3, seed=0, bias=False, dtype=np.float64)),
                        ("bn", BatchNorm1d(3, dtype=np.float64)), ("act", ReLU())]).to("standin")
    x = backend.move(np.random.default_rng(0).standard_normal((6, 4)) + 0.3, "standin")
    errors = G.check_layer(layer, x, quiet=True)
    assert max(errors.values()) < 1e-7 and set(errors) >= {"x", "lin.W", "bn.gamma"}
    assert backend.device == "cpu" and layer.device == "standin"
    from course_lib import functional as F
    errors = G.check_pair(F.relu_forward, F.relu_backward, x, quiet=True)
    assert errors["x"] < 1e-7


def test_generator_draws_onto_the_device_of_like():
    backend.use("cpu")
    like = backend.move(np.zeros(2, np.float32), "standin")
    r = backend.default_rng(0).random((2, 2), dtype=np.float32, like=like)
    assert backend.device_of(r) == "standin"
    assert backend.device_of(backend.default_rng(0).random((2, 2))) == "cpu"


def test_move_copies_and_device_of_names_the_device():
    a = np.arange(3.0)
    b = backend.move(a, "cpu")
    b[0] = 9
    assert a[0] == 0.0 and backend.device_of(b) == "cpu"
    s = backend.move(a, "standin", dtype=np.float32)
    assert backend.device_of(s) == "standin" and s.dtype == np.float32
    assert np.array_equal(backend.to_numpy(backend.move(s, "cpu")), a)
