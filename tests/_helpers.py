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


def browser_skip_reason(chromium, *modules):
    """Why a headless-Chromium test cannot run here (None if it can): the browser at ``chromium``,
    playwright, and each of ``modules`` as ``(import name, install hint)``."""
    import importlib.util
    from pathlib import Path

    if not Path(chromium).exists():
        return f"Chromium not found at {chromium} (Debian: apt-get install chromium)"
    for name, hint in (("playwright", "pip install playwright"), *modules):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed ({hint})"
    return None


def stop_process_group(proc, timeout=20):
    """SIGTERM the process group of ``proc`` (a server and the kernels it started), SIGKILL if it lingers."""
    import os
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
