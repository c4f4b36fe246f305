"""Shared by the ONNX tests: random layer mixes and running a graph in onnxruntime."""

from __future__ import annotations

import numpy as np

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
from numpycnn.model.sequential import Sequential


def activation(rng: np.random.Generator):
    """One of every activation, LeakyReLU with a random slope."""
    choice = rng.integers(5)
    if choice == 1:
        return LeakyReLU(float(np.round(rng.uniform(0.01, 0.5), 3)))
    return (ReLU, None, Sigmoid, Tanh, Softmax)[choice]()


def perturb_batch_norm(layer, rng: np.random.Generator) -> None:
    """Non-default weights and running statistics, so that an exporter that ignores them fails."""
    c = layer.num_features
    layer.params["weight"][...] = rng.uniform(0.5, 2.0, c)
    layer.params["bias"][...] = rng.normal(0, 0.5, c)
    layer.buffers["running_mean"][...] = rng.normal(0, 0.5, c)
    layer.buffers["running_var"][...] = rng.uniform(0.3, 3.0, c)
    layer.buffers["num_batches_tracked"][...] = rng.integers(1, 5000)


def random_mix(seed: int) -> Sequential:
    """A random valid chain: conv blocks of varied kernel, stride and padding with batch norm, pooling and every
    activation, then Flatten or global pooling, a dense head with BatchNorm1D, dropout, softmax or not."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(9, 17)), int(rng.integers(9, 17))
    layers, channels = [], c
    for _ in range(int(rng.integers(1, 3))):
        out = int(rng.integers(2, 6))
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        layers.append(Conv2D(channels, out, k, stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                             padding=(int(rng.integers(0, 3)), int(rng.integers(0, 2))),
                             bias=bool(rng.integers(2))))
        channels = out
        if rng.integers(2):
            layers.append(BatchNorm2D(out, eps=float(rng.choice([1e-5, 1e-3])),
                                      momentum=[0.1, 0.01, None][int(rng.integers(3))]))
        layers.append(activation(rng))
        size = Sequential(layers).output_shapes((c, h, w))[-1]
        if min(size[1:]) >= 4 and rng.integers(2):
            pool = (MaxPool2D, AvgPool2D)[int(rng.integers(2))]
            layers.append(pool(int(rng.integers(2, 4)), stride=int(rng.integers(1, 3))))
    if rng.integers(3) == 0:
        layers.append(GlobalAvgPool2D())
    else:
        layers += [Dropout(0.25)] if rng.integers(2) else []
        layers.append(Flatten())
    flat = Sequential(layers).output_shapes((c, h, w))[-1][0]
    hidden = int(rng.integers(3, 9))
    layers += [Dense(flat, hidden, bias=bool(rng.integers(2))), BatchNorm1D(hidden), activation(rng),
               Dropout(0.5), Dense(hidden, int(rng.integers(2, 6)))]
    if rng.integers(2):
        layers.append(Softmax())
    model = Sequential(layers, input_shape=(c, h, w)).initialize(seed)
    for layer in model.layers:
        if isinstance(layer, (BatchNorm1D, BatchNorm2D)):
            perturb_batch_norm(layer, rng)
    return model


def run_onnx(proto_or_bytes, feed: np.ndarray, input_name: str = "input") -> np.ndarray:
    import onnxruntime as ort

    data = proto_or_bytes if isinstance(proto_or_bytes, bytes) else proto_or_bytes.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: feed})[0]


def graph(nodes, input_shape, output_shape, initializers=(), opset: int = 17, ir_version: int | None = None):
    """A one-input, one-output float32 model of ``nodes`` (input ``x``, output ``y``) at ``opset``."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [value if not isinstance(value, np.ndarray) else numpy_helper.from_array(value, name)
             for name, value in (initializers.items() if isinstance(initializers, dict) else initializers)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape))], inits)
    ir = ir_version or (3 if opset < 8 else 4 if opset < 10 else 8)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def matches_onnxruntime(proto, x: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5):
    """Import ``proto``, run it and onnxruntime on ``x`` and compare; returns the imported model."""
    from numpycnn.interchange import from_onnx

    model = from_onnx(proto)
    np.testing.assert_allclose(model.forward(x, training=False), run_onnx(proto, x, "x"), rtol=rtol, atol=atol)
    return model


def mnist8_graph(seed: int = 0):
    """The graph of the Model Zoo's mnist-8 (CNTK, opset 8): Conv with auto_pad SAME_UPPER and no bias, a separate
    Add of a (C, 1, 1) bias, Relu, MaxPool, the dense weight reshaped by a Reshape of constants, the data
    flattened by a Reshape to the constant [1, 256], MatMul and Add."""
    from onnx import helper

    rng = np.random.default_rng(seed)

    def _w(*shape):
        return rng.normal(0, 0.3, shape).astype(np.float32)

    n = helper.make_node
    nodes = [
        n("Conv", ["x", "Parameter5"], ["c1"], name="Convolution28", kernel_shape=[5, 5], strides=[1, 1],
          auto_pad="SAME_UPPER", group=1, dilations=[1, 1]),
        n("Add", ["c1", "Parameter6"], ["a1"], name="Plus30"), n("Relu", ["a1"], ["r1"], name="ReLU32"),
        n("MaxPool", ["r1"], ["p1"], name="Pooling66", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0],
          auto_pad="NOTSET"),
        n("Conv", ["p1", "Parameter87"], ["c2"], name="Convolution110", kernel_shape=[5, 5], strides=[1, 1],
          auto_pad="SAME_UPPER", group=1, dilations=[1, 1]),
        n("Add", ["c2", "Parameter88"], ["a2"], name="Plus112"), n("Relu", ["a2"], ["r2"], name="ReLU114"),
        n("MaxPool", ["r2"], ["p2"], name="Pooling160", kernel_shape=[3, 3], strides=[3, 3], pads=[0, 0, 0, 0],
          auto_pad="NOTSET"),
        n("Reshape", ["Parameter193", "Parameter193_reshape1_shape"], ["w"], name="Times212_reshape1"),
        n("Reshape", ["p2", "Pooling160_Output_0_reshape0_shape"], ["flat"], name="Times212_reshape0"),
        n("MatMul", ["flat", "w"], ["m"], name="Times212"), n("Add", ["m", "Parameter194"], ["y"], name="Plus214"),
    ]
    inits = {"Parameter5": _w(8, 1, 5, 5), "Parameter6": _w(8, 1, 1), "Parameter87": _w(16, 8, 5, 5),
             "Parameter88": _w(16, 1, 1), "Parameter193": _w(16, 4, 4, 10) * 0.1,
             "Parameter193_reshape1_shape": np.array([256, 10], np.int64),
             "Pooling160_Output_0_reshape0_shape": np.array([1, 256], np.int64), "Parameter194": _w(1, 10)}
    return graph(nodes, [1, 1, 28, 28], [1, 10], inits, opset=8)
