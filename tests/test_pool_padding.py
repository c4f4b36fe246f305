"""Padded pooling: MaxPool2D(padding=p) and AvgPool2D(padding=p, count_include_pad=...) against PyTorch, the loop
reference and finite differences; the argument's rules; model files and ONNX, both ways."""

from __future__ import annotations

import numpy as np
import pytest

from numpycnn import reference
from numpycnn.layers import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from numpycnn.layers.gradcheck import gradcheck
from numpycnn.model.io import load_model
from numpycnn.model.sequential import Sequential

#: (input shape, kernel_size, stride, padding): padding of one and of half the kernel, non-square kernels and
#: paddings, overlapping and gapped windows, a batch of one, windows that the padded size does not divide
CASES = [
    ((2, 3, 7, 7), 3, 2, 1),
    ((1, 2, 6, 5), 2, None, 1),
    ((2, 1, 5, 8), (3, 2), (2, 1), (1, 1)),
    ((1, 1, 4, 4), 4, 1, 2),
    ((3, 2, 9, 6), (5, 3), 2, (2, 0)),
    ((1, 3, 2, 2), 3, 1, 1),
]
IDS = [f"x{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}" for c in CASES]


def torch_pool(kind, x, k, s, p, include=True):
    import torch

    xt = torch.tensor(x, requires_grad=True)
    pool = (torch.nn.MaxPool2d(k, s, p) if kind == "max"
            else torch.nn.AvgPool2d(k, s, p, count_include_pad=include))
    y = pool(xt)
    dy = torch.tensor(np.random.default_rng(1).normal(size=tuple(y.shape)))
    y.backward(dy)
    return y.detach().numpy(), dy.numpy(), xt.grad.numpy()


def layer_for(kind, k, s, p, include=True):
    return MaxPool2D(k, s, p) if kind == "max" else AvgPool2D(k, s, p, count_include_pad=include)


VARIANTS = [("max", True), ("avg", True), ("avg", False)]
VARIANT_IDS = ["max", "avg-include-pad", "avg-real-pixels"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize(("kind", "include"), VARIANTS, ids=VARIANT_IDS)
def test_padded_pooling_matches_pytorch_forward_and_backward(kind, include, case):
    pytest.importorskip("torch")
    shape, k, s, p = case
    x = np.random.default_rng(0).normal(size=shape)
    y_torch, dy, dx_torch = torch_pool(kind, x, k, s, p, include)
    layer = layer_for(kind, k, s, p, include).astype(np.float64)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, y_torch, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.backward(dy), dx_torch, rtol=1e-12, atol=1e-12)
    assert layer.output_shape(shape[1:]) == y.shape[1:]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize(("kind", "include"), VARIANTS, ids=VARIANT_IDS)
def test_padded_pooling_matches_the_loop_reference_and_finite_differences(kind, include, case):
    shape, k, s, p = case
    size = int(np.prod(shape))
    x = np.random.default_rng(2).permutation(size).reshape(shape) / size  # no ties for finite differences
    layer = layer_for(kind, k, s, p, include).astype(np.float64)
    y = layer.forward(x, training=True)
    dy = np.random.default_rng(3).normal(size=y.shape)
    if kind == "max":
        y_ref = reference.maxpool2d_forward(x, k, s, p)
        dx_ref = reference.maxpool2d_backward(dy, x, k, s, p)
    else:
        y_ref = reference.avgpool2d_forward(x, k, s, p, include)
        dx_ref = reference.avgpool2d_backward(dy, x, k, s, p, include)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.backward(dy), dx_ref, rtol=1e-12, atol=1e-14)
    assert gradcheck(layer_for(kind, k, s, p, include), x) < 1e-7


def test_padding_counts_as_minus_infinity_for_max_and_as_zero_for_the_average():
    x = -np.ones((1, 1, 2, 2))  # every real pixel below the padding's zeros
    assert MaxPool2D(2, 1, 1).astype(np.float64).forward(x).max() == -1.0  # never the padding
    corner = AvgPool2D(2, 1, 1).astype(np.float64).forward(x)[0, 0, 0, 0]
    assert corner == -0.25  # one real pixel of four, divided by four
    assert AvgPool2D(2, 1, 1, count_include_pad=False).astype(np.float64).forward(x)[0, 0, 0, 0] == -1.0


def test_padding_rules_and_config():
    with pytest.raises(ValueError, match="at most half the kernel"):
        MaxPool2D(2, padding=2)
    with pytest.raises(ValueError, match="padding"):
        AvgPool2D(3, padding=-1)
    with pytest.raises(TypeError, match="count_include_pad"):
        AvgPool2D(3, padding=1, count_include_pad="no")
    assert MaxPool2D(2).get_config() == {"kernel_size": 2, "stride": 2}  # unpadded configs are as before
    assert AvgPool2D(3, 2, 1).get_config() == {"kernel_size": 3, "stride": 2, "padding": 1}
    assert AvgPool2D((3, 5), 1, (1, 2), count_include_pad=False).get_config() == {
        "kernel_size": [3, 5], "stride": 1, "padding": [1, 2], "count_include_pad": False}
    assert MaxPool2D(3, 2, 1).output_shape((8, 7, 7)) == (8, 4, 4)


def test_padded_pools_survive_the_model_file(tmp_path):
    model = Sequential([Conv2D(1, 4, 3, padding=1), ReLU(), MaxPool2D(3, 2, 1), AvgPool2D(3, 1, 1, False),
                        Flatten(), Dense(4 * 5 * 5, 3)], input_shape=(1, 9, 9)).initialize(0)
    model.save(tmp_path / "m.safetensors")
    back = load_model(tmp_path / "m.safetensors")
    assert back.get_config() == model.get_config()
    x = np.random.default_rng(0).normal(size=(2, 1, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


def test_padded_pools_export_to_onnx_match_onnxruntime_and_import_back():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx_helpers import run_onnx

    from numpycnn.interchange import from_onnx, to_onnx

    model = Sequential([Conv2D(2, 4, 3), ReLU(), MaxPool2D(3, 2, 1), AvgPool2D(3, 1, 1),
                        AvgPool2D(2, 1, (1, 0), count_include_pad=False), Flatten(), Dense(4 * 6 * 3, 3)],
                       input_shape=(2, 11, 10)).initialize(0)
    x = np.random.default_rng(1).normal(size=(3, 2, 11, 10)).astype(np.float32)
    proto = to_onnx(model)
    np.testing.assert_allclose(run_onnx(proto, x), model.forward(x), rtol=1e-5, atol=1e-6)
    back = from_onnx(proto.SerializeToString())
    assert back.get_config() == model.get_config()
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


def test_relu_then_a_padded_max_pool_is_not_fused_and_matches_the_layers_one_by_one():
    layers = [Conv2D(1, 3, 3, rng=0), ReLU(), MaxPool2D(3, 2, 1)]
    model = Sequential(layers, input_shape=(1, 8, 8))
    assert not model.plan().fused_steps
    x = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    by_hand = x
    for layer in layers:
        by_hand = layer.forward(by_hand, training=False)
    np.testing.assert_array_equal(model.forward(x), by_hand)
    assert Sequential([ReLU(), MaxPool2D(2)]).plan().fused_steps  # unpadded: still fused
