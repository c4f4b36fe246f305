"""An ONNX graph that is a chain of supported operators, read back into a :class:`~numpycnn.model.Sequential`.

The file is parsed with the ``onnx`` package (protobuf) and never executed. Everything is checked before it is
trusted, and any problem raises :class:`numpycnn.ModelFileError` naming the file and the node:

- the file's size (at most ``MAX_FILE_BYTES``, 1 GiB), the opset (9 to 25, default domain
  only), every tensor's rank, type and byte count against its declared shape (a tensor whose data is missing,
  short or stored outside the file is refused before anything is allocated);
- the graph: one input, one output, each node fed by the previous node's output plus constants, each output
  used once (no branch, no unused node);
- each node: its operator (see the table in :mod:`numpycnn.interchange.onnx_export`, plus ``Dropout`` and
  ``Identity``) and every attribute, which must be one the layer can hold (a Conv's dilations and group
  are Conv2D's ``dilation`` and ``groups``; no asymmetric padding, ceil mode, training mode, ...);
- shapes: the input's channel and spatial sizes must be fixed (the batch size may be symbolic), and every
  layer must accept the shape before it, as must the declared output shape.

Tensors are named by the layers' positions, as ``model.state_dict()`` names them. A file written by
:func:`~numpycnn.interchange.to_onnx` also restores what the graph does not show, where its metadata agrees
with the graph: dropout layers, batch norm momentum, class names and normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numpycnn.errors import ModelFileError
from numpycnn.interchange import _onnx as C
from numpycnn.interchange._onnx_ops import CONVERTERS, Context
from numpycnn.layers import Dropout, Layer
from numpycnn.model.io import _extras, _strict_json
from numpycnn.model.sequential import Sequential


@dataclass
class _Chain:
    """The graph's nodes in order from input to output, with the constants they use."""

    input_name: str
    input_shape: tuple[int, ...]
    output_dims: list[int | None]
    nodes: list[Any] = field(default_factory=list)


def load_onnx(path: str | os.PathLike[str]) -> Sequential:
    """Read an ONNX file into a model; see the module notes for what is checked.

    Raises
    ------
    ModelFileError
        For a file that is not a readable ONNX model of a chain of supported operators.
    ModuleNotFoundError
        Without the ``onnx`` package (``pip install "numpycnn[onnx]"``).
    OSError
        If the file cannot be opened.
    """
    onnx = C.require("onnx")
    from google.protobuf.message import DecodeError

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > C.MAX_FILE_BYTES:
            raise ModelFileError(f"{os.fspath(path)}: file of {size} bytes is larger than the {C.MAX_FILE_BYTES} "
                                 "bytes an ONNX model may have here.")
        data = f.read(C.MAX_FILE_BYTES + 1)
    try:
        proto = onnx.ModelProto.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise ModelFileError(f"{os.fspath(path)}: not a readable ONNX model ({err}); the file is damaged, "
                             "truncated or of another format.") from None
    return from_onnx(proto, source=os.fspath(path))


def from_onnx(proto: Any, source: str = "ONNX model") -> Sequential:
    """Build a model from an ``onnx.ModelProto`` (or its serialised bytes); ``source`` names it in errors."""
    onnx = C.require("onnx")
    if isinstance(proto, (bytes, bytearray)):
        from google.protobuf.message import DecodeError

        try:
            proto = onnx.ModelProto.FromString(bytes(proto))
        except (DecodeError, RuntimeError, ValueError) as err:
            raise ModelFileError(f"{source}: not a readable ONNX model ({err}).") from None
    if not isinstance(proto, onnx.ModelProto):
        raise TypeError(f"from_onnx: `proto` must be an onnx.ModelProto or bytes. Got {type(proto).__name__}.")

    def fail(problem: str) -> ModelFileError:
        return ModelFileError(f"{source}: {problem}")

    opset = _opset(proto, fail)
    ctx = Context(opset, fail)
    chain = _walk(proto.graph, ctx)
    layers, tensors = _convert(chain, ctx)
    props = {p.key: p.value for p in proto.metadata_props}
    layers, tensors = _restore_architecture(layers, tensors, props.get(C.META_ARCHITECTURE))
    model = _assemble(layers, tensors, chain, props, fail)
    model.class_names, model.normalization = _extras(source, {
        key: props.get(key, "null") for key in (C.META_CLASS_NAMES, C.META_NORMALIZATION)})
    return model


