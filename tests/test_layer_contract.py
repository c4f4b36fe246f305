"""One contract suite run over every registered layer (the scikit-learn ``check_estimator`` idea).

Each layer class in ``LAYER_REGISTRY`` needs a case below: a small valid constructor config and an input
shape. ``VARIANTS`` adds more configurations of a layer (Conv2D's dilated and grouped paths) to the same suite.
A new layer without a case fails ``test_every_registered_layer_has_a_case``.
"""

import json

import fake_device
import numpy as np
import pytest

import numpycnn.layers  # noqa: F401  (fills the registry)
from numpycnn.core.backend import device_of, to_device, to_host
from numpycnn.layers import LAYER_REGISTRY
from numpycnn.layers.gradcheck import gradcheck

#: The NumPy-backed stand-in for a GPU (tests/fake_device.py); tests/test_gpu.py runs the same check on "cuda".
STANDIN = fake_device.register()

#: name -> (constructor kwargs, input shape with batch axis); non-default values where possible, so a config
#: that forgets an argument rebuilds a different layer
CASES = {
    "Conv2D": ({"in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": 1, "padding": 1},
               (2, 2, 5, 6)),
    "MaxPool2D": ({"kernel_size": 2, "stride": 1}, (2, 3, 4, 6)),
    "AvgPool2D": ({"kernel_size": 3, "stride": 1}, (2, 3, 4, 6)),
    "GlobalAvgPool2D": ({}, (2, 3, 4, 5)),
    "Flatten": ({}, (2, 3, 4)),
    "Dense": ({"in_features": 5, "out_features": 3}, (3, 5)),
    "ReLU": ({}, (3, 4)),
    "LeakyReLU": ({"negative_slope": 0.1}, (2, 3, 2, 2)),
    "Sigmoid": ({}, (3, 4)),
    "Tanh": ({}, (3, 4)),
    "Softmax": ({}, (3, 4)),
    "Dropout": ({"p": 0.3}, (3, 4)),
    "BatchNorm2D": ({"num_features": 3, "eps": 1e-3, "momentum": 0.3}, (2, 3, 4, 4)),
    "BatchNorm1D": ({"num_features": 4, "eps": 1e-2, "momentum": 0.05}, (3, 4)),
}


#: More configurations of a layer that run through the whole contract suite: case id -> (layer name, constructor
#: kwargs, input shape). Conv2D's general path (functional.conv.conv2d_forward_general): dilated, grouped,
#: depthwise with a channel multiplier.
VARIANTS = {
    "Conv2D-dilated": ("Conv2D", {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2), "stride": (1, 2),
                                  "padding": (2, 1), "dilation": (2, 3)}, (2, 2, 7, 8)),
    "Conv2D-grouped": ("Conv2D", {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2,
                                  "padding": 1, "groups": 2}, (2, 4, 7, 6)),
    "Conv2D-depthwise": ("Conv2D", {"in_channels": 3, "out_channels": 6, "kernel_size": 3, "padding": 2,
                                    "dilation": 2, "groups": 3, "bias": False}, (2, 3, 5, 6)),
}

#: More cases for the device check, for the kernels the cases above do not reach: the channel-major and
#: strided convolutions (col2im), the 2x2 max-pooling fast path, a convolution without bias.
DEVICE_CASES = {
    **{name: (name, *case) for name, case in CASES.items()},
    **VARIANTS,
    "Conv2D-channel-major-strided": ("Conv2D", {"in_channels": 8, "out_channels": 4, "kernel_size": 3,
                                                "stride": 2, "padding": 1}, (3, 8, 7, 6)),
    "Conv2D-channel-major-wide": ("Conv2D", {"in_channels": 8, "out_channels": 4, "kernel_size": 3,
                                             "padding": 1, "bias": False}, (2, 8, 5, 5)),
    "Conv2D-batch-major-narrow": ("Conv2D", {"in_channels": 1, "out_channels": 8, "kernel_size": 3}, (2, 1, 6, 5)),
    "MaxPool2D-2x2": ("MaxPool2D", {"kernel_size": 2}, (2, 3, 5, 6)),
}


