"""2-D convolution layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core import backend, checks
from numpycnn.functional.conv import Workspace, conv2d_backward, conv2d_forward, conv2d_output_size
from numpycnn.layers.base import Layer
from numpycnn.layers.init import init_weight


def _resolve_padding(padding: Any, kernel_size: tuple[int, int], stride: tuple[int, int],
                     dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """``padding`` as (p_h, p_w): ``"valid"`` is 0, ``"same"`` is d (k - 1) / 2 at stride 1 when that is a
    whole number (odd kernels, or an even dilation)."""
    if not isinstance(padding, str):
        return checks.int_pair("Conv2D", "padding", padding, minimum=0)
    if padding == "valid":
        return (0, 0)
    if padding != "same":
        checks.fail("Conv2D", "padding", "an integer, a pair of integers, 'same' or 'valid'", padding)
    if stride != (1, 1):
        checks.fail("Conv2D", "padding", "an integer with stride > 1 ('same' keeps the size only at stride 1)",
                     padding, hint=f"The stride is {stride}; give the padding as a number, e.g. padding=1.")
    span = (dilation[0] * (kernel_size[0] - 1), dilation[1] * (kernel_size[1] - 1))  # the kernel's extent - 1
    if span[0] % 2 or span[1] % 2:
        checks.fail("Conv2D", "padding", "a number for an even kernel_size ('same' would need more zeros on "
                     "one side than the other, which PyTorch adds and numpycnn does not)", padding,
                     hint=f"Use an odd kernel_size, or padding=k//2 (the output grows by one). Got kernel_size "
                          f"{kernel_size}.")
    return (span[0] // 2, span[1] // 2)


class Conv2D(Layer):
    """2-D convolution (cross-correlation) of (N, C_in, H, W) images, like PyTorch's ``nn.Conv2d``.

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.conv.conv2d_forward` and
    :func:`~numpycnn.functional.conv.conv2d_backward`, and with dilation or groups
    :func:`~numpycnn.functional.conv.conv2d_forward_general` (written once, there and in docs/math.md;
    :mod:`numpycnn.functional.conv_plain` is the plainest code of them).

    Parameters
    ----------
    in_channels : int or None
        Channels of the input. ``None`` (write ``Conv2D(out_channels=8, kernel_size=3)``) infers them from
        the model's ``input_shape`` or the first forward pass; model files record the resolved number.
    out_channels : int
        Channels of the output.
    kernel_size : int or (int, int)
        Window size (kh, kw).
    stride : int or (int, int)
        Step of the window, >= 1.
    padding : int or (int, int) or "same" or "valid"
        Zeros added on each side, >= 0. ``"valid"`` is 0; ``"same"`` keeps H and W (padding ``(k - 1) / 2``)
        and needs stride 1 and an odd kernel: an even kernel would need one more zero on one side, which
        PyTorch adds and numpycnn does not, so it is an error (give the padding as a number). The resolved
        numbers are what ``get_config`` and model files record.
    bias : bool
        Whether to add a learnable bias per output channel.
    dilation : int or (int, int)
        Spacing of the kernel taps, >= 1: a 3x3 kernel with dilation 2 spans 5x5 pixels (as in PyTorch).
    groups : int
        Split the channels into ``groups`` independent convolutions, each from ``in_channels / groups`` input
        channels to ``out_channels / groups`` output channels; it must divide both. ``groups=in_channels`` is a
        depthwise convolution, and ``out_channels = k * in_channels`` with it gives each channel ``k`` filters.
        ``get_config`` and model files record ``dilation`` and ``groups`` where they are not 1, so files of
        other convolutions are those of numpycnn before these arguments existed.
    rng : numpy.random.Generator or int or None
        Source of the initial weights.
    dtype : float32 or float64
        Dtype of the parameters.

    Shape
    -----
    Input (N, C_in, H, W); output (N, C_out, H_out, W_out) with
    :math:`H_{out} = \\lfloor (H + 2 p_h - d_h (k_h - 1) - 1) / s_h \\rfloor + 1` and
    :math:`W_{out} = \\lfloor (W + 2 p_w - d_w (k_w - 1) - 1) / s_w \\rfloor + 1`; without dilation
    (:math:`d = 1`), :math:`\\lfloor (H + 2 p_h - k_h) / s_h \\rfloor + 1`.

    Attributes
    ----------
    params["weight"] : ndarray, shape (out_channels, in_channels / groups, kh, kw)
        He/Kaiming normal, :math:`\\mathcal{N}(0, 2 / (C_{in} k_h k_w / G))`; ``Sequential.initialize`` redraws
        it (Glorot uniform with fan-out :math:`C_{out} k_h k_w / G` when no rectifier follows): each output
        sees :math:`C_{in} / G` channels, each input feeds :math:`C_{out} / G`.
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
    >>> depthwise = Conv2D(8, 16, 3, padding=2, dilation=2, groups=8, rng=0)  # 2 filters per channel
    >>> depthwise.params["weight"].shape, depthwise.output_shape((8, 26, 26))
    ((16, 1, 3, 3), (16, 26, 26))
    """

    param_names = ("weight", "bias")
    build_axis = 1  # Conv2D(out_channels=8, kernel_size=3) takes its in_channels from the first input

    def __init__(self, in_channels: int | None = None, out_channels: int | None = None,
                 kernel_size: int | tuple[int, int] | None = None, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | str = 0, bias: bool = True,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, *,
                 rng: np.random.Generator | int | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        if out_channels is None or kernel_size is None:
            missing = "out_channels" if out_channels is None else "kernel_size"
            checks.fail("Conv2D", missing, "given", None, error=TypeError,
                         hint="Write Conv2D(in_channels, out_channels, kernel_size), or "
                              "Conv2D(out_channels=8, kernel_size=3) to infer in_channels.")
        self.in_channels = (None if in_channels is None
                            else checks.positive_int("Conv2D", "in_channels", in_channels))
        self.out_channels = checks.positive_int("Conv2D", "out_channels", out_channels)
        self.kernel_size = checks.int_pair("Conv2D", "kernel_size", kernel_size)
        self.stride = checks.int_pair("Conv2D", "stride", stride)
        self.dilation = checks.int_pair("Conv2D", "dilation", dilation)
        self.groups = checks.positive_int("Conv2D", "groups", groups)
        self._check_groups(self.in_channels)
        self.padding = _resolve_padding(padding, self.kernel_size, self.stride, self.dilation)
        if not isinstance(bias, (bool, np.bool_)):
            checks.fail("Conv2D", "bias", "True or False", bias, error=TypeError)
        self.use_bias = bool(bias)
        if not self.use_bias:
            self.param_names = ("weight",)
        self._dtype = checks.float_dtype("Conv2D", dtype)
        self._init = (np.random.default_rng(rng), "relu")
        self.compute_input_grad = True
        self._workspace = Workspace()
        if self.in_channels is not None:
            self.build(self.in_channels)

    def build(self, in_channels: int) -> None:
        """Create the parameters for ``in_channels`` input channels (done by the constructor unless lazy)."""
        in_channels = checks.positive_int("Conv2D", "in_channels", in_channels)
        self._check_groups(in_channels)  # before anything changes: a refused lazy build leaves the layer lazy
        self.in_channels = in_channels
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)  # as torch.nn.Conv2d
        self.add_param("weight", np.empty(shape, self._dtype))
        if self.use_bias:
            self.add_param("bias", np.empty(self.out_channels, dtype=self._dtype))
        self.reset_parameters(*self._init)

    def _check_groups(self, in_channels: int | None) -> None:
        """``groups`` must divide ``out_channels`` and (once known) ``in_channels``."""
        if self.out_channels % self.groups or (in_channels is not None and in_channels % self.groups):
            checks.fail("Conv2D", "groups", "an integer that divides both in_channels and out_channels",
                         self.groups, got=f"groups={self.groups}, in_channels={in_channels}, "
                                          f"out_channels={self.out_channels}")

    def reset_parameters(self, rng: np.random.Generator, nonlinearity: str = "relu") -> None:
        if self._draw_when_built(rng, nonlinearity):  # lazy, not built yet
            return
        w = self.params["weight"]
        kh, kw = self.kernel_size
        fan_in, fan_out = self.in_channels // self.groups * kh * kw, self.out_channels // self.groups * kh * kw
        w[...] = backend.like(init_weight(w.shape, fan_in, fan_out, nonlinearity, rng, w.dtype), w)
        if self.use_bias:
            self.params["bias"].fill(0)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = checks.as_float_array("Conv2D", x)
        checks.input_ndim("Conv2D", x, 4, "(N, C, H, W)")
        self.build_for(x)  # a lazy layer (in_channels=None) learns its input channels here
        checks.input_size("Conv2D", x, 1, self.in_channels, "input channels")
        self._check_fits(x.shape[2:], x.shape)
        y, self.cache = conv2d_forward(x, self.params["weight"], self.params.get("bias"), self.stride,
                                       self.padding, self.dilation, self.groups, workspace=self._workspace)
        return y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        cache = self._take_cache()
        dx, dweight, dbias = conv2d_backward(grad, cache, need_dx=self.compute_input_grad)
        self.grads["weight"][...] = dweight
        if dbias is not None:
            self.grads["bias"][...] = dbias
        return dx

    def to(self, device: str) -> Conv2D:
        self._workspace.clear()
        return super().to(device)

    def astype(self, dtype: Any) -> Conv2D:
        self._dtype = checks.float_dtype("Conv2D", dtype)
        self._workspace.clear()
        return super().astype(dtype)

    def _check_fits(self, size: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, int]:
        """Return (H_out, W_out) for spatial ``size``, raising if the kernel exceeds the padded input."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        h_out, w_out = conv2d_output_size(size[0], kh, sh, ph, dh), conv2d_output_size(size[1], kw, sw, pw, dw)
        if h_out < 1 or w_out < 1:
            spans = ("" if (dh, dw) == (1, 1) else
                     f" with dilation {self.dilation} (spanning {(dh * (kh - 1) + 1, dw * (kw - 1) + 1)})")
            raise ValueError(
                f"Conv2D: kernel {self.kernel_size}{spans} is larger than the padded input "
                f"({size[0] + 2 * ph}, {size[1] + 2 * pw}) for input of shape {tuple(shape)} with padding "
                f"{self.padding}. Use a smaller kernel, more padding or larger images."
            )
        return h_out, w_out

    def get_config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": checks.pair_config(self.kernel_size),
            "stride": checks.pair_config(self.stride),
            "padding": checks.pair_config(self.padding),
            "bias": self.use_bias,
            # written only where not 1, so a file of any other convolution is what numpycnn wrote before they
            # existed (older versions read it; checkpoints from before resume)
            **({"dilation": checks.pair_config(self.dilation)} if self.dilation != (1, 1) else {}),
            **({"groups": self.groups} if self.groups != 1 else {}),
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            checks.fail("Conv2D", "input_shape", "a per-sample shape (C, H, W)", tuple(input_shape))
        if self.in_channels is not None and input_shape[0] != self.in_channels:
            checks.fail("Conv2D", "input_shape", f"a per-sample shape with {self.in_channels} input channels",
                         tuple(input_shape))
        return (self.out_channels, *self._check_fits(input_shape[1:], input_shape))
