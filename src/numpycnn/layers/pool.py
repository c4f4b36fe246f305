"""Pooling layers: max, average and global average."""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core import checks
from numpycnn.functional.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    global_avgpool2d_backward,
    global_avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from numpycnn.layers.base import Layer


class _Pool2D(Layer):
    """Shared argument checks, shapes and config of the windowed poolings."""

    def __init__(self, kernel_size: int | tuple[int, int] = 2,
                 stride: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.kernel_size = checks.int_pair(self.name, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else checks.int_pair(self.name, "stride", stride)

    def check_input(self, x: Any) -> np.ndarray:
        """``x`` as a float (N, C, H, W) array at least as large as the window."""
        x = checks.as_float_array(self.name, x)
        checks.input_ndim(self.name, x, 4, "(N, C, H, W)")
        self._spatial_out(x.shape[2:], x.shape)
        return x

    def _spatial_out(self, size: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, int]:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if kh > size[0] or kw > size[1]:
            raise ValueError(
                f"{self.name}: kernel {self.kernel_size} is larger than the input ({size[0]}, {size[1]}) "
                f"of shape {tuple(shape)}. Use a smaller kernel or remove a pooling layer."
            )
        return (size[0] - kh) // sh + 1, (size[1] - kw) // sw + 1

    def get_config(self) -> dict[str, Any]:
        return {"kernel_size": checks.pair_config(self.kernel_size), "stride": checks.pair_config(self.stride)}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            checks.fail(self.name, "input_shape", "a per-sample shape (C, H, W)", tuple(input_shape))
        return (input_shape[0], *self._spatial_out(input_shape[1:], input_shape))


class MaxPool2D(_Pool2D):
    """Max pooling, like PyTorch's ``nn.MaxPool2d`` without padding or dilation.

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

    Shape
    -----
    (N, C, H, W) -> (N, C, H_out, W_out), :math:`H_{out} = \\lfloor (H - k_h) / s_h \\rfloor + 1` (rows and
    columns that no window reaches are dropped).

    Examples
    --------
    >>> MaxPool2D(2).forward(np.zeros((1, 8, 26, 26), np.float32)).shape
    (1, 8, 13, 13)
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        y, self.cache = maxpool2d_forward(self.check_input(x), self.kernel_size, self.stride)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return maxpool2d_backward(grad, self._take_cache())


class AvgPool2D(_Pool2D):
    """Average pooling, like PyTorch's ``nn.AvgPool2d`` without padding.

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

    Shape
    -----
    (N, C, H, W) -> (N, C, H_out, W_out), :math:`H_{out} = \\lfloor (H - k_h) / s_h \\rfloor + 1`.

    Examples
    --------
    >>> AvgPool2D(2).forward(np.ones((1, 1, 4, 4), np.float32))[0, 0].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        y, self.cache = avgpool2d_forward(self.check_input(x), self.kernel_size, self.stride)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return avgpool2d_backward(grad, self._take_cache())


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
