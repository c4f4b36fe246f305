"""The answer to conv-backward: each output pixel sends its gradient back through its window."""

import numpy as np


def conv_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0) -> tuple:
    """(dx, dw, db) of conv_forward(x, w, b, stride, padding), by loops."""
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # (N, C, H + 2p, W + 2p)
    dxp, dw, db = np.zeros_like(xp), np.zeros_like(w), np.zeros(F)
    for n in range(N):
        for f in range(F):
            for h in range(dy.shape[2]):
                for v in range(dy.shape[3]):
                    rows, cols = slice(h * stride, h * stride + kh), slice(v * stride, v * stride + kw)
                    dw[f] += dy[n, f, h, v] * xp[n, :, rows, cols]
                    dxp[n, :, rows, cols] += dy[n, f, h, v] * w[f]
                    db[f] += dy[n, f, h, v]
    return dxp[:, :, padding:padding + H, padding:padding + W], dw, db
