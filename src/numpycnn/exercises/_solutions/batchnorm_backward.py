"""The answer to batchnorm-backward."""

import numpy as np


def batchnorm_backward(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float = 1e-5) -> tuple:
    """(dx, dgamma, dbeta) of batch norm in training mode, per feature over the batch."""
    N = len(x)
    inv_std = 1 / np.sqrt(x.var(axis=0) + eps)  # (D,)
    x_hat = (x - x.mean(axis=0)) * inv_std  # (N, D)
    dbeta = dy.sum(axis=0)  # (D,)
    dgamma = (dy * x_hat).sum(axis=0)  # (D,)
    dx = gamma * inv_std / N * (N * dy - dbeta - x_hat * dgamma)  # (N, D)
    return dx, dgamma, dbeta
