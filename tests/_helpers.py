"""Small data makers shared by the tests (pytest puts tests/ on sys.path)."""
import numpy as np

from course_lib import backend


def randn(*shape, seed=1, scale=1.0, shift=0.0, dtype=np.float64):
    """Seeded normal numbers on the active backend."""
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape) * scale + shift, dtype=dtype)


def blobs(xp, n=256, seed=0, dtype=np.float32):
    """Three Gaussian blobs in 10 dimensions: ``(x (n, 10) of dtype, y (n,) int)`` on module ``xp``."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, 10)) * 3
    y = rng.integers(0, 3, n)
    x = centers[y] + rng.standard_normal((n, 10))
    return xp.asarray(x.astype(dtype)), xp.asarray(y)
