"""Element-wise activations and softmax, as stateless ``forward``/``backward`` pairs.

Each ``*_forward(x, ...)`` returns ``(y, cache)`` and each ``*_backward(dy, cache)`` returns ``dx``. Neither
mutates its arguments; the output keeps the dtype of ``x`` and its array module (NumPy or CuPy, see
:mod:`numpycnn.core.backend`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core.backend import get_array_module


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ReLU, :math:`y = \\max(x, 0)`.

    Notes
    -----
    .. math::
        y = \\max(x, 0), \\qquad
        \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y}\\,[x > 0]

    Shape
    -----
    Any shape; ``y`` has the shape of ``x``. The cache is the boolean mask ``x > 0``.
    """
    xp = get_array_module(x)
    mask = x > 0
    y = xp.maximum(x, 0)
    return y, mask


def relu_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """Gradient of :func:`relu_forward`: :math:`dx = dy\\,[x > 0]`."""
    xp = get_array_module(dy)
    return xp.multiply(dy, cache, dtype=dy.dtype)


def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> tuple[np.ndarray, Any]:
    """Leaky ReLU with slope :math:`a` for negative inputs.

    Notes
    -----
    .. math::
        y = \\begin{cases} x & x > 0 \\\\ a x & x \\le 0 \\end{cases}, \\qquad
        \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y}
        \\begin{cases} 1 & x > 0 \\\\ a & x \\le 0 \\end{cases}

    Shape
    -----
    Any shape; ``y`` has the shape of ``x``.
    """
    xp = get_array_module(x)
    mask = x > 0
    y = xp.multiply(x, negative_slope, dtype=x.dtype)
    xp.copyto(y, x, where=mask)
    return y, (mask, negative_slope)


def leaky_relu_backward(dy: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of :func:`leaky_relu_forward`."""
    xp = get_array_module(dy)
    mask, negative_slope = cache
    dx = xp.multiply(dy, negative_slope, dtype=dy.dtype)
    xp.copyto(dx, dy, where=mask)
    return dx


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logistic sigmoid, computed without overflow for any finite ``x``.

    Notes
    -----
    .. math::
        y = \\sigma(x) = \\frac{1}{1 + e^{-x}}, \\qquad
        \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y}\\, y (1 - y)

    With :math:`e = e^{-|x|} \\in (0, 1]`, :math:`y = 1/(1+e)` for :math:`x \\ge 0` and :math:`e/(1+e)`
    otherwise, so ``exp`` never overflows.

    Shape
    -----
    Any shape; ``y`` has the shape of ``x``. The cache is ``y``.
    """
    xp = get_array_module(x)
    e = xp.abs(x)
    xp.negative(e, out=e)
    xp.exp(e, out=e)  # e = exp(-|x|), in (0, 1]
    y = xp.where(x >= 0, xp.ones((), dtype=e.dtype), e)
    xp.add(e, 1, out=e)
    xp.divide(y, e, out=y)
    return y, y


def sigmoid_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """Gradient of :func:`sigmoid_forward`: :math:`dx = dy\\, y (1 - y)`."""
    xp = get_array_module(dy)
    y = cache
    dx = xp.subtract(1, y, dtype=y.dtype)
    dx *= y
    dx *= dy
    return dx


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hyperbolic tangent.

    Notes
    -----
    .. math::
        y = \\tanh x, \\qquad
        \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y} (1 - y^2)

    Shape
    -----
    Any shape; ``y`` has the shape of ``x``. The cache is ``y``.
    """
    xp = get_array_module(x)
    y = xp.tanh(x)
    return y, y


def tanh_backward(dy: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """Gradient of :func:`tanh_forward`: :math:`dx = dy (1 - y^2)`."""
    xp = get_array_module(dy)
    y = cache
    dx = xp.square(y)
    xp.subtract(1, dx, out=dx)
    dx *= dy
    return dx


def softmax_forward(x: np.ndarray, axis: int = 1) -> tuple[np.ndarray, Any]:
    """Softmax along ``axis``, shifted by the maximum so ``exp`` never overflows.

    Notes
    -----
    .. math::
        y_i = \\frac{e^{x_i - m}}{\\sum_j e^{x_j - m}}, \\quad m = \\max_j x_j, \\qquad
        \\frac{\\partial L}{\\partial x_i} = y_i \\Big(\\frac{\\partial L}{\\partial y_i}
        - \\sum_j \\frac{\\partial L}{\\partial y_j} y_j\\Big)

    The backward pass is the full Jacobian-vector product :math:`J^T dy` with
    :math:`J_{ij} = y_i(\\delta_{ij} - y_j)`.

    Shape
    -----
    Any shape with ``x.ndim > axis``; ``y`` has the shape of ``x``.
    """
    xp = get_array_module(x)
    y = xp.subtract(x, xp.max(x, axis=axis, keepdims=True))
    xp.exp(y, out=y)
    y /= xp.sum(y, axis=axis, keepdims=True)
    return y, (y, axis)


def softmax_backward(dy: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of :func:`softmax_forward`: :math:`dx = y\\,(dy - \\sum_j dy_j y_j)`."""
    xp = get_array_module(dy)
    y, axis = cache
    dx = xp.multiply(dy, y)
    dot = xp.sum(dx, axis=axis, keepdims=True)  # (..., 1, ...): sum_j dy_j y_j
    dx -= y * dot  # = y * dy - y * (dy . y)
    return dx


def log_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """Log-softmax by log-sum-exp: :math:`x_i - m - \\log \\sum_j e^{x_j - m}`, :math:`m = \\max_j x_j`.

    Finite for every finite ``x`` whose spread fits in the dtype; no ``exp`` overflows.
    """
    xp = get_array_module(x)
    out = xp.subtract(x, xp.max(x, axis=axis, keepdims=True))
    lse = xp.log(xp.sum(xp.exp(out), axis=axis, keepdims=True))
    out -= lse
    return out
