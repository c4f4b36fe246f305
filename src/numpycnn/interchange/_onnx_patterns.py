"""What exporters write for layers that have no one ONNX operator, read back as those layers.

- ``Conv`` (or ``Gemm``/``MatMul``) then ``Add`` of a constant that is the same for every position of a channel
  (shape ``(C, 1, 1)``, ``(1, C, 1, 1)``, ``(C,)`` with opset 6's ``broadcast=1, axis=1``, or a scalar): the
  bias of that layer, :math:`y = (W * x) + b`, added to the bias it already has.
- ``MatMul`` of ``(N, K)`` by a constant ``(K, M)`` (often the ``Transpose`` of a ``Linear``'s ``(M, K)`` weight,
  folded): a Dense layer without bias, weight :math:`W = B^T`.
- ``Reshape`` to ``(N, -1)`` (the target a constant, ``[0, -1]``, ``[1, -1]`` for a fixed batch of one, or folded
  from ``Shape -> Gather -> Unsqueeze -> Concat``): Flatten; a Reshape to the shape it already has: nothing.
- ``Pad`` with zeros on the two spatial axes right before a ``Conv``: that convolution's padding.
- ``Clip`` with ``min = 0`` and no ``max``: ReLU.

Anything else these operators could mean is refused, naming the node, the operator and what is read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numpycnn.interchange._onnx_context import Context, Converted
from numpycnn.interchange._onnx_fold import BATCH
from numpycnn.interchange._onnx_ops import CONVERTERS as _LAYER_CONVERTERS
from numpycnn.interchange._onnx_ops import _inputs
from numpycnn.layers import Conv2D, Dense, Flatten, GlobalAvgPool2D, ReLU

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _bias_shape(node: Any, ctx: Context, b: np.ndarray, rank: int) -> np.ndarray:
    """The constant ``b`` of an Add as an array of the input's rank, following NumPy broadcasting (opset 7 on)
    or opset 6's ``broadcast``/``axis`` attributes (``b`` lined up with the input from ``axis`` on)."""
    if ctx.opset < 7:
        a = ctx.attrs(node, {"broadcast": 0, "axis": rank - b.ndim})
        ctx.expect(node, "broadcast", a["broadcast"] == 1, "1 (a constant that broadcasts)", a["broadcast"])
        axis = a["axis"] + rank if a["axis"] < 0 else a["axis"]
        ctx.expect(node, "axis", 0 <= axis <= rank - b.ndim, f"in [0, {rank - b.ndim}]", a["axis"])
        return b.reshape((1,) * axis + b.shape + (1,) * (rank - axis - b.ndim))
    ctx.attrs(node, {})
    ctx.expect(node, "constant rank", b.ndim <= rank, f"at most the input's {rank}", b.shape)
    return b.reshape((1,) * (rank - b.ndim) + b.shape)


