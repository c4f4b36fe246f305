"""Conv2D's dilation and groups: the general path against the loops, finite differences, PyTorch and the tuned
path; the layer's arguments, shapes and errors; model files old and new."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from numpycnn import ModelFileError, io, reference
from numpycnn.functional import conv as conv_module
from numpycnn.functional.conv import (
    ConvCache,
    GeneralConvCache,
    Workspace,
    conv2d_backward,
    conv2d_backward_general,
    conv2d_forward,
    conv2d_forward_general,
    fast_path,
)
from numpycnn.layers import Conv2D, Dense, Flatten, ReLU
from numpycnn.layers.gradcheck import gradcheck
from numpycnn.model.sequential import Sequential

ROOT = Path(__file__).resolve().parents[1]

#: (N, C_in, H, W, C_out, kernel_size, stride, padding, dilation, groups): dilation 1 to 3, groups 1, 2 and C
#: (depthwise), channel multipliers (C_out = k C_in with groups = C_in), stride 1 and 2, padding 0 to 2, odd and
#: non-square sizes and kernels, pairs, a batch of one, a dilated kernel as large as the padded input
CASES = [
    (1, 3, 9, 7, 4, 3, 1, 0, 2, 1),
    (2, 2, 11, 8, 3, (3, 2), 2, 1, 3, 1),
    (2, 4, 7, 9, 6, 3, 1, 1, 1, 2),
    (2, 4, 8, 7, 4, 3, 2, 2, 2, 2),
    (2, 3, 7, 7, 3, 3, 1, 1, 1, 3),
    (1, 3, 9, 6, 6, (3, 1), (2, 1), (2, 0), (2, 1), 3),
    (2, 2, 6, 5, 6, 2, 1, 2, 3, 2),
    (3, 6, 5, 5, 9, 1, 1, 0, 1, 3),
    (2, 4, 10, 9, 8, (2, 3), (1, 2), (1, 2), (1, 2), 4),
    (1, 1, 7, 7, 2, 3, 1, 0, 3, 1),
    (2, 6, 9, 9, 4, 3, 2, 1, 2, 2),
    (1, 4, 5, 8, 4, 3, 2, 0, (1, 3), 4),
]
IDS = [f"x{c[:4]}-f{c[4]}-k{c[5]}-s{c[6]}-p{c[7]}-d{c[8]}-g{c[9]}" for c in CASES]


def random_cases(count: int, seed: int = 321) -> list[tuple]:
    """Random valid configurations: dilation 1-3, groups a divisor of C_in (up to depthwise) with a channel
    multiplier 1-2, stride 1-2, padding 0-2."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        kh, kw, dh, dw, ph, pw = (int(v) for v in rng.integers([1, 1, 1, 1, 0, 0], [4, 4, 4, 4, 3, 3]))
        sh, sw = (int(v) for v in rng.integers(1, 3, size=2))
        H, W = (int(v) for v in rng.integers(2, 12, size=2))
        if H + 2 * ph < dh * (kh - 1) + 1 or W + 2 * pw < dw * (kw - 1) + 1:
            continue
        C = int(rng.integers(1, 7))
        groups = int(rng.choice([g for g in range(1, C + 1) if C % g == 0]))
        F = groups * int(rng.integers(1, 3)) * (1 if groups == C else int(rng.integers(1, 3)))
        cases.append((int(rng.integers(1, 4)), C, H, W, F, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups))
    return cases


RANDOM = random_cases(20)


