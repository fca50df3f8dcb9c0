"""course_lib: the library behind *Batch Normalization from scratch*.

Import order runs one way: backend -> functional -> layers -> model/optim ->
trainer -> plots/explorers.  The core never imports matplotlib or ipywidgets.
"""
__version__ = "0.1.0"

xp = None  # set by backend.use(); read as ``np``

from course_lib import backend  # noqa: E402  (sets xp)

__all__ = ["backend", "xp", "__version__"]