def _add(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    """``y = x + b``: the bias of the Conv2D or Dense layer just before it."""
    _inputs(ctx, node, 2, 2)
    const = node.input[1] if node.input[1] in ctx.constants else node.input[0]
    ctx.expect(node, "inputs", ctx.opset >= 7 or const == node.input[1],
               "(data, constant) before opset 7, where only the second input broadcasts", list(node.input))
    b = ctx.array(node, list(node.input).index(const))
    full = _bias_shape(node, ctx, b, len(shape) + 1)
    channels = shape[0]
    per_channel = full.shape[0] == 1 and full.shape[1] in (1, channels) and math.prod(full.shape[2:]) == 1
    previous = ctx.converted[-1][0] if ctx.converted else None
    ctx.expect(node, "pattern", per_channel and isinstance(previous, (Conv2D, Dense)),
               "the bias of the Conv, Gemm or MatMul just before it (a constant of one value per channel); "
               "numpycnn has no layer for another Add", f"{b.shape} after {previous!r:.60}")
    layer, own = ctx.converted[-1]
    bias = np.broadcast_to(full.reshape(-1), (channels,)).astype(np.float32)
    if "bias" in own:
        bias = (own["bias"] + bias).astype(np.float32)
    else:
        rebuilt = type(layer)(**{**layer.get_config(), "bias": True})
        ctx.converted[-1] = (rebuilt, own)
    ctx.converted[-1][1]["bias"] = np.ascontiguousarray(bias)
    return []


def _matmul(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    """``y = x B`` with ``x`` (N, K) and a constant ``B`` (K, M): Dense(K, M) without bias, weight ``B^T``."""
    _inputs(ctx, node, 2, 2)
    ctx.attrs(node, {})
    ctx.expect(node, "inputs", node.input[1] in ctx.constants and len(shape) == 1,
               "(N, K) data times a constant (K, M) matrix", list(node.input))
    w = ctx.array(node, 1, ndim=2)
    ctx.expect(node, "matrix shape", w.shape[0] == shape[0], f"({shape[0]}, M)", w.shape)
    layer = ctx.build(node, lambda: Dense(w.shape[0], w.shape[1], bias=False))
    return [(layer, {"weight": np.ascontiguousarray(w.T)})]  # (out, in)


def _reshape(node: Any, ctx: Context, shape: tuple[int, ...], pending: Any) -> Converted:
    """A flatten ``(N, ...) -> (N, -1)``, or a reshape to the same shape (nothing to do)."""
    _inputs(ctx, node, 2, 2)
    a = ctx.attrs(node, {"allowzero": 0} if ctx.opset >= 14 else {})
    target = ctx.array(node, 1)
    ctx.expect(node, "shape", target.dtype.kind in "iu" and target.ndim == 1, "a 1-D int64 constant",
               target.shape)
    dims = [int(d) for d in target]
    rank, count = len(shape) + 1, math.prod(shape)
    first, allowzero = (dims or [None])[0], a.get("allowzero", 0)
    batch = first == BATCH or (first == 0 and not allowzero) or (ctx.batch is not None and first == ctx.batch) or (
        first == -1 and min(dims[1:], default=0) > 0 and math.prod(dims[1:]) == count)
    rest = [shape[i - 1] if d == 0 and not allowzero and i < rank else d
            for i, d in enumerate(dims[1:], start=1)]
    if rest.count(-1) == 1 and count % max(1, -math.prod(rest)) == 0:
        rest[rest.index(-1)] = count // -math.prod(rest)
    wanted = "(N, -1): a flatten, the batch size kept (numpycnn has no other reshape)"
    ctx.expect(node, "shape", batch and tuple(rest) in (tuple(shape), (count,)), wanted, dims)
    if pending is not None:
        ctx.expect(node, "shape", tuple(rest) == (count,), wanted, dims)
        return [(GlobalAvgPool2D(), {})]
    return [] if tuple(rest) == tuple(shape) else [(Flatten(), {})]


def _pad(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    """Zero padding of the spatial axes, kept for the Conv that must follow. Pads, mode and value are
    attributes before opset 11 and inputs (pads, constant_value, axes from opset 18) from it on."""
    if ctx.opset < 11:
        _inputs(ctx, node, 1, 1)
        a = ctx.attrs(node, {"mode": "constant", "pads": None, "value": 0.0})
        pads, value, axes = a["pads"], a["value"], None
    else:
        _inputs(ctx, node, 2, 4)
        a = ctx.attrs(node, {"mode": "constant"})
        pads = [int(p) for p in ctx.array(node, 1).reshape(-1)]
        constant = ctx.array(node, 2, optional=True)
        value = 0.0 if constant is None or constant.size == 0 else float(constant.reshape(-1)[0])
        axes_value = ctx.array(node, 3, optional=True)
        axes = None if axes_value is None else [int(x) % (len(shape) + 1) for x in axes_value.reshape(-1)]
    rank = len(shape) + 1
    ctx.expect(node, "mode", a["mode"] == "constant", "constant (zeros)", a["mode"])
    ctx.expect(node, "value", value == 0.0, "0 (zero padding)", value)
    if axes is not None:  # pads for the listed axes only
        ctx.expect(node, "pads", pads is not None and len(pads) == 2 * len(axes), f"2 per axis of {axes}", pads)
        full = [0] * (2 * rank)
        for i, axis in enumerate(axes):
            full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
        pads = full
    ctx.expect(node, "pads", pads is not None and len(pads) == 2 * rank == 8 and min(pads) >= 0
               and pads[0] == pads[1] == pads[4] == pads[5] == 0,
               "non-negative zeros on the two spatial axes of an (N, C, H, W) input", pads)
    ctx.pending_pad = (node, [pads[2], pads[3], pads[6], pads[7]])
    return []


def _clip(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    """``min(max(x, lo), hi)``: a ReLU where ``lo = 0`` and ``hi`` is absent (or float32's largest value).
    ``min``/``max`` are attributes before opset 11 and optional inputs from it on."""
    if ctx.opset < 11:
        _inputs(ctx, node, 1, 1)
        a = ctx.attrs(node, {"min": -_FLOAT32_MAX, "max": _FLOAT32_MAX})
        low, high = a["min"], a["max"]
    else:
        _inputs(ctx, node, 1, 3)
        ctx.attrs(node, {})
        values = [ctx.array(node, i, optional=True) for i in (1, 2)]
        for value in values:
            ctx.expect(node, "min/max", value is None or value.size == 1, "a scalar", getattr(value, "shape", None))
        low, high = (None if v is None else float(v.reshape(-1)[0]) for v in values)
    ctx.expect(node, "min, max", low == 0.0 and (high is None or high >= _FLOAT32_MAX),
               "0 and none (a ReLU; numpycnn has no other clipping layer)", (low, high))
    return [(ReLU(), {})]


#: Every operator read, and its converter (see :mod:`numpycnn.interchange._onnx_ops`).
CONVERTERS = {**_LAYER_CONVERTERS, "Add": _add, "MatMul": _matmul, "Reshape": _reshape, "Pad": _pad,
              "Clip": _clip}
