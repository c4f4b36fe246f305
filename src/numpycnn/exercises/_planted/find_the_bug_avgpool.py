"""Find the bug: 2x2 average pooling with stride 2.

Run ``gradcheck`` on it, see which gradient is wrong, fix ``backward``, then
``numpycnn exercise check find-the-bug-avgpool find_the_bug_avgpool.py``.
"""

import numpy as np

from numpycnn.layers import Layer


class ExerciseAvgPool(Layer, replace=True):  # replace: importing or checking this file again redefines it
    """y[n, c, h, w] = mean of the 2x2 window x[n, c, 2h:2h + 2, 2w:2w + 2] (H and W even)."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        N, C, H, W = x.shape
        self.cache = x.shape
        return x.reshape(N, C, H // 2, 2, W // 2, 2).mean(axis=(3, 5))  # (N, C, H/2, 2, W/2, 2) -> (N, C, H/2, W/2)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        self._take_cache()
        return np.repeat(np.repeat(grad, 2, axis=2), 2, axis=3)  # each dy to the 4 inputs of its window

    def output_shape(self, input_shape: tuple) -> tuple:
        C, H, W = input_shape
        return (C, H // 2, W // 2)
