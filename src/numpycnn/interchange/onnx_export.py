"""A :class:`~numpycnn.model.sequential.Sequential` as an ONNX graph that computes ``model.forward(x, training=False)``.

Each layer becomes the ONNX operator of the same equation, its weights initializers named after the model's
own tensors (``"0.weight"``, ``"1.running_mean"``):

=================  ===================================================================================
layer              ONNX nodes (opset 17)
=================  ===================================================================================
Conv2D             ``Conv`` (``pads`` :math:`[p_h, p_w, p_h, p_w]`, ``strides``, ``dilations``, ``group``)
MaxPool2D          ``MaxPool`` (its padding as ``pads``, floor mode)
AvgPool2D          ``AveragePool`` (``pads`` and ``count_include_pad``, floor mode)
GlobalAvgPool2D    ``GlobalAveragePool`` then ``Flatten`` (ONNX keeps the 1x1 spatial axes)
Flatten            ``Flatten`` (``axis=1``)
Dense              ``Gemm`` (``transB=1``: :math:`y = x W^T + b` with ``W`` of shape (out, in))
BatchNorm1D/2D     ``BatchNormalization`` in inference form (running statistics); ONNX's ``momentum``
                   weighs the *old* statistics, so it is written as :math:`1 - \\alpha`
ReLU, LeakyReLU    ``Relu``, ``LeakyRelu`` (``alpha`` = negative slope)
Sigmoid, Tanh      ``Sigmoid``, ``Tanh``
Softmax            ``Softmax`` (``axis=1``; from opset 13 on it normalises that one axis, as the layer does)
Dropout            nothing: it is the identity at inference
=================  ===================================================================================

The input is ``input``, float32 ``(N, C, H, W)`` (or ``(N, features)``) with a symbolic batch size ``N``,
scaled and normalised as in training. With ``bake_preprocessing=True`` the input is ``pixels``, raw uint8
``(N, C, H, W)``, and the graph first computes :math:`(x / 255 - \\mu_c) / \\sigma_c` exactly as
:mod:`numpycnn.training.loop` does (``Cast``, ``Mul``, ``Sub``, ``Div``). The output is ``output``. The metadata
properties hold the class names, the normalisation, a sentence on the preprocessing and the numpycnn
architecture (so that an import restores the dropout layers).

Examples
--------
>>> from numpycnn import models                                           # doctest: +SKIP
>>> export_onnx(models.lenet5(seed=0), "lenet5.onnx")                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.files import atomic_write
from numpycnn.files.model_file import host_state_dict
from numpycnn.interchange import _onnx as C
from numpycnn.model.sequential import Sequential

INPUT, PIXELS, OUTPUT = "input", "pixels", "output"


class _Builder:
    """Collects nodes and initializers; every node is named ``"{layer index}.{op}"``."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def node(self, op: str, inputs: Sequence[str], name: str, **attributes: Any) -> str:
        from onnx import helper

        output = f"{name}.out"
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=name, **attributes))
        return output

    def tensor(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        host = backend.to_host(value)  # a host copy of a model on a device
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(host, np.float32), name))
        return name


def _pads(padding: tuple[int, int]) -> list[int]:
    return [padding[0], padding[1], padding[0], padding[1]]  # [h_begin, w_begin, h_end, w_end]


def _conv(b: _Builder, i: int, layer: Any, x: str) -> str:
    inputs = [x, b.tensor(f"{i}.weight", layer.params["weight"])]
    if "bias" in layer.params:
        inputs.append(b.tensor(f"{i}.bias", layer.params["bias"]))
    return b.node("Conv", inputs, f"{i}.Conv", kernel_shape=list(layer.params["weight"].shape[2:]),
                  strides=list(layer.stride), pads=_pads(layer.padding), dilations=list(layer.dilation),
                  group=layer.groups)  # weight (F, C / group, kh, kw) in both


def _pool(op: str) -> Callable[[_Builder, int, Any, str], str]:
    def emit(b: _Builder, i: int, layer: Any, x: str) -> str:
        ph, pw = layer.padding
        extra = {"count_include_pad": int(layer.count_include_pad)} if op == "AveragePool" and (ph or pw) else {}
        return b.node(op, [x], f"{i}.{op}", kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                      pads=[ph, pw, ph, pw], ceil_mode=0, **extra)
    return emit


