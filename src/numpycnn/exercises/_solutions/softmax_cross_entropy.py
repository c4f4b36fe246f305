"""The answer to softmax-cross-entropy."""

import numpy as np


def softmax_cross_entropy(z: np.ndarray, y: np.ndarray) -> tuple:
    """(L, dz): the mean cross-entropy of softmax(z) against labels y, and dL/dz = (p - t) / N."""
    N, K = z.shape
    shifted = z - z.max(axis=1, keepdims=True)  # (N, K), the max subtracted: exp cannot overflow
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, K) log-softmax, never log(0)
    p = np.exp(log_p)  # (N, K) softmax
    loss = -float(np.mean(log_p[np.arange(N), y]))
    t = np.eye(K)[y]  # (N, K) one-hot
    return loss, (p - t) / N
