"""Find the bug: a layer that scales each channel by a learnable factor.

Run ``gradcheck`` on it, see which gradient is wrong, fix ``backward``, then
``numpycnn exercise check find-the-bug-scale find_the_bug_scale.py``.
"""

import numpy as np

from numpycnn.layers import Layer


class ExerciseChannelScale(Layer, replace=True):  # replace: importing or checking this file again redefines it
    """y[n, c, h, w] = a[c] * x[n, c, h, w], one learnable factor per channel, starting at 1."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels
        self.add_param("a", np.ones(channels))

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.cache = x
        return x * self.params["a"][:, None, None]

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x = self._take_cache()
        self.grads["a"][...] = np.sum(grad * x, axis=(0, 2, 3))  # dL/da[c] = sum of dy * x over n, h, w
        return grad

    def get_config(self) -> dict:
        return {"channels": self.channels}