def _global_avg_pool(b: _Builder, i: int, layer: Any, x: str) -> str:
    pooled = b.node("GlobalAveragePool", [x], f"{i}.GlobalAveragePool")  # (N, C, 1, 1)
    return b.node("Flatten", [pooled], f"{i}.Flatten", axis=1)  # (N, C)


def _dense(b: _Builder, i: int, layer: Any, x: str) -> str:
    inputs = [x, b.tensor(f"{i}.weight", layer.params["weight"])]  # (out, in): transB=1
    if "bias" in layer.params:
        inputs.append(b.tensor(f"{i}.bias", layer.params["bias"]))
    return b.node("Gemm", inputs, f"{i}.Gemm", alpha=1.0, beta=1.0, transA=0, transB=1)


def _batch_norm(b: _Builder, i: int, layer: Any, x: str) -> str:
    inputs = [x] + [b.tensor(f"{i}.{key}", source[key]) for key, source in
                    (("weight", layer.params), ("bias", layer.params), ("running_mean", layer.buffers),
                     ("running_var", layer.buffers))]
    momentum = {} if layer.momentum is None else {"momentum": 1.0 - layer.momentum}  # ONNX weighs the old value
    return b.node("BatchNormalization", inputs, f"{i}.BatchNormalization", epsilon=layer.eps, **momentum)


def _simple(op: str, **attributes: Any) -> Callable[[_Builder, int, Any, str], str]:
    def emit(b: _Builder, i: int, layer: Any, x: str) -> str:
        return b.node(op, [x], f"{i}.{op}", **attributes)
    return emit


_EMITTERS: dict[str, Callable[[_Builder, int, Any, str], str]] = {
    "Conv2D": _conv, "MaxPool2D": _pool("MaxPool"), "AvgPool2D": _pool("AveragePool"),
    "GlobalAvgPool2D": _global_avg_pool, "Flatten": _simple("Flatten", axis=1), "Dense": _dense,
    "BatchNorm1D": _batch_norm, "BatchNorm2D": _batch_norm, "ReLU": _simple("Relu"),
    "LeakyReLU": lambda b, i, layer, x: b.node("LeakyRelu", [x], f"{i}.LeakyRelu", alpha=layer.negative_slope),
    "Sigmoid": _simple("Sigmoid"), "Tanh": _simple("Tanh"), "Softmax": _simple("Softmax", axis=1),
    "Dropout": lambda b, i, layer, x: x,  # the identity at inference
}


def _preprocessing(b: _Builder, model: Sequential, rank: int) -> str:
    """uint8 pixels -> ``(x * (1/255) - mean) / std`` in float32, the operations of ``training.Batches``."""
    from onnx import TensorProto

    x = b.node("Cast", [PIXELS], "preprocess.Cast", to=TensorProto.FLOAT)
    x = b.node("Mul", [x, b.tensor("preprocess.scale", np.float32(1 / 255))], "preprocess.Mul")
    if model.normalization:
        stat_shape = (1, -1) + (1,) * (rank - 2)  # (1, C, 1, 1) for images
        mean = np.asarray(model.normalization["mean"], np.float32).reshape(stat_shape)
        std = np.asarray(model.normalization["std"], np.float32).reshape(stat_shape)
        x = b.node("Sub", [x, b.tensor("preprocess.mean", mean)], "preprocess.Sub")
        x = b.node("Div", [x, b.tensor("preprocess.std", std)], "preprocess.Div")
    return x


def _metadata(model: Sequential, baked: bool) -> dict[str, str]:
    norm = model.normalization
    if baked:
        text = "none: the graph takes raw uint8 pixels and scales and normalises them itself"
    elif norm:
        text = "x = (pixels / 255 - mean[c]) / std[c] per channel c, with mean and std from 'normalization'"
    else:
        text = "x = pixels / 255"
    tracked = {f"{i}.num_batches_tracked": int(layer.buffers["num_batches_tracked"])
               for i, layer in enumerate(model.layers) if "num_batches_tracked" in layer.buffers}
    return {C.META_FORMAT_VERSION: C.FORMAT_VERSION,
            C.META_ARCHITECTURE: json.dumps(model.get_config(), allow_nan=False),
            C.META_BATCHES_TRACKED: json.dumps(tracked),
            C.META_CLASS_NAMES: json.dumps(model.class_names),
            C.META_NORMALIZATION: json.dumps(norm, allow_nan=False),
            C.META_PREPROCESSING: text}


