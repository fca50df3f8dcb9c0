"""BLAS threads: run a block of code with one BLAS thread (through ``threadpoolctl``).

Small matrix products (64 x 784 x 64, as in the explorers) gain nothing from BLAS threads,
and on a busy machine spinning BLAS threads slow them down several times over::

    from course_lib.threads import one_blas_thread
    with one_blas_thread():
        history = fit(...)

The previous limits are restored after the block.  Without ``threadpoolctl`` installed, or
with a BLAS it does not know, the block runs unchanged.  The library's BLAS is found once
(the first call) and controlled from then on.
"""
from __future__ import annotations

import contextlib

_CONTROLLER = []   # [ThreadpoolController] or [None] once looked up


def _controller():
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
            _CONTROLLER.append(ThreadpoolController())
        except Exception:   # not installed, or no BLAS it knows: leave the threads alone
            _CONTROLLER.append(None)
    return _CONTROLLER[0]


@contextlib.contextmanager
def blas_threads(n):
    """Limit BLAS to ``n`` threads (an integer >= 1) inside the block; restored after."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of BLAS threads must be an integer >= 1, got {n!r}")
    ctl = _controller()
    if ctl is None:
        yield
        return
    with ctl.limit(limits=n, user_api="blas"):
        yield


def one_blas_thread():
    """``with one_blas_thread(): ...`` runs the block with a single BLAS thread."""
    return blas_threads(1)


def blas_thread_count():
    """The BLAS threads the loaded BLAS libraries now use (max over them), or None if unknown."""
    ctl = _controller()
    if ctl is None:
        return None
    counts = [info["num_threads"] for info in ctl.info() if info.get("user_api") == "blas"]
    return max(counts) if counts else None


__all__ = ["one_blas_thread", "blas_threads", "blas_thread_count"]
