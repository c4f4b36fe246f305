"""2-D convolution layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn import _checks
from numpycnn.functional.conv import Workspace, conv2d_backward, conv2d_forward, conv2d_output_size
from numpycnn.init import init_weight
from numpycnn.layers.base import Layer


def _config_pair(pair: tuple[int, int]) -> int | list[int]:
    return pair[0] if pair[0] == pair[1] else list(pair)


class Conv2D(Layer):
    """2-D convolution (cross-correlation) of (N, C_in, H, W) images, like PyTorch's ``nn.Conv2d``.

    Notes
    -----
    .. math::
        y_{n,f,h,w} = b_f + \\sum_{c,i,j} w_{f,c,i,j}\\, x_{n,c,\\,s_h h + i - p_h,\\, s_w w + j - p_w}

    computed by im2col and one matrix product, :math:`Y = W_{mat} X_{col}`; backward computes

    .. math::
        \\frac{\\partial L}{\\partial w} = dY X_{col}^T, \\quad
        \\frac{\\partial L}{\\partial b_f} = \\sum_{n,h,w} dy_{n,f,h,w}, \\quad
        \\frac{\\partial L}{\\partial x} = \\mathrm{col2im}(W_{mat}^T dY)

    (see :func:`numpycnn.functional.conv.conv2d_forward`).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output.
    kernel_size : int or (int, int)
        Window size (kh, kw).
    stride : int or (int, int)
        Step of the window, >= 1.
    padding : int or (int, int)
        Zeros added on each side, >= 0.
    bias : bool
        Whether to add a learnable bias per output channel.
    rng : numpy.random.Generator or int or None
        Source of the initial weights.
    dtype : float32 or float64
        Dtype of the parameters.

    Shape
    -----
    Input (N, C_in, H, W); output (N, C_out, H_out, W_out) with
    :math:`H_{out} = \\lfloor (H + 2 p_h - k_h) / s_h \\rfloor + 1` and
    :math:`W_{out} = \\lfloor (W + 2 p_w - k_w) / s_w \\rfloor + 1`.

    Attributes
    ----------
    params["weight"] : ndarray, shape (out_channels, in_channels, kh, kw)
        He/Kaiming normal, :math:`\\mathcal{N}(0, 2 / (C_{in} k_h k_w))`; ``Sequential.initialize`` redraws it
        (Glorot uniform with fan-out :math:`C_{out} k_h k_w` when no rectifier follows).
    params["bias"] : ndarray, shape (out_channels,)
        Zeros. Absent when ``bias=False``.
    compute_input_grad : bool
        When false, ``backward`` fills the parameter gradients but skips the input gradient and returns
        ``None`` (for a first layer, whose input gradient nobody uses).

    Raises
    ------
    TypeError, ValueError
        For bad constructor arguments; for input that is not 4-D, has the wrong channel count, or is smaller
        than the kernel after padding.

    Examples
    --------
    >>> conv = Conv2D(1, 8, 3, rng=0)
    >>> conv.forward(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 8, 26, 26)
    """

    param_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0, bias: bool = True, *,
                 rng: np.random.Generator | int | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        self.in_channels = _checks.positive_int("Conv2D", "in_channels", in_channels)
        self.out_channels = _checks.positive_int("Conv2D", "out_channels", out_channels)
        self.kernel_size = _checks.int_pair("Conv2D", "kernel_size", kernel_size)
        self.stride = _checks.int_pair("Conv2D", "stride", stride)
        self.padding = _checks.int_pair("Conv2D", "padding", padding, minimum=0)
        if not isinstance(bias, (bool, np.bool_)):
            _checks.fail("Conv2D", "bias", "True or False", bias, error=TypeError)
        self.use_bias = bool(bias)
        if not self.use_bias:
            self.param_names = ("weight",)
        dt = _checks.float_dtype("Conv2D", dtype)
        self.params["weight"] = np.empty((self.out_channels, self.in_channels, *self.kernel_size), dtype=dt)
        if self.use_bias:
            self.params["bias"] = np.empty(self.out_channels, dtype=dt)
        self.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        self.compute_input_grad = True
        self._workspace = Workspace()
        self.reset_parameters(np.random.default_rng(rng), "relu")

    def reset_parameters(self, rng: np.random.Generator, nonlinearity: str = "relu") -> None:
        w = self.params["weight"]
        kh, kw = self.kernel_size
        fan_in, fan_out = self.in_channels * kh * kw, self.out_channels * kh * kw
        w[...] = init_weight(w.shape, fan_in, fan_out, nonlinearity, rng, w.dtype)
        if self.use_bias:
            self.params["bias"].fill(0)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = _checks.as_float_array("Conv2D", x)
        _checks.input_ndim("Conv2D", x, 4, "(N, C, H, W)")
        _checks.input_size("Conv2D", x, 1, self.in_channels, "input channels")
        self._check_fits(x.shape[2:], x.shape)
        y, self.cache = conv2d_forward(x, self.params["weight"], self.params.get("bias"), self.stride,
                                       self.padding, workspace=self._workspace)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        cache = self._take_cache()
        dx, dweight, dbias = conv2d_backward(grad, cache, need_dx=self.compute_input_grad)
        self.grads["weight"][...] = dweight
        if dbias is not None:
            self.grads["bias"][...] = dbias
        return dx

    def astype(self, dtype: Any) -> Conv2D:
        self._workspace.clear()
        return super().astype(dtype)

    def _check_fits(self, size: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, int]:
        """Return (H_out, W_out) for spatial ``size``, raising if the kernel exceeds the padded input."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        h_out, w_out = conv2d_output_size(size[0], kh, sh, ph), conv2d_output_size(size[1], kw, sw, pw)
        if h_out < 1 or w_out < 1:
            raise ValueError(
                f"Conv2D: kernel {self.kernel_size} is larger than the padded input "
                f"({size[0] + 2 * ph}, {size[1] + 2 * pw}) for input of shape {tuple(shape)} with padding "
                f"{self.padding}. Use a smaller kernel, more padding or larger images."
            )
        return h_out, w_out

    def get_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": _config_pair(self.kernel_size),
            "stride": _config_pair(self.stride),
            "padding": _config_pair(self.padding),
            "bias": self.use_bias,
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D: expected per-sample input shape (C, H, W), got {tuple(input_shape)}.")
        if input_shape[0] != self.in_channels:
            raise ValueError(
                f"Conv2D: expected {self.in_channels} input channels, "
                f"got per-sample shape {tuple(input_shape)}."
            )
        return (self.out_channels, *self._check_fits(input_shape[1:], input_shape))
