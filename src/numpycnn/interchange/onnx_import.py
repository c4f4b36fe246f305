"""An ONNX graph that is a chain of supported operators, read back into a :class:`~numpycnn.model.Sequential`.

The file is parsed with the ``onnx`` package (protobuf) and never executed. Everything is checked before it is
trusted, and any problem raises :class:`numpycnn.ModelFileError` naming the file and the node:

- the file's size (at most ``MAX_FILE_BYTES``, 1 GiB), the opset (6 to 25, default domain
  only), every tensor's rank, type and byte count against its declared shape (a tensor whose data is missing,
  short or stored outside the file is refused before anything is allocated);
- constants: ``Constant`` nodes, and the few shape operators of ``numpycnn.interchange._onnx_fold``
  (``ConstantOfShape``, ``Shape -> Gather -> Unsqueeze -> Concat``, ``Transpose``, ...) applied to constants,
  folded with a bound on every folded tensor and on all of them together; nothing else is evaluated;
- the graph: one input, one output, each node fed by the previous node's output plus constants (``Shape`` may
  read any tensor on the way), each output used once (no branch, no unused node);
- each node: its operator (``numpycnn.interchange._onnx_ops`` for the operators that are one layer,
  ``numpycnn.interchange._onnx_patterns`` for ``Add``, ``MatMul``, ``Reshape``, ``Pad`` and ``Clip``, which
  complete or stand for a layer) and every attribute as its opset defines it, which must be one the layer can
  hold (a Conv's dilations and group are Conv2D's ``dilation`` and ``groups``; no asymmetric padding, pooling
  padding, training mode, ...);
- shapes: the input's sizes after the batch size must be fixed (the batch size may be symbolic), every layer
  must accept the shape before it, as must the declared output shape, and no layer's per-sample output (nor a
  convolution's padded input or im2col matrix) may exceed ``MAX_ACTIVATION`` elements.

Tensors are named by the layers' positions, as ``model.state_dict()`` names them. A file written by
:func:`~numpycnn.interchange.to_onnx` also restores what the graph does not show, where its metadata agrees
with the graph: dropout layers, batch norm momentum, class names and normalisation. docs/onnx.md lists what
imports, by operator and opset.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numpycnn.errors import ModelFileError
from numpycnn.interchange import _onnx as C
from numpycnn.interchange._onnx_context import Context
from numpycnn.interchange._onnx_fold import FOLDABLE, fold, shape_of
from numpycnn.interchange._onnx_patterns import CONVERTERS
from numpycnn.layers import Dropout, Layer
from numpycnn.model.io import _extras, _strict_json
from numpycnn.model.sequential import Sequential


@dataclass
class _Chain:
    """The graph's input and declared output, and the layers its nodes became, in order."""

    input_name: str
    input_shape: tuple[int, ...]
    output_dims: list[int | None]
    layers: list[Layer] = field(default_factory=list)
    tensors: list[dict[str, np.ndarray]] = field(default_factory=list)


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
    layers, tensors = chain.layers, chain.tensors
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
    if not 2 <= len(dims) <= 6:
        raise fail(f"graph input {name!r} has rank {len(dims)}; numpycnn models take (N, C, H, W), "
                   "(N, features) or another (N, ...) of 2 to 6 axes.")
    sample = dims[1:]
    if not all(d is not None and 1 <= d <= C.MAX_INPUT_DIM for d in sample):
        shown = [d if d is not None else dim.dim_param or "?" for d, dim in zip(dims, tensor_type.shape.dim,
                                                                                 strict=True)]
        raise fail(f"graph input {name!r} has shape {shown}: every size after the batch size must be fixed "
                   f"and between 1 and {C.MAX_INPUT_DIM} (a dynamic shape a numpycnn model cannot hold).")
    return tuple(sample), dims


