"""ONNX nodes to layers: one converter per operator that is one layer (see :mod:`._onnx_context`).

A converter takes the node, the :class:`Context` and the per-sample shape of its input, and returns the layers
it stands for, each with its tensors: ``[(layer, {"weight": w, ...}), ...]`` (empty for an identity). Every
attribute is read through :meth:`Context.attrs`, which refuses attributes it was not told about, so a node
whose meaning a layer cannot hold is an error, never a different model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from numpycnn.interchange._onnx_context import Context, Converted, _float32_value
from numpycnn.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)


def _inputs(ctx: Context, node: Any, low: int, high: int) -> None:
    ctx.expect(node, "number of inputs", low <= len(node.input) <= high, f"{low} to {high}", len(node.input))


def _rank(ctx: Context, node: Any, shape: tuple[int, ...], ranks: tuple[int, ...]) -> None:
    ctx.expect(node, "input rank", len(shape) + 1 in ranks, " or ".join(map(str, ranks)), (None, *shape))


def _auto_pads(a: dict[str, Any], size: tuple[int, ...], spans: list[int]) -> list[int]:
    """Explicit ``[top, left, bottom, right]`` pads for ``auto_pad``: ``SAME_*`` keeps ``ceil(size / stride)``
    outputs, the odd pixel of the total going to the end (``UPPER``) or the beginning (``LOWER``)."""
    if a["auto_pad"] in ("NOTSET", ""):
        return list(a["pads"])
    if a["auto_pad"] == "VALID":
        return [0, 0, 0, 0]
    begin, end = [], []
    for n, stride, span in zip(size, a["strides"], spans, strict=True):
        total = max(0, (-(-n // stride) - 1) * stride + span - n)
        small = total // 2
        begin.append(small if a["auto_pad"] == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return begin + end


def _window(ctx: Context, node: Any, a: dict[str, Any], kernel: list[int], shape: tuple[int, ...],
            dilation: list[int]) -> tuple[tuple[int, int], list[int]]:
    """Stride and ``[top, left, bottom, right]`` padding of a Conv or pooling node (``auto_pad`` resolved)."""
    ctx.expect(node, "auto_pad", a["auto_pad"] in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"),
               "NOTSET, VALID, SAME_UPPER or SAME_LOWER", a["auto_pad"])
    ctx.expect(node, "pads", a["auto_pad"] in ("NOTSET", "") or not any(a["pads"]),
               f"absent with auto_pad {a['auto_pad']}", a["pads"])
    ctx.expect(node, "kernel_shape", a["kernel_shape"] in (None, kernel) and len(kernel) == 2,
               f"2 sizes matching the weights {kernel}", a["kernel_shape"])
    ctx.expect(node, "strides", len(a["strides"]) == 2 and min(a["strides"]) >= 1, "2 positive sizes",
               a["strides"])
    ctx.expect(node, "dilations", len(dilation) == 2 and min(dilation) >= 1, "2 positive sizes", dilation)
    ctx.expect(node, "pads", len(a["pads"]) == 4 and min(a["pads"]) >= 0, "4 non-negative sizes", a["pads"])
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    return tuple(a["strides"]), _auto_pads(a, shape[1:], spans)


def _symmetric(ctx: Context, node: Any, pads: list[int], a: dict[str, Any]) -> tuple[int, int]:
    ctx.expect(node, "pads", pads[:2] == pads[2:], "[ph, pw, ph, pw] (the same at both ends)"
               + (f" (auto_pad {a['auto_pad']} gives {pads})" if a["auto_pad"] not in ("NOTSET", "") else ""),
               a["pads"])
    return pads[0], pads[1]


_WINDOW = {"auto_pad": "NOTSET", "kernel_shape": None, "strides": [1, 1], "pads": [0, 0, 0, 0],
           "dilations": [1, 1]}


def _conv(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    _inputs(ctx, node, 2, 3)
    w, b = ctx.array(node, 1), ctx.array(node, 2, ndim=1, optional=True)
    ctx.expect(node, "weight rank", w.ndim == 4 and len(shape) == 3,
               "4 on an (N, C, H, W) input (numpycnn has 2-D convolutions only)", (w.shape, (None, *shape)))
    a = ctx.attrs(node, {**_WINDOW, "group": 1})
    group, dilation = a["group"], a["dilations"]
    stride, pads = _window(ctx, node, a, list(w.shape[2:]), shape, dilation)
    if ctx.pending_pad is not None:  # a Pad node before: its zeros are this convolution's padding
        pads = [p + q for p, q in zip(pads, ctx.pending_pad[1], strict=True)]
        ctx.pending_pad = None
    padding = _symmetric(ctx, node, pads, a)
    ctx.expect(node, "group", group >= 1 and w.shape[1] * group == shape[0],  # weight (F, C / group, kh, kw)
               f"the input's {shape[0]} channels over the weight's {w.shape[1]} channels per group", group)
    padded = shape[0] * (shape[1] + 2 * padding[0]) * (shape[2] + 2 * padding[1])
    ctx.check_activation(node, "padded input", padded)
    layer = ctx.build(node, lambda: Conv2D(shape[0], w.shape[0], w.shape[2:], stride, padding, b is not None,
                                           dilation, group))  # Conv2D checks that group divides F
    try:
        out = layer.output_shape(shape)
    except ValueError as err:
        raise ctx.fail(f"node {ctx.label(node)} cannot take input of shape {shape}: {err}") from None
    ctx.check_activation(node, "im2col matrix", shape[0] * int(np.prod(w.shape[2:])) * int(np.prod(out[1:])))
    return [(layer, {"weight": w} if b is None else {"weight": w, "bias": b})]


def _pool(kind: type) -> Callable[[Any, Context, tuple[int, ...], Any], Converted]:
    def convert(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
        _inputs(ctx, node, 1, 1)
        _rank(ctx, node, shape, (4,))
        extra = {"storage_order": 0} if kind is MaxPool2D else {"count_include_pad": 0}
        a = ctx.attrs(node, {**_WINDOW, "ceil_mode": 0, **extra})  # storage_order: only the unused Indices
        ctx.expect(node, "dilations", a["dilations"] == [1, 1], "[1, 1] (numpycnn's pooling has no dilation)",
                   a["dilations"])
        kernel = a["kernel_shape"]
        ctx.expect(node, "kernel_shape", kernel is not None and len(kernel) == 2, "2 sizes", kernel)
        stride, pads = _window(ctx, node, a, kernel, shape, [1, 1])
        padding = _symmetric(ctx, node, pads, a)  # MaxPool's padding never wins a window, as MaxPool2D's -inf
        ctx.expect(node, "pads", all(2 * p <= k for p, k in zip(padding, kernel, strict=True)),
                   "at most half the kernel on each side (every window must hold a real pixel)", a["pads"])
        exact = all((n + 2 * p - k) % s == 0 for n, p, k, s in zip(shape[1:], padding, kernel, stride, strict=True))
        ctx.expect(node, "ceil_mode", a["ceil_mode"] == 0 or exact,
                   "0 (floor), or 1 where the windows tile the input exactly", a["ceil_mode"])
        if kind is MaxPool2D:
            return [(ctx.build(node, lambda: MaxPool2D(tuple(kernel), stride, padding)), {})]
        # ONNX's default 0 divides by the real pixels only; without padding both divide by k_h k_w, so the layer
        # keeps its own default (True) and an exported model comes back with the configuration it had
        include = bool(a["count_include_pad"]) or padding == (0, 0)
        return [(ctx.build(node, lambda: AvgPool2D(tuple(kernel), stride, padding, include)), {})]
    return convert


def _global_avg_pool(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    _inputs(ctx, node, 1, 1)
    _rank(ctx, node, shape, (4,))
    ctx.attrs(node, {})
    return []  # becomes GlobalAvgPool2D with the Flatten that must follow


def _flatten(node: Any, ctx: Context, shape: tuple[int, ...], pending: Any) -> Converted:
    _inputs(ctx, node, 1, 1)
    axis = ctx.attrs(node, {"axis": 1})["axis"]
    ctx.expect(node, "axis", axis in (1, 1 - len(shape) - 1), "1 (keep the batch axis)", axis)
    return [(GlobalAvgPool2D() if pending is not None else Flatten(), {})]


def _gemm(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    """:math:`y = \\alpha x B + \\beta c` (``B`` transposed with ``transB``) as a Dense layer: ``alpha`` scales
    the weight and ``beta`` the bias; opset 6's ``broadcast`` must be 1 for a per-feature bias."""
    _inputs(ctx, node, 2, 3)
    _rank(ctx, node, shape, (2,))
    a = ctx.attrs(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0,
                         **({"broadcast": 0} if ctx.opset < 7 else {})})
    ctx.expect(node, "transA", a["transA"] == 0, "0 (the input is (N, features))", a["transA"])
    ctx.expect(node, "transB", a["transB"] in (0, 1), "0 or 1", a["transB"])
    w = ctx.array(node, 1, ndim=2)
    w = w if a["transB"] else np.ascontiguousarray(w.T)  # (out, in)
    if a["alpha"] != 1.0:
        w = (w * np.float32(a["alpha"])).astype(np.float32)
    b = ctx.array(node, 2, optional=True)
    if b is not None:
        ctx.expect(node, "broadcast", ctx.opset >= 7 or a["broadcast"] == 1, "1 (a bias per output feature)",
                   a.get("broadcast"))
        ctx.expect(node, "bias shape", b.ndim <= 2 and np.broadcast_shapes(b.shape, (1, w.shape[0])) == (
            1, w.shape[0]), f"({w.shape[0]},) or one that broadcasts to (1, {w.shape[0]})", b.shape)
        b = np.broadcast_to(b, (1, w.shape[0])).reshape(-1) * np.float32(a["beta"])
        b = None if a["beta"] == 0.0 else np.ascontiguousarray(b, np.float32)
    layer = ctx.build(node, lambda: Dense(w.shape[1], w.shape[0], bias=b is not None))
    return [(layer, {"weight": w} if b is None else {"weight": w, "bias": b})]


