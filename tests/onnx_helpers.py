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
