"""The answer to find-the-bug: batch norm over the features of a batch of vectors, training mode.

Run ``gradcheck`` on it, see which gradient is wrong, fix ``backward``, then
``numpycnn exercise check find-the-bug-batchnorm find_the_bug_batchnorm.py``.
"""

import numpy as np

from numpycnn.layers import Layer


class ExerciseBatchNorm(Layer, replace=True):  # replace: importing or checking this file again redefines it
    """x_hat = (x - mean) / sqrt(var + eps) per feature over the batch; y = gamma * x_hat + beta."""

    def __init__(self, features: int = 3, eps: float = 1e-5) -> None:
        super().__init__()
        self.features, self.eps = features, eps
        self.add_param("gamma", np.ones(features))
        self.add_param("beta", np.zeros(features))

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        inv_std = 1 / np.sqrt(x.var(axis=0) + self.eps)  # (D,)
        x_hat = (x - x.mean(axis=0)) * inv_std  # (N, D)
        self.cache = x_hat, inv_std
        return self.params["gamma"] * x_hat + self.params["beta"]

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x_hat, inv_std = self._take_cache()
        self.grads["beta"][...] = grad.sum(axis=0)
        self.grads["gamma"][...] = (grad * x_hat).sum(axis=0)
        n = len(grad)  # the fix: the mean and the variance depend on x too
        dgamma, dbeta = self.grads["gamma"], self.grads["beta"]
        return self.params["gamma"] * inv_std * (grad - dbeta / n - x_hat * dgamma / n)

    def get_config(self) -> dict:
        return {"features": self.features, "eps": self.eps}
