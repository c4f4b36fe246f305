"""Argument and input checks shared by the layers, the optimisers and the training loop.

Every message follows the one template of :func:`numpycnn.errors.fail` (re-exported here, where the checks that
use it live): ``"{owner}: `{name}` must be {expectation}. Got {value!r}."`` plus a hint where one exists.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from numpycnn.core.backend import get_array_module
from numpycnn.errors import fail

__all__ = ["as_float_array", "boolean", "fail", "float_dtype", "input_ndim", "input_size", "int_pair", "pair_config",
           "positive_int", "real_in_range"]


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


def real_in_range(owner: str, name: str, value: Any, low: float, high: float = math.inf,
                  low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Return ``value`` as a float if it is a real number in the interval from ``low`` to ``high``, else raise.

    ``TypeError`` if it is not a real number (booleans are not), ``ValueError`` if it lies outside or is NaN;
    both messages name the interval, as in ``SGD: `lr` must be a real number in [0.0, inf). Got -0.1.``
    An infinite ``high`` is open.
    """
    lo = "[" if low_inclusive else "("
    hi = "]" if high_inclusive and math.isfinite(high) else ")"
    expectation = f"a real number in {lo}{low}, {high}{hi}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(owner, name, expectation, value, error=TypeError)
    number = float(value)
    ok_low = number >= low if low_inclusive else number > low
    ok_high = number <= high if high_inclusive and math.isfinite(high) else number < high
    if not (ok_low and ok_high) or math.isnan(number):
        fail(owner, name, expectation, value)
    return number


def boolean(owner: str, name: str, value: Any) -> bool:
    """Return ``value`` as a ``bool`` if it is one (NumPy's included), else raise ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        fail(owner, name, "True or False", value, error=TypeError)
    return bool(value)


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