def setup(case, dtype=np.float64, seed=0, bias=True):
    N, C, H, W, F, k, s, p, d, g = case
    layer = Conv2D(C, F, k, stride=s, padding=p, bias=bias, dilation=d, groups=g, rng=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    if bias:
        layer.params["bias"][...] = rng.standard_normal(F)  # nonzero, so a dropped bias shows
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    return layer, x


def loop_reference(layer, x, dy):
    """The loop definition's ``y`` and ``(dx, dw, db)`` for ``layer`` at ``x`` with upstream gradient ``dy``."""
    w, b = layer.params["weight"], layer.params.get("bias")
    args = (layer.stride, layer.padding, layer.dilation, layer.groups)
    return reference.conv2d_forward(x, w, b, *args), reference.conv2d_backward(dy, x, w, *args)


# -- the math ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_loop_reference(case):
    layer, x = setup(case)
    y = layer.forward(x)
    assert isinstance(layer.cache, GeneralConvCache) == (not fast_path(layer.dilation, layer.groups))
    dy = np.random.default_rng(7).standard_normal(y.shape)
    dx = layer.backward(dy)
    ref_y, (ref_dx, ref_dw, ref_db) = loop_reference(layer, x, dy)
    for ours, ref in [(y, ref_y), (dx, ref_dx), (layer.grads["weight"], ref_dw), (layer.grads["bias"], ref_db)]:
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(case, bias):
    layer, x = setup(case, bias=bias)
    errors = gradcheck(layer, x, return_all=True)
    assert set(errors) == ({"input", "weight", "bias"} if bias else {"input", "weight"})
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-6), (np.float32, 1e-4)])
@pytest.mark.parametrize("case", CASES + RANDOM, ids=IDS + [f"random{i}" for i in range(len(RANDOM))])
def test_matches_pytorch(case, dtype, rtol):
    """Forward and autograd backward of ``torch.nn.functional.conv2d`` with the same dilation and groups."""
    torch = pytest.importorskip("torch")
    layer, x = setup(case, dtype=dtype)
    w, b = layer.params["weight"], layer.params["bias"]
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=layer.stride, padding=layer.padding,
                                    dilation=layer.dilation, groups=layer.groups)
    dy = np.random.default_rng(3).standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(dy))
    y = layer.forward(x)
    dx = layer.backward(dy)
    assert y.dtype == dx.dtype == dtype
    pairs = [(y, yt), (dx, xt.grad), (layer.grads["weight"], wt.grad), (layer.grads["bias"], bt.grad)]
    for ours, theirs in pairs:
        theirs = theirs.detach().numpy()
        assert ours.shape == theirs.shape
        scale = max(np.abs(theirs).max(), 1e-30)
        assert np.abs(ours - theirs).max() / scale < rtol


def test_the_tables_cover_what_the_issue_asks():
    """Dilation 1-3, groups 1 / 2 / C (depthwise) and a channel multiplier, stride 1-2, padding 0-2, batch of one,
    odd and non-square sizes: the PyTorch table above holds each."""
    cases = CASES + RANDOM
    pairs = [tuple(np.broadcast_to(v, 2)) for c in cases for v in (c[6], c[7], c[8])]
    assert {d for c in cases for d in np.ravel(c[8])} >= {1, 2, 3}
    assert {int(v) for p in pairs for v in p} >= {0, 1, 2, 3}
    assert {c[9] for c in cases} >= {1, 2} and any(c[9] == c[1] > 1 for c in cases)  # depthwise
    assert any(c[9] == c[1] > 1 and c[4] > c[1] for c in cases)  # depthwise with a channel multiplier
    assert {int(s) for c in cases for s in np.ravel(c[6])} >= {1, 2}
    assert {int(p) for c in cases for p in np.ravel(c[7])} >= {0, 1, 2}
    assert any(c[0] == 1 for c in cases) and any(c[2] != c[3] and c[2] % 2 for c in cases)


#: configurations of the tuned path (dilation 1, groups 1) for the general path to reproduce
PLAIN = [(1, 1, 5, 5, 2, 3, 1, 0), (2, 3, 6, 7, 4, (2, 3), 1, 1), (2, 2, 7, 5, 3, 3, 2, 2),
         (3, 8, 6, 5, 9, 3, 1, 1), (2, 9, 5, 6, 8, (1, 3), (2, 1), (0, 2))]


