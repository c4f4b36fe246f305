"""Activation layers: thin wrappers that hold the cache of :mod:`numpycnn.functional.activations`."""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core import checks
from numpycnn.functional import activations as F
from numpycnn.layers.base import Layer


class ReLU(Layer):
    """Rectified linear unit.

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.activations.relu_forward`
    (written once, there and in docs/math.md).

    Shape
    -----
    Any shape; the output has the shape and dtype of the input.

    Examples
    --------
    >>> ReLU().forward(np.array([[-1.0, 2.0]]))
    array([[0., 2.]])
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        y, self.cache = F.relu_forward(checks.as_float_array(self.name, x))
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return F.relu_backward(grad, self._take_cache())


class LeakyReLU(Layer):
    """Leaky ReLU with slope ``negative_slope`` (:math:`a`) for non-positive inputs.

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.activations.leaky_relu_forward`
    (written once, there and in docs/math.md).

    Parameters
    ----------
    negative_slope : float
        The slope :math:`a \\ge 0` for :math:`x \\le 0`.

    Shape
    -----
    Any shape; the output has the shape and dtype of the input.

    Examples
    --------
    >>> LeakyReLU(0.1).forward(np.array([[-1.0, 2.0]]))
    array([[-0.1,  2. ]])
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = checks.real_in_range(
            "LeakyReLU", "negative_slope", negative_slope, 0.0, np.inf)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        y, self.cache = F.leaky_relu_forward(checks.as_float_array(self.name, x), self.negative_slope)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return F.leaky_relu_backward(grad, self._take_cache())

    def get_config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class Sigmoid(Layer):
    """Logistic sigmoid, overflow-free for any finite input.

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.activations.sigmoid_forward`
    (written once, there and in docs/math.md).

    Shape
    -----
    Any shape; the output has the shape and dtype of the input.

    Examples
    --------
    >>> Sigmoid().forward(np.array([[-1000.0, 0.0, 1000.0]]))
    array([[0. , 0.5, 1. ]])
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        y, self.cache = F.sigmoid_forward(checks.as_float_array(self.name, x))
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return F.sigmoid_backward(grad, self._take_cache())


class Tanh(Layer):
    """Hyperbolic tangent.

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.activations.tanh_forward`
    (written once, there and in docs/math.md).

    Shape
    -----
    Any shape; the output has the shape and dtype of the input.

    Examples
    --------
    >>> Tanh().forward(np.array([[0.0]]))
    array([[0.]])
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        y, self.cache = F.tanh_forward(checks.as_float_array(self.name, x))
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return F.tanh_backward(grad, self._take_cache())


class Softmax(Layer):
    """Softmax over axis 1 (the classes or channels), as ``torch.nn.Softmax(dim=1)``.

    For training a classifier, feed logits to :class:`numpycnn.layers.losses.CrossEntropyLoss` instead: it is more
    stable and cheaper than ``Softmax`` followed by a log.

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.activations.softmax_forward`
    (written once, there and in docs/math.md).

    Shape
    -----
    Input (N, K) or (N, C, ...); the output has the same shape, each slice along axis 1 summing to one.

    Examples
    --------
    >>> Softmax().forward(np.array([[0.0, 0.0]]))
    array([[0.5, 0.5]])
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = checks.as_float_array(self.name, x)
        if x.ndim < 2:
            checks.fail("Softmax", "x", "an array of at least 2 dimensions (N, K)", x,
                         "Use x[None] for a single sample.", got=f"shape {tuple(x.shape)}")
        y, self.cache = F.softmax_forward(x, axis=1)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return F.softmax_backward(grad, self._take_cache())

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) < 1:
            checks.fail("Softmax", "input_shape", "a per-sample shape with at least 1 axis", tuple(input_shape))
        return tuple(input_shape)