def _batch_norm(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    """Inference batch norm: ``is_test`` (opset 6) must be 1, ``spatial`` (opsets 6-8) 1 and ``training_mode``
    (opset 14) 0; the old opsets' extra outputs (running statistics) must be unused."""
    _inputs(ctx, node, 5, 5)
    _rank(ctx, node, shape, (2, 4))
    old = {"spatial": 1, "is_test": 1} if ctx.opset < 9 else {}
    a = ctx.attrs(node, {"epsilon": 1e-5, "momentum": 0.9, **old, **({"training_mode": 0} if ctx.opset >= 14
                                                                      else {})})
    ctx.expect(node, "training_mode", a.get("training_mode", 0) == 0, "0 (inference)", a.get("training_mode"))
    ctx.expect(node, "is_test", a.get("is_test", 1) == 1, "1 (inference)", a.get("is_test"))
    ctx.expect(node, "spatial", a.get("spatial", 1) == 1, "1 (statistics per channel)", a.get("spatial"))
    ctx.expect(node, "momentum", 0.0 <= a["momentum"] <= 1.0, "in [0, 1]", a["momentum"])
    own = {key: ctx.array(node, i, ndim=1) for i, key in
           enumerate(("weight", "bias", "running_mean", "running_var"), start=1)}
    kind = BatchNorm2D if len(shape) == 3 else BatchNorm1D
    momentum = round(1.0 - a["momentum"], 6)  # ONNX's momentum weighs the old statistics, PyTorch's the new
    layer = ctx.build(node, lambda: kind(shape[0], eps=a["epsilon"], momentum=momentum))
    for key, value in own.items():
        ctx.expect(node, f"{key} shape", value.shape == (shape[0],), f"({shape[0]},)", value.shape)
    return [(layer, own)]


def _activation(kind: type, **defaults: Any) -> Callable[[Any, Context, tuple[int, ...], Any], Converted]:
    def convert(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
        _inputs(ctx, node, 1, 1)
        a = ctx.attrs(node, defaults)
        return [(ctx.build(node, lambda: kind(*a.values())), {})]
    return convert


def _softmax(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    """Softmax over axis 1. Before opset 13 the input is coerced to 2-D at ``axis`` (default 1) and normalised
    over all the axes from ``axis`` on, which is the layer's softmax where those are axis 1 alone (trailing
    sizes of 1); from opset 13 it normalises the one axis ``axis`` (default -1)."""
    _inputs(ctx, node, 1, 1)
    rank = len(shape) + 1
    axis = ctx.attrs(node, {"axis": 1 if ctx.opset < 13 else -1})["axis"]
    axis = axis + rank if axis < 0 else axis
    if ctx.opset < 13:
        ctx.expect(node, "axis", axis == 1 and math.prod(shape[1:]) == 1,
                   f"1 with nothing after it (opset {ctx.opset} normalises all axes from `axis` on; input "
                   f"{(None, *shape)})", axis)
    ctx.expect(node, "axis", axis == 1, "1 (the classes or channels)", axis)
    return [(Softmax(), {})]


def _dropout(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    """The identity at inference. ``ratio`` is an attribute before opset 12 and an input from it on; opset 6's
    ``is_test`` and opset 12's ``training_mode`` input only say whether the graph drops, which an inference
    model never does."""
    _inputs(ctx, node, 1, 3)
    a = ctx.attrs(node, {"seed": 0} if ctx.opset >= 12 else {"ratio": 0.5, **(
        {"is_test": 0} if ctx.opset < 7 else {})})
    ratio = a.get("ratio", 0.5)
    if ctx.opset >= 12:
        value = ctx.array(node, 1, optional=True)
        ratio = 0.5 if value is None or value.size != 1 else _float32_value(float(value.reshape(-1)[0]))
        mode = ctx.array(node, 2, optional=True)
        ctx.expect(node, "training_mode", mode is None or not bool(mode.reshape(-1)[0]), "false",
                   None if mode is None else mode.tolist())
    return [(ctx.build(node, lambda: Dropout(ratio)), {})]


def _identity(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    _inputs(ctx, node, 1, 1)
    ctx.attrs(node, {})
    return []


CONVERTERS: dict[str, Callable[[Any, Context, tuple[int, ...], Any], Converted]] = {
    "Conv": _conv, "MaxPool": _pool(MaxPool2D), "AveragePool": _pool(AvgPool2D),
    "GlobalAveragePool": _global_avg_pool, "Flatten": _flatten, "Gemm": _gemm,
    "BatchNormalization": _batch_norm, "Relu": _activation(ReLU), "LeakyRelu": _activation(LeakyReLU, alpha=0.01),
    "Sigmoid": _activation(Sigmoid), "Tanh": _activation(Tanh), "Softmax": _softmax, "Dropout": _dropout,
    "Identity": _identity,
}
