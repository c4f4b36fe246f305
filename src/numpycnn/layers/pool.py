"""Pooling layers: max, average and global average."""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core import checks
from numpycnn.functional.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    avgpool2d_padded_backward,
    avgpool2d_padded_forward,
    global_avgpool2d_backward,
    global_avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
    maxpool2d_padded_backward,
    maxpool2d_padded_forward,
)
from numpycnn.layers.base import Layer


class _Pool2D(Layer):
    """Shared argument checks, shapes and config of the windowed poolings.

    ``padding`` (ph, pw) adds rows and columns on each side, as PyTorch's ``padding``; at most half the kernel,
    PyTorch's rule, so that every window holds a real pixel. Without padding the unpadded kernels run (the usual
    case, and the fast path); with it the padded ones of :mod:`numpycnn.functional.pool`.
    """

    def __init__(self, kernel_size: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.kernel_size = checks.int_pair(self.name, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else checks.int_pair(self.name, "stride", stride)
        self.padding = checks.int_pair(self.name, "padding", padding, minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            checks.fail(self.name, "padding", f"at most half the kernel {self.kernel_size} on each side (PyTorch's "
                        "rule: every window must hold a real pixel)", padding)

    def check_input(self, x: Any) -> np.ndarray:
        """``x`` as a float (N, C, H, W) array at least as large as the window."""
        x = checks.as_float_array(self.name, x)
        checks.input_ndim(self.name, x, 4, "(N, C, H, W)")
        self._spatial_out(x.shape[2:], x.shape)
        return x

    def _spatial_out(self, size: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if kh > size[0] + 2 * ph or kw > size[1] + 2 * pw:
            padded = f" padded to ({size[0] + 2 * ph}, {size[1] + 2 * pw})" if ph or pw else ""
            raise ValueError(
                f"{self.name}: kernel {self.kernel_size} is larger than the input ({size[0]}, {size[1]}){padded} "
                f"of shape {tuple(shape)}. Use a smaller kernel or remove a pooling layer."
            )
        return (size[0] + 2 * ph - kh) // sh + 1, (size[1] + 2 * pw - kw) // sw + 1

    @property
    def padded(self) -> bool:
        """Whether the layer pads its input (and runs the padded kernels)."""
        return self.padding != (0, 0)

    def get_config(self) -> dict[str, Any]:
        config = {"kernel_size": checks.pair_config(self.kernel_size), "stride": checks.pair_config(self.stride)}
        if self.padded:  # written only when used, so files of unpadded models are as before
            config["padding"] = checks.pair_config(self.padding)
        return config

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            checks.fail(self.name, "input_shape", "a per-sample shape (C, H, W)", tuple(input_shape))
        return (input_shape[0], *self._spatial_out(input_shape[1:], input_shape))


class MaxPool2D(_Pool2D):
    """Max pooling, like PyTorch's ``nn.MaxPool2d`` (without dilation): padding counts as :math:`-\\infty`.

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.pool.maxpool2d_forward`
    (written once, there and in docs/math.md). On ties the window's first maximum in row-major order takes the
    gradient (PyTorch's choice).

    Parameters
    ----------
    kernel_size : int or (int, int)
        Window size (kh, kw).
    stride : int or (int, int) or None
        Step of the window; defaults to ``kernel_size`` (non-overlapping windows).
    padding : int or (int, int)
        Rows and columns of :math:`-\\infty` added on each side, at most half the kernel
        (:func:`~numpycnn.functional.pool.maxpool2d_padded_forward`).

    Shape
    -----
    (N, C, H, W) -> (N, C, H_out, W_out), :math:`H_{out} = \\lfloor (H + 2 p_h - k_h) / s_h \\rfloor + 1` (rows
    and columns that no window reaches are dropped).

    Examples
    --------
    >>> MaxPool2D(2).forward(np.zeros((1, 8, 26, 26), np.float32)).shape
    (1, 8, 13, 13)
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = self.check_input(x)
        if self.padded:
            y, self.cache = maxpool2d_padded_forward(x, self.kernel_size, self.stride, self.padding)
        else:
            y, self.cache = maxpool2d_forward(x, self.kernel_size, self.stride)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        cache = self._take_cache()
        return maxpool2d_padded_backward(grad, cache) if self.padded else maxpool2d_backward(grad, cache)


class AvgPool2D(_Pool2D):
    """Average pooling, like PyTorch's ``nn.AvgPool2d``: padding counts as zeros.

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.pool.avgpool2d_forward`
    (written once, there and in docs/math.md).

    Parameters
    ----------
    kernel_size : int or (int, int)
        Window size (kh, kw).
    stride : int or (int, int) or None
        Step of the window; defaults to ``kernel_size``.
    padding : int or (int, int)
        Rows and columns of zeros added on each side, at most half the kernel
        (:func:`~numpycnn.functional.pool.avgpool2d_padded_forward`).
    count_include_pad : bool
        Divide every window by :math:`k_h k_w`, padding included (PyTorch's default), or only by its real pixels
        (ONNX's default). Matters only with padding.

    Shape
    -----
    (N, C, H, W) -> (N, C, H_out, W_out), :math:`H_{out} = \\lfloor (H + 2 p_h - k_h) / s_h \\rfloor + 1`.

    Examples
    --------
    >>> AvgPool2D(2).forward(np.ones((1, 1, 4, 4), np.float32))[0, 0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """

    def __init__(self, kernel_size: int | tuple[int, int] = 2, stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = checks.boolean(self.name, "count_include_pad", count_include_pad)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if not self.count_include_pad:  # written only when it differs from the default
            config["count_include_pad"] = False
        return config

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = self.check_input(x)
        if self.padded:
            y, self.cache = avgpool2d_padded_forward(x, self.kernel_size, self.stride, self.padding,
                                                     self.count_include_pad)
        else:
            y, self.cache = avgpool2d_forward(x, self.kernel_size, self.stride)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        cache = self._take_cache()
        return avgpool2d_padded_backward(grad, cache) if self.padded else avgpool2d_backward(grad, cache)


class GlobalAvgPool2D(Layer):
    """Mean of each channel over all pixels: (N, C, H, W) -> (N, C).

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.pool.global_avgpool2d_forward`
    (written once, there and in docs/math.md).

    Shape
    -----
    (N, C, H, W) -> (N, C).

    Examples
    --------
    >>> GlobalAvgPool2D().forward(np.ones((2, 3, 5, 4), np.float32)).shape
    (2, 3)
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = checks.as_float_array(self.name, x)
        checks.input_ndim(self.name, x, 4, "(N, C, H, W)")
        y, self.cache = global_avgpool2d_forward(x)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return global_avgpool2d_backward(grad, self._take_cache())

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            checks.fail(self.name, "input_shape", "a per-sample shape (C, H, W)", tuple(input_shape))
        return (input_shape[0],)
