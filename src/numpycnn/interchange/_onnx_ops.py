"""ONNX nodes to layers: the checked constants of a graph, and one converter per supported operator.

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

from numpycnn.errors import ModelFileError
from numpycnn.interchange import _onnx as C
from numpycnn.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from numpycnn.model.io import _MAX_CONFIG_INT

Converted = list[tuple[Layer, dict[str, np.ndarray]]]
# ONNX TensorProto data types read here -> (NumPy dtype, the typed field holding the values without raw_data).
_TYPES = {1: (np.float32, "float_data"), 11: (np.float64, "double_data"), 7: (np.int64, "int64_data"),
          6: (np.int32, "int32_data"), 9: (np.bool_, "int32_data"), 10: (np.float16, "int32_data")}


def _float32_value(value: float) -> float:
    """The shortest decimal that is the same float32 (attributes are float32: 0.2 stays 0.2)."""
    return float(str(np.float32(value)))


class Context:
    """The opset, the error factory and the graph's constants (initializers, ``Constant`` nodes and
    ``Identity`` nodes of constants), checked before any is turned into an array."""

    def __init__(self, opset: int, fail: Callable[[str], ModelFileError]) -> None:
        self.opset, self.fail = opset, fail
        self.constants: dict[str, Any] = {}
        self.data_nodes: list[Any] = []
        self._labels: dict[int, str] = {}

    def label(self, node: Any) -> str:
        return self._labels.get(id(node), f"{node.name!r} ({node.op_type})")

    def read_constants(self, graph: Any) -> None:
        if len(graph.sparse_initializer):
            raise self.fail(f"sparse initializer {graph.sparse_initializer[0].values.name!r:.80} is not supported.")
        for tensor in graph.initializer:
            self._add_constant(tensor.name, tensor, f"initializer {tensor.name!r:.80}")
        for index, node in enumerate(graph.node):
            self._labels[id(node)] = f"{node.name or f'#{index}'!r:.80} ({node.op_type:.40})"
            if node.domain not in ("", "ai.onnx"):
                raise self.fail(f"node {self.label(node)}: operator domain {node.domain!r:.60} is not supported; "
                                "numpycnn reads the standard operators only.")
            if node.op_type == "Constant":
                self._constant_node(node)
            elif node.op_type == "Identity" and len(node.input) == 1 and node.input[0] in self.constants:
                self._add_constant(node.output[0], self.constants[node.input[0]], f"node {self.label(node)}")
            else:
                self.data_nodes.append(node)

    def _constant_node(self, node: Any) -> None:
        if len(node.attribute) != 1 or node.attribute[0].name != "value" or len(node.output) != 1:
            raise self.fail(f"node {self.label(node)}: only Constant nodes with a tensor `value` are supported.")
        self._add_constant(node.output[0], node.attribute[0].t, f"node {self.label(node)}")

    def _add_constant(self, name: str, tensor: Any, where: str) -> None:
        if name in self.constants:
            raise self.fail(f"{where}: the name {name!r:.80} is defined twice.")
        self.constants[name] = _checked_tensor(tensor, where, self.fail)

    def array(self, node: Any, index: int, ndim: int | None = None, optional: bool = False) -> np.ndarray | None:
        """Input ``index`` of ``node`` as an array (float32 for floating point), checked for rank."""
        from onnx import numpy_helper

        name = node.input[index] if index < len(node.input) else ""
        if not name:
            if optional:
                return None
            raise self.fail(f"node {self.label(node)}: input {index} is missing.")
        value = numpy_helper.to_array(self.constants[name])
        if value.dtype.kind == "f":
            value = value.astype(np.float32)
            if not np.isfinite(value).all():
                raise self.fail(f"node {self.label(node)}: tensor {name!r:.80} holds NaN or infinite values.")
        if ndim is not None and value.ndim != ndim:
            raise self.fail(f"node {self.label(node)}: tensor {name!r:.80} must have {ndim} dimensions. "
                            f"Got shape {value.shape}.")
        return np.array(value)

    def check_node_inputs(self, node: Any, current: str) -> None:
        if not node.input or node.input[0] != current:
            raise self.fail(f"node {self.label(node)}: its first input must be the previous node's output "
                            f"{current!r:.80}. Got inputs {list(node.input)!r:.200} (a branch).")
        for name in node.input[1:]:
            if name and name not in self.constants:
                raise self.fail(f"node {self.label(node)}: input {name!r:.80} is neither a weight nor a constant "
                                "(a branch); numpycnn reads chains of layers only.")

    def attrs(self, node: Any, defaults: dict[str, Any]) -> dict[str, Any]:
        """The node's attributes, typed like ``defaults`` (``None``: a list of ints, required elsewhere)."""
        from onnx import helper

        values = dict(defaults)
        for attribute in node.attribute:
            if attribute.name not in defaults:
                raise self.fail(f"node {self.label(node)}: attribute {attribute.name!r:.60} is not supported by "
                                f"numpycnn's {node.op_type} (supported: {sorted(defaults)}).")
            value = helper.get_attribute_value(attribute)
            value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            value = list(value) if isinstance(value, (list, tuple)) else value
            expected = defaults[attribute.name]
            ok = (isinstance(value, list) and all(type(v) is int and abs(v) <= _MAX_CONFIG_INT for v in value)
                  if expected is None or isinstance(expected, list) else
                  isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  if isinstance(expected, float) else
                  type(value) is int and abs(value) <= _MAX_CONFIG_INT if isinstance(expected, int) else
                  isinstance(value, str))
            if not ok:
                raise self.fail(f"node {self.label(node)}: attribute `{attribute.name}` has an invalid value "
                                f"{value!r:.80}.")
            values[attribute.name] = _float32_value(value) if isinstance(expected, float) else value
        return values

    def expect(self, node: Any, name: str, ok: bool, expectation: str, value: Any) -> None:
        """Fail with the house template unless ``ok``."""
        if not ok:
            raise self.fail(f"node {self.label(node)}: `{name}` must be {expectation}. Got {value!r:.80}.")

    def build(self, node: Any, make: Callable[[], Layer]) -> Layer:
        try:
            return make()
        except (TypeError, ValueError) as err:
            raise self.fail(f"node {self.label(node)} cannot be a numpycnn layer: {err}") from None


