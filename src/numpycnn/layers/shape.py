"""Layers that only change the shape of their input."""

from __future__ import annotations

import math

import numpy as np

from numpycnn.core import checks
from numpycnn.layers.base import Layer


class Flatten(Layer):
    """Flatten every axis but the batch axis, as ``torch.nn.Flatten()``.

    Notes
    -----
    .. math::
        y_{n, j} = x_{n, i_1, \\dots, i_k}, \\quad j = \\text{row-major index of } (i_1, \\dots, i_k),
        \\qquad \\frac{\\partial L}{\\partial x} = \\operatorname{reshape}\\Big(
        \\frac{\\partial L}{\\partial y}, \\text{shape of } x\\Big)

    Shape
    -----
    Input (N, d_1, ..., d_k); output (N, d_1 d_2 ... d_k). The output is a view of a contiguous input.

    Examples
    --------
    >>> Flatten().forward(np.zeros((2, 3, 4, 5), np.float32)).shape
    (2, 60)
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = checks.as_float_array(self.name, x)
        if x.ndim < 2:
            checks.fail("Flatten", "x", "an array with a batch axis, (N, ...)", x,
                         "Use x[None] for a single sample.", got=f"shape {tuple(x.shape)}")
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)  # (N, d1 * ... * dk)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        shape = self._take_cache()
        return grad.reshape(shape)  # (N, d1 * ... * dk) -> (N, d1, ..., dk)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(input_shape),)
