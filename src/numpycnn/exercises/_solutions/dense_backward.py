"""The answer to dense-backward."""

import numpy as np


def dense_backward(dz: np.ndarray, x: np.ndarray, W: np.ndarray) -> tuple:
    """(dx, dW, db) of z = x W^T + b."""
    dx = dz @ W  # (N, out) @ (out, in) -> (N, in)
    dW = dz.T @ x  # (out, N) @ (N, in) -> (out, in): the outer products summed over the batch
    db = dz.sum(axis=0)  # (out,)
    return dx, dW, db