def _checked_tensor(tensor: Any, where: str, fail: Callable[[str], ModelFileError]) -> Any:
    """``tensor`` if its type, rank and byte count agree with its declared shape, else an error."""
    from onnx import TensorProto

    if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
        place = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        raise fail(f"{where}: tensor data stored outside the file ({place!r:.120}) is not supported; numpycnn "
                   "reads self-contained ONNX files only and never opens a path a model names.")
    if tensor.data_type not in _TYPES:
        raise fail(f"{where}: tensor data type {tensor.data_type} is not supported (float, double, int32, int64, "
                   "bool, float16).")
    dims = list(tensor.dims)
    if len(dims) > C.MAX_RANK or any(d < 0 for d in dims):
        raise fail(f"{where}: tensor shape {dims[:20]} must be at most {C.MAX_RANK} non-negative sizes.")
    dtype, typed_field = _TYPES[tensor.data_type]
    count = math.prod(dims)
    if tensor.HasField("segment"):
        raise fail(f"{where}: segmented tensors are not supported.")
    if tensor.raw_data:
        found, needed = len(tensor.raw_data), count * np.dtype(dtype).itemsize
    else:
        found, needed = len(getattr(tensor, typed_field)), count
    if found != needed:
        unit = "bytes" if tensor.raw_data else "values"
        raise fail(f"{where}: tensor shape {dims} needs {needed} {unit} but the file holds {found}; the file is "
                   "damaged or declares a shape its data does not have.")
    return tensor


def _inputs(ctx: Context, node: Any, low: int, high: int) -> None:
    ctx.expect(node, "number of inputs", low <= len(node.input) <= high, f"{low} to {high}", len(node.input))


def _rank(ctx: Context, node: Any, shape: tuple[int, ...], ranks: tuple[int, ...]) -> None:
    ctx.expect(node, "input rank", len(shape) + 1 in ranks, " or ".join(map(str, ranks)), (None, *shape))


def _window(ctx: Context, node: Any, a: dict[str, Any], kernel: list[int]) -> tuple[tuple[int, int], ...]:
    """Stride and symmetric padding of a Conv or pooling node, refusing what the layers cannot hold."""
    ctx.expect(node, "auto_pad", a["auto_pad"] == "NOTSET", "NOTSET (explicit pads)", a["auto_pad"])
    ctx.expect(node, "kernel_shape", a["kernel_shape"] in (None, kernel) and len(kernel) == 2,
               f"2 sizes matching the weights {kernel}", a["kernel_shape"])
    ctx.expect(node, "strides", len(a["strides"]) == 2 and min(a["strides"]) >= 1, "2 positive sizes",
               a["strides"])
    pads = a["pads"]
    ctx.expect(node, "pads", len(pads) == 4 and pads[:2] == pads[2:] and min(pads) >= 0,
               "[ph, pw, ph, pw] (the same at both ends)", pads)
    return tuple(a["strides"]), tuple(pads[:2])


