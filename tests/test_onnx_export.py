"""ONNX export: every ready-made architecture and random layer mixes run in onnxruntime as they do in numpycnn."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_helpers import random_mix, run_onnx  # noqa: E402

from numpycnn import datasets, models  # noqa: E402
from numpycnn.interchange import IR_VERSION, OPSET, export_onnx, to_onnx  # noqa: E402
from numpycnn.layers import Conv2D, Dense, Flatten, ReLU  # noqa: E402
from numpycnn.model.sequential import Sequential  # noqa: E402
from numpycnn.optim import Adam  # noqa: E402

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def mnist_test():
    images, labels = datasets.load("mnist", "test")
    return images[:7], labels[:7]


@pytest.fixture(scope="module")
def trained_seed():
    """The seed network after a short run on 1,000 real digits, standardised like the CLI's deep runs."""
    images, labels = datasets.load("mnist")
    model = models.seed_cnn(seed=0)
    model.class_names = [str(d) for d in range(10)]
    model.normalization = {"mean": [0.1307], "std": [0.3081]}
    model.fit(images[:1000], labels[:1000], epochs=1, batch_size=100, optimizer=Adam(lr=1e-3), verbose=0, rng=0)
    return model


def _check(model: Sequential, x: np.ndarray) -> None:
    proto = to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    for batch in (x[:1], x[:7]):
        np.testing.assert_allclose(run_onnx(proto, batch), model.forward(batch, training=False), **TOL)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_architecture_matches_onnxruntime_on_real_digits(name, mnist_test):
    model = models.build_model(name, seed=0)
    _check(model, mnist_test[0].astype(np.float32) / 255)


def test_a_trained_model_matches_onnxruntime_and_predicts_alike(trained_seed, mnist_test):
    images, labels = mnist_test
    x = (images.astype(np.float32) / 255 - 0.1307) / 0.3081
    _check(trained_seed, x)
    assert (run_onnx(to_onnx(trained_seed), x).argmax(1) == trained_seed.predict_classes(images)).all()
    assert (trained_seed.predict_classes(images) == labels).mean() >= 5 / 7  # it did learn


@pytest.mark.parametrize("seed", range(12))
def test_random_layer_mixes_match_onnxruntime(seed):
    model = random_mix(seed)
    x = np.random.default_rng(100 + seed).normal(size=(7, *model.input_shape)).astype(np.float32)
    _check(model, x)


def test_random_mixes_cover_every_layer_and_option():
    """The mixes above are only worth something if they hold every layer, stride, padding and both endings."""
    seen, strides, pads, last = set(), set(), set(), set()
    for seed in range(12):
        model = random_mix(seed)
        seen |= {layer.name for layer in model.layers}
        strides |= {layer.stride for layer in model.layers if layer.name == "Conv2D"}
        pads |= {layer.padding for layer in model.layers if layer.name == "Conv2D"}
        last.add(model.layers[-1].name)
    assert seen >= {"Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "Flatten", "Dense", "BatchNorm1D",
                    "BatchNorm2D", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Dropout"}, seen
    assert len(strides) >= 3 and len(pads) >= 3 and last == {"Softmax", "Dense"}


#: Conv2D arguments of the general path: dilated, grouped, depthwise with a channel multiplier, and all at once
DILATED_GROUPED = [
    {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 2, "dilation": 2},
    {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "stride": 2, "padding": (1, 0), "groups": 2},
    {"in_channels": 3, "out_channels": 6, "kernel_size": 3, "padding": 1, "groups": 3, "bias": False},
    {"in_channels": 6, "out_channels": 4, "kernel_size": (2, 3), "stride": (2, 1), "padding": (2, 1),
     "dilation": (3, 2), "groups": 2},
]


@pytest.mark.parametrize("conv", DILATED_GROUPED, ids=["dilated", "grouped", "depthwise-x2", "all"])
def test_dilation_and_groups_export_match_onnxruntime_and_import_back_exactly(conv):
    from numpycnn.interchange import from_onnx

    layers = [Conv2D(**conv), ReLU(), Conv2D(conv["out_channels"], 2, 3, dilation=(1, 2), groups=2), Flatten()]
    flat = Sequential(layers).output_shapes((conv["in_channels"], 11, 10))[-1][0]
    model = Sequential([*layers, Dense(flat, 3)], input_shape=(conv["in_channels"], 11, 10)).initialize(0)
    proto = to_onnx(model)
    attributes = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in proto.graph.node
                  if n.op_type == "Conv"]
    for layer, written in zip(model.layers[0:3:2], attributes, strict=True):  # the two Conv2D
        assert written["dilations"] == list(layer.dilation) and written["group"] == layer.groups
    x = np.random.default_rng(1).normal(size=(7, *model.input_shape)).astype(np.float32)
    _check(model, x)
    back = from_onnx(proto.SerializeToString())
    assert back.get_config() == model.get_config()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value)
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


