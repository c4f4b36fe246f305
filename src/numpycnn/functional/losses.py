"""Losses as stateless pairs: ``loss, cache = *_forward(...)`` and ``grad = *_backward(cache)``.

The inputs are assumed valid (checked by :mod:`numpycnn.losses`); nothing here mutates them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.functional.activations import log_softmax


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray) -> tuple[float, Any]:
    """Mean softmax cross-entropy over the batch, from logits, by log-sum-exp.

    Notes
    -----
    With :math:`\\log p = \\operatorname{log\\_softmax}(z)` and target rows :math:`t` (one-hot for integer
    labels):

    .. math::
        L = -\\frac{1}{N} \\sum_{n} \\sum_{k} t_{nk} \\log p_{nk}, \\qquad
        \\frac{\\partial L}{\\partial z_{nk}} = \\frac{1}{N}\\Big(p_{nk} \\sum_j t_{nj} - t_{nk}\\Big)

    which is :math:`(p - t)/N` when each target row sums to one. Terms with :math:`t_{nk} = 0` contribute
    exactly 0, so the loss is never NaN for finite logits (it may be ``inf`` only if a logit gap overflows
    the dtype).

    Parameters
    ----------
    logits : ndarray, shape (N, K)
        Unnormalised scores :math:`z`.
    targets : ndarray, shape (N,) of int or (N, K) of float
        Class indices in ``[0, K)``, or one-hot / probability rows.

    Shape
    -----
    ``logits`` (N, K); ``targets`` (N,) or (N, K); the loss is a scalar and the gradient (N, K).
    """
    n = logits.shape[0]
    logp = log_softmax(logits, axis=1)  # (N, K)
    if targets.ndim == 1:
        picked = logp[np.arange(n), targets]  # (N,)
        loss = -float(np.sum(picked, dtype=np.float64)) / n
    else:
        terms = np.multiply(targets, logp, out=np.zeros_like(logp), where=targets != 0)  # 0 * -inf -> 0
        loss = -float(np.sum(terms, dtype=np.float64)) / n
    return loss, (logp, targets)


def cross_entropy_backward(cache: Any) -> np.ndarray:
    """Gradient of :func:`cross_entropy_forward` with respect to the logits, in the logits' dtype."""
    logp, targets = cache
    n = logp.shape[0]
    grad = np.exp(logp)  # (N, K) softmax probabilities
    if targets.ndim == 1:
        grad[np.arange(n), targets] -= 1
    else:
        t = targets.astype(grad.dtype, copy=False)
        grad *= np.sum(t, axis=1, keepdims=True)  # (N, 1)
        grad -= t
    grad /= n
    return grad


def mse_forward(pred: np.ndarray, target: np.ndarray) -> tuple[float, Any]:
    """Mean squared error over all elements (PyTorch's ``reduction="mean"``).

    Notes
    -----
    .. math::
        L = \\frac{1}{M} \\sum_i (\\hat y_i - y_i)^2, \\qquad
        \\frac{\\partial L}{\\partial \\hat y_i} = \\frac{2}{M} (\\hat y_i - y_i)

    with :math:`M` the number of elements.

    Shape
    -----
    ``pred`` and ``target`` of the same shape; the loss is a scalar and the gradient has ``pred``'s shape.
    """
    diff = np.subtract(pred, target, dtype=pred.dtype)
    loss = float(np.vdot(diff.ravel(), diff.ravel())) / diff.size
    return loss, diff


def mse_backward(cache: Any) -> np.ndarray:
    """Gradient of :func:`mse_forward`: :math:`2(\\hat y - y)/M`."""
    diff = cache
    return np.multiply(diff, 2.0 / diff.size, dtype=diff.dtype)
