"""Argument and input checks shared by the layers, with one message template.

Every message follows ``"{owner}: `{name}` must be {expectation}. Got {value!r}."`` plus a hint where one exists,
in the manner of scikit-learn's and Keras' parameter errors.
"""

from __future__ import annotations

import numbers
from typing import Any, NoReturn

import numpy as np

from numpycnn.core.backend import get_array_module


def fail(owner: str, name: str, expectation: str, value: Any, hint: str = "", error: type = ValueError, *,
         got: str | None = None) -> NoReturn:
    """Raise ``error`` with the house message template; ``got`` describes the value instead of its ``repr``
    (``"shape (28, 28)"`` for an array)."""
    message = f"{owner}: `{name}` must be {expectation}. Got {repr(value) if got is None else got}."
    if hint:
        message += f" {hint}"
    raise error(message)


def positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` if it is an integer >= ``minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(owner, name, f"an integer >= {minimum}", value, error=TypeError)
    if value < minimum:
        fail(owner, name, f"an integer >= {minimum}", value)
    return int(value)


def int_pair(owner: str, name: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    """Return ``(a, b)`` from an int or a pair of ints, each >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            fail(owner, name, f"an integer or a pair of integers >= {minimum}", value)
        return (positive_int(owner, name, value[0], minimum), positive_int(owner, name, value[1], minimum))
    v = positive_int(owner, name, value, minimum)
    return (v, v)


def pair_config(pair: tuple[int, int]) -> int | list[int]:
    """A pair as a layer's configuration records it: one int when both agree (``3``), else ``[h, w]``. The
    inverse of :func:`int_pair`; these two are the project's only pair helpers outside ``functional/``."""
    return pair[0] if pair[0] == pair[1] else [pair[0], pair[1]]


def real_in_range(owner: str, name: str, value: Any, low: float, high: float,
                  low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Return ``value`` as a float if it lies in the given interval, else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(owner, name, "a real number", value, error=TypeError)
    value = float(value)
    ok_low = value >= low if low_inclusive else value > low
    ok_high = value <= high if high_inclusive else value < high
    if not (ok_low and ok_high) or np.isnan(value):
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        fail(owner, name, f"in {lo}{low}, {high}{hi}", value)
    return value


def as_float_array(owner: str, x: Any) -> np.ndarray:
    """Return ``x`` as a floating-point array (float32 unless it already is float32/float64), on the device
    it is on: a device (CuPy) array stays one, anything else becomes a NumPy array."""
    if type(x) is not np.ndarray:
        x = get_array_module(x).asarray(x)
    if x.dtype == np.float32 or x.dtype == np.float64:
        return x
    if x.dtype.kind in "biu":
        return x.astype(np.float32)
    if x.dtype.kind == "f":
        return x.astype(np.float32)
    raise TypeError(f"{owner}: input must be a real-valued array. Got dtype {x.dtype}.")


def input_ndim(owner: str, x: np.ndarray, ndim: int, layout: str) -> None:
    """Raise a ``ValueError`` with a fix hint unless ``x.ndim == ndim``."""
    if x.ndim == ndim:
        return
    hint = ""
    if layout == "(N, C, H, W)" and x.ndim == 2:
        hint = " Use x[None, None] for a single image."
    elif layout == "(N, C, H, W)" and x.ndim == 3:
        hint = " Use x[:, None] for a batch of single-channel images, or x[None] for one multi-channel image."
    elif layout == "(N, features)" and x.ndim == 1:
        hint = " Use x[None] for a single sample."
    elif layout == "(N, features)" and x.ndim > 2:
        hint = " Put a Flatten() layer before it."
    fail(owner, "x", f"a {ndim}D array {layout}", x, hint.strip(), got=f"shape {tuple(x.shape)}")


def input_size(owner: str, x: np.ndarray, axis: int, expected: int, what: str) -> None:
    """Raise a ``ValueError`` unless ``x.shape[axis] == expected``."""
    if x.shape[axis] != expected:
        hint = ""
        if x.ndim == 4 and axis == 1 and x.shape[-1] == expected:
            hint = (" The input looks channels-last (N, H, W, C); numpycnn takes (N, C, H, W): use "
                    "x.transpose(0, 3, 1, 2).")
        fail(owner, "x", f"an array with {expected} {what} on axis {axis}", x, hint.strip(),
             got=f"shape {tuple(x.shape)}")


def float_dtype(owner: str, dtype: Any) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        fail(owner, "dtype", "float32 or float64", dtype, error=TypeError)
    if dt not in (np.float32, np.float64):
        fail(owner, "dtype", "float32 or float64", dtype, error=TypeError)
    return dt
