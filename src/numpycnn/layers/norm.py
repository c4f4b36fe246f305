"""Batch normalisation layers with PyTorch's semantics (running statistics, momentum, eval mode)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from numpycnn.core import checks
from numpycnn.functional import norm as F
from numpycnn.layers.base import Layer


class _BatchNorm(Layer):
    """Shared code of :class:`BatchNorm1D` and :class:`BatchNorm2D`; subclasses set the input layout."""

    _ndim: ClassVar[int] = 0
    _layout: ClassVar[str] = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, *,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        self.num_features = checks.positive_int(self.name, "num_features", num_features)
        self.eps = checks.real_in_range(self.name, "eps", eps, 0.0, np.inf, low_inclusive=False)
        if momentum is not None:
            momentum = checks.real_in_range(self.name, "momentum", momentum, 0.0, 1.0)
        self.momentum = momentum
        dt = checks.float_dtype(self.name, dtype)
        c = self.num_features
        self.params = {"weight": np.ones(c, dtype=dt), "bias": np.zeros(c, dtype=dt)}
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.buffers = {
            "running_mean": np.zeros(c, dtype=dt),
            "running_var": np.ones(c, dtype=dt),
            "num_batches_tracked": np.zeros((), dtype=np.int64),
        }

    def reset_parameters(self, rng: np.random.Generator | None = None, nonlinearity: str = "relu") -> None:
        """Reset :math:`\\gamma = 1`, :math:`\\beta = 0` and the running statistics, as PyTorch does."""
        self.params["weight"].fill(1)
        self.params["bias"].fill(0)
        self.buffers["running_mean"].fill(0)
        self.buffers["running_var"].fill(1)
        self.buffers["num_batches_tracked"].fill(0)

    def check_input(self, x: Any, training: bool) -> np.ndarray:
        """``x`` as a float array, checked: the layout, the channel count, and in training more than one value
        per channel (a variance of one value is 0)."""
        x = checks.as_float_array(self.name, x)
        checks.input_ndim(self.name, x, self._ndim, self._layout)
        checks.input_size(self.name, x, 1, self.num_features, "channels")
        if training and x.size // self.num_features < 2:
            checks.fail(self.name, "x", "an array with more than 1 value per channel in training", x,
                         "Use a batch of at least 2, or forward(x, training=False).", got=f"shape {tuple(x.shape)}")
        return x

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = self.check_input(x, training)
        gamma, beta = self.params["weight"], self.params["bias"]
        if not training:
            y, cache = F.batch_norm_inference_forward(
                x, gamma, beta, self.buffers["running_mean"], self.buffers["running_var"], self.eps)
            self.cache = (False, cache)
            return y
        y, cache = F.batch_norm_forward(x, gamma, beta, self.eps)
        self.update_running_stats(cache[4], cache[5], x.size // self.num_features)
        self.cache = (True, cache)
        return y

    def update_running_stats(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        """:math:`\\mu_{run} \\leftarrow (1-\\alpha)\\mu_{run} + \\alpha\\mu`, likewise for the *unbiased*
        variance :math:`\\sigma^2 m/(m-1)`; :math:`\\alpha` = momentum, or :math:`1/t` when None."""
        tracked = self.buffers["num_batches_tracked"]
        tracked += 1
        alpha = 1.0 / float(tracked) if self.momentum is None else self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1.0 - alpha
        running_mean += alpha * mean
        running_var *= 1.0 - alpha
        running_var += (alpha * m / (m - 1)) * var

    def backward(self, grad: np.ndarray) -> np.ndarray:
        training, cache = self._take_cache()
        if training:
            dx, dgamma, dbeta = F.batch_norm_backward(grad, cache)
        else:
            dx, dgamma, dbeta = F.batch_norm_inference_backward(grad, cache)
        self.grads["weight"][...] = dgamma
        self.grads["bias"][...] = dbeta
        return dx

    def get_config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        if len(shape) != self._ndim - 1 or shape[0] != self.num_features:
            checks.fail(self.name, "input_shape",
                         f"a per-sample shape {self._layout.replace('N, ', '')} with C={self.num_features}", shape)
        return shape


class BatchNorm2D(_BatchNorm):
    """Batch normalisation over the channels of images, as ``torch.nn.BatchNorm2d``.

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.norm.batch_norm_forward`
    (written once, there and in docs/math.md), per channel over the :math:`m = N H W` values of the batch.

    The running statistics move by ``momentum`` :math:`\\alpha` towards the batch's, using the unbiased
    variance: :math:`\\mu_{run} \\leftarrow (1-\\alpha)\\mu_{run} + \\alpha\\mu`,
    :math:`\\sigma^2_{run} \\leftarrow (1-\\alpha)\\sigma^2_{run} + \\alpha\\sigma^2 \\frac{m}{m-1}`.
    With ``training=False`` the running statistics replace :math:`\\mu, \\sigma^2` and the layer is an affine
    map per channel, whose gradient is :math:`\\gamma\\, dy / \\sqrt{\\sigma^2_{run} + \\epsilon}`.

    Parameters
    ----------
    num_features : int
        The number of channels :math:`C`.
    eps : float
        Added to the variance for stability.
    momentum : float or None
        Weight of the new batch in the running statistics; ``None`` for a cumulative average.
    dtype : float32 or float64
        Dtype of parameters and running statistics.

    Shape
    -----
    Input (N, C, H, W); output the same shape.

    Attributes
    ----------
    params["weight"], params["bias"] : ndarray, shape (C,)
        :math:`\\gamma` (ones) and :math:`\\beta` (zeros).
    buffers["running_mean"], buffers["running_var"] : ndarray, shape (C,)
        Zeros and ones at first.
    buffers["num_batches_tracked"] : ndarray of int64, shape ()
        Training batches seen.

    Raises
    ------
    ValueError
        For input that is not (N, C, H, W) with ``C == num_features``, or one value per channel in training.

    Examples
    --------
    >>> bn = BatchNorm2D(3)
    >>> y = bn.forward(np.random.default_rng(0).normal(size=(4, 3, 5, 5)).astype(np.float32))
    >>> bool(np.allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5))
    True
    """

    _ndim = 4
    _layout = "(N, C, H, W)"


class BatchNorm1D(_BatchNorm):
    """Batch normalisation over the features of ``(N, C)`` input, as ``torch.nn.BatchNorm1d``.

    The equations are those of :class:`BatchNorm2D` with :math:`m = N`.

    Parameters
    ----------
    num_features : int
        The number of features :math:`C`.
    eps : float
        Added to the variance for stability.
    momentum : float or None
        Weight of the new batch in the running statistics; ``None`` for a cumulative average.
    dtype : float32 or float64
        Dtype of parameters and running statistics.

    Shape
    -----
    Input (N, C); output the same shape.

    Attributes
    ----------
    params["weight"], params["bias"] : ndarray, shape (C,)
        :math:`\\gamma` (ones) and :math:`\\beta` (zeros).
    buffers : dict
        ``running_mean`` (C,), ``running_var`` (C,), ``num_batches_tracked`` int64 ().

    Examples
    --------
    >>> BatchNorm1D(2).forward(np.array([[1.0, 2.0], [3.0, 6.0]]), training=True).round(3)
    array([[-1., -1.],
           [ 1.,  1.]])
    """

    _ndim = 2
    _layout = "(N, C)"
