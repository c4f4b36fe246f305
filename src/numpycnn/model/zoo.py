"""Ready-made architectures, each built from the layers alone and initialised from one seed.

==========  ==============================================================  ==========  ==============
name        layers                                                          parameters  MFLOPs / image
==========  ==============================================================  ==========  ==============
``seed``    Conv 1->8 3x3, ReLU, MaxPool 2, Flatten, Dense 1352->10             13,610  0.12
``lenet5``  Conv 6 5x5 pad 2, pool, Conv 16 5x5, pool, Dense 120, 84, 10        61,706  0.83
``deep``    3 conv blocks (32, 32, 64) with batch norm, dropout, Dense 128     431,018  22.9
==========  ==============================================================  ==========  ==============

``deep-plain`` (no batch norm, no dropout) and ``deep-dropout`` (dropout, no batch norm) are the same
network with parts taken away, for the ablation in docs/results.md.

(Figures for 1x28x28 inputs and 10 classes; :func:`forward_flops` computes them, counting a multiply-add as
two floating-point operations.) Every architecture builds for any ``input_shape`` ``(C, H, W)`` and any number of
classes >= 2, sized to fit, or says why it cannot: pictures too small for its convolutions and pooling, or so
large that its first dense layer would exceed :data:`MAX_DENSE_WEIGHTS` (the message suggests an image size).

Examples
--------
>>> model = build_model("lenet5", seed=0)                   # doctest: +SKIP
>>> model.num_parameters()                                  # doctest: +SKIP
61706
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from numpycnn.core.checks import fail, positive_int, real_in_range
from numpycnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU, Tanh
from numpycnn.model.sequential import Sequential

MNIST_SHAPE = (1, 28, 28)
#: Largest dense layer (weights) a built-in architecture builds: beyond it the pictures are too large for the
#: network (slow, and a dense layer that size mostly memorises); the error suggests a smaller ``--image-size``.
MAX_DENSE_WEIGHTS = 4_000_000


def _shape(owner: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        fail(owner, "input_shape", "a per-image shape (C, H, W)", input_shape, hint="For MNIST: (1, 28, 28).")
    return tuple(positive_int(owner, "input_shape", d) for d in input_shape)  # type: ignore[return-value]


def _flat_size(owner: str, layers: list[Layer], input_shape: tuple[int, ...]) -> int:
    """The number of features the convolutional part produces per image."""
    try:
        shape = Sequential(layers).output_shapes(input_shape)[-1]
    except ValueError as err:
        raise ValueError(f"{owner}: `input_shape` {input_shape} is too small: {err} (For your own pictures: "
                         "a larger --image-size.)") from None
    return math.prod(shape)


def _check_dense(owner: str, input_shape: tuple[int, ...], flat: int, width: int) -> None:
    """Refuse a first dense layer of more than :data:`MAX_DENSE_WEIGHTS` weights, saying how large and which
    picture size would fit (the weights grow with the picture's area)."""
    weights = flat * width
    if weights <= MAX_DENSE_WEIGHTS:
        return
    _, h, w = input_shape
    side = max(8, int(min(h, w) * math.sqrt(MAX_DENSE_WEIGHTS / weights)) // 8 * 8)
    raise ValueError(
        f"{owner}: `input_shape` {input_shape} gives a dense layer of {flat:,} x {width:,} = {weights:,} weights "
        f"({4 * weights / 2**20:,.0f} MiB in float32), more than the {MAX_DENSE_WEIGHTS:,} a built-in "
        f"architecture builds: slow to train and prone to memorising. Use smaller pictures, e.g. "
        f"--image-size {side}.")


def _finish(features: list[Layer], head: list[Layer], input_shape: tuple[int, ...], seed: Any) -> Sequential:
    model = Sequential([*features, *head], input_shape=input_shape)
    model.initialize(seed)
    return model


def seed_cnn(seed: Any = 0, input_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = 10) -> Sequential:
    """The original project's network, exactly: Conv2D(1, 8, 3), ReLU, MaxPool2D(2), Flatten, Dense(1352, 10).

    With the defaults it has :math:`8 \\cdot 9 + 8 + 1352 \\cdot 10 + 10 = 13{,}610` parameters
    (28x28 -> conv 26x26x8 -> pool 13x13x8 = 1352 features). Other ``input_shape``/``num_classes`` give the
    same layers sized to fit.
    """
    c, h, w = input_shape = _shape("seed_cnn", input_shape)
    num_classes = positive_int("seed_cnn", "num_classes", num_classes, minimum=2)
    features = [Conv2D(c, 8, 3), ReLU(), MaxPool2D(2), Flatten()]
    flat = _flat_size("seed_cnn", features, input_shape)
    _check_dense("seed_cnn", input_shape, flat, num_classes)
    return _finish(features, [Dense(flat, num_classes)], input_shape, seed)


def lenet5(seed: Any = 0, input_shape: Sequence[int] = MNIST_SHAPE, num_classes: int = 10,
           activation: str = "relu") -> Sequential:
    """LeNet-5 (LeCun et al., 1998) with max pooling: 61,706 parameters for MNIST.

    Conv(C, 6, 5, padding=2), act, MaxPool(2), Conv(6, 16, 5), act, MaxPool(2), Flatten,
    Dense(400, 120), act, Dense(120, 84), act, Dense(84, classes); ``activation`` is ``"relu"`` or ``"tanh"``.
    """
    c, _, _ = input_shape = _shape("lenet5", input_shape)
    num_classes = positive_int("lenet5", "num_classes", num_classes, minimum=2)
    acts = {"relu": ReLU, "tanh": Tanh}
    if activation not in acts:
        fail("lenet5", "activation", f"one of {sorted(acts)}", activation)
    act = acts[activation]
    features = [Conv2D(c, 6, 5, padding=2), act(), MaxPool2D(2),
                Conv2D(6, 16, 5), act(), MaxPool2D(2), Flatten()]
    flat = _flat_size("lenet5", features, input_shape)
    _check_dense("lenet5", input_shape, flat, 120)
    head = [Dense(flat, 120), act(), Dense(120, 84), act(), Dense(84, num_classes)]
    return _finish(features, head, input_shape, seed)


def deep_cnn(in_channels: int = 1, num_classes: int = 10, seed: Any = 0,
             input_shape: Sequence[int] | None = None, widths: Sequence[int] = (32, 32, 64),
             hidden: int = 128, dropout: float = 0.25, batch_norm: bool = True) -> Sequential:
    """Three conv blocks with batch norm, then a small dense head; aims at 99.3%+ on MNIST, 92.5%+ on Fashion.

    ::

        Conv(C, w1, 3, p=1)  - BN - ReLU                        28x28
        Conv(w1, w2, 3, p=1) - BN - ReLU - MaxPool(2)           28x28 -> 14x14
        Conv(w2, w3, 3, p=1) - BN - ReLU - MaxPool(2)           14x14 -> 7x7
        Dropout(p) - Flatten - Dense(w3*7*7, hidden) - ReLU - Dropout(p) - Dense(hidden, classes)

    Cost with the default widths (32, 32, 64), in multiply-adds per 28x28 image:
    :math:`32 \\cdot 9 \\cdot 784 + 32 \\cdot 288 \\cdot 784 + 64 \\cdot 288 \\cdot 196 + 3136 \\cdot 128
    \\approx 11.5` M, i.e. about 23 MFLOPs forward, most of it in the second convolution at full resolution.
    ``widths=(16, 32, 64)`` costs 15.5 MFLOPs. Convolutions before batch norm have no bias (it would be
    cancelled by the mean subtraction).

    Parameters
    ----------
    in_channels : int
        1 for MNIST and Fashion-MNIST, 3 for CIFAR-10; ignored when ``input_shape`` is given.
    num_classes : int
    seed : int or Generator
        Seed of the weights and of the dropout generators.
    input_shape : (C, H, W), optional
        Defaults to ``(in_channels, 28, 28)``.
    widths : three ints
        Channels of the three convolutions.
    hidden : int
        Width of the dense hidden layer.
    dropout : float
        Drop probability of both dropout layers; 0 leaves them out.
    batch_norm : bool
        With ``False`` the convolutions carry a bias and no BatchNorm2D follows them (for the ablation).
    """
    owner = "deep_cnn"
    in_channels = positive_int(owner, "in_channels", in_channels)
    input_shape = _shape(owner, input_shape if input_shape is not None else (in_channels, 28, 28))
    num_classes = positive_int(owner, "num_classes", num_classes, minimum=2)
    if not isinstance(widths, (tuple, list)) or len(widths) != 3:
        fail(owner, "widths", "three channel counts", widths)
    w1, w2, w3 = (positive_int(owner, "widths", w) for w in widths)
    hidden = positive_int(owner, "hidden", hidden)
    p = real_in_range(owner, "dropout", dropout, 0.0, 1.0, high_inclusive=False)
    c = input_shape[0]

    def block(c_in: int, c_out: int) -> list[Layer]:
        if batch_norm:
            return [Conv2D(c_in, c_out, 3, padding=1, bias=False), BatchNorm2D(c_out), ReLU()]
        return [Conv2D(c_in, c_out, 3, padding=1), ReLU()]

    def drop() -> list[Layer]:
        return [Dropout(p)] if p > 0 else []

    features = [*block(c, w1), *block(w1, w2), MaxPool2D(2), *block(w2, w3), MaxPool2D(2), *drop(), Flatten()]
    flat = _flat_size(owner, features, input_shape)
    _check_dense(owner, input_shape, flat, hidden)
    head = [Dense(flat, hidden), ReLU(), *drop(), Dense(hidden, num_classes)]
    return _finish(features, head, input_shape, seed)


def forward_flops(model: Sequential, input_shape: Sequence[int] | None = None) -> int:
    """Floating-point operations of one image's forward pass through the weight layers (2 per multiply-add).

    A layer with a ``weight`` of size :math:`|W|` whose output has spatial size :math:`H' W'` costs
    :math:`2 |W| H' W'` (a convolution) or :math:`2 |W|` (a dense layer); activations, pooling and batch norm
    are left out (a few percent).
    """
    shape = input_shape or model.input_shape
    if shape is None:
        fail("forward_flops", "input_shape", "given when the model has none", None)
    total = 0
    for layer, out_shape in zip(model.layers, model.output_shapes(shape), strict=True):
        weight = layer.params.get("weight")
        if weight is not None and weight.ndim > 1:
            total += 2 * weight.size * math.prod(out_shape[1:])
    return total


def deep_plain(**kwargs: Any) -> Sequential:
    """:func:`deep_cnn` without batch norm or dropout: depth alone, the first step of the ablation."""
    return deep_cnn(**kwargs, batch_norm=False, dropout=0.0)


def deep_dropout(**kwargs: Any) -> Sequential:
    """:func:`deep_cnn` with dropout but without batch norm: the ablation's second step."""
    return deep_cnn(**kwargs, batch_norm=False)


#: The architectures by name, as the command line's ``--model`` knows them.
MODELS: dict[str, Callable[..., Sequential]] = {
    "seed": seed_cnn, "lenet5": lenet5, "deep": deep_cnn, "deep-plain": deep_plain, "deep-dropout": deep_dropout,
}


def build_model(name: str, **kwargs: Any) -> Sequential:
    """Build the architecture registered as ``name`` in :data:`MODELS`, passing ``kwargs`` to its builder."""
    if name not in MODELS:
        fail("build_model", "name", f"one of {sorted(MODELS)}", name)
    return MODELS[name](**kwargs)
