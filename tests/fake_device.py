"""A CPU stand-in for a device array module (CI has no GPU): NumPy arrays behind a wall, as CuPy's are.

``StandinArray`` holds a ``numpy.ndarray`` but is not one. Like a CuPy array it refuses every implicit
conversion to NumPy (``np.asarray(a)`` raises ``TypeError``) and every operation that mixes it with a NumPy
array of one or more dimensions (``a + np.ones(3)`` raises); scalars and 0-d arrays mix freely, as in CuPy.
``a.get()`` is the explicit host copy. Its namespace, ``standin`` (``a.__array_namespace__()``), offers NumPy's
functions with the same wall, including ``standin.lib.stride_tricks``, ``standin.random`` and ufunc methods such
as ``standin.add.at``; ``standin.asarray`` refuses NumPy arrays too, so the only way onto the device is the
device's own ``to_device`` (:func:`register`).

Registered as the device ``"standin"``, it lets the tests run every layer, ``fit``, ``evaluate``, ``predict``
and the model files on a "device" and fail on any host/device mix that CuPy would reject.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.lib.mixins

from numpycnn.core import backend

DEVICE = "standin"


def _unwrap(value: Any) -> Any:
    """The NumPy value inside ``value``; a NumPy array with dimensions is a host/device mix and raises."""
    if isinstance(value, StandinArray):
        return value._a
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"standin: a NumPy array of shape {value.shape} was mixed with device arrays. Move it with "
                        "numpycnn.core.backend.to_device first (CuPy raises here too).")
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value: Any) -> Any:
    """NumPy results as device arrays (NumPy scalars as 0-d arrays, as CuPy's reductions return)."""
    if isinstance(value, (np.ndarray, np.generic)) and not isinstance(value, StandinArray):
        return StandinArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class StandinArray(numpy.lib.mixins.NDArrayOperatorsMixin):
    """A NumPy array on the stand-in device. Operators come from ``NDArrayOperatorsMixin`` and run through
    :meth:`__array_ufunc__`; methods and attributes are the array's, their results rewrapped."""

    __slots__ = ("_a",)

    def __init__(self, array: np.ndarray) -> None:
        self._a = array

    # -- the wall -----------------------------------------------------------------------------------------------
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        out = kwargs.get("out")
        if out is not None:  # the caller's own device arrays, written in place
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __array_namespace__(self, api_version: Any = None) -> Any:
        return standin

    def get(self) -> np.ndarray:
        """The explicit host copy, as ``cupy.ndarray.get()``."""
        return self._a.copy()

    # -- what the array itself offers ---------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # no __array_interface__, __array_struct__, ...: NumPy must not see through
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *args, **kwargs: _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
        return _wrap(attr)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @property
    def dtype(self) -> np.dtype:
        return self._a.dtype

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def T(self) -> StandinArray:  # noqa: N802 (NumPy's name)
        return StandinArray(self._a.T)

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_unwrap(key)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (_wrap(row) for row in self._a)

    # one scalar back to the host, as CuPy allows (a synchronising copy)
    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __index__(self) -> int:
        return self._a.__index__()

    def __repr__(self) -> str:
        return f"standin({self._a!r})"


class _Function:
    """A NumPy function or ufunc behind the wall; its methods (``add.at``, ``add.reduce``) too."""

    def __init__(self, func: Any) -> None:
        self._func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self._func(*_unwrap(args), **_unwrap(kwargs))
        out = kwargs.get("out")
        return out if out is not None and not isinstance(out, tuple) else _wrap(result)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._func, name)
        return _Function(attr) if callable(attr) else attr


class _Namespace:
    """NumPy's functions behind the wall; types and constants (``float32``, ``inf``) as they are."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._module, name)
        if isinstance(attr, type) or not callable(attr):
            return _Namespace(attr) if type(attr).__name__ == "module" else attr
        return _Function(attr)


class _StandinModule(_Namespace):
    """The stand-in's ``xp``: NumPy's namespace, plus ``lib.stride_tricks`` and ``random``."""

    def __init__(self) -> None:
        super().__init__(np)
        self.lib = _Namespace(np.lib)
        self.lib.stride_tricks = _Namespace(np.lib.stride_tricks)
        self.random = _Namespace(np.random)

    def asarray(self, a: Any, dtype: Any = None) -> StandinArray:
        """Device arrays only: a NumPy array must come through :func:`to_device`, the device's own copy."""
        return StandinArray(np.asarray(_unwrap(a), dtype=dtype))


standin = _StandinModule()


def to_device(a: Any) -> StandinArray:
    """The stand-in's host-to-device copy (device arrays come back as they are)."""
    if isinstance(a, StandinArray):
        return a
    return StandinArray(np.array(a, copy=True))


def to_host(a: StandinArray) -> np.ndarray:
    return a.get()


def register() -> str:
    """Register the ``"standin"`` device with :func:`numpycnn.core.backend.register_device`; returns its name."""
    backend.register_device(DEVICE, lambda: standin, to_device, to_host)
    return DEVICE
