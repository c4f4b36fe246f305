"""Ready-made architectures: layers, output shapes, parameter counts, cost, seeding, the registry."""

from __future__ import annotations

import numpy as np
import pytest

from numpycnn.model.zoo import MODELS, build_model, deep_cnn, forward_flops, lenet5, seed_cnn


@pytest.mark.parametrize("name, kwargs, input_shape, classes", [
    ("seed", {}, (1, 28, 28), 10),
    ("lenet5", {}, (1, 28, 28), 10),
    ("lenet5", {"activation": "tanh", "num_classes": 5}, (1, 28, 28), 5),
    ("lenet5", {"input_shape": (3, 32, 32)}, (3, 32, 32), 10),
    ("deep", {}, (1, 28, 28), 10),
    ("deep", {"in_channels": 3, "input_shape": (3, 32, 32)}, (3, 32, 32), 10),
    ("deep", {"widths": (4, 4, 8), "hidden": 16, "num_classes": 3}, (1, 28, 28), 3),
])
def test_output_shapes(name, kwargs, input_shape, classes):
    model = build_model(name, **kwargs)
    assert model.input_shape == input_shape
    out = model.forward(np.zeros((2, *input_shape), np.float32), training=False)
    assert out.shape == (2, classes) and out.dtype == np.float32
    assert model.output_shapes(input_shape)[-1] == (classes,)


def test_seed_cnn_is_exactly_the_original():
    model = seed_cnn()
    assert [layer.name for layer in model.layers] == ["Conv2D", "ReLU", "MaxPool2D", "Flatten", "Dense"]
    conv, dense = model.layers[0], model.layers[4]
    assert conv.params["weight"].shape == (8, 1, 3, 3) and conv.params["bias"].shape == (8,)
    assert dense.params["weight"].shape == (10, 1352)
    assert model.num_parameters() == 8 * 9 + 8 + 1352 * 10 + 10 == 13_610


def test_lenet5_parameter_count():
    # conv 6*25+6, conv 16*6*25+16, dense 400*120+120, 120*84+84, 84*10+10
    assert lenet5().num_parameters() == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706
    assert lenet5().layers[7].params["weight"].shape == (120, 400)


def test_deep_cnn_layers_and_parameter_count():
    model = deep_cnn()
    names = [layer.name for layer in model.layers]
    assert names.count("Conv2D") == 3 and names.count("BatchNorm2D") == 3 and names.count("Dropout") == 2
    # bias-free convs (batch norm follows): 32*9, 32*32*9, 64*32*9; BN 2*(32+32+64); dense 3136*128+128, 1290
    expected = 288 + 9_216 + 18_432 + 2 * (32 + 32 + 64) + 3136 * 128 + 128 + 128 * 10 + 10
    assert model.num_parameters() == expected == 431_018


def test_forward_flops_and_the_cost_budget():
    assert forward_flops(seed_cnn()) == 2 * (8 * 9 * 26 * 26 + 1352 * 10)
    assert forward_flops(deep_cnn()) <= 25e6  # the budget for a 2-core CPU
    assert forward_flops(deep_cnn(widths=(16, 32, 64))) < forward_flops(deep_cnn())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_same_model_including_dropout_generators(name):
    a, b, c = build_model(name, seed=3), build_model(name, seed=3), build_model(name, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not all(np.array_equal(sa[k], sc[k]) for k in sa)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))


def test_models_are_initialised_for_their_activations():
    """He init before ReLU: the first conv's weights have std near sqrt(2 / fan_in)."""
    weight = deep_cnn(seed=0).layers[3].params["weight"]  # Conv(32, 32, 3), fan_in 288
    assert weight.std() == pytest.approx(np.sqrt(2 / 288), rel=0.05)


def test_build_model_errors_list_the_names():
    with pytest.raises(ValueError, match=r"build_model: `name` must be one of "
                                         r"\['deep', 'deep-dropout', 'deep-plain', 'lenet5', 'seed'\]\. "
                                         r"Got 'resnet'"):
        build_model("resnet")
    with pytest.raises(TypeError):
        build_model("seed", widths=(1, 2, 3))


@pytest.mark.parametrize("builder, kwargs, match", [
    (deep_cnn, {"widths": (8, 8)}, r"deep_cnn: `widths` must be three channel counts"),
    (deep_cnn, {"dropout": 1.0}, r"deep_cnn: `dropout` must be a real number in \[0\.0, 1\.0\)"),
    (lenet5, {"activation": "gelu"}, r"lenet5: `activation` must be one of \['relu', 'tanh'\]"),
    (lenet5, {"input_shape": (28, 28)}, r"lenet5: `input_shape` must be a per-image shape \(C, H, W\)"),
    (lenet5, {"input_shape": (1, 8, 8)}, r"lenet5: `input_shape` \(1, 8, 8\) is too small"),
    (seed_cnn, {"num_classes": 1}, r"seed_cnn: `num_classes` must be an integer >= 2"),
])
def test_builders_check_their_arguments(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        builder(**kwargs)


def test_deep_cnn_trains_a_step_with_batch_norm_and_dropout():
    from numpycnn.layers.losses import CrossEntropyLoss
    from numpycnn.optim import SGD

    model = deep_cnn(widths=(4, 4, 8), hidden=16, seed=0)
    x = np.random.default_rng(1).random((8, 1, 28, 28), dtype=np.float32)
    y = np.arange(8) % 10
    loss = CrossEntropyLoss()
    before = loss.forward(model.forward(x, training=False), y)
    for _ in range(20):
        model.zero_grad()
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        SGD(lr=0.05, momentum=0.0).step(model)
    assert loss.forward(model.forward(x, training=False), y) < before


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_round_trip_through_model_files(tmp_path, name):
    from numpycnn.model.io import load_model

    model = build_model(name, seed=1)
    model.save(tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize(("name", "has_batch_norm", "has_dropout"), [
    ("deep-plain", False, False), ("deep-dropout", False, True), ("deep", True, True),
])
def test_the_ablation_variants_take_away_one_part_at_a_time(name, has_batch_norm, has_dropout):
    kinds = {layer.name for layer in build_model(name).layers}
    assert ("BatchNorm2D" in kinds) == has_batch_norm
    assert ("Dropout" in kinds) == has_dropout
    convs = [layer for layer in build_model(name).layers if layer.name == "Conv2D"]
    assert all(("bias" in conv.params) != has_batch_norm for conv in convs)
