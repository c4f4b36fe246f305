"""Losses as stateless pairs: ``loss, cache = *_forward(...)`` and ``grad = *_backward(cache)``.

The inputs are assumed valid (checked by :mod:`numpycnn.layers.losses`); nothing here mutates them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core.backend import get_array_module
from numpycnn.functional.activations import log_softmax


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray,
                          label_smoothing: float = 0.0) -> tuple[float, Any]:
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

    With label smoothing :math:`\\varepsilon` (as ``torch.nn.CrossEntropyLoss(label_smoothing=...)``) the targets
    are mixed with the uniform distribution over the :math:`K` classes, :math:`t' = (1 - \\varepsilon)\\, t +
    \\varepsilon / K`, and the same two formulas apply to :math:`t'`. For integer labels that is
    :math:`L = -\\frac{1}{N}\\sum_n \\big[(1-\\varepsilon) \\log p_{n,y_n} + \\frac{\\varepsilon}{K}\\sum_k
    \\log p_{nk}\\big]` and :math:`\\partial L/\\partial z = (p - (1-\\varepsilon)\\,\\mathrm{onehot}(y) -
    \\varepsilon/K)/N`.

    Parameters
    ----------
    logits : ndarray, shape (N, K)
        Unnormalised scores :math:`z`.
    targets : ndarray, shape (N,) of int or (N, K) of float
        Class indices in ``[0, K)``, or one-hot / probability rows.
    label_smoothing : float in [0, 1]
        :math:`\\varepsilon`; 0 gives the plain cross-entropy.

    Shape
    -----
    ``logits`` (N, K); ``targets`` (N,) or (N, K); the loss is a scalar and the gradient (N, K).
    """
    xp = get_array_module(logits)
    n, k = logits.shape
    logp = log_softmax(logits, axis=1)  # (N, K)
    eps = float(label_smoothing)
    if targets.ndim == 1:
        picked = logp[xp.arange(n), targets]  # (N,)
        loss = -float(xp.sum(picked, dtype=np.float64)) / n
        if eps:  # (1 - eps) of the plain loss plus eps of the loss against the uniform distribution
            loss = (1 - eps) * loss - eps / k * float(xp.sum(logp, dtype=np.float64)) / n
    else:
        if eps:
            targets = (1 - eps) * targets + eps / k  # (N, K): t' = (1 - eps) t + eps / K
        terms = xp.where(targets != 0, logp, 0)  # (N, K) in logp's dtype; 0 where t = 0, so never 0 * -inf
        terms *= targets  # (xp.where, not a ufunc's `where=`, which CuPy does not take)
        loss = -float(xp.sum(terms, dtype=np.float64)) / n
    return loss, (logp, targets, eps)


def cross_entropy_backward(cache: Any) -> np.ndarray:
    """Gradient of :func:`cross_entropy_forward` with respect to the logits, in the logits' dtype."""
    logp, targets, eps = cache
    xp = get_array_module(logp)
    n, k = logp.shape
    grad = xp.exp(logp)  # (N, K) softmax probabilities
    if targets.ndim == 1:
        grad[xp.arange(n), targets] -= 1 - eps
        if eps:
            grad -= grad.dtype.type(eps / k)
    else:  # targets already smoothed by the forward pass
        t = targets.astype(grad.dtype, copy=False)
        grad *= xp.sum(t, axis=1, keepdims=True)  # (N, 1)
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
    xp = get_array_module(pred)
    diff = xp.subtract(pred, target, dtype=pred.dtype)
    loss = float(xp.vdot(diff.ravel(), diff.ravel())) / diff.size
    return loss, diff


def mse_backward(cache: Any) -> np.ndarray:
    """Gradient of :func:`mse_forward`: :math:`2(\\hat y - y)/M`."""
    diff = cache
    xp = get_array_module(diff)
    return xp.multiply(diff, 2.0 / diff.size, dtype=diff.dtype)