def test_graph_layout_names_versions_and_symbolic_batch():
    model = models.deep_cnn(seed=0)
    proto = to_onnx(model)
    assert proto.ir_version == IR_VERSION == 8
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)] and OPSET == 17
    assert {t.name for t in proto.graph.initializer} == {k for k in model.state_dict()
                                                        if not k.endswith("num_batches_tracked")}
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "input" and out.name == "output"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 1, 28, 28]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 10]
    ops = [n.op_type for n in proto.graph.node]
    assert "Dropout" not in ops and ops.count("BatchNormalization") == 3 and ops[-1] == "Gemm"
    gemm = proto.graph.node[-1]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}["transB"] == 1
    bn = next(n for n in proto.graph.node if n.op_type == "BatchNormalization")
    momentum = {a.name: onnx.helper.get_attribute_value(a) for a in bn.attribute}["momentum"]
    assert momentum == pytest.approx(0.9)  # ONNX weighs the old statistics: 1 - PyTorch's 0.1


def test_the_pinned_ir_version_and_opset_load_in_this_onnxruntime():
    import onnxruntime as ort

    proto = to_onnx(models.seed_cnn(seed=0))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().producer_name == "numpycnn"
    assert session.get_inputs()[0].shape == ["N", 1, 28, 28]


def test_metadata_holds_class_names_and_preprocessing(trained_seed):
    props = {p.key: p.value for p in to_onnx(trained_seed).metadata_props}
    assert json.loads(props["class_names"]) == [str(d) for d in range(10)]
    assert json.loads(props["normalization"]) == {"mean": [0.1307], "std": [0.3081]}
    assert "pixels / 255" in props["preprocessing"]
    assert json.loads(props["numpycnn.architecture"]) == trained_seed.get_config()


def test_baked_preprocessing_takes_raw_pixels(trained_seed, mnist_test):
    images = mnist_test[0]
    proto = to_onnx(trained_seed, bake_preprocessing=True)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.graph.input[0].name == "pixels"
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    x = (images * np.float32(1 / 255) - np.float32(0.1307)) / np.float32(0.3081)  # as training.Batches does
    for batch in (slice(0, 1), slice(0, 7)):
        np.testing.assert_allclose(run_onnx(proto, images[batch], "pixels"),
                                   trained_seed.forward(x[batch], training=False), **TOL)
    props = {p.key: p.value for p in proto.metadata_props}
    assert "raw uint8 pixels" in props["preprocessing"]


def test_baking_without_normalization_only_scales(mnist_test):
    model = models.seed_cnn(seed=1)
    proto = to_onnx(model, bake_preprocessing=True)
    assert [n.op_type for n in proto.graph.node][:3] == ["Cast", "Mul", "Conv"]
    np.testing.assert_allclose(run_onnx(proto, mnist_test[0], "pixels"),
                               model.forward(mnist_test[0] * np.float32(1 / 255), training=False), **TOL)


def test_export_writes_the_file_atomically(tmp_path):
    path = tmp_path / "model.onnx"
    export_onnx(models.seed_cnn(seed=0), path)
    assert onnx.load(str(path)).graph.node[0].op_type == "Conv"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_export_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="`input_shape` must be given"):
        to_onnx(Sequential([Flatten(), Dense(4, 2)]))
    model = Sequential([Conv2D(1, 2, 3), ReLU(), Flatten(), Dense(2 * 4 * 4, 2)], input_shape=(1, 6, 6))
    model.layers[0].params["weight"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="'0.weight' holds NaN"):
        export_onnx(model, tmp_path / "bad.onnx")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="cannot take input"):
        to_onnx(model, input_shape=(1, 2, 2))
    with pytest.raises(TypeError, match="must be a numpycnn Sequential"):
        to_onnx([Flatten()])


def test_import_numpycnn_does_not_import_onnx():
    code = ("import sys, numpycnn, numpycnn.cli, numpycnn.interchange; numpycnn.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_onnx_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ModuleNotFoundError
    with pytest.raises(ModuleNotFoundError, match=r'pip install "numpycnn\[onnx\]"'):
        to_onnx(models.seed_cnn(seed=0))