_WINDOW = {"auto_pad": "NOTSET", "kernel_shape": None, "strides": [1, 1], "pads": [0, 0, 0, 0],
           "dilations": [1, 1]}


def _conv(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    _inputs(ctx, node, 2, 3)
    _rank(ctx, node, shape, (4,))
    a = ctx.attrs(node, {**_WINDOW, "group": 1})
    w, b = ctx.array(node, 1, ndim=4), ctx.array(node, 2, ndim=1, optional=True)
    stride, padding = _window(ctx, node, a, list(w.shape[2:]))
    group, dilation = a["group"], a["dilations"]
    ctx.expect(node, "dilations", len(dilation) == 2 and min(dilation) >= 1, "2 positive sizes", dilation)
    ctx.expect(node, "group", group >= 1 and w.shape[1] * group == shape[0],  # weight (F, C / group, kh, kw)
               f"the input's {shape[0]} channels over the weight's {w.shape[1]} channels per group", group)
    layer = ctx.build(node, lambda: Conv2D(shape[0], w.shape[0], w.shape[2:], stride, padding, b is not None,
                                           dilation, group))  # Conv2D checks that group divides F
    return [(layer, {"weight": w} if b is None else {"weight": w, "bias": b})]


def _pool(kind: type) -> Callable[[Any, Context, tuple[int, ...], Any], Converted]:
    def convert(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
        _inputs(ctx, node, 1, 1)
        _rank(ctx, node, shape, (4,))
        extra = {"storage_order": 0} if kind is MaxPool2D else {"count_include_pad": 0}
        a = ctx.attrs(node, {**_WINDOW, "ceil_mode": 0, **extra})
        ctx.expect(node, "ceil_mode", a["ceil_mode"] == 0, "0 (floor)", a["ceil_mode"])
        ctx.expect(node, "dilations", a["dilations"] == [1, 1], "[1, 1] (numpycnn's pooling has no dilation)",
                   a["dilations"])
        kernel = a["kernel_shape"]
        ctx.expect(node, "kernel_shape", kernel is not None and len(kernel) == 2, "2 sizes", kernel)
        stride, padding = _window(ctx, node, a, kernel)
        ctx.expect(node, "pads", padding == (0, 0), "zeros (numpycnn's pooling has no padding)", a["pads"])
        return [(ctx.build(node, lambda: kind(tuple(kernel), stride)), {})]
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
    _inputs(ctx, node, 2, 3)
    _rank(ctx, node, shape, (2,))
    a = ctx.attrs(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
    for key, wanted in (("alpha", 1.0), ("beta", 1.0), ("transA", 0)):
        ctx.expect(node, key, a[key] == wanted, str(wanted), a[key])
    ctx.expect(node, "transB", a["transB"] in (0, 1), "0 or 1", a["transB"])
    w = ctx.array(node, 1, ndim=2)
    w = w if a["transB"] else np.ascontiguousarray(w.T)  # (out, in)
    b = ctx.array(node, 2, optional=True)
    if b is not None:
        ctx.expect(node, "bias shape", b.shape in ((w.shape[0],), (1, w.shape[0])), f"({w.shape[0]},)", b.shape)
        b = b.reshape(-1)
    layer = ctx.build(node, lambda: Dense(w.shape[1], w.shape[0], bias=b is not None))
    return [(layer, {"weight": w} if b is None else {"weight": w, "bias": b})]


def _batch_norm(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    _inputs(ctx, node, 5, 5)
    _rank(ctx, node, shape, (2, 4))
    a = ctx.attrs(node, {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0, "spatial": 1})
    ctx.expect(node, "training_mode", a["training_mode"] == 0, "0 (inference)", a["training_mode"])
    ctx.expect(node, "spatial", a["spatial"] == 1, "1", a["spatial"])
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
    _inputs(ctx, node, 1, 1)
    rank = len(shape) + 1
    axis = ctx.attrs(node, {"axis": 1 if ctx.opset < 13 else -1})["axis"]
    axis = axis + rank if axis < 0 else axis
    if ctx.opset < 13:  # softmax of the input flattened from `axis` on: axis 1 of (N, K) only
        ctx.expect(node, "axis", axis == 1 and rank == 2, "1 on (N, K) input before opset 13", (axis, rank))
    ctx.expect(node, "axis", axis == 1, "1 (the classes or channels)", axis)
    return [(Softmax(), {})]


def _dropout(node: Any, ctx: Context, shape: tuple[int, ...], _: Any) -> Converted:
    _inputs(ctx, node, 1, 3)
    a = ctx.attrs(node, {"seed": 0} if ctx.opset >= 12 else {"ratio": 0.5, "is_test": 0, "seed": 0})
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