def make(name, seed=0, case=None):
    """The layer (params drawn from ``seed``), an input and an upstream gradient, all float32."""
    if case is None and name in VARIANTS:
        name, *case = VARIANTS[name]
    if name not in LAYER_REGISTRY:
        pytest.skip(f"{name} is not in LAYER_REGISTRY (not implemented yet)")
    kwargs, shape = CASES[name] if case is None else case
    layer = LAYER_REGISTRY[name](**kwargs)
    if layer.params:
        layer.reset_parameters(np.random.default_rng(seed), "relu")
    if hasattr(layer, "rng"):
        layer.rng = np.random.default_rng(seed)
    # continuous values: no pooling ties, no ReLU zeros; a seed unlike gradcheck's projection seed
    x = np.random.default_rng(seed + 1000).standard_normal(shape).astype(np.float32)
    return layer, x


def upstream(layer, y, seed=1):
    return np.random.default_rng(seed + 2000).standard_normal(y.shape).astype(y.dtype)


def cache_nbytes(obj):
    """Bytes of every array reachable from a cache (tuples, lists, dicts)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(cache_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(cache_nbytes(o) for o in obj.values())
    return 0


NAMES = sorted(CASES) + sorted(VARIANTS)


def test_every_registered_layer_has_a_case():
    ours = {name for name, cls in LAYER_REGISTRY.items() if cls.__module__.startswith("numpycnn.")}
    missing = sorted(ours - set(CASES))
    assert not missing, f"add a contract case to CASES in {__file__} for: {missing}"


def test_every_case_names_a_registered_layer():
    """The layers the project promises (issue 2) exist; a case for a removed or renamed layer fails here."""
    unknown = sorted((set(CASES) | {name for name, *_ in VARIANTS.values()}) - set(LAYER_REGISTRY))
    assert not unknown, f"no registered layer for contract cases {unknown}; is its module imported?"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [True, False])
def test_forward_shape_backward_shapes_and_dtypes(name, training):
    layer, x = make(name)
    y = layer.forward(x, training=training)
    assert y.shape == (x.shape[0], *layer.output_shape(x.shape[1:]))
    assert y.dtype == np.float32
    dx = layer.backward(upstream(layer, y))
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert list(layer.grads) == list(layer.params)
    assert list(layer.params) in ([], ["weight"], ["weight", "bias"])  # PyTorch state-dict order
    for key, value in layer.params.items():
        assert value.dtype == np.float32
        assert layer.grads[key].shape == value.shape and layer.grads[key].dtype == value.dtype
        assert np.all(np.isfinite(layer.grads[key]))
    assert list(layer.buffers) in ([], ["running_mean", "running_var", "num_batches_tracked"])


@pytest.mark.parametrize("name", NAMES)
def test_float64_in_float64_out_and_gradcheck(name):
    layer, x = make(name)
    layer.astype(np.float64)
    x = x.astype(np.float64)
    y = layer.forward(x)
    dx = layer.backward(upstream(layer, y))
    assert y.dtype == np.float64 and dx.dtype == np.float64
    assert all(layer.grads[k].dtype == np.float64 for k in layer.params)
    assert gradcheck(layer, x) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_cache_is_overwritten_not_appended(name):
    layer, x = make(name)
    layer.forward(x)
    size_once = cache_nbytes(layer.cache)
    x2 = np.random.default_rng(5).standard_normal((2 * x.shape[0], *x.shape[1:])).astype(np.float32)
    for _ in range(3):
        layer.forward(x2)
    layer.forward(x)
    assert cache_nbytes(layer.cache) == size_once
    # the backward pass uses the latest forward pass only
    fresh, _ = make(name)
    for lay in (layer, fresh):
        if hasattr(lay, "rng"):
            lay.rng = np.random.default_rng(9)
    y = layer.forward(x2)
    dy = upstream(layer, y)
    np.testing.assert_array_equal(y, fresh.forward(x2))
    np.testing.assert_array_equal(layer.backward(dy), fresh.backward(dy))
    for key in layer.grads:
        np.testing.assert_array_equal(layer.grads[key], fresh.grads[key])


@pytest.mark.parametrize("name", NAMES)
def test_backward_before_forward_raises(name):
    layer, x = make(name)
    with pytest.raises(RuntimeError, match=rf"{layer.name}: backward\(\) called before forward\(\)"):
        layer.backward(np.zeros(x.shape, np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_config_rebuilds_the_layer(name):
    layer, x = make(name)
    config = json.loads(json.dumps(layer.get_config()))  # as a model file stores it
    clone = type(layer)(**config)
    assert json.loads(json.dumps(clone.get_config())) == config
    assert {k: v.shape for k, v in clone.params.items()} == {k: v.shape for k, v in layer.params.items()}
    assert clone.output_shape(x.shape[1:]) == layer.output_shape(x.shape[1:])
    assert repr(clone) == repr(layer)
    for key in layer.params:  # same weights -> same function: the config holds every hyperparameter
        clone.params[key][...] = layer.params[key]
    for training in (False, True):
        for lay in (layer, clone):
            if hasattr(lay, "rng"):
                lay.rng = np.random.default_rng(4)
        y_clone = clone.forward(x, training=training)
        np.testing.assert_array_equal(y_clone, layer.forward(x, training=training))
    for key in layer.buffers:
        np.testing.assert_array_equal(clone.buffers[key], layer.buffers[key])


@pytest.mark.parametrize("name", NAMES)
def test_params_and_grads_are_the_layers_own_arrays(name):
    layer, x = make(name)
    params = dict(layer.params)
    grads = dict(layer.grads)
    y0 = layer.forward(x, training=False)
    layer.backward(upstream(layer, y0))
    for key in params:  # filled in place, not replaced
        assert layer.params[key] is params[key] and layer.grads[key] is grads[key]
    for key in layer.params:
        before = layer.forward(x, training=False)
        layer.params[key][...] += 0.5
        assert not np.allclose(layer.forward(x, training=False), before), f"params[{key!r}] is not used"
    if layer.params:
        layer.reset_parameters(np.random.default_rng(3), "linear")
        assert all(layer.params[k] is params[k] for k in params)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_not_mutated(name):
    layer, x = make(name)
    x0 = x.copy()
    y = layer.forward(x)
    dy = upstream(layer, y)
    dy0 = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


@pytest.mark.parametrize("name", NAMES)
def test_batch_of_one_and_integer_input(name):
    layer, x = make(name)
    x1 = x[:1]
    training = name != "BatchNorm1D"  # one value per feature cannot be normalised in training
    y = layer.forward(x1, training=training)
    assert y.shape == (1, *layer.output_shape(x.shape[1:]))
    assert layer.backward(upstream(layer, y)).shape == x1.shape
    assert layer.forward((x * 3).astype(np.int64), training=False).dtype == np.float32


def check_on_device(case, device, training, rtol=0.0, atol=0.0, dtype=np.float32):
    """Forward and backward of the layer of ``DEVICE_CASES[case]`` on ``device`` equal NumPy's on the same
    weights (and the same dropout mask): outputs, input gradients, parameter gradients and buffers, each left
    on the device, in ``dtype``."""
    name, *config = DEVICE_CASES[case]
    host, x = make(name, case=config)
    layer, _ = make(name, case=config)
    host.astype(dtype)
    layer.astype(dtype)
    x = x.astype(dtype)
    assert layer.to(device) is layer
    y = host.forward(x, training=training)
    y_dev = layer.forward(to_device(x, device), training=training)
    dy = upstream(host, y)
    dx_dev = layer.backward(to_device(dy, device))
    pairs = [("y", y, y_dev), ("dx", host.backward(dy), dx_dev)]
    pairs += [(f"grads[{k!r}]", host.grads[k], layer.grads[k]) for k in host.grads]
    pairs += [(f"params[{k!r}]", host.params[k], layer.params[k]) for k in host.params]
    pairs += [(f"buffers[{k!r}]", host.buffers[k], layer.buffers[k]) for k in host.buffers]
    for what, expected, got in pairs:
        assert device_of(got) == device, f"{name}: {what} left the device"
        assert to_host(got).dtype == expected.dtype and (expected.dtype == dtype or "buffers" in what), what
        np.testing.assert_allclose(to_host(got), expected, rtol=rtol, atol=atol, err_msg=f"{name}: {what}")


@pytest.mark.parametrize("case", sorted(DEVICE_CASES))
@pytest.mark.parametrize("training", [True, False])
def test_forward_and_backward_on_a_device_equal_numpys(case, training):
    """The stand-in device runs the same NumPy code behind CuPy's wall: equal results, and any host array
    mixed into the device computation raises."""
    check_on_device(case, STANDIN, training)


@pytest.mark.parametrize("name", NAMES)
def test_float64_on_a_device_stays_float64(name):
    check_on_device(name, STANDIN, training=True, dtype=np.float64)
