"""ONNX import across opsets 6-25 and the patterns exporters write: each form imports and matches onnxruntime
(opset 7 on; onnxruntime has no kernels for most opset-6 forms, which are checked against NumPy or by the layers
they become), and each form a layer cannot hold is a ModelFileError that names the node, the operator and what
is read."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402
from onnx_helpers import graph, matches_onnxruntime, mnist8_graph  # noqa: E402

from numpycnn import ModelFileError  # noqa: E402
from numpycnn.interchange import _onnx, from_onnx  # noqa: E402
from numpycnn.layers import Conv2D, Dense, ReLU  # noqa: E402

RNG = np.random.default_rng(0)


def _w(*shape):
    return RNG.normal(0, 0.3, shape).astype(np.float32)


def _x(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def _types(model):
    return [layer.name for layer in model.layers]


# -- the ONNX Model Zoo's MNIST (mnist-8) ------------------------------------------------------------------------
def test_a_model_zoo_style_mnist_opset_8_graph_imports_and_matches_onnxruntime():
    model = matches_onnxruntime(mnist8_graph(), _x(1, 1, 28, 28), rtol=1e-4, atol=1e-5)
    assert _types(model) == ["Conv2D", "ReLU", "MaxPool2D", "Conv2D", "ReLU", "MaxPool2D", "Flatten", "Dense"]
    assert [layer.padding for layer in model.layers if isinstance(layer, Conv2D)] == [(2, 2), (2, 2)]
    assert all("bias" in layer.params for layer in model.layers if isinstance(layer, (Conv2D, Dense)))
    assert model.forward(_x(5, 1, 28, 28)).shape == (5, 10)  # the fixed batch of 1 is not kept


# -- patterns ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [9, 13, 17])
def test_a_flatten_computed_from_shape_gather_unsqueeze_concat_is_read(opset):
    n = helper.make_node
    axes = {"axes": [0]} if opset < 13 else {}
    unsqueeze_inputs = ["n"] if opset < 13 else ["n", "zero_axis"]
    nodes = [n("Relu", ["x"], ["r"], name="relu"), n("Shape", ["r"], ["s"], name="shape"),
             n("Constant", [], ["i0"], name="c0", value=helper.make_tensor("i0", TensorProto.INT64, [], [0])),
             n("Gather", ["s", "i0"], ["n"], name="gather", axis=0),
             n("Unsqueeze", unsqueeze_inputs, ["n1"], name="unsqueeze", **axes),
             n("Concat", ["n1", "minus_one"], ["target"], name="concat", axis=0),
             n("Reshape", ["r", "target"], ["flat"], name="reshape"),
             n("Transpose", ["weight"], ["wt"], name="transpose", perm=[1, 0]),
             n("MatMul", ["flat", "wt"], ["m"], name="matmul"), n("Add", ["bias", "m"], ["y"], name="add")]
    inits = {"minus_one": np.array([-1], np.int64), "zero_axis": np.array([0], np.int64),
             "weight": _w(5, 24), "bias": _w(5)}
    model = matches_onnxruntime(graph(nodes, ["N", 2, 3, 4], ["N", 5], inits, opset), _x(3, 2, 3, 4))
    assert _types(model) == ["ReLU", "Flatten", "Dense"]
    np.testing.assert_array_equal(model.layers[2].params["weight"], inits["weight"])


def test_other_shape_arithmetic_exporters_write_is_folded():
    """``Shape -> Slice -> Cast -> Concat`` with a ``value_ints`` Constant, an ``Identity`` of a weight, and a
    ``Squeeze``/``Unsqueeze`` of a constant bias."""
    n = helper.make_node
    nodes = [n("Shape", ["x"], ["s"], name="shape"),
             n("Slice", ["s", "zero", "one"], ["first"], name="slice"),
             n("Cast", ["first"], ["first64"], name="cast", to=TensorProto.INT64),
             n("Constant", [], ["rest"], name="rest", value_ints=[-1]),
             n("Concat", ["first64", "rest"], ["target"], name="concat", axis=0),
             n("Reshape", ["x", "target"], ["flat"], name="reshape"),
             n("Identity", ["weight"], ["w"], name="same_weight"),
             n("Gemm", ["flat", "w"], ["g"], name="gemm", transB=1),
             n("Unsqueeze", ["bias"], ["b2"], name="unsqueeze", axes=[0]),
             n("Squeeze", ["b2"], ["b1"], name="squeeze", axes=[0]),
             n("Add", ["g", "b1"], ["y"], name="add")]
    inits = {"zero": np.array([0], np.int64), "one": np.array([1], np.int64), "weight": _w(3, 12), "bias": _w(3)}
    model = matches_onnxruntime(graph(nodes, ["N", 3, 2, 2], ["N", 3], inits, 11), _x(4, 3, 2, 2))
    assert _types(model) == ["Flatten", "Dense"]
    np.testing.assert_array_equal(model.layers[1].params["bias"], inits["bias"])


@pytest.mark.parametrize("target", [[0, -1], [-1, 24], [0, 24]])
def test_a_constant_flatten_target_is_read_and_another_reshape_is_refused(target):
    nodes = [helper.make_node("Reshape", ["x", "t"], ["y"], name="reshape")]
    proto = graph(nodes, ["N", 2, 3, 4], ["N", 24], {"t": np.array(target, np.int64)}, 13)
    assert _types(matches_onnxruntime(proto, _x(2, 2, 3, 4))) == ["Flatten"]
    proto = graph(nodes, ["N", 2, 3, 4], ["N", 6, 4], {"t": np.array([0, 6, 4], np.int64)}, 13)
    with pytest.raises(ModelFileError, match=r"node 'reshape' \(Reshape\): `shape` must be \(N, -1\): a flatten.*"
                                             r"Got \[0, 6, 4\]"):
        from_onnx(proto)


def test_conv_then_add_becomes_the_bias_added_to_the_one_it_has():
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "b2"], ["y"], name="add")]
    inits = {"w": _w(4, 3, 3, 3), "b": _w(4), "b2": _w(1, 4, 1, 1)}
    model = matches_onnxruntime(graph(nodes, ["N", 3, 5, 5], ["N", 4, 5, 5], inits, 11), _x(2, 3, 5, 5))
    np.testing.assert_allclose(model.layers[0].params["bias"], inits["b"] + inits["b2"].reshape(-1))
    inits["b2"] = _w(4, 5, 5)  # not one value per channel
    with pytest.raises(ModelFileError, match=r"node 'add' \(Add\): `pattern` must be the bias of the Conv, Gemm "
                                             r"or MatMul just before it"):
        from_onnx(graph(nodes, ["N", 3, 5, 5], ["N", 4, 5, 5], inits, 11))


def test_opset_6_add_with_broadcast_and_axis_is_a_per_channel_bias():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Add", ["c", "b"], ["y"], name="add", broadcast=1, axis=1)]
    inits = {"w": _w(4, 3, 1, 1), "b": _w(4)}
    x = _x(2, 3, 5, 5)
    model = from_onnx(graph(nodes, ["N", 3, 5, 5], ["N", 4, 5, 5], inits, 6))
    expected = np.einsum("fc,nchw->nfhw", inits["w"][:, :, 0, 0], x) + inits["b"][None, :, None, None]
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-5, atol=1e-5)
    nodes[1] = helper.make_node("Add", ["c", "b"], ["y"], name="add")  # broadcast=0: a full-shape operand
    with pytest.raises(ModelFileError, match=r"'add' \(Add\): `broadcast` must be 1"):
        from_onnx(graph(nodes, ["N", 3, 5, 5], ["N", 4, 5, 5], inits, 6))


# -- operator versions -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("auto_pad", "kernel", "stride", "padding"), [
    ("VALID", 3, 1, (0, 0)), ("SAME_UPPER", 3, 1, (1, 1)), ("SAME_LOWER", 5, 1, (2, 2)),
    ("SAME_UPPER", 3, 2, (1, 1)),  # 7 -> 4 outputs: total padding 2
])
def test_conv_auto_pad_is_resolved_against_the_input_size(auto_pad, kernel, stride, padding):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", auto_pad=auto_pad,
                              strides=[stride, stride])]
    size = 7
    out = (size - kernel) // stride + 1 if auto_pad == "VALID" else -(-size // stride)
    proto = graph(nodes, ["N", 2, size, size], ["N", 3, out, out], {"w": _w(3, 2, kernel, kernel)}, 11)
    assert matches_onnxruntime(proto, _x(2, 2, size, size)).layers[0].padding == padding


def test_an_auto_pad_that_pads_one_side_more_is_refused_by_name():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", auto_pad="SAME_LOWER")]
    with pytest.raises(ModelFileError, match=r"'conv' \(Conv\): `pads` must be \[ph, pw, ph, pw\] .* \(auto_pad "
                                             r"SAME_LOWER gives \[1, 1, 0, 0\]\)"):
        from_onnx(graph(nodes, ["N", 2, 6, 6], ["N", 3, 6, 6], {"w": _w(3, 2, 2, 2)}, 11))


@pytest.mark.parametrize("opset", [6, 7, 9, 14, 15])
def test_batch_norm_in_each_version_is_read_in_inference_form(opset):
    attrs = {"epsilon": 1e-3, "momentum": 0.8}
    attrs |= {"is_test": 1, "spatial": 1} if opset < 7 else {"spatial": 1} if opset < 9 else {}
    node = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn", **attrs)
    inits = {"g": _w(3) + 1, "b": _w(3), "m": _w(3), "v": np.abs(_w(3)) + 0.5}
    proto = graph([node], ["N", 3, 4, 4], ["N", 3, 4, 4], inits, opset)
    x = _x(2, 3, 4, 4)
    if opset >= 7:
        model = matches_onnxruntime(proto, x)
    else:
        model = from_onnx(proto)
        shape = (1, 3, 1, 1)
        expected = (x - inits["m"].reshape(shape)) / np.sqrt(inits["v"].reshape(shape) + 1e-3) \
            * inits["g"].reshape(shape) + inits["b"].reshape(shape)
        np.testing.assert_allclose(model.forward(x), expected, rtol=1e-5, atol=1e-5)
    assert model.layers[0].eps == pytest.approx(1e-3) and model.layers[0].momentum == pytest.approx(0.2)


@pytest.mark.parametrize(("opset", "attribute", "value", "message"), [
    (6, "is_test", 0, r"`is_test` must be 1 \(inference\)"),
    (7, "spatial", 0, r"`spatial` must be 1 \(statistics per channel\)"),
    (6, "consumed_inputs", [0, 0, 0, 1, 1], r"attribute 'consumed_inputs' is not supported"),
    (9, "spatial", 1, r"attribute 'spatial' is not supported by numpycnn's BatchNormalization"),
    (15, "training_mode", 1, r"`training_mode` must be 0 \(inference\)"),
])
def test_batch_norm_forms_a_layer_cannot_hold_are_refused(opset, attribute, value, message):
    node = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn",
                            **{attribute: value})
    inits = {k: np.ones(3, np.float32) for k in "gbmv"}
    with pytest.raises(ModelFileError, match=rf"node 'bn' \(BatchNormalization\): {message}"):
        from_onnx(graph([node], ["N", 3, 4, 4], ["N", 3, 4, 4], inits, opset))


@pytest.mark.parametrize(("opset", "inputs", "attrs"), [
    (6, ["x"], {"is_test": 1, "ratio": 0.3}), (7, ["x"], {"ratio": 0.3}), (10, ["x"], {"ratio": 0.3}),
    (12, ["x", "ratio"], {}), (13, ["x", "ratio", "mode"], {}),
])
def test_dropout_ratio_as_attribute_or_input_is_read(opset, inputs, attrs):
    nodes = [helper.make_node("Dropout", inputs, ["d"], name="drop", **attrs),
             helper.make_node("Relu", ["d"], ["y"], name="relu")]
    inits = {"ratio": np.array(0.3, np.float32), "mode": np.array(False)}
    proto = graph(nodes, ["N", 4], ["N", 4], {k: inits[k] for k in inputs[1:]}, opset)
    model = from_onnx(proto) if opset < 7 else matches_onnxruntime(proto, _x(3, 4))
    assert _types(model) == ["Dropout", "ReLU"] and model.layers[0].p == pytest.approx(0.3)


@pytest.mark.parametrize(("opset", "shape", "axis", "ok"), [
    (6, [5, 3], 1, True), (11, [5, 3, 1, 1], 1, True), (11, [5, 3, 4], 1, False), (11, [5, 3, 4], 2, False),
    (13, [5, 3, 4], 1, True), (13, [5, 3], -1, True), (13, [5, 3, 4], -1, False),
])
def test_softmax_axis_follows_its_opset(opset, shape, axis, ok):
    proto = graph([helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=axis)], ["N", *shape[1:]],
                  ["N", *shape[1:]], {}, opset)
    if ok:
        model = from_onnx(proto) if opset < 7 else matches_onnxruntime(proto, _x(*shape))
        assert _types(model) == ["Softmax"]
    else:
        with pytest.raises(ModelFileError, match=r"node 'sm' \(Softmax\): `axis` must be 1"):
            from_onnx(proto)


@pytest.mark.parametrize("opset", [6, 7, 11, 13])
def test_gemm_alpha_beta_and_trans_b_are_folded_into_the_dense_layer(opset):
    attrs = {"alpha": 0.5, "beta": 2.0, "transB": 0} | ({"broadcast": 1} if opset < 7 else {})
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm", **attrs)
    inits = {"w": _w(6, 4), "b": _w(4)}
    proto = graph([node], ["N", 6], ["N", 4], inits, opset)
    x = _x(3, 6)
    model = from_onnx(proto) if opset < 7 else matches_onnxruntime(proto, x)
    np.testing.assert_allclose(model.forward(x), 0.5 * x @ inits["w"] + 2.0 * inits["b"], rtol=1e-5, atol=1e-6)
    if opset < 7:
        next(a for a in proto.graph.node[0].attribute if a.name == "broadcast").i = 0  # a full-shape bias
        with pytest.raises(ModelFileError, match=r"'gemm' \(Gemm\): `broadcast` must be 1"):
            from_onnx(proto)


@pytest.mark.parametrize(("opset", "low", "high", "ok"), [
    (6, 0.0, None, True), (11, 0.0, None, True), (12, 0.0, None, True), (13, 0.0, 6.0, False),
    (6, -1.0, None, False),
])
def test_clip_from_zero_without_a_maximum_is_a_relu(opset, low, high, ok):
    if opset < 11:
        node = helper.make_node("Clip", ["x"], ["y"], name="clip", min=low, **({"max": high} if high else {}))
        inits = {}
    else:
        node = helper.make_node("Clip", ["x", "lo", *(["hi"] if high else [])], ["y"], name="clip")
        inits = {"lo": np.array(low, np.float32), **({"hi": np.array(high, np.float32)} if high else {})}
    proto = graph([node], ["N", 3, 4], ["N", 3, 4], inits, opset)
    if ok:
        model = from_onnx(proto) if opset < 7 else matches_onnxruntime(proto, _x(2, 3, 4))
        assert isinstance(model.layers[0], ReLU)
    else:
        with pytest.raises(ModelFileError, match=r"node 'clip' \(Clip\): `min, max` must be 0 and none"):
            from_onnx(proto)


@pytest.mark.parametrize("opset", [9, 11, 18])
def test_zero_pad_before_a_conv_becomes_its_padding(opset):
    pads = [0, 0, 1, 2, 0, 0, 1, 2]
    if opset < 11:
        pad = helper.make_node("Pad", ["x"], ["p"], name="pad", pads=pads, mode="constant", value=0.0)
        inits = {}
    elif opset < 18:
        pad = helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="constant")
        inits = {"pads": np.array(pads, np.int64)}
    else:
        pad = helper.make_node("Pad", ["x", "pads", "", "axes"], ["p"], name="pad")
        inits = {"pads": np.array([1, 2, 1, 2], np.int64), "axes": np.array([2, 3], np.int64)}
    nodes = [pad, helper.make_node("Conv", ["p", "w"], ["y"], name="conv", pads=[1, 0, 1, 0])]
    proto = graph(nodes, ["N", 2, 5, 5], ["N", 3, 7, 7], {**inits, "w": _w(3, 2, 3, 3)}, opset)
    assert matches_onnxruntime(proto, _x(2, 2, 5, 5)).layers[0].padding == (2, 2)


@pytest.mark.parametrize(("pad_attrs", "after", "message"), [
    ({"mode": "reflect"}, "Conv", r"`mode` must be constant \(zeros\)"),
    ({"value": 1.0}, "Conv", r"`value` must be 0"),
    ({}, "MaxPool", r"Pad is read only as the zero padding of the Conv right after it"),
])
def test_a_pad_that_is_not_a_conv_padding_is_refused(pad_attrs, after, message):
    pad = helper.make_node("Pad", ["x"], ["p"], name="pad", pads=[0, 0, 1, 1, 0, 0, 1, 1], **pad_attrs)
    second = helper.make_node("Conv", ["p", "w"], ["y"], name="conv") if after == "Conv" else \
        helper.make_node("MaxPool", ["p"], ["y"], name="pool", kernel_shape=[2, 2])
    with pytest.raises(ModelFileError, match=rf"node 'pad' \(Pad\): .*{message}"):
        from_onnx(graph([pad, second], ["N", 2, 4, 4], ["N", 3, 4, 4], {"w": _w(3, 2, 3, 3)}, 9))


@pytest.mark.parametrize(("size", "ok"), [(7, True), (8, False)])
def test_pooling_ceil_mode_is_read_where_it_changes_nothing(size, ok):
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                              ceil_mode=1, storage_order=1),
             helper.make_node("AveragePool", ["m"], ["y"], name="avg", kernel_shape=[1, 1], count_include_pad=1)]
    out = -(-(size - 3) // 2) + 1
    proto = graph(nodes, ["N", 2, size, size], ["N", 2, out, out], {}, 12)
    if ok:
        assert _types(matches_onnxruntime(proto, _x(2, 2, size, size))) == ["MaxPool2D", "AvgPool2D"]
    else:
        with pytest.raises(ModelFileError, match=r"node 'pool' \(MaxPool\): `ceil_mode` must be 0 \(floor\), or 1 "
                                                 r"where the windows tile the input exactly\. Got 1"):
            from_onnx(proto)


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "LeakyRelu", "Identity"])
def test_element_wise_operators_take_any_rank(op):
    proto = graph([helper.make_node(op, ["x"], ["y"], name="f")], ["N", 3, 5], ["N", 3, 5], {}, 13)
    model = matches_onnxruntime(proto, _x(2, 3, 5))
    assert model.input_shape == (3, 5)


def test_old_opsets_are_refused_with_the_range_read():
    proto = graph([helper.make_node("Relu", ["x"], ["y"])], ["N", 3], ["N", 3], {}, 5)
    with pytest.raises(ModelFileError, match=r"opset 5 is not supported; numpycnn reads opsets 6 to 25"):
        from_onnx(proto)


def test_an_unsupported_operator_names_the_opset_and_what_is_read():
    proto = graph([helper.make_node("LogSoftmax", ["x"], ["y"], name="ls")], ["N", 3], ["N", 3], {}, 6)
    with pytest.raises(ModelFileError, match=r"node 'ls' \(LogSoftmax\): operator 'LogSoftmax' is not supported at "
                                             r"opset 6; numpycnn reads Add, AveragePool"):
        from_onnx(proto)


# -- limits on what a file can make the importer allocate ---------------------------------------------------------
def test_a_huge_constant_of_shape_is_refused_before_allocating():
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["w"], name="big"),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    proto = graph(nodes, ["N", 4], ["N", 4], {"shape": np.array([1 << 20, 1 << 20], np.int64)}, 13)
    with pytest.raises(ModelFileError, match=r"node 'big' \(ConstantOfShape\): folding would make a tensor of "
                                             r"shape \[1048576, 1048576\]"):
        from_onnx(proto)


def test_folded_constants_count_against_one_total(monkeypatch):
    monkeypatch.setattr(_onnx, "MAX_FILE_BYTES", 1000)
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["w"], name="big",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    proto = graph(nodes, ["N", 16], ["N", 16], {"shape": np.array([16, 16], np.int64)}, 13)
    with pytest.raises(ModelFileError, match=r"node 'big' \(ConstantOfShape\): the folded constants would take "
                                             r"more than 1000 bytes"):
        from_onnx(proto)
    monkeypatch.setattr(_onnx, "MAX_FILE_BYTES", 1 << 30)
    np.testing.assert_allclose(from_onnx(proto).layers[0].params["weight"], np.full((16, 16), 0.5, np.float32))


def test_the_batch_size_cannot_be_computed_with():
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("ConstantOfShape", ["s"], ["w"], name="zeros"),
             helper.make_node("Relu", ["x"], ["y"], name="relu")]
    with pytest.raises(ModelFileError, match=r"node 'zeros' \(ConstantOfShape\): it uses the batch size"):
        from_onnx(graph(nodes, ["N", 4], ["N", 4], {}, 13))


def test_huge_pads_are_refused_before_the_first_forward():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[10000] * 4)
    with pytest.raises(ModelFileError, match=r"node 'conv' \(Conv\): its padded input would hold \d+ elements per "
                                             r"sample, more than the 134217728 allowed"):
        from_onnx(graph([node], ["N", 1, 4, 4], ["N", 1, 20002, 20002], {"w": _w(1, 1, 3, 3)}, 13))


def test_a_non_foldable_operator_on_constants_is_named():
    nodes = [helper.make_node("RandomNormal", [], ["w"], name="rand", shape=[4, 4]),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    with pytest.raises(ModelFileError, match=r"node 'rand' \(RandomNormal\) operator 'RandomNormal' on constants "
                                             r"is not folded"):
        from_onnx(graph(nodes, ["N", 4], ["N", 4], {}, 13))



@pytest.mark.parametrize("seed", range(4))
def test_damaged_attributes_and_shape_constants_give_a_model_or_a_model_file_error(seed):
    """Random damage to the MNIST graph's integer attributes and int64 constants: a ModelFileError or a model,
    never another exception."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    good = mnist8_graph()
    values = [-(1 << 40), -2, -1, 0, 1, 2, 3, 5, 256, 1 << 20]
    outcomes = set()
    for _ in range(60):
        proto = onnx.ModelProto()
        proto.CopyFrom(good)
        if rng.integers(2):
            ints = [a for n in proto.graph.node for a in n.attribute if a.type in (2, 7)]  # INT, INTS
            attribute = ints[rng.integers(len(ints))]
            if attribute.type == 2:
                attribute.i = int(rng.choice(values))
            else:
                attribute.ints[:] = [int(rng.choice(values)) for _ in range(int(rng.integers(0, 5)))]
        else:
            shapes = [t for t in proto.graph.initializer if t.data_type == TensorProto.INT64]
            tensor = shapes[rng.integers(len(shapes))]
            tensor.CopyFrom(numpy_helper.from_array(
                np.array([rng.choice(values) for _ in range(int(rng.integers(1, 4)))], np.int64), tensor.name))
        try:
            from_onnx(proto)
            outcomes.add("model")
        except ModelFileError:
            outcomes.add("refused")
    assert "refused" in outcomes


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, still the one that runs offline
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("opset", [7, 9, 11, 13])
def test_torch_exports_with_view_flatten_zero_pad_clamp_and_linear_without_bias_import(opset, tmp_path):
    """What a hand-written ``forward`` exports: ``nn.ZeroPad2d`` before a convolution, ``clamp(min=0)``,
    ``x.view(x.size(0), -1)`` (a Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain) and a Linear without
    bias (Transpose + MatMul, or Gemm)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad, self.conv = nn.ZeroPad2d(1), nn.Conv2d(2, 4, 3)
            self.fc1, self.fc2 = nn.Linear(4 * 6 * 5, 8, bias=False), nn.Linear(8, 3)

        def forward(self, x):
            x = self.conv(self.pad(x)).clamp(min=0)
            x = x.view(x.size(0), -1)
            return torch.sigmoid(self.fc2(torch.relu(self.fc1(x))))

    torch.manual_seed(0)
    net = Net().eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.zeros(1, 2, 6, 5), str(path), dynamo=False, opset_version=opset,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    from numpycnn.interchange import load_onnx

    model = load_onnx(path)
    assert _types(model) == ["Conv2D", "ReLU", "Flatten", "Dense", "ReLU", "Dense", "Sigmoid"]
    assert model.layers[0].padding == (1, 1) and "bias" not in model.layers[3].params
    x = torch.randn(5, 2, 6, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(model.forward(x.numpy()), expected, rtol=1e-5, atol=1e-5)