@pytest.mark.parametrize("case", PLAIN)
def test_general_path_equals_the_tuned_path_where_both_apply(case):
    N, C, H, W, F, k, s, p = case
    rng = np.random.default_rng(4)
    kh, kw = np.broadcast_to(k, 2)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, kh, kw)), rng.standard_normal(F)
    y, cache = conv2d_forward(x, w, b, s, p, workspace=Workspace())
    y_general, cache_general = conv2d_forward_general(x, w, b, s, p, workspace=Workspace())
    assert isinstance(cache, ConvCache) and isinstance(cache_general, GeneralConvCache)
    np.testing.assert_allclose(y_general, y, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    for ours, theirs in zip(conv2d_backward_general(dy, cache_general), conv2d_backward(dy, cache), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_the_rule_that_picks_the_path():
    assert fast_path(1, 1) and fast_path((1, 1), 1)
    assert not fast_path(2, 1) and not fast_path((1, 2), 1) and not fast_path(1, 2)
    x, w = np.ones((1, 2, 6, 6)), np.ones((2, 2, 3, 3))
    assert isinstance(conv2d_forward(x, w, None)[1], ConvCache)
    assert isinstance(conv2d_forward(x, w, None, dilation=2)[1], GeneralConvCache)
    assert isinstance(conv2d_forward(x, w[:, :1], None, groups=2)[1], GeneralConvCache)
    layer = Conv2D(2, 4, 3, rng=0)
    layer.forward(x)
    assert isinstance(layer.cache, ConvCache)


@pytest.mark.parametrize("images_per_chunk", [1, 2, 3])
@pytest.mark.parametrize("case", [CASES[3], CASES[5], CASES[8]], ids=[IDS[3], IDS[5], IDS[8]])
def test_chunked_forward_and_gradients_match_reference(case, images_per_chunk, monkeypatch):
    """Any chunk size, a partial last chunk included (the columns are then rebuilt in backward), gives the loop
    definition's output and gradients; the second pass reuses the workspace."""
    layer, x = setup((5, *case[1:]))
    g = conv_module.general_geometry(x.shape, layer.params["weight"].shape, layer.stride, layer.padding,
                                     layer.dilation, layer.groups, 8)
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", images_per_chunk * g.C * g.kh * g.kw * g.Ho * g.Wo * 8)
    for _ in range(2):
        y = layer.forward(x)
        assert layer.cache.geometry.chunk == images_per_chunk and layer.cache.cols is None
        dy = np.random.default_rng(3).standard_normal(y.shape)
        dx = layer.backward(dy)
        ref_y, (ref_dx, ref_dw, ref_db) = loop_reference(layer, x, dy)
        for ours, ref in [(y, ref_y), (dx, ref_dx), (layer.grads["weight"], ref_dw),
                          (layer.grads["bias"], ref_db)]:
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_reused_buffers_never_leak_into_returned_arrays():
    layer, x = setup(CASES[3])
    y1 = layer.forward(x)
    dx1 = layer.backward(np.ones_like(y1))
    y1_copy, dx1_copy = y1.copy(), dx1.copy()
    y2 = layer.forward(-2 * x)
    dx2 = layer.backward(np.full_like(y2, 3.0))
    ref_y2, (ref_dx2, _, _) = loop_reference(layer, -2 * x, np.full_like(y2, 3.0))
    np.testing.assert_allclose(y2, ref_y2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx2, ref_dx2, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(dx1, dx1_copy)
    x3 = np.random.default_rng(4).standard_normal((5, *x.shape[1:]))  # another batch size: new buffers
    y3 = layer.forward(x3)
    dx3 = layer.backward(np.ones_like(y3))
    ref_y3, (ref_dx3, _, _) = loop_reference(layer, x3, np.ones_like(y3))
    np.testing.assert_allclose(y3, ref_y3, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx3, ref_dx3, rtol=1e-12, atol=1e-12)


def test_functional_without_bias_without_input_gradient_and_errors():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 3))
    y, cache = conv2d_forward(x, w, None, 1, 2, 2, 2, workspace=Workspace())
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache)
    assert db is None and dw.shape == w.shape
    none_dx, dw2, _ = conv2d_backward(dy, cache, need_dx=False)
    assert none_dx is None
    np.testing.assert_array_equal(dw, dw2)
    np.testing.assert_allclose(dx, reference.conv2d_backward(dy, x, w, 1, 2, 2, 2)[0], rtol=1e-12)
    with pytest.raises(ValueError, match=r"`dout` must have the output's shape \(2, 6, 7, 6\)"):
        conv2d_backward(dy[:1], cache)
    with pytest.raises(ValueError, match=r"weight must have shape \(F, C / groups, kh, kw\) .* Got weight "
                                         r"\(6, 2, 3, 3\) for input \(2, 4, 7, 6\) and groups=4"):
        conv2d_forward(x, w, None, groups=4)
    with pytest.raises(ValueError, match=r"weight must have shape .* groups=2"):
        conv2d_forward(x, w[:5], None, groups=2)  # 5 filters in 2 groups
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) with dilation \(4, 4\) spans \(9, 9\), more than the "
                                         r"padded input \(7, 6\)"):
        conv2d_forward(x, w, None, dilation=4, groups=2)


