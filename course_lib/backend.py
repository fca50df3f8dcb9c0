"""Array backend: numpy on a CPU, cupy on a GPU, the same code for both.

Read ``xp.`` as ``np.``: every library function takes its array module from its
inputs with :func:`get_array_module`, so numpy arrays in give numpy arrays out
and cupy arrays in give cupy arrays out.  Only this module imports cupy.

Three devices can be selected with :func:`use` or the environment variable
``COURSE_LIB_DEVICE``:

``"cpu"``      numpy (the default).
``"gpu"``      cupy; a clear error if cupy is missing or no GPU is visible.
               Asked for by ``use("gpu")`` the error is raised there.  Asked for by
               ``COURSE_LIB_DEVICE=gpu`` at import time, ``import course_lib``
               still works: it falls back to the CPU with a visible
               ``RuntimeWarning`` that says why and what to do
               (:data:`fallback_reason` keeps the text).
``"standin"``  a numpy-backed module that fails where cupy fails (mixing host
               arrays in, implicit conversion to numpy).  The unit tests run on
               it so that the GPU code path stays correct without a GPU.

Models move between devices with ``model.to("cpu" | "gpu" | "standin")``
(:func:`array_module` and :func:`move` do the work); a model and its input must be
on the same device.

>>> from course_lib import backend
>>> backend.use("cpu")
>>> x = backend.xp.ones((2, 3), dtype=backend.default_dtype)
>>> backend.to_numpy(x).shape
(2, 3)
"""
from __future__ import annotations

import os

import numpy as np

from course_lib import _standin

DEVICES = ("cpu", "gpu", "standin")
ENV_VAR = "COURSE_LIB_DEVICE"

#: The active array module (numpy, cupy or the stand-in).  Changed by :func:`use`.
xp = np
#: The name of the active device, one of :data:`DEVICES`.
device = "cpu"
#: Default floating dtype for parameters and data (float32, as on GPUs).
default_dtype = np.float32

#: Why ``COURSE_LIB_DEVICE=gpu`` fell back to the CPU at import (None if it did not).
fallback_reason = None

_seed = 0
_host_rng = np.random.default_rng(0)  # the global stream behind every unseeded draw
_cupy = None


