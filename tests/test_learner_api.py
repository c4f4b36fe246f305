"""The learner's API (issue 11): safe inference, shape inference, helpful errors, custom layers."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from numpycnn import ModelFileError, Sequential, load_model, models
from numpycnn.layers import LAYER_REGISTRY, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU
from numpycnn.layers.gradcheck import THRESHOLD, gradcheck

BuiltinReLU = ReLU

# -- inference is the default ---------------------------------------------------------------------------------


def test_model_call_and_forward_default_to_inference_and_never_move_running_statistics():
    model = models.deep_cnn(seed=0)
    x = np.random.default_rng(5).random((4, 1, 28, 28), dtype=np.float32)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    a, b, c = model(x), model(x), model.forward(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    model.forward(x, training=True)  # asked for: the statistics move
    assert not np.array_equal(model.state_dict()["1.running_mean"], before["1.running_mean"])


def test_layer_call_is_inference_and_forward_training_is_explicit():
    bn = BatchNorm2D(2)
    x = np.random.default_rng(0).normal(3.0, 1.0, size=(4, 2, 3, 3))
    bn(x)
    np.testing.assert_array_equal(bn.buffers["running_mean"], 0)
    bn.forward(x, training=True)
    assert np.all(bn.buffers["running_mean"] > 0)


def test_forward_rejects_a_training_flag_that_is_not_a_bool():
    with pytest.raises(TypeError, match=r"Sequential.forward: `training` must be True or False. Got 'yes'"):
        Sequential(ReLU()).forward(np.ones((1, 2)), training="yes")


def test_backward_after_an_inference_forward_is_the_inference_gradient():
    model = Sequential(Flatten(), Dense(4, 3), Dropout(0.5), Dense(3, 2)).initialize(0)
    x = np.random.default_rng(1).normal(size=(2, 1, 2, 2)).astype(np.float32)
    model(x)
    dx = model.backward(np.ones((2, 2), np.float32))
    w1, w2 = model.layers[1].params["weight"], model.layers[3].params["weight"]
    np.testing.assert_allclose(dx.reshape(2, 4), np.ones((2, 2)) @ w2 @ w1, rtol=1e-5)


# -- shapes -----------------------------------------------------------------------------------------------------


def test_sequential_takes_layers_as_arguments_or_as_one_list():
    layers = [Flatten(), Dense(4, 2)]
    assert Sequential(*layers).layers == Sequential(layers).layers == layers
    assert Sequential(layers, (1, 2, 2)).input_shape == (1, 2, 2)  # the old positional form
    with pytest.raises(TypeError, match=r"`layers\[0\]` must be a Layer\. Got a type\. Did you mean ReLU\(\)\?"):
        Sequential(ReLU, Dense(2, 2))


@pytest.mark.parametrize(("kernel", "size"), [(1, 5), (3, 5), (5, 7), ((3, 5), 6)])
def test_padding_same_keeps_the_size_and_valid_is_zero(kernel, size):
    x = np.zeros((2, 3, size, size + 1), np.float32)
    assert Conv2D(3, 4, kernel, padding="same", rng=0).forward(x).shape == (2, 4, size, size + 1)
    valid = Conv2D(3, 4, kernel, padding="valid", rng=0)
    assert valid.padding == (0, 0) and valid.get_config()["padding"] == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kernel_size": 2, "padding": "same"}, r"`padding` must be a number for an even kernel_size"),
    ({"kernel_size": 3, "stride": 2, "padding": "same"}, r"`padding` must be an integer with stride > 1"),
    ({"kernel_size": 3, "padding": "full"}, r"`padding` must be an integer, a pair of integers, 'same' or 'valid'"),
])
def test_padding_strings_that_cannot_keep_the_size_are_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Conv2D(1, 2, **kwargs)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: MaxPool2D(pool_size=2), r"MaxPool2D: `pool_size` must be one of .* Did you mean `kernel_size`\?"),
    (lambda: Conv2D(1, filters=8, kernel_size=3), r"Conv2D: `filters` .* Did you mean `out_channels`\?"),
    (lambda: Dense(4, units=2), r"Dense: `units` .* Did you mean `out_features`\?"),
    (lambda: Dropout(rate=0.5), r"Dropout: `rate` .* Did you mean `p`\?"),
    (lambda: Conv2D(1, 2, 3, strides=2), r"Did you mean `stride`\?"),
    (lambda: Dense(4, 2, baias=False), r"Did you mean `bias`\?"),
])
def test_foreign_keyword_names_suggest_the_right_one(build, message):
    with pytest.raises(TypeError, match=message):
        build()


def test_channels_last_input_gets_a_hint():
    with pytest.raises(ValueError, match=r"looks channels-last .* x.transpose\(0, 3, 1, 2\)"):
        Conv2D(3, 4, 3).forward(np.zeros((2, 8, 8, 3), np.float32))


def test_lazy_sizes_are_inferred_from_input_shape_and_files_record_them(tmp_path):
    model = Sequential(Conv2D(out_channels=8, kernel_size=3, padding="same"), ReLU(), MaxPool2D(2), Flatten(),
                       Dense(out_features=10), input_shape=(1, 28, 28)).initialize(0)
    assert model.layers[0].params["weight"].shape == (8, 1, 3, 3)
    assert model.layers[4].params["weight"].shape == (10, 8 * 14 * 14)
    assert model.get_config()["layers"][4]["config"]["in_features"] == 1568
    model.save(tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


def test_lazy_sizes_are_inferred_at_the_first_forward_and_seeded_by_initialize():
    def build() -> Sequential:
        return Sequential(Flatten(), Dense(out_features=3), ReLU(), Dense(out_features=2)).initialize(7)

    a, b = build(), build()
    with pytest.raises(RuntimeError, match=r"layer 1 .* does not know its input size yet"):
        a.get_config()
    x = np.ones((2, 1, 2, 3), np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    assert a.layers[1].params["weight"].shape == (3, 6) and a.get_config()["layers"][1]["config"]["in_features"] == 6


def test_lazy_forms_cannot_be_confused_with_the_positional_signatures():
    assert Dense(4, 2).in_features == 4 and Conv2D(3, 8, 5).in_channels == 3
    with pytest.raises(TypeError, match=r"Dense: `out_features` must be given.*Dense\(out_features=10\)"):
        Dense(10)
    with pytest.raises(TypeError, match=r"Conv2D: `kernel_size` must be given"):
        Conv2D(1, 8)


# -- custom layers ----------------------------------------------------------------------------------------------


class Scale(Layer):
    """``y = a * x`` with one learnable scalar ``a``."""

    def __init__(self) -> None:
        super().__init__()
        self.add_param("a", np.full(1, 2.0, np.float32))

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.cache = x
        return self.params["a"] * x

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x = self._take_cache()
        self.grads["a"][...] = np.sum(grad * x)
        return grad * self.params["a"]


def test_add_param_creates_the_gradient_and_named_parameters_sees_it():
    model = Sequential(Scale(), Flatten(), Dense(4, 2))
    assert [name for name, _ in model.named_parameters()] == ["0.a", "2.weight", "2.bias"]
    assert model.layers[0].grads["a"].shape == (1,)
    with pytest.raises(TypeError, match=r"Scale: `w` must be a floating-point array"):
        model.layers[0].add_param("w", np.zeros(2, np.int64))


def test_a_parameter_without_a_gradient_is_a_clear_error():
    layer = Scale()
    layer.params["b"] = np.zeros(3, np.float32)
    with pytest.raises(RuntimeError, match=r"Scale \(layer 0\): `grads\['b'\]` must be an array shaped like "
                                           r"params\['b'\] \(3,\). Got None. Create parameters with "
                                           r"self.add_param"):
        Sequential(layer).named_parameters()


def test_a_shape_changing_layer_without_output_shape_fails_at_first_use():
    class Halve(Layer):
        def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
            return x[:, ::2]

    with pytest.raises(NotImplementedError, match=r"Halve: `output_shape` must be defined .* \(4,\) to \(2,\)"):
        Sequential(Halve())(np.ones((1, 4)))
    np.testing.assert_array_equal(Sequential(Scale())(np.ones((1, 4))), 2 * np.ones((1, 4)))


def test_help_shows_the_contract():
    doc = Layer.__doc__
    assert all(part in doc for part in ("forward(self, x, training=True)", "backward(self, grad)",
                                        "output_shape", "add_param", "replace=True"))


def test_a_taken_layer_name_is_an_error_unless_replacing():
    builtin = LAYER_REGISTRY["ReLU"]
    with pytest.raises(TypeError, match=r"Layer: `ReLU` must be a new layer name. .* numpycnn.layers.activations"
                                        r".ReLU. .*replace=True"):
        type("ReLU", (Layer,), {})
    assert LAYER_REGISTRY["ReLU"] is builtin
    try:
        mine = type("ReLU", (Layer,), {}, replace=True)
        assert LAYER_REGISTRY["ReLU"] is mine
    finally:
        LAYER_REGISTRY["ReLU"] = builtin


def test_redefining_the_same_class_replaces_it_as_a_notebook_cell_does():
    first = type("Twice", (Scale,), {"__module__": "notebook"})
    second = type("Twice", (Scale,), {"__module__": "notebook"})
    assert LAYER_REGISTRY["Twice"] is second is not first


def test_a_fused_pair_never_runs_a_users_replacement():
    class ReLU(Layer, replace=True):
        def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
            return x

    try:
        model = Sequential(ReLU(), MaxPool2D(2))
        assert model.plan().fused_steps == []
        assert Sequential(BuiltinReLU(), MaxPool2D(2)).plan().fused_steps
    finally:
        LAYER_REGISTRY["ReLU"] = BuiltinReLU


def test_loading_an_unknown_custom_layer_says_which_module_to_import(tmp_path):
    path = tmp_path / "custom.safetensors"
    Sequential(Scale(), Flatten(), Dense(4, 2)).initialize(0).save(path)
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    assert json.loads(header["__metadata__"]["layer_modules"]) == {"Scale": __name__}
    saved = LAYER_REGISTRY.pop("Scale")
    try:
        with pytest.raises(ModelFileError, match=rf"unknown layer type 'Scale'. If it is a custom layer, import "
                                                 rf"{__name__} \(the module that defines it\) before loading"):
            load_model(path)
    finally:
        LAYER_REGISTRY["Scale"] = saved
    np.testing.assert_array_equal(load_model(path).layers[0].params["a"], [2.0])


# -- gradcheck --------------------------------------------------------------------------------------------------


def test_gradcheck_projection_cannot_coincide_with_an_input_drawn_from_the_same_seed():
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2))  # the trap: the old projection was this array
    result = gradcheck(BatchNorm2D(3), x)
    assert result.passed and result < 1e-6, result


def test_gradcheck_result_says_pass_or_fail_and_stays_a_float():
    class Wrong(Scale):
        def backward(self, grad: np.ndarray) -> np.ndarray:
            super().backward(grad)
            return grad  # forgets the factor a

    good = gradcheck(Scale(), np.random.default_rng(1).normal(size=(2, 3)))
    bad = gradcheck(Wrong(), np.random.default_rng(1).normal(size=(2, 3)))
    assert isinstance(good, float) and good.passed and good.threshold == THRESHOLD == 1e-6
    assert not bad.passed and bad.errors["input"] > 0.1 and bad.errors["a"] < 1e-8
    assert "FAILED" in repr(bad) and "(input)" in repr(bad) and "passed" in repr(good)
