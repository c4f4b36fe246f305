"""Find the bug: the logistic sigmoid, y = 1 / (1 + exp(-x)).

Run ``gradcheck`` on it, see which gradient is wrong, fix ``backward``, then
``numpycnn exercise check find-the-bug-sigmoid find_the_bug_sigmoid.py``.
"""

import numpy as np

from numpycnn.layers import Layer


class ExerciseSigmoid(Layer, replace=True):  # replace: importing or checking this file again redefines it
    """y = 1 / (1 + exp(-x)), elementwise."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        y = 1 / (1 + np.exp(-x))
        self.cache = y
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        y = self._take_cache()
        return grad * y
