"""Find the bug: a fully connected layer, z = x W^T + b.

Run ``gradcheck`` on it, see which gradient is wrong, fix ``backward``, then
``numpycnn exercise check find-the-bug-dense find_the_bug_dense.py``.
"""

import numpy as np

from numpycnn.layers import Layer


class ExerciseDense(Layer, replace=True):  # replace: importing or checking this file again redefines it
    """z = x W^T + b with W (out_features, in_features) and b (out_features,)."""

    def __init__(self, in_features: int = 4, out_features: int = 3) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        rng = np.random.default_rng(0)
        self.add_param("weight", rng.standard_normal((out_features, in_features)) / np.sqrt(in_features))
        self.add_param("bias", np.zeros(out_features))

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.cache = x
        return x @ self.params["weight"].T + self.params["bias"]  # (N, in) @ (in, out) -> (N, out)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x = self._take_cache()
        self.grads["weight"][...] = grad[:1].T @ x[:1]  # (out, 1) @ (1, in) -> (out, in)
        self.grads["bias"][...] = grad.sum(axis=0)
        return grad @ self.params["weight"]  # (N, out) @ (out, in) -> (N, in)

    def output_shape(self, input_shape: tuple) -> tuple:
        return (self.out_features,)

    def get_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features}