def _import_cupy():
    """Import cupy and prove a GPU is usable; raise one clear error otherwise."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy  # noqa: only this module imports cupy
    except ImportError as e:
        raise RuntimeError(
            "The GPU backend needs cupy, which is not installed. Install the wheel that "
            "matches your CUDA version, e.g. `pip install cupy-cuda12x` "
            "(or `pip install -e .[gpu]`), or use the CPU: course_lib.backend.use('cpu')."
        ) from e
    try:
        available = cupy.cuda.is_available()
    except Exception:  # a broken driver raises instead of returning False
        available = False
    if not available:
        raise RuntimeError(
            "cupy is installed but no GPU is visible (cupy.cuda.is_available() is False). "
            "Check `nvidia-smi` and CUDA_VISIBLE_DEVICES, or use the CPU: "
            "course_lib.backend.use('cpu')."
        )
    _cupy = cupy
    return cupy


def gpu_available() -> bool:
    """True when cupy imports and sees a GPU."""
    try:
        _import_cupy()
    except RuntimeError:
        return False
    return True


def use(name: str | None = None):
    """Select the array backend: ``"cpu"``, ``"gpu"`` or ``"standin"``.

    ``None`` reads ``COURSE_LIB_DEVICE`` (default ``"cpu"``).  Returns the array
    module.  Arrays made before the switch keep their type; move them with
    :func:`asarray`.
    """
    global xp, device
    if name is None:
        name = os.environ.get(ENV_VAR, "cpu") or "cpu"
    name = str(name).lower()
    if name not in DEVICES:
        raise ValueError(f"Unknown device {name!r}; choose one of {DEVICES} "
                         f"(argument of use() or the {ENV_VAR} environment variable).")
    if name == "gpu":
        xp = _import_cupy()
    elif name == "standin":
        xp = _standin.module
    else:
        xp = np
    device = name
    import course_lib
    course_lib.xp = xp
    return xp


def _use_from_env():
    """``use(None)`` at import: a GPU requested by the environment but not usable falls
    back to the CPU with a warning, so that ``import course_lib`` never fails."""
    global fallback_reason
    try:
        return use(None)
    except RuntimeError as e:
        import warnings
        fallback_reason = str(e)
        warnings.warn(f"{ENV_VAR}=gpu was requested but the GPU backend is not usable, so course_lib "
                      f"runs on the CPU (numpy). {e} To silence this, unset {ENV_VAR} or set it to "
                      "'cpu'.", RuntimeWarning, stacklevel=2)
        return use("cpu")


def array_module(name: str):
    """The array module of device ``name`` ("cpu" -> numpy, "gpu" -> cupy, "standin"),
    without making it the active one."""
    name = str(name).lower()
    if name not in DEVICES:
        raise ValueError(f"Unknown device {name!r}; choose one of {DEVICES}.")
    if name == "gpu":
        return _import_cupy()
    return _standin.module if name == "standin" else np


def device_of(a) -> str:
    """The device an array lives on: "cpu", "gpu" or "standin"."""
    if isinstance(a, _standin.DeviceArray):
        return "standin"
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return "gpu"
    return "cpu"


def move(a, name: str, dtype=None):
    """A copy of array ``a`` on device ``name`` (an explicit transfer, host <-> device)."""
    mod = array_module(name)
    if device_of(a) == str(name).lower():
        return a.astype(dtype, copy=True) if dtype is not None else a.copy()
    host = to_numpy(a)
    if dtype is not None:
        host = host.astype(dtype)
    return np.array(host, copy=True) if mod is np else mod.asarray(host)


def get_array_module(*arrays):
    """The array module of the given arrays: cupy, the stand-in, or numpy (fallback)."""
    for a in arrays:
        if isinstance(a, _standin.DeviceArray):
            return _standin.module
        if _cupy is not None and isinstance(a, _cupy.ndarray):
            return _cupy
    return np


def is_device_array(a) -> bool:
    """True for arrays that live off the host (cupy or stand-in)."""
    return get_array_module(a) is not np


def to_numpy(a):
    """Copy an array of any backend to a host numpy array (the only sanctioned way)."""
    if isinstance(a, _standin.DeviceArray):
        return a.get()
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def asarray(a, dtype=None):
    """Move ``a`` (host or device) onto the active backend, optionally casting."""
    if is_device_array(a) and xp is np:
        a = to_numpy(a)
    return xp.asarray(a, dtype=dtype)


def to_float(a) -> float:
    """A Python float from a scalar or a one-element array of any backend."""
    return float(to_numpy(a).reshape(-1)[0]) if hasattr(a, "shape") else float(a)


def set_default_dtype(dtype):
    """Set the dtype for new parameters and data (float32 default; float64 for gradient checks)."""
    global default_dtype
    dtype = np.dtype(dtype).type
    if dtype not in (np.float16, np.float32, np.float64):
        raise ValueError(f"default dtype must be a float type, got {dtype!r}")
    default_dtype = dtype
    return dtype


def seed(n: int = 0):
    """Set the global seed: unseeded generators, layers and models then draw reproducibly."""
    global _seed, _host_rng
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"seed must be a non-negative int, got {n!r}")
    _seed = int(n)
    _host_rng = np.random.default_rng(_seed)
    np.random.seed(_seed)
    return _seed


def host_rng(seed=None) -> np.random.Generator:
    """A numpy Generator: seeded with ``seed``, or the global stream set by :func:`seed`."""
    return _host_rng if seed is None else np.random.default_rng(seed)


class Generator:
    """A seeded generator that makes arrays on the active backend.

    Draws are made on the host with numpy's PCG64 and moved to the device, so a
    seed gives the same numbers on every backend (CPU, GPU and stand-in).
    """

    def __init__(self, seed=None):
        self.seed = int(_host_rng.integers(0, 2**31 - 1)) if seed is None else int(seed)
        self._np = np.random.default_rng(self.seed)

    def _out(self, a, dtype, like=None):
        a = a.astype(dtype if dtype is not None else default_dtype, copy=False)
        if like is not None:  # onto the device of ``like`` (a model moved with .to()), not the active one
            mod = get_array_module(like)
            return a if mod is np else mod.asarray(a)
        return asarray(a)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=None, like=None):
        return self._out(self._np.normal(loc, scale, size), dtype, like)

    def random(self, size=None, dtype=None, like=None):
        """Uniform [0, 1) draws; ``like``: an array whose device the result goes to
        (default: the active backend)."""
        return self._out(self._np.random(size), dtype, like)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=None, like=None):
        return self._out(self._np.uniform(low, high, size), dtype, like)

    def integers(self, low, high=None, size=None):
        return asarray(self._np.integers(low, high, size))

    def permutation(self, n):
        """A host (numpy) permutation: index bookkeeping stays on the CPU."""
        return self._np.permutation(n)

    def spawn_seed(self) -> int:
        """A fresh integer seed derived from this generator (for child generators)."""
        return int(self._np.integers(0, 2**31 - 1))


def default_rng(seed=None) -> Generator:
    """A :class:`Generator` seeded with ``seed`` (or from the global stream of :func:`seed`)."""
    return Generator(seed)


_use_from_env()