def _opset(proto: Any, fail: Callable[[str], ModelFileError]) -> int:
    versions = {entry.domain or "ai.onnx": entry.version for entry in proto.opset_import}
    if "ai.onnx" not in versions:
        raise fail(f"the model imports no version of the standard operator set (opset_import is "
                   f"{sorted(versions)!r:.200}); not an ONNX model numpycnn can read.")
    opset = versions["ai.onnx"]
    if not C.MIN_IMPORT_OPSET <= opset <= C.MAX_IMPORT_OPSET:
        raise fail(f"opset {opset} is not supported; numpycnn reads opsets {C.MIN_IMPORT_OPSET} to "
                   f"{C.MAX_IMPORT_OPSET}. Export with opset_version={C.OPSET}.")
    return opset


def _input_shape(value_info: Any, fail: Callable[[str], ModelFileError]) -> tuple[tuple[int, ...], list]:
    """Per-sample input shape (fixed sizes only) of the graph input, checked for type and rank."""
    from onnx import TensorProto

    name = value_info.name
    kind = value_info.type.WhichOneof("value")
    tensor_type = value_info.type.tensor_type
    if kind != "tensor_type" or tensor_type.elem_type != TensorProto.FLOAT:
        got = kind if kind != "tensor_type" else TensorProto.DataType.Name(tensor_type.elem_type) \
            if tensor_type.elem_type in TensorProto.DataType.values() else tensor_type.elem_type
        raise fail(f"graph input {name!r} must be a float32 tensor. Got {got}. (Graphs with baked-in "
                   "preprocessing or other input types are not read back.)")
    if not tensor_type.HasField("shape"):
        raise fail(f"graph input {name!r} has no shape; numpycnn needs (N, C, H, W) or (N, features) with "
                   "fixed sizes after N.")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    if len(dims) not in (2, 4):
        raise fail(f"graph input {name!r} has rank {len(dims)}; numpycnn models take (N, C, H, W) or "
                   "(N, features).")
    sample = dims[1:]
    if not all(d is not None and 1 <= d <= C.MAX_INPUT_DIM for d in sample):
        shown = [d if d is not None else dim.dim_param or "?" for d, dim in zip(dims, tensor_type.shape.dim,
                                                                                 strict=True)]
        raise fail(f"graph input {name!r} has shape {shown}: every size after the batch size must be fixed "
                   f"and between 1 and {C.MAX_INPUT_DIM} (a dynamic shape a numpycnn model cannot hold).")
    return tuple(sample), dims


