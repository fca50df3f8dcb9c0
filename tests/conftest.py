"""Shared fixtures.

Every test of array code takes the ``xp`` fixture, so it runs once per backend:
numpy, the stand-in device (numpy that fails where cupy fails), and real cupy
when a GPU is visible.
"""
import os

# Before numpy loads: one BLAS thread per process (pytest-xdist runs two workers, each notebook
# kernel inherits this), as the committed notebook outputs were made.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import matplotlib  # noqa: E402  (after the BLAS-thread variables, on purpose)
import pytest  # noqa: E402

matplotlib.use("Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

from course_lib import backend  # noqa: E402

_DEVICES = ["cpu", "standin"] + (["gpu"] if backend.gpu_available() else [])


@pytest.fixture(params=_DEVICES)
def xp(request):
    """The active array module, switched to each backend in turn."""
    previous = backend.device
    module = backend.use(request.param)
    backend.seed(0)
    yield module
    backend.use(previous)


@pytest.fixture
def float64():
    """Make float64 the default dtype for the test (gradient checks)."""
    previous = backend.default_dtype
    backend.set_default_dtype("float64")
    yield
    backend.set_default_dtype(previous)
