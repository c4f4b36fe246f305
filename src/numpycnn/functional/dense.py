"""The fully connected (affine) map as a stateless pair."""

from __future__ import annotations

from typing import Any

import numpy as np


def dense_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, Any]:
    """Affine map :math:`z = x W^T + b`.

    Notes
    -----
    .. math::
        z = x W^T + b, \\qquad
        \\frac{\\partial L}{\\partial x} = dz\\, W, \\quad
        \\frac{\\partial L}{\\partial W} = dz^T x, \\quad
        \\frac{\\partial L}{\\partial b} = \\sum_n dz_n

    Shape
    -----
    ``x`` (N, in_features); ``weight`` (out_features, in_features); ``bias`` (out_features,) or ``None``;
    ``z`` (N, out_features).
    """
    z = x @ weight.T  # (N, in) @ (in, out) -> (N, out)
    if bias is not None:
        z += bias
    return z, (x, weight, bias is not None)


def dense_backward(dz: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`dense_forward`: ``(dx, dweight, dbias)``; ``dbias`` is ``None`` without a bias."""
    x, weight, has_bias = cache
    dx = dz @ weight  # (N, out) @ (out, in) -> (N, in)
    dweight = dz.T @ x  # (out, N) @ (N, in) -> (out, in)
    dbias = dz.sum(axis=0) if has_bias else None
    return dx, dweight, dbias
