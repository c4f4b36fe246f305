"""ONNX import: round trips, PyTorch's exports, and damaged or hostile files refused with a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402
from onnx_helpers import random_mix, run_onnx  # noqa: E402

from numpycnn import ModelFileError, models  # noqa: E402
from numpycnn.interchange import export_onnx, from_onnx, load_onnx, to_onnx  # noqa: E402
from numpycnn.model.io import load_model  # noqa: E402


def _same_model(a, b) -> None:
    assert b.get_config() == a.get_config()
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sb) == list(sa)
    for name in sa:
        np.testing.assert_array_equal(sb[name], sa[name], err_msg=name)
        assert sb[name].dtype == sa[name].dtype, name
    assert (b.class_names, b.normalization) == (a.class_names, a.normalization)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_round_trip_of_every_architecture_is_exact(name, tmp_path):
    model = models.build_model(name, seed=3)
    model.class_names = list("abcdefghij")
    model.normalization = {"mean": [0.5], "std": [0.25]}
    export_onnx(model, tmp_path / "m.onnx")
    back = load_onnx(tmp_path / "m.onnx")
    _same_model(model, back)
    x = np.random.default_rng(0).normal(size=(7, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(back.forward(x, training=False), model.forward(x, training=False))
    back.save(tmp_path / "m.safetensors")
    _same_model(model, load_model(tmp_path / "m.safetensors"))


@pytest.mark.parametrize("seed", range(12))
def test_round_trip_of_random_mixes_is_exact(seed):
    model = random_mix(seed)
    back = from_onnx(to_onnx(model).SerializeToString())
    _same_model(model, back)  # dropout layers, momentum None and num_batches_tracked come back from metadata


def test_metadata_that_disagrees_with_the_graph_is_not_believed():
    model = models.deep_cnn(seed=0)
    proto = to_onnx(model)
    arch = model.get_config()
    arch["layers"][0]["config"]["out_channels"] = 99  # a lie about the graph
    helper.set_model_props(proto, {p.key: p.value for p in proto.metadata_props}
                           | {"numpycnn.architecture": json.dumps(arch)})
    back = from_onnx(proto)
    assert "Dropout" not in [layer.name for layer in back.layers]  # the graph alone: no dropout layers
    assert back.layers[0].out_channels == 32
    x = np.random.default_rng(0).normal(size=(2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(back.forward(x, training=False), run_onnx(proto, x), rtol=1e-5, atol=1e-5)


# -- PyTorch ---------------------------------------------------------------------------------------------------
def _torch_net(torch):
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(2, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.LeakyReLU(0.2), nn.MaxPool2d(2),
        nn.Conv2d(6, 5, (3, 2), padding=(1, 0), bias=False), nn.Tanh(), nn.AvgPool2d(2, stride=1),
        nn.Conv2d(5, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 8),
        nn.BatchNorm1d(8, momentum=0.3), nn.Sigmoid(), nn.Dropout(0.3), nn.Linear(8, 3), nn.Softmax(dim=1))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in net:
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = module.num_features
                module.weight.uniform_(0.5, 2, generator=generator)
                module.bias.normal_(0, 0.5, generator=generator)
                module.running_mean.normal_(0, 0.5, generator=generator)
                module.running_var.uniform_(0.3, 3, generator=generator)
                assert module.running_var.shape == (n,)
    return net.eval()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, still the one that runs offline
@pytest.mark.parametrize(("opset", "fold"), [(11, True), (13, False), (17, True), (17, False), (None, False)])
def test_torch_onnx_export_of_a_sequential_imports_and_matches_pytorch(opset, fold, tmp_path):
    torch = pytest.importorskip("torch")
    net = _torch_net(torch)
    path = tmp_path / "torch.onnx"
    torch.onnx.export(net, torch.zeros(1, 2, 19, 16), str(path), dynamo=False, opset_version=opset,  # None: default
                      do_constant_folding=fold, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    model = load_onnx(path)
    version = onnx.load(str(path)).opset_import[0].version
    assert version == opset if opset else version >= 17
    assert [layer.name for layer in model.layers][-3:] == ["Sigmoid", "Dense", "Softmax"]
    x = torch.randn(7, 2, 19, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x).numpy()
    for batch in (slice(0, 1), slice(0, 7)):
        np.testing.assert_allclose(model.forward(x[batch].numpy(), training=False), expected[batch],
                                   rtol=1e-5, atol=1e-5)
    assert next(layer for layer in model.layers if layer.name == "BatchNorm1D").momentum == 0.3  # from ONNX's 0.7
    if not fold:  # batch norm kept as its own node: its tensors arrive under numpycnn's names
        np.testing.assert_array_equal(model.state_dict()["1.running_var"], net[1].running_var.numpy())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, still the one that runs offline
@pytest.mark.parametrize("opset", [11, 17])
def test_torch_dilated_grouped_and_depthwise_convolutions_import_and_match_pytorch(opset, tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=4), nn.ReLU(),  # depthwise, multiplier 2
                        nn.Conv2d(8, 6, (3, 2), stride=2, dilation=(1, 2), groups=2, bias=False), nn.Tanh(),
                        nn.Conv2d(6, 3, 1, dilation=3)).eval()
    path = tmp_path / "torch.onnx"
    torch.onnx.export(net, torch.zeros(1, 4, 13, 11), str(path), dynamo=False, opset_version=opset,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    model = load_onnx(path)
    assert [(layer.dilation, layer.groups) for layer in model.layers if layer.name == "Conv2D"] == [
        ((2, 2), 4), ((1, 2), 2), ((3, 3), 1)]
    x = torch.randn(3, 4, 13, 11, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(model.forward(x.numpy(), training=False), expected, rtol=1e-5, atol=1e-5)


def test_a_group_that_does_not_divide_the_filters_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 3, 3])
    w = onnx.numpy_helper.from_array(np.ones((6, 1, 3, 3), np.float32), "w")  # 4 groups of 1 channel, 6 filters
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=4, dilations=[1, 1])
    proto = helper.make_model(helper.make_graph([node], "g", [x], [y], [w]), opset_imports=[
        helper.make_opsetid("", 17)])
    with pytest.raises(ModelFileError, match=r"node 'conv' \(Conv\) cannot be a numpycnn layer: Conv2D: `groups` "
                                             r"must be an integer that divides both in_channels and out_channels\. "
                                             r"Got groups=4, in_channels=4, out_channels=6\."):
        from_onnx(proto)


def test_gemm_with_untransposed_weights_and_row_bias_matches_onnxruntime():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(12, 5)).astype(np.float32), rng.normal(size=(1, 5)).astype(np.float32)  # (in, out)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("Gemm", ["f", "w", "b"], ["y"])]
    inits = [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b")]
    proto = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), ir_version=8,
                              opset_imports=[helper.make_opsetid("", 17)])
    model = from_onnx(proto)
    assert model.layers[1].params["weight"].shape == (5, 12)
    batch = rng.normal(size=(7, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(model.forward(batch, training=False), run_onnx(proto, batch, "x"), rtol=1e-5,
                               atol=1e-5)


# -- damaged and hostile files ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good():
    return to_onnx(models.lenet5(seed=0))


def _copy(proto):
    clone = onnx.ModelProto()
    clone.CopyFrom(proto)
    return clone


def _node(proto, op):
    return next(n for n in proto.graph.node if n.op_type == op)


def test_truncated_and_garbage_files_are_refused(good, tmp_path):
    data = good.SerializeToString()
    path = tmp_path / "t.onnx"
    for cut in (1, 7, 100, len(data) // 3, len(data) // 2, len(data) - 1000, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="t.onnx"):
            load_onnx(path)
    for junk in (b"", b"\x00" * 64, b"PK\x03\x04 not onnx", np.random.default_rng(0).bytes(5000)):
        path.write_bytes(junk)
        with pytest.raises(ModelFileError):
            load_onnx(path)


def test_huge_declared_shapes_are_refused_before_allocating(good):
    bad = _copy(good)
    bad.graph.initializer[0].dims[:] = [10**9, 10**9, 5, 5]
    with pytest.raises(ModelFileError, match=r"needs \d+ bytes but the file holds"):
        from_onnx(bad)
    bad = _copy(good)
    dim = bad.graph.input[0].type.tensor_type.shape.dim
    dim[1].dim_value = 1 << 40
    with pytest.raises(ModelFileError, match="between 1 and"):
        from_onnx(bad)


def test_external_data_pointing_outside_is_refused(good):
    bad = _copy(good)
    tensor = bad.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../etc/passwd"
    with pytest.raises(ModelFileError, match=r"outside the file \('../../../etc/passwd'\)"):
        from_onnx(bad)


def test_an_unsupported_operator_is_named(good):
    bad = _copy(good)
    _node(bad, "Relu").op_type = "Elu"
    with pytest.raises(ModelFileError, match=r"node '1.Relu' \(Elu\): operator 'Elu' is not supported"):
        from_onnx(bad)


def test_a_branching_graph_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="left"), helper.make_node("Sigmoid", ["x"], ["b"],
                                                                                   name="right"),
             helper.make_node("Add", ["a", "b"], ["y"], name="join")]
    proto = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelFileError, match=r"feeds 2 nodes \('left' \(Relu\), 'right' \(Sigmoid\)\): a branch"):
        from_onnx(proto)


def test_a_stray_node_is_refused(good):
    bad = _copy(good)
    bad.graph.node.append(helper.make_node("Relu", ["1.Relu.out"], ["dangling"], name="stray"))
    with pytest.raises(ModelFileError, match="a branch"):
        from_onnx(bad)
    bad = _copy(good)
    bad.graph.node.append(helper.make_node("Relu", ["nowhere"], ["dangling"], name="stray"))
    with pytest.raises(ModelFileError, match=r"node 'stray' \(Relu\) is not on the path"):
        from_onnx(bad)


def test_a_dynamic_shape_the_model_cannot_hold_is_refused(good):
    bad = _copy(good)
    dim = bad.graph.input[0].type.tensor_type.shape.dim[2]
    dim.ClearField("dim_value")
    dim.dim_param = "height"
    with pytest.raises(ModelFileError, match=r"shape \['N', 1, 'height', 28\]: every size after the batch"):
        from_onnx(bad)


@pytest.mark.parametrize(("op", "attribute", "value", "message"), [
    ("Conv", "dilations", [0, 2], "`dilations` must be 2 positive sizes"),
    ("Conv", "dilations", [2, 2, 2], "`dilations` must be 2 positive sizes"),
    ("Conv", "group", 2, r"`group` must be the input's 1 channels over the weight's 1 channels per group\. Got 2"),
    ("Conv", "group", 0, "`group` must be the input's 1 channels"),
    ("MaxPool", "dilations", [2, 2], r"`dilations` must be \[1, 1\] \(numpycnn's pooling has no dilation\)"),
    ("Conv", "pads", [2, 2, 2, 1], r"`pads` must be \[ph, pw, ph, pw\]"),
    ("Conv", "auto_pad", "SAME_UPPER", r"`pads` must be absent with auto_pad SAME_UPPER"),
    ("Conv", "auto_pad", "SAME_MIDDLE", "`auto_pad` must be NOTSET, VALID, SAME_UPPER or SAME_LOWER"),
    ("MaxPool", "pads", [2, 2, 2, 2], r"`pads` must be at most half the kernel"),
    ("MaxPool", "pads", [1, 1, 0, 0], r"`pads` must be \[ph, pw, ph, pw\]"),
    ("Gemm", "transA", 1, r"`transA` must be 0 \(the input is \(N, features\)\)"),
    ("Relu", "unknown", 1, "attribute 'unknown' is not supported"),
])
def test_attributes_a_layer_cannot_hold_are_refused(good, op, attribute, value, message):
    bad = _copy(good)
    node = _node(bad, op)
    kept = [a for a in node.attribute if a.name != attribute]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(attribute, value)])
    with pytest.raises(ModelFileError, match=rf"node '\d+\.{op}' \({op}\): .*{message}"):
        from_onnx(bad)


def test_softmax_over_another_axis_and_old_opsets_are_refused():
    model = models.seed_cnn(seed=0)
    model.layers.append(__import__("numpycnn.layers", fromlist=["Softmax"]).Softmax())
    proto = to_onnx(model)
    _node(proto, "Softmax").attribute[0].i = 0
    with pytest.raises(ModelFileError, match="`axis` must be 1"):
        from_onnx(proto)
    proto.opset_import[0].version = 5
    with pytest.raises(ModelFileError, match="opset 5 is not supported; numpycnn reads opsets 6 to 25"):
        from_onnx(proto)


def test_a_custom_domain_and_a_wrong_declared_output_are_refused(good):
    bad = _copy(good)
    _node(bad, "Relu").domain = "com.example"
    with pytest.raises(ModelFileError, match="domain 'com.example' is not supported"):
        from_onnx(bad)
    bad = _copy(good)
    bad.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 11
    with pytest.raises(ModelFileError, match=r"declares output shape \[None, 11\] but its layers compute \(N, 10\)"):
        from_onnx(bad)


def test_global_pooling_must_be_flattened():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 1, 1])
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"], name="gap")
    proto = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelFileError, match=r"'gap' \(GlobalAveragePool\): GlobalAveragePool must be followed"):
        from_onnx(proto)


def test_files_over_the_size_limit_are_refused(good, tmp_path, monkeypatch):
    from numpycnn.interchange import _onnx

    path = tmp_path / "big.onnx"
    path.write_bytes(good.SerializeToString())
    monkeypatch.setattr(_onnx, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ModelFileError, match="larger than the 1000 bytes"):
        load_onnx(path)


def test_a_graph_with_baked_preprocessing_is_not_read_back():
    proto = to_onnx(models.seed_cnn(seed=0), bake_preprocessing=True)
    with pytest.raises(ModelFileError, match=r"graph input 'pixels' must be a float32 tensor\. Got UINT8\."):
        from_onnx(proto)
