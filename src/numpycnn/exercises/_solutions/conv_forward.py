"""The answer to conv-forward: the convolution by loops."""

import numpy as np


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """y[n, f, h, v] = b[f] + sum over c, i, j of w[f, c, i, j] * xp[n, c, h*stride + i, v*stride + j]."""
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # (N, C, H + 2p, W + 2p)
    Ho, Wo = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
    y = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for h in range(Ho):
                for v in range(Wo):
                    window = xp[n, :, h * stride:h * stride + kh, v * stride:v * stride + kw]  # (C, kh, kw)
                    y[n, f, h, v] = np.sum(window * w[f]) + b[f]
    return y