def _check_exportable(model: Sequential, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if not isinstance(model, Sequential):
        raise TypeError(f"to_onnx: `model` must be a numpycnn Sequential. Got {type(model).__name__}.")
    shape = input_shape if input_shape is not None else model.input_shape
    if not shape:
        raise ValueError("to_onnx: `input_shape` must be given when the model records none. Got None. "
                         "For MNIST: input_shape=(1, 28, 28).")
    shape = tuple(int(d) for d in shape)
    model.output_shapes(shape)  # raises for a layer that cannot take it
    for i, layer in enumerate(model.layers):
        if layer.name not in _EMITTERS:
            raise ValueError(f"to_onnx: layer {i} ({layer.name}) has no ONNX equivalent here; known layers are "
                             f"{sorted(_EMITTERS)}.")
    for name, value in host_state_dict(model).items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"to_onnx: tensor {name!r} holds NaN or infinite values. Not exporting it.")
    return shape


def to_onnx(model: Sequential, *, bake_preprocessing: bool = False,
            input_shape: Sequence[int] | None = None) -> Any:
    """The ONNX ``ModelProto`` of ``model``'s inference forward pass, checked with ``onnx.checker``.

    Parameters
    ----------
    model : Sequential
        Any model of the built-in layers; float64 models are written in float32.
    bake_preprocessing : bool
        Take raw uint8 pixels (input ``pixels``) and scale and normalise them in the graph.
    input_shape : (C, H, W) or (features,), optional
        The per-sample input shape; defaults to ``model.input_shape``.

    Raises
    ------
    ModuleNotFoundError
        Without the ``onnx`` package (``pip install "numpycnn[onnx]"``).
    ValueError, TypeError
        For a model without an input shape, a layer with no ONNX equivalent, or non-finite weights.
    """
    onnx = C.require("onnx")
    from onnx import TensorProto, helper

    shape = _check_exportable(model, input_shape)
    out_shape = model.output_shapes(shape)[-1] if model.layers else shape
    b = _Builder()
    x = _preprocessing(b, model, len(shape) + 1) if bake_preprocessing else INPUT
    for i, layer in enumerate(model.layers):
        x = _EMITTERS[layer.name](b, i, layer, x)
    if b.nodes and b.nodes[-1].output[0] == x:
        b.nodes[-1].output[0] = OUTPUT
    else:  # no node at all (only dropout): the identity
        b.nodes.append(helper.make_node("Identity", [x], [OUTPUT], name="output.Identity"))
    in_type = TensorProto.UINT8 if bake_preprocessing else TensorProto.FLOAT
    graph = helper.make_graph(
        b.nodes, "numpycnn", [helper.make_tensor_value_info(PIXELS if bake_preprocessing else INPUT, in_type,
                                                            ["N", *shape])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", *out_shape])], b.initializers)
    from numpycnn import __version__

    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", C.OPSET)], ir_version=C.IR_VERSION,
                              producer_name="numpycnn", producer_version=__version__)
    helper.set_model_props(proto, _metadata(model, bake_preprocessing))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: Sequential, path: str | os.PathLike[str], *, bake_preprocessing: bool = False,
                input_shape: Sequence[int] | None = None) -> None:
    """Write :func:`~numpycnn.interchange.onnx_export.to_onnx` of ``model`` to ``path`` atomically (nothing is left
    behind on failure).

    Examples
    --------
    >>> export_onnx(model, "model.onnx")                                  # doctest: +SKIP
    >>> import onnxruntime as ort                                         # doctest: +SKIP
    >>> ort.InferenceSession("model.onnx").run(None, {"input": x})[0]     # doctest: +SKIP
    """
    data = to_onnx(model, bake_preprocessing=bake_preprocessing, input_shape=input_shape).SerializeToString()
    with atomic_write(path) as handle:
        handle.write(data)