# -- the layer ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, in_shape, out_shape",
    [
        ({"in_channels": 1, "out_channels": 8, "kernel_size": 3, "dilation": 2}, (1, 28, 28), (8, 24, 24)),
        ({"in_channels": 3, "out_channels": 3, "kernel_size": 3, "padding": 2, "dilation": 2, "groups": 3},
         (3, 9, 9), (3, 9, 9)),
        ({"in_channels": 4, "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 2},
         (4, 7, 8), (8, 4, 4)),
        ({"in_channels": 2, "out_channels": 6, "kernel_size": (3, 2), "padding": (0, 1), "dilation": (3, 2),
          "groups": 2}, (2, 11, 6), (6, 5, 6)),
        ({"in_channels": 1, "out_channels": 1, "kernel_size": 3, "dilation": 3}, (1, 7, 7), (1, 1, 1)),
        ({"in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": "same", "dilation": 3, "groups": 4},
         (4, 10, 7), (4, 10, 7)),
        ({"in_channels": 2, "out_channels": 2, "kernel_size": 2, "padding": "same", "dilation": 2},
         (2, 5, 6), (2, 5, 6)),
    ],
)
def test_shape_table(kwargs, in_shape, out_shape):
    """:math:`H_{out} = \\lfloor (H + 2p - d (k - 1) - 1) / s \\rfloor + 1`, from the layer and from a forward pass."""
    layer = Conv2D(**kwargs, rng=0)
    assert layer.output_shape(in_shape) == out_shape
    assert layer.forward(np.zeros((2, *in_shape), np.float32)).shape == (2, *out_shape)


def test_parameters_config_and_initialisation():
    layer = Conv2D(16, 32, (3, 5), stride=2, padding=(1, 2), dilation=(2, 1), groups=4, rng=0)
    assert layer.params["weight"].shape == (32, 4, 3, 5) and layer.params["bias"].shape == (32,)
    std = layer.params["weight"].std()
    assert abs(std - np.sqrt(2 / (4 * 15))) < 0.05 * std  # He: N(0, 2 / fan_in), fan_in = C_in / G kh kw
    config = layer.get_config()
    assert config == {"in_channels": 16, "out_channels": 32, "kernel_size": [3, 5], "stride": 2,
                      "padding": [1, 2], "bias": True, "dilation": [2, 1], "groups": 4}
    clone = Conv2D(**json.loads(json.dumps(config)))
    assert clone.get_config() == config and clone.dilation == (2, 1) and clone.groups == 4
    assert repr(Conv2D(3, 6, 3, dilation=2, groups=3)).endswith("bias=True, dilation=2, groups=3)")
    # the defaults are not written: a file of any other convolution is what numpycnn wrote before
    assert set(Conv2D(3, 6, 3).get_config()) == {"in_channels", "out_channels", "kernel_size", "stride",
                                                 "padding", "bias"}
    assert Conv2D(3, 6, 3, dilation=(1, 1), groups=1).get_config() == Conv2D(3, 6, 3).get_config()
    assert Conv2D(4, 4, 3, 1, 1, True, 2, 4).get_config()["groups"] == 4  # positional, after bias


