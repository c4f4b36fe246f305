"""The answer to maxpool-backward: each gradient to its window's first maximum."""

import numpy as np


def maxpool_backward(dy: np.ndarray, x: np.ndarray, kernel_size: int = 2, stride: int | None = None) -> np.ndarray:
    """dx of y[n, c, h, v] = max of x[n, c, h*s:h*s + k, v*s:v*s + k]."""
    k = kernel_size
    s = k if stride is None else stride
    dx = np.zeros_like(x)
    N, C, Ho, Wo = dy.shape
    for n in range(N):
        for c in range(C):
            for h in range(Ho):
                for v in range(Wo):
                    window = x[n, c, h * s:h * s + k, v * s:v * s + k]  # (k, k)
                    i, j = divmod(int(np.argmax(window)), k)  # the first maximum, row-major
                    dx[n, c, h * s + i, v * s + j] += dy[n, c, h, v]
    return dx
