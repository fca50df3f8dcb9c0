"""Cached subsets of a data split: the first ``n`` rows of ``data``'s train, val or test arrays.

The explorers redraw with the same data many times; the cache (least recently used, 32
entries) makes a redraw skip the copy.  An entry keeps its ``data`` object alive, so an id
is never reused for other data while its entry exists.
"""
from __future__ import annotations

from collections import OrderedDict

_SUBSETS: OrderedDict = OrderedDict()   # (id(data), split, n) -> (data, (x, y)); data kept alive
_CACHE_SIZE = 32


def subset(data, split, n):
    """The first ``n`` rows of ``data``'s split ("train", "val" or "test") as ``(x, y)`` copies, cached.

    :func:`course_lib.data.load_mnist` already shuffles, so the first rows are a random,
    class-balanced-in-expectation subset.  ``n=None``: the whole split.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    key = (id(data), split, n)
    hit = _SUBSETS.get(key)
    if hit is not None and hit[0] is data:
        _SUBSETS.move_to_end(key)
        return hit[1]
    x, y = getattr(data, f"x_{split}", None), getattr(data, f"y_{split}", None)
    if x is None or len(x) == 0:
        raise ValueError(f"the data has no {split} split; pass course_lib.data.load_mnist()")
    n = len(x) if n is None else min(int(n), len(x))
    xy = (x[:n].copy(), y[:n].copy())
    _SUBSETS[key] = (data, xy)
    while len(_SUBSETS) > _CACHE_SIZE:
        _SUBSETS.popitem(last=False)
    return xy


def clear():
    """Forget every cached subset (frees their memory)."""
    _SUBSETS.clear()


__all__ = ["subset", "clear"]
