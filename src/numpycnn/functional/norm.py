"""Batch normalisation as stateless pairs, for ``(N, C)`` and ``(N, C, H, W)`` input alike.

Both layouts are viewed as ``(N, C, L)`` (``L = H W``, or 1), so every per-channel statistic is a
reduction over axes 0 and 2 of a contiguous array, done with ``einsum``: faster than
``x.sum(axis=(0, 2, 3))`` and free of the temporary a squared copy would need.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core.backend import get_array_module


def _as_ncl(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], x.shape[1], -1)  # (N, C, L): a view for contiguous x


def centred_batch_statistics(x3: np.ndarray, eps: float
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_c, mean, var, inv_std)`` of ``x3`` (N, C, L) per channel: :math:`x_c = x - \\mu` (a new array),
    the biased variance by two passes (:math:`\\frac{1}{m}\\sum x_c^2`, no cancellation) and
    :math:`1/\\sqrt{\\sigma^2 + \\epsilon}`."""
    xp = get_array_module(x3)
    m = x3.shape[0] * x3.shape[2]
    mean = xp.einsum("ncl->c", x3) / m  # (C,)
    xc = xp.subtract(x3, mean[:, None])  # (N, C, L), centred
    var = xp.einsum("ncl,ncl->c", xc, xc) / m  # (C,), biased
    return xc, mean, var, 1.0 / xp.sqrt(var + eps)


def batch_norm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                       eps: float = 1e-5) -> tuple[np.ndarray, Any]:
    """Training-mode batch norm: normalise each channel by the batch's own mean and (biased) variance.

    Notes
    -----
    Per channel :math:`c`, over the :math:`m = N L` values :math:`x_i` of the batch:

    .. math::
        \\mu = \\frac{1}{m}\\sum_i x_i, \\quad \\sigma^2 = \\frac{1}{m}\\sum_i (x_i - \\mu)^2, \\quad
        \\hat x_i = \\frac{x_i - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\quad y_i = \\gamma \\hat x_i + \\beta

    and backward computes

    .. math::
        \\frac{\\partial L}{\\partial \\beta} = \\sum_i dy_i, \\quad
        \\frac{\\partial L}{\\partial \\gamma} = \\sum_i dy_i \\hat x_i, \\quad
        \\frac{\\partial L}{\\partial x_i} = \\frac{\\gamma}{m \\sqrt{\\sigma^2 + \\epsilon}}
        \\Big(m\\, dy_i - \\frac{\\partial L}{\\partial \\beta}
        - \\hat x_i \\frac{\\partial L}{\\partial \\gamma}\\Big)

    Shape
    -----
    ``x`` (N, C) or (N, C, H, W); ``gamma``, ``beta`` (C,); ``y`` has the shape of ``x``.

    Returns
    -------
    y : ndarray
    cache : tuple
        ``(x_hat, inv_std, gamma, shape, mean, var)``; ``mean`` and ``var`` (biased, shape (C,)) are what the
        layer uses to update its running statistics.
    """
    xp = get_array_module(x)
    x_hat, mean, var, inv_std = centred_batch_statistics(_as_ncl(x), eps)  # (N, C, L) and (C,) each
    x_hat *= inv_std[:, None]
    y = xp.multiply(x_hat, gamma[:, None])  # (N, C, L)
    y += beta[:, None]
    return y.reshape(x.shape), (x_hat, inv_std, gamma, x.shape, mean, var)  # y back to (N, C[, H, W])


def batch_norm_backward(dy: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`batch_norm_forward`: ``(dx, dgamma, dbeta)``."""
    xp = get_array_module(dy)
    x_hat, inv_std, gamma, shape, _, _ = cache
    dy3 = _as_ncl(dy)  # (N, C, L)
    m = dy3.shape[0] * dy3.shape[2]
    dbeta = xp.einsum("ncl->c", dy3)  # (C,)
    dgamma = xp.einsum("ncl,ncl->c", dy3, x_hat)  # (C,)
    dx = xp.multiply(x_hat, (dgamma / m)[:, None])  # (N, C, L)
    xp.subtract(dy3, dx, out=dx)
    dx -= (dbeta / m)[:, None]
    dx *= (gamma * inv_std)[:, None]
    return dx.reshape(shape), dgamma, dbeta  # dx back to (N, C[, H, W])


def batch_norm_inference_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                                 var: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, Any]:
    """Inference-mode batch norm with fixed statistics: an affine map per channel.

    Notes
    -----
    .. math::
        s = \\frac{\\gamma}{\\sqrt{\\sigma^2_{run} + \\epsilon}}, \\quad
        y = s\\,(x - \\mu_{run}) + \\beta, \\qquad
        \\frac{\\partial L}{\\partial x} = s\\, dy, \\quad
        \\frac{\\partial L}{\\partial \\gamma} = \\sum_i dy_i \\frac{x_i - \\mu_{run}}{\\sqrt{\\sigma^2_{run}
        + \\epsilon}}, \\quad \\frac{\\partial L}{\\partial \\beta} = \\sum_i dy_i

    Shape
    -----
    ``x`` (N, C) or (N, C, H, W); ``gamma``, ``beta``, ``mean``, ``var`` (C,); ``y`` has the shape of ``x``.
    """
    xp = get_array_module(x)
    x3 = _as_ncl(x)  # (N, C, L)
    inv_std = 1.0 / xp.sqrt(var + eps)  # (C,)
    scale = (gamma * inv_std).astype(x.dtype, copy=False)
    shift = (beta - mean * scale).astype(x.dtype, copy=False)
    y = xp.multiply(x3, scale[:, None])  # (N, C, L)
    y += shift[:, None]
    return y.reshape(x.shape), (x3, scale, inv_std, mean)  # y back to (N, C[, H, W])


def batch_norm_inference_backward(dy: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`batch_norm_inference_forward`: ``(dx, dgamma, dbeta)``."""
    xp = get_array_module(dy)
    x3, scale, inv_std, mean = cache
    dy3 = _as_ncl(dy)  # (N, C, L)
    dbeta = xp.einsum("ncl->c", dy3)  # (C,)
    dgamma = (xp.einsum("ncl,ncl->c", dy3, x3) - mean * dbeta) * inv_std  # sum dy (x - mean) / std
    dx = xp.multiply(dy3, scale[:, None])  # (N, C, L)
    return dx.reshape(dy.shape), dgamma, dbeta  # dx back to (N, C[, H, W])
