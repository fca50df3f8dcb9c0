"""Synthetic data for tests and demos without files: MNIST-shaped splits and a skewed population."""
from __future__ import annotations

import numpy as np

from course_lib import backend


def synthetic_splits(n_train=1000, n_val=500, n_test=500, *, n_features=784, n_classes=10, noise=0.3,
                     seed=0):
    """Small MNIST-shaped data (features in [0, 1], int64 labels) for tests and demos without files.

    Each class has a random sparse template; a sample is its class's template
    plus Gaussian noise, clipped to [0, 1].  Returns a :class:`course_lib.data.Splits`
    on the active backend.
    """
    from course_lib.data import Splits
    rng = np.random.default_rng(seed)
    templates = (rng.random((n_classes, n_features)) < 0.15) * rng.uniform(0.5, 1.0, (n_classes, n_features))

    def make(n):
        y = rng.integers(0, n_classes, n)
        x = np.clip(templates[y] + noise * rng.standard_normal((n, n_features)), 0, 1)
        return backend.asarray(x, backend.default_dtype), backend.asarray(y.astype(np.int64))

    parts = [make(n) for n in (n_train, n_val, n_test)]
    return Splits(*parts[0], *parts[1], *parts[2], name="synthetic",
                  class_names=tuple(str(c) for c in range(n_classes)))


def skewed_population(n=20000, seed=0):
    """A skewed 1-feature population (Gamma(2, 1): mean 2, variance 2), host numpy, shape (n, 1)."""
    return np.random.default_rng(seed).gamma(2.0, 1.0, size=(n, 1)).astype(np.float64)


__all__ = ["synthetic_splits", "skewed_population"]