def test_lazy_in_channels_with_groups():
    layer = Conv2D(out_channels=6, kernel_size=3, groups=3, padding=1)
    assert layer.forward(np.ones((2, 3, 5, 5), np.float32)).shape == (2, 6, 5, 5)
    assert layer.params["weight"].shape == (6, 1, 3, 3)
    lazy = Conv2D(out_channels=6, kernel_size=3, groups=3)
    with pytest.raises(ValueError, match=r"`groups` must be an integer that divides both in_channels and "
                                         r"out_channels\. Got groups=3, in_channels=4, out_channels=6\.$"):
        lazy.forward(np.ones((1, 4, 5, 5), np.float32))
    assert not lazy.built and lazy.in_channels is None  # a refused build leaves it lazy
    assert lazy.forward(np.ones((1, 6, 5, 5), np.float32)).shape == (1, 6, 3, 3)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"groups": 3}, ValueError, r"Conv2D: `groups` must be an integer that divides both in_channels and "
                                    r"out_channels\. Got groups=3, in_channels=4, out_channels=6\.$"),
        ({"groups": 4}, ValueError, r"Got groups=4, in_channels=4, out_channels=6\.$"),
        ({"in_channels": 6, "out_channels": 4, "groups": 4}, ValueError,
         r"Got groups=4, in_channels=6, out_channels=4\.$"),
        ({"groups": 0}, ValueError, r"Conv2D: `groups` must be an integer >= 1\. Got 0\.$"),
        ({"groups": -2}, ValueError, r"Conv2D: `groups` must be an integer >= 1\. Got -2\.$"),
        ({"groups": 2.0}, TypeError, r"Conv2D: `groups` must be an integer >= 1\. Got 2\.0\.$"),
        ({"groups": True}, TypeError, r"Conv2D: `groups` must be an integer >= 1\. Got True\.$"),
        ({"dilation": 0}, ValueError, r"Conv2D: `dilation` must be an integer >= 1\. Got 0\.$"),
        ({"dilation": (2, 0)}, ValueError, r"Conv2D: `dilation` must be an integer >= 1\. Got 0\.$"),
        ({"dilation": (1, 2, 3)}, ValueError, r"Conv2D: `dilation` must be an integer or a pair of integers >= 1\. "
                                              r"Got \(1, 2, 3\)\.$"),
        ({"dilation": "2"}, TypeError, r"Conv2D: `dilation` must be an integer >= 1\. Got '2'\.$"),
        ({"kernel_size": 2, "dilation": 3, "padding": "same"}, ValueError,
         r"Conv2D: `padding` must be a number for an even kernel_size"),
    ],
)
def test_constructor_errors(kwargs, error, message):
    args = {"in_channels": 4, "out_channels": 6, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=message):
        Conv2D(**args)


