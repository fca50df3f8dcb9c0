"""A stand-in GPU backend: numpy underneath, cupy's rules on top.

cupy refuses two things that numpy allows, and code that relies on them works
on a laptop and breaks on a GPU:

1. mixing host arrays into device computations (``device_array + numpy_array``);
2. implicit conversion to numpy (``np.asarray(device_array)``, which is what
   matplotlib and ``float()`` on big arrays do).

:class:`DeviceArray` wraps a numpy array and raises ``TypeError`` in both cases,
with the same wording as cupy.  Explicit transfers work as in cupy:
``module.asarray(host)`` moves in, ``a.get()`` / ``course_lib.backend.to_numpy``
moves out.  Reductions return 0-d arrays, as cupy's do.

Where the stand-in differs from cupy (so a pass under the stand-in is strong evidence, not proof):

* stricter: iterating over a device array (``for row in a``) and ``a.tolist()`` raise here; cupy
  allows both, at the price of a host round trip per element or a full copy — code that needs
  them should call ``to_numpy`` explicitly anyway;
* looser: every numpy function and method is available (cupy lacks a few); arithmetic, dtype
  promotion and rounding are numpy's, so results are bit-identical to the CPU run, while cupy's
  kernels round differently (the portability rule applies on a GPU as on another CPU);
* not modelled: device memory limits, asynchronous execution (time a GPU only after
  synchronising), and cupy's own random streams (course_lib draws on the host and moves the
  draws, so seeds give the same numbers on every device).
"""
from __future__ import annotations

import numbers
import operator

import numpy as np

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` or `course_lib.backend.to_numpy()` to construct a NumPy array explicitly.")


def _reject_host(obj):
    raise TypeError(f"Unsupported type {type(obj)} in a device computation: move it with "
                    "xp.asarray(...) first (cupy raises here too).")


def _unwrap(obj, allow_host=False):
    """DeviceArray -> ndarray, recursively; plain ndarrays (not 0-d) are refused."""
    if isinstance(obj, DeviceArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0 or allow_host:
            return obj
        _reject_host(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, allow_host) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v, allow_host) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray):
        return DeviceArray(obj)
    if isinstance(obj, np.generic) and not isinstance(obj, (np.str_, np.bytes_)):
        return DeviceArray(np.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _call(fn, args, kwargs, allow_host=False):
    return _wrap(fn(*_unwrap(args, allow_host), **_unwrap(kwargs, allow_host)))


class DeviceArray:
    """A numpy array that behaves like a cupy array (see the module docstring)."""

    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a):
        self._a = a

    # -- what cupy refuses ------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func, args, kwargs)

    def tolist(self):
        raise TypeError(_IMPLICIT)

    def __iter__(self):
        raise TypeError("Iterating over a device array element by element is not allowed "
                        "(it is a host round-trip per element); use to_numpy() first.")

    # -- explicit transfer -------------------------------------------------------------
    def get(self):
        return np.array(self._a)

    # -- scalars (cupy allows these on one-element arrays) -----------------------------
    def _scalar(self, conv):
        if self._a.size != 1:
            raise TypeError("only one-element device arrays can be converted to Python scalars")
        return conv(self._a.reshape(-1)[0])

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __bool__(self):
        return self._scalar(bool)

    def __index__(self):
        if self._a.ndim != 0 or not np.issubdtype(self._a.dtype, np.integer):
            raise TypeError("only integer 0-d device arrays can be used as an index")
        return int(self._a)

    def item(self):
        return self._scalar(lambda v: v.item())

    # -- attributes and methods --------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: DeviceArray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__ etc.: numpy must not see through
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *args, **kwargs: _call(attr, args, kwargs)
        return _wrap(attr)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, allow_host=True)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, allow_host=True)] = _unwrap(value)

    def __repr__(self):
        return "DeviceArray(" + repr(self._a)[6:-1] + ")" if repr(self._a).startswith("array(") \
            else f"DeviceArray({self._a!r})"

    __str__ = lambda self: str(self._a)  # noqa: E731  (printing is an explicit read)

    def __copy__(self):
        return DeviceArray(self._a.copy())

    def __deepcopy__(self, memo):
        return DeviceArray(self._a.copy())

    def __reduce__(self):
        return (DeviceArray, (self._a,))


def _binary(op):
    def f(self, other):
        return _wrap(op(self._a, _unwrap(other)))

    def r(self, other):
        return _wrap(op(_unwrap(other), self._a))
    return f, r


def _inplace(op):
    def f(self, other):
        op(self._a, _unwrap(other))
        return self
    return f


for _name, _op in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("floordiv", operator.floordiv),
                   ("mod", operator.mod), ("pow", operator.pow), ("matmul", operator.matmul),
                   ("and", operator.and_), ("or", operator.or_), ("xor", operator.xor)]:
    _f, _r = _binary(_op)
    setattr(DeviceArray, f"__{_name}__", _f)
    setattr(DeviceArray, f"__r{_name}__", _r)
    setattr(DeviceArray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name}")))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(DeviceArray, f"__{_name}__", _binary(getattr(operator, _name))[0])
for _name, _op in [("neg", operator.neg), ("pos", operator.pos), ("abs", operator.abs),
                   ("invert", operator.invert)]:
    setattr(DeviceArray, f"__{_name}__", (lambda op: lambda self: _wrap(op(self._a)))(_op))
DeviceArray.__hash__ = None


class _Namespace:
    """Wraps a numpy namespace (``numpy``, ``numpy.random``, ``numpy.linalg``)."""

    # constructors that take host data on purpose, like cupy.asarray
    _TRANSFER = {"asarray", "array", "ascontiguousarray", "asanyarray"}

    def __init__(self, np_namespace, name):
        self._ns = np_namespace
        self.__name__ = name

    def __getattr__(self, name):
        attr = getattr(self._ns, name)
        if isinstance(attr, type) and issubclass(attr, np.generic):
            return attr  # dtypes: xp.float32 etc.
        if callable(attr) and not isinstance(attr, type):
            allow_host = name in self._TRANSFER

            def fn(*args, **kwargs):
                if name in self._TRANSFER and args and isinstance(args[0], DeviceArray):
                    out = np.asarray(args[0]._a, *args[1:], **kwargs)
                    return DeviceArray(out)
                return _call(attr, args, kwargs, allow_host=allow_host)
            fn.__name__ = name
            return fn
        if isinstance(attr, (numbers.Number, np.dtype)) or attr is None:
            return attr
        return attr

    def __repr__(self):
        return f"<stand-in device module {self.__name__}>"


class _Module(_Namespace):
    ndarray = DeviceArray

    def __init__(self):
        super().__init__(np, "standin")
        self.random = _Namespace(np.random, "standin.random")
        self.linalg = _Namespace(np.linalg, "standin.linalg")

    @staticmethod
    def asnumpy(a):
        return a.get() if isinstance(a, DeviceArray) else np.asarray(a)


#: The stand-in array module (what ``xp`` is after ``backend.use("standin")``).
module = _Module()