def _walk(graph: Any, ctx: Context) -> _Chain:
    """Follow the graph from its one input to its one output; refuse branches and stray nodes."""
    fail = ctx.fail
    ctx.read_constants(graph)
    inputs = [v for v in graph.input if v.name not in ctx.constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise fail(f"the graph must have one input and one output (a chain of layers). Got inputs "
                   f"{[v.name for v in inputs]!r:.200} and outputs {[v.name for v in graph.output]!r:.200}.")
    sample, _ = _input_shape(inputs[0], fail)
    output = graph.output[0]
    out_dims = [d.dim_value if d.HasField("dim_value") else None
                for d in output.type.tensor_type.shape.dim] if output.type.tensor_type.HasField("shape") else []
    consumers: dict[str, list[Any]] = {}
    for node in ctx.data_nodes:
        for name in node.input:
            if name and name not in ctx.constants:
                consumers.setdefault(name, []).append(node)
    chain = _Chain(inputs[0].name, sample, out_dims)
    current, seen = inputs[0].name, set()
    while current != output.name:
        users = consumers.get(current, [])
        if len(users) != 1:
            where = "is used by no node" if not users else \
                f"feeds {len(users)} nodes ({', '.join(ctx.label(n) for n in users)}): a branch"
            raise fail(f"tensor {current!r} {where}; numpycnn reads chains of layers only.")
        node = users[0]
        if id(node) in seen:
            raise fail(f"node {ctx.label(node)} is reached twice: the graph has a cycle.")
        seen.add(id(node))
        ctx.check_node_inputs(node, current)
        for extra in node.output[1:]:
            if extra and (extra in consumers or extra == output.name):
                raise fail(f"node {ctx.label(node)}: its output {extra!r} is used; only the first output of a "
                           "node may be (a branch).")
        chain.nodes.append(node)
        current = node.output[0] if node.output else ""
    if current in consumers:
        raise fail(f"the graph output {current!r} also feeds node {ctx.label(consumers[current][0])}: a branch.")
    stray = [n for n in ctx.data_nodes if id(n) not in seen]
    if stray:
        raise fail(f"node {ctx.label(stray[0])} is not on the path from input to output; numpycnn reads chains "
                   "of layers only.")
    return chain


def _convert(chain: _Chain, ctx: Context) -> tuple[list[Layer], list[dict[str, np.ndarray]]]:
    """Turn each node into layers, following the per-sample shape so each node is checked against its input."""
    layers: list[Layer] = []
    tensors: list[dict[str, np.ndarray]] = []
    shape = chain.input_shape
    pending = None  # a GlobalAveragePool waiting for its Flatten
    for node in chain.nodes:
        if node.op_type not in CONVERTERS:
            raise ctx.fail(f"node {ctx.label(node)}: operator {node.op_type!r} is not supported; numpycnn reads "
                           f"{', '.join(sorted(CONVERTERS))}.")
        if pending is not None and node.op_type != "Flatten":
            raise ctx.fail(f"node {ctx.label(pending)}: GlobalAveragePool must be followed by Flatten (numpycnn's "
                           f"GlobalAvgPool2D returns (N, C)); it is followed by {ctx.label(node)}.")
        converted = CONVERTERS[node.op_type](node, ctx, shape, pending)
        pending = node if node.op_type == "GlobalAveragePool" else None
        for layer, own in converted:
            try:
                shape = tuple(layer.output_shape(shape))
            except ValueError as err:
                raise ctx.fail(f"node {ctx.label(node)} cannot take input of shape {shape}: {err}") from None
            layers.append(layer)
            tensors.append(own)
        if node.op_type == "GlobalAveragePool":
            shape = (shape[0], 1, 1)
    if pending is not None:
        raise ctx.fail(f"node {ctx.label(pending)}: GlobalAveragePool must be followed by Flatten (numpycnn's "
                       "GlobalAvgPool2D returns (N, C)).")
    return layers, tensors


def _same_float32(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return bool(np.float32(a) == np.float32(b))
    return a == b


def _restore_architecture(layers: list[Layer], tensors: list[dict[str, np.ndarray]],
                          text: str | None) -> tuple[list[Layer], list[dict[str, np.ndarray]]]:
    """Put back the layers the graph leaves out (dropout) and the exact arguments (batch norm momentum, float64
    values) from numpycnn's own metadata, but only where it agrees with the graph layer for layer."""
    try:
        specs = _strict_json(text)["layers"] if text else None
    except (ValueError, TypeError, KeyError, RecursionError):
        return layers, tensors
    if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("config"), dict)
                                              for s in specs):
        return layers, tensors
    kept = [s for s in specs if s.get("type") != "Dropout"]
    if len(kept) != len(layers):
        return layers, tensors
    for spec, layer in zip(kept, layers, strict=True):
        config = layer.get_config()
        if spec["type"] != layer.name or set(spec["config"]) != set(config) or not all(
                key == "momentum" or _same_float32(value, spec["config"][key]) for key, value in config.items()):
            return layers, tensors
    try:
        rebuilt = [type(layer)(**spec["config"]) for spec, layer in zip(kept, layers, strict=True)]
        drops = {i: Dropout(s["config"].get("p", 0.5)) for i, s in enumerate(specs) if s.get("type") == "Dropout"}
    except (TypeError, ValueError):
        return layers, tensors
    out_layers, out_tensors, it = [], [], iter(zip(rebuilt, tensors, strict=True))
    for i in range(len(specs)):
        layer, own = (drops[i], {}) if i in drops else next(it)
        out_layers.append(layer)
        out_tensors.append(own)
    return out_layers, out_tensors


def _assemble(layers: list[Layer], tensors: list[dict[str, np.ndarray]], chain: _Chain, props: dict[str, str],
              fail: Callable[[str], ModelFileError]) -> Sequential:
    try:
        model = Sequential(layers, input_shape=chain.input_shape)
    except (TypeError, ValueError) as err:
        raise fail(f"the layers are inconsistent: {err}") from None
    out_shape = model.output_shapes(chain.input_shape)[-1] if layers else chain.input_shape
    declared = chain.output_dims[1:]
    if chain.output_dims and (len(declared) != len(out_shape) or any(
            d is not None and d != s for d, s in zip(declared, out_shape, strict=False))):
        raise fail(f"the graph declares output shape {chain.output_dims} but its layers compute "
                   f"(N, {', '.join(map(str, out_shape))}).")
    state = dict(model.state_dict())
    tracked = _batches_tracked(props.get(C.META_BATCHES_TRACKED))
    for i, own in enumerate(tensors):
        for key, value in own.items():
            state[f"{i}.{key}"] = value
        if f"{i}.num_batches_tracked" in state and f"{i}.num_batches_tracked" in tracked:
            state[f"{i}.num_batches_tracked"] = np.asarray(tracked[f"{i}.num_batches_tracked"], np.int64)
    model.load_state_dict(state)
    return model


def _batches_tracked(text: str | None) -> dict[str, int]:
    try:
        value = _strict_json(text) if text else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if type(v) is int and 0 <= v < 1 << 62}


__all__ = ["from_onnx", "load_onnx"]