def test_input_errors_name_the_dilated_span():
    layer = Conv2D(2, 2, 3, padding=1, dilation=3, groups=2, rng=0)
    with pytest.raises(ValueError, match=r"Conv2D: kernel \(3, 3\) with dilation \(3, 3\) \(spanning \(7, 7\)\) is "
                                         r"larger than the padded input \(6, 7\) for input of shape \(1, 2, 4, 5\)"):
        layer.forward(np.zeros((1, 2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"spanning \(7, 7\)\) is larger than the padded input \(5, 5\)"):
        layer.output_shape((2, 3, 3))
    with pytest.raises(ValueError, match=r"`x` must be an array with 2 input channels on axis 1"):
        layer.forward(np.zeros((1, 1, 9, 9), np.float32))


# -- model files ---------------------------------------------------------------------------------------------------
def small_model(**conv) -> Sequential:
    layers = [Conv2D(4, 8, 3, padding=2, dilation=2, groups=4), ReLU(),
              Conv2D(8, 6, (3, 2), stride=2, dilation=(1, 2), groups=2, bias=False), ReLU(),
              Conv2D(6, 6, 1, **conv), Flatten()]
    flat = Sequential(layers).output_shapes((4, 9, 8))[-1][0]
    return Sequential([*layers, Dense(flat, 3)], input_shape=(4, 9, 8)).initialize(0)


def test_model_file_round_trip_keeps_dilation_and_groups(tmp_path):
    model = small_model(groups=3)
    model.save(tmp_path / "m.safetensors")
    back = io.load_model(tmp_path / "m.safetensors")
    assert back.get_config() == model.get_config()
    assert [(layer.dilation, layer.groups) for layer in back.layers[::2][:3]] == [((2, 2), 4), ((1, 2), 2),
                                                                                  ((1, 1), 3)]
    x = np.random.default_rng(0).standard_normal((3, 4, 9, 8)).astype(np.float32)
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    arch = json.loads(io._read(tmp_path / "m.safetensors")[1]["architecture"])
    assert arch["layers"][0]["config"]["dilation"] == 2 and arch["layers"][0]["config"]["groups"] == 4
    assert "dilation" not in arch["layers"][4]["config"]


def _with_config(tmp_path, model, index, **changes):
    """A copy of ``model``'s file whose layer ``index`` claims ``changes`` in its configuration."""
    metadata = io._model_metadata(model, "model")
    arch = json.loads(metadata["architecture"])
    arch["layers"][index]["config"].update(changes)
    metadata["architecture"] = json.dumps(arch)
    path = tmp_path / "edited.safetensors"
    io.save_state_dict_file(path, model.state_dict(), metadata)
    return path


@pytest.mark.parametrize(("index", "changes", "message"), [
    (4, {"groups": 2}, r"tensor '4\.weight' has shape \(6, 2, 1, 1\); Conv2D\(.*groups=2\) needs shape "
                       r"\(6, 3, 1, 1\)"),
    (0, {"groups": 1}, r"tensor '0\.weight' has shape \(8, 1, 3, 3\); .* needs shape \(8, 4, 3, 3\)"),
    (4, {"groups": 4}, r"invalid arguments: Conv2D: `groups` must be an integer that divides both in_channels "
                       r"and out_channels\. Got groups=4, in_channels=6, out_channels=6\."),
    (4, {"groups": "3"}, r"invalid arguments: Conv2D: `groups` must be an integer >= 1\. Got '3'\."),
    (4, {"groups": 0}, r"invalid arguments: Conv2D: `groups` must be an integer >= 1\. Got 0\."),
    (4, {"dilation": [1, 2, 3]}, r"invalid arguments: Conv2D: `dilation` must be an integer or a pair"),
    (4, {"dilation": 100000}, r"argument dilation=100000 is larger than its tensors allow"),
    (0, {"dilation": 7}, r"the architecture is inconsistent: .*layer 0 \(Conv2D\) cannot take input of shape "
                         r"\(4, 9, 8\): Conv2D: kernel \(3, 3\) with dilation \(7, 7\) \(spanning \(15, 15\)\) "
                         r"is larger than the padded input \(13, 12\)"),
])
def test_a_file_that_claims_what_its_tensors_do_not_hold_is_refused(tmp_path, index, changes, message):
    path = _with_config(tmp_path, small_model(groups=3), index, **changes)
    with pytest.raises(ModelFileError, match=message):
        io.load_model(path)


@pytest.mark.parametrize("conv", [{"dilation": 60000, "padding": 60000},  # the general path's padded buffer
                                  {"stride": 60000, "padding": 60000}])  # and the tuned path's
def test_a_tiny_file_whose_padded_input_would_exhaust_memory_is_refused(tmp_path, conv):
    """Dilation (or stride) as large as the padding keeps the output small while the zero-padded input grows to
    ``(2 * 60000 + 28)^2`` pixels: the activation bound counts the padded input, and refuses at load time."""
    layer = Conv2D(1, 2, 3, **conv)
    model = Sequential([layer, Flatten()], input_shape=(1, 28, 28)).initialize(0)
    assert math.prod(model.output_shapes((1, 28, 28))[0]) <= 2 * 28 * 28  # the output itself is small
    model.save(tmp_path / "bomb.safetensors")
    assert (tmp_path / "bomb.safetensors").stat().st_size < 2048
    with pytest.raises(ModelFileError, match=r"layer 0 \(Conv2D\) needs 54,957 MiB per image for input shape "
                                             r"\(1, 28, 28\), more than the 128 MiB allowed"):
        io.load_model(tmp_path / "bomb.safetensors")


SHIPPED = sorted((ROOT / "src" / "numpycnn" / "pretrained").glob("*.safetensors")) + sorted(
    (ROOT / "results").glob("*/model.safetensors"))


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_files_written_before_dilation_and_groups_load_unchanged(path):
    """The shipped weights (no ``dilation`` or ``groups`` in their configurations) load with the defaults, take
    the tuned path, and would be written again with the very same architecture; their accuracy is checked by
    tests/test_pretrained.py and tests/test_published.py."""
    written = json.loads(io._read(path)[1]["architecture"])
    convs = [spec["config"] for spec in written["layers"] if spec["type"] == "Conv2D"]
    assert convs and not any({"dilation", "groups"} & set(c) for c in convs)
    model = io.load_model(path)
    assert model.get_config() == written
    layers = [layer for layer in model.layers if layer.name == "Conv2D"]
    assert all(layer.dilation == (1, 1) and layer.groups == 1 for layer in layers)
    x = np.random.default_rng(0).random((2, *model.input_shape), dtype=np.float32)
    for layer in model.layers:  # one by one, so that each keeps its cache
        x = layer.forward(x, training=False)
    assert all(isinstance(layer.cache, ConvCache) for layer in layers)