def _walk(graph: Any, ctx: Context) -> _Chain:
    """Go through the nodes in their (topological) order: fold constants, and turn each node on the data path
    into layers, following the per-sample shape so each node is checked against its input. The data path must
    be a chain from the one input to the one output (``Shape`` may read any tensor on it)."""
    fail = ctx.fail
    ctx.read_initializers(graph)
    inputs = [v for v in graph.input if v.name not in ctx.constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise fail(f"the graph must have one input and one output (a chain of layers). Got inputs "
                   f"{[v.name for v in inputs]!r:.200} and outputs {[v.name for v in graph.output]!r:.200}.")
    sample, dims = _input_shape(inputs[0], fail)
    ctx.batch = dims[0]
    output = graph.output[0]
    out_dims = [d.dim_value if d.HasField("dim_value") else None
                for d in output.type.tensor_type.shape.dim] if output.type.tensor_type.HasField("shape") else []
    consumers: dict[str, list[Any]] = {}
    for index, node in enumerate(graph.node):
        ctx.name_node(node, index)
        for name in node.input:
            if node.op_type != "Shape":
                consumers.setdefault(name, []).append(node)
    chain = _Chain(inputs[0].name, sample, out_dims)
    shapes = {inputs[0].name: sample}  # the data tensors so far, by name
    current, shape, pending = inputs[0].name, sample, None
    for node in graph.node:
        if node.op_type == "Constant":
            ctx.constant_node(node)
        elif node.op_type == "Shape" and len(node.input) == 1 and node.input[0] in shapes:
            ctx.add_folded(node, shape_of(shapes[node.input[0]], ctx.fold_attrs(node), _in(ctx, node)))
        elif node.op_type in FOLDABLE and all(not n or n in ctx.constants for n in node.input) and node.input:
            values = [ctx.value(n) for n in node.input if n]
            ctx.add_folded(node, fold(node.op_type, values, ctx.fold_attrs(node), _in(ctx, node)))
        else:
            _check_on_path(node, ctx, current, shapes, consumers, output.name)
            shape, pending = _convert(node, ctx, shape, pending, chain)
            current = node.output[0]
            shapes[current] = shape
    if pending is not None or ctx.pending_pad is not None:
        waiting = pending if pending is not None else ctx.pending_pad[0]
        raise fail(f"node {ctx.label(waiting)}: {waiting.op_type} must be followed by "
                   f"{'Flatten' if pending is not None else 'a Conv'}; it ends the graph.")
    if current != output.name:
        raise fail(f"tensor {current!r} is used by no node; numpycnn reads chains of layers only.")
    return chain


def _in(ctx: Context, node: Any) -> Callable[[str], ModelFileError]:
    return lambda problem: ctx.fail(f"node {ctx.label(node)}: {problem}")


def _check_on_path(node: Any, ctx: Context, current: str, shapes: dict[str, tuple[int, ...]],
                   consumers: dict[str, list[Any]], output: str) -> None:
    """``node`` must take the latest data tensor ``current``, which no other node (but ``Shape``) may take."""
    fail = ctx.fail
    if not node.output or not node.output[0]:
        raise fail(f"node {ctx.label(node)} has no output; numpycnn reads chains of layers only.")
    if current not in node.input:
        if not any(name in shapes for name in node.input):
            unknown = [n for n in node.input if n and n not in ctx.constants]
            what = (f"operator {node.op_type!r} on constants is not folded (numpycnn folds only "
                    f"{', '.join(sorted(FOLDABLE))} and Shape)") if not unknown else "is not on the path"
            raise fail(f"node {ctx.label(node)} {what}; numpycnn reads chains of layers only.")
        ctx.check_node_inputs(node, current)  # raises: an earlier tensor, a branch
    if current == output:
        raise fail(f"the graph output {current!r} also feeds node {ctx.label(node)}: a branch.")
    users = consumers.get(current, [])
    if len(users) != 1:
        raise fail(f"tensor {current!r} feeds {len(users)} nodes ({', '.join(ctx.label(n) for n in users)}): "
                   "a branch; numpycnn reads chains of layers only.")
    ctx.check_node_inputs(node, current, anywhere=node.op_type == "Add")
    for extra in node.output[1:]:
        if extra and (extra in consumers or extra == output):
            raise fail(f"node {ctx.label(node)}: its output {extra!r} is used; only the first output of a "
                       "node may be (a branch).")


def _convert(node: Any, ctx: Context, shape: tuple[int, ...], pending: Any,
             chain: _Chain) -> tuple[tuple[int, ...], Any]:
    """Turn one node into layers; the shape after it, and a GlobalAveragePool waiting for its Flatten."""
    if node.op_type not in CONVERTERS:
        raise ctx.fail(f"node {ctx.label(node)}: operator {node.op_type!r} is not supported at opset {ctx.opset}; "
                       f"numpycnn reads {', '.join(sorted(CONVERTERS))} (see docs/onnx.md).")
    if pending is not None and node.op_type not in ("Flatten", "Reshape"):
        raise ctx.fail(f"node {ctx.label(pending)}: GlobalAveragePool must be followed by Flatten (numpycnn's "
                       f"GlobalAvgPool2D returns (N, C)); it is followed by {ctx.label(node)}.")
    if ctx.pending_pad is not None and node.op_type != "Conv":
        raise ctx.fail(f"node {ctx.label(ctx.pending_pad[0])}: Pad is read only as the zero padding of the Conv "
                       f"right after it; it is followed by {ctx.label(node)}.")
    ctx.converted = list(zip(chain.layers, chain.tensors, strict=True))
    converted = CONVERTERS[node.op_type](node, ctx, shape, pending)
    chain.layers[:] = [layer for layer, _ in ctx.converted]  # an Add may have completed the last layer
    chain.tensors[:] = [own for _, own in ctx.converted]
    for layer, own in converted:
        try:
            shape = tuple(layer.output_shape(shape))
        except ValueError as err:
            raise ctx.fail(f"node {ctx.label(node)} cannot take input of shape {shape}: {err}") from None
        ctx.check_activation(node, "output", math.prod(shape))
        chain.layers.append(layer)
        chain.tensors.append(own)
    if node.op_type == "GlobalAveragePool":
        return (shape[0], 1, 1), node
    return shape, None


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
    try:
        model.load_state_dict(state)
    except (TypeError, ValueError) as err:
        raise fail(f"the tensors do not fit the layers: {err}") from None
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
