"""Conv2D and the im2col convolution: gradients, loop oracle, PyTorch parity, shapes and errors."""

import json

import numpy as np
import pytest

from numpycnn import reference
from numpycnn.functional import conv as conv_module
from numpycnn.functional.conv import Workspace, conv2d_backward, conv2d_forward
from numpycnn.layers import Conv2D
from numpycnn.layers.gradcheck import gradcheck

#: (N, C_in, H, W, C_out, kernel_size, stride, padding): stride 1 and 2, padding 0/1/2, non-square inputs and
#: kernels, odd sizes, one and several channels, batch of one, a kernel as large as the padded input
CASES = [
    (1, 1, 5, 5, 2, 3, 1, 0),
    (2, 3, 6, 7, 4, (2, 3), 1, 1),
    (2, 2, 7, 5, 3, 3, 2, 2),
    (1, 3, 8, 6, 2, (3, 1), (2, 1), (0, 2)),
    (2, 1, 5, 9, 3, (1, 4), (1, 3), (1, 0)),
    (3, 2, 4, 4, 2, 4, 1, 2),
    (2, 2, 9, 8, 2, 3, 2, 1),
    (1, 2, 3, 3, 3, 5, 1, 1),
]
IDS = [f"x{c[:4]}-f{c[4]}-k{c[5]}-s{c[6]}-p{c[7]}" for c in CASES]


@pytest.fixture(autouse=True, params=["batch-major", "channel-major"])
def layout(request, monkeypatch):
    """Run every test in both layouts (normally chosen by ``batch_major`` from K = C kh kw)."""
    monkeypatch.setattr(conv_module, "batch_major", lambda C, kh, kw: request.param == "batch-major")
    return request.param


@pytest.fixture(autouse=True, params=["widened", "strided"])
def grid(request, monkeypatch):
    """Run every test with stride-1 windows on the widened grid and as strided slices (normally chosen by
    ``widened_grid`` from the channel counts)."""
    monkeypatch.setattr(conv_module, "widened_grid", lambda C, kh, kw, F: request.param == "widened")
    return request.param


def setup(case, dtype=np.float64, seed=0, bias=True):
    N, C, H, W, F, k, s, p = case
    layer = Conv2D(C, F, k, stride=s, padding=p, bias=bias, rng=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    if bias:
        layer.params["bias"][...] = rng.standard_normal(F)  # nonzero, so a dropped bias shows
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    return layer, x


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(case, bias):
    layer, x = setup(case, bias=bias)
    errors = gradcheck(layer, x, return_all=True)
    assert set(errors) == {"input", "weight", "bias"} if bias else {"input", "weight"}
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_loop_reference(case):
    layer, x = setup(case)
    w, b = layer.params["weight"], layer.params["bias"]
    y = layer.forward(x)
    np.testing.assert_allclose(y, reference.conv2d_forward(x, w, b, layer.stride, layer.padding), rtol=1e-12,
                               atol=1e-12)
    dy = np.random.default_rng(7).standard_normal(y.shape)
    dx = layer.backward(dy)
    ref_dx, ref_dw, ref_db = reference.conv2d_backward(dy, x, w, layer.stride, layer.padding)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], ref_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], ref_db, rtol=1e-12, atol=1e-12)


def _random_cases(count, seed=123):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        kh, kw, sh, sw = rng.integers(1, 5, size=4)
        ph, pw = rng.integers(0, 3, size=2)
        H, W = rng.integers(1, 12, size=2)
        if H + 2 * ph < kh or W + 2 * pw < kw:
            continue
        N, C, F = rng.integers(1, 4, size=3)
        cases.append((int(N), int(C), int(H), int(W), int(F), (int(kh), int(kw)), (int(sh), int(sw)),
                      (int(ph), int(pw))))
    return cases


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-6), (np.float32, 1e-4)])
@pytest.mark.parametrize("case", CASES + _random_cases(20), ids=IDS + [f"random{i}" for i in range(20)])
def test_matches_pytorch(case, dtype, rtol):
    torch = pytest.importorskip("torch")
    layer, x = setup(case, dtype=dtype)
    w, b = layer.params["weight"], layer.params["bias"]
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=layer.stride, padding=layer.padding)
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


#: stride-1 cases for the input gradient by correlation: batch not divisible by the chunk, batch of one,
#: many channels, and padding > k - 1 (col2im fallback)
CORRELATION_CASES = [
    (5, 4, 7, 6, 6, 3, 1, 1),
    (1, 3, 5, 5, 8, 3, 1, 1),
    (7, 8, 6, 5, 9, (2, 3), 1, (0, 2)),
    (3, 9, 4, 5, 8, 1, 1, 1),
]


@pytest.mark.parametrize("images_per_chunk", [1, 2, 3, None])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-4)])
@pytest.mark.parametrize("case", CORRELATION_CASES)
def test_input_grad_by_correlation_matches_reference_and_pytorch(case, dtype, tol, images_per_chunk,
                                                                 monkeypatch):
    """The chunked, col2im-free input gradient agrees with the loop oracle and PyTorch for any chunk size."""
    layer, x = setup(case, dtype=dtype)
    w, b = layer.params["weight"], layer.params["bias"]
    y = layer.forward(x)
    (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
    if images_per_chunk is not None and ph < kh and pw < kw:  # bytes of the dx convolution's columns per image
        g = conv_module.conv_geometry(y.shape, (case[1], case[4], kh, kw), 1, (kh - 1 - ph, kw - 1 - pw))
        per_image = g.C * g.kh * g.kw * g.Ho * g.Wq * np.dtype(dtype).itemsize
        monkeypatch.setattr(conv_module, "CHUNK_BYTES", images_per_chunk * per_image)
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    ref_dx, ref_dw, ref_db = reference.conv2d_backward(dy.astype(np.float64), x.astype(np.float64),
                                                       w.astype(np.float64), layer.stride, layer.padding)
    for ours, ref in [(dx, ref_dx), (layer.grads["weight"], ref_dw), (layer.grads["bias"], ref_db)]:
        assert ours.dtype == dtype
        np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol * np.abs(ref).max())
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.conv2d(xt, torch.tensor(w), torch.tensor(b), padding=layer.padding).backward(
        torch.tensor(dy))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol * np.abs(ref_dx).max())
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(dy), dx)  # the reused workspace gives the same answer


@pytest.mark.parametrize("images_per_chunk", [1, 2, 3])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_chunked_forward_and_gradients_match_reference(case, images_per_chunk, monkeypatch):
    """Any chunk size, a partial last chunk included, gives the loop definition's output and gradients."""
    case = (5, *case[1:])  # 5 images: chunks of 2 and 3 leave a partial last chunk
    layer, x = setup(case)
    w, b = layer.params["weight"], layer.params["bias"]
    g = conv_module.conv_geometry(x.shape, w.shape, layer.stride, layer.padding, x.itemsize)
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", images_per_chunk * g.C * g.kh * g.kw * g.Ho * g.Wq * 8)
    assert conv_module.conv_geometry(x.shape, w.shape, layer.stride, layer.padding, 8).chunk == images_per_chunk
    for _ in range(2):  # the second pass reuses the workspace
        y = layer.forward(x)
        dy = np.random.default_rng(3).standard_normal(y.shape)
        dx = layer.backward(dy)
        ref_dx, ref_dw, ref_db = reference.conv2d_backward(dy, x, w, layer.stride, layer.padding)
        np.testing.assert_allclose(y, reference.conv2d_forward(x, w, b, layer.stride, layer.padding), rtol=1e-12,
                                   atol=1e-12)
        for ours, ref in [(dx, ref_dx), (layer.grads["weight"], ref_dw), (layer.grads["bias"], ref_db)]:
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_seed_network_shapes_match_pytorch_at_float32():
    """The original network's layer, batch 64: float32 output and weight gradient within 1e-4 of PyTorch."""
    torch = pytest.importorskip("torch")
    layer = Conv2D(1, 8, 3, rng=0)
    x = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
    y = layer.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    layer.compute_input_grad = False
    assert layer.backward(dy) is None
    wt = torch.tensor(layer.params["weight"], requires_grad=True)
    yt = torch.nn.functional.conv2d(torch.tensor(x), wt, torch.tensor(layer.params["bias"]))
    yt.backward(torch.tensor(dy))
    for ours, theirs in [(y, yt.detach().numpy()), (layer.grads["weight"], wt.grad.numpy())]:
        assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4  # normwise: sums of 43,264 float32s


@pytest.mark.parametrize(
    "args, in_shape, out_shape",
    [
        ((1, 8, 3), (1, 28, 28), (8, 26, 26)),
        ((3, 4, 3, 1, 1), (3, 32, 32), (4, 32, 32)),
        ((3, 4, 3, 2, 1), (3, 32, 32), (4, 16, 16)),
        ((2, 5, (3, 5), (1, 2), (0, 2)), (2, 7, 9), (5, 5, 5)),
        ((1, 1, 5, 3, 0), (1, 11, 12), (1, 3, 3)),
        ((1, 2, 1), (1, 1, 1), (2, 1, 1)),
        ((1, 2, 3, 1, 1), (1, 1, 1), (2, 1, 1)),
        ((3, 6, 3, 1, 2, True, 2, 3), (3, 9, 9), (6, 9, 9)),  # dilation and groups, after bias
        ((2, 4, (3, 2), 2, 0, False, (2, 3)), (2, 11, 8), (4, 4, 3)),
    ],
)
def test_shape_table(args, in_shape, out_shape):
    layer = Conv2D(*args, rng=0)
    assert layer.output_shape(in_shape) == out_shape
    assert layer.forward(np.zeros((2, *in_shape), np.float32)).shape == (2, *out_shape)


def test_dtypes_float64_in_float64_out_and_integers_become_float32():
    layer = Conv2D(2, 3, 3, padding=1, rng=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    assert layer.forward(x).dtype == np.float64
    assert layer.backward(np.ones((2, 3, 5, 5))).dtype == np.float64
    assert Conv2D(2, 3, 3, rng=0).forward(np.ones((1, 2, 4, 4), np.int64)).dtype == np.float32


def test_inputs_and_upstream_gradient_are_not_mutated():
    layer, x = setup(CASES[2])
    x0 = x.copy()
    y = layer.forward(x)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dy0 = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


def test_reused_buffers_never_leak_into_returned_arrays():
    """Outputs and input gradients of earlier calls survive later calls that reuse the scratch buffers."""
    layer, x = setup(CASES[1])
    y1 = layer.forward(x)
    y1_copy = y1.copy()
    dx1 = layer.backward(np.ones_like(y1))
    dx1_copy = dx1.copy()
    y2 = layer.forward(-2 * x)
    dx2 = layer.backward(np.full_like(y2, 3.0))  # the second pass over the same buffers starts from zero
    w, b = layer.params["weight"], layer.params["bias"]
    _, cache = conv2d_forward(-2 * x, w, b, layer.stride, layer.padding)
    np.testing.assert_allclose(dx2, conv2d_backward(np.full_like(y2, 3.0), cache)[0], rtol=1e-12)
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(dx1, dx1_copy)
    # a different batch size replaces the buffers, and the same layer still agrees with a fresh computation
    x3 = np.random.default_rng(4).standard_normal((5, *x.shape[1:]))
    y3 = layer.forward(x3)
    ref, cache = conv2d_forward(x3, w, b, layer.stride, layer.padding)
    np.testing.assert_allclose(y3, ref, rtol=1e-12)
    np.testing.assert_allclose(layer.backward(np.ones_like(y3)), conv2d_backward(np.ones_like(ref), cache)[0],
                               rtol=1e-12)


def test_workspace_shared_by_calls_with_and_without_bias():
    """A workspace reused with and without a bias stays exact (the bias is added only when there is one)."""
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((3, 1, 7, 6)), rng.standard_normal((5, 1, 3, 3)), rng.standard_normal(5)
    ws = Workspace()
    for bias in (b, None, b, b):
        y, cache = conv2d_forward(x, w, bias, 1, 1, workspace=ws)
        dy = rng.standard_normal(y.shape)
        dx, dw, db = conv2d_backward(dy, cache)
        ref_y = reference.conv2d_forward(x, w, bias, 1, 1)
        ref_dx, ref_dw, ref_db = reference.conv2d_backward(dy, x, w, 1, 1)
        np.testing.assert_allclose(y, ref_y, rtol=1e-12, atol=1e-12)
        for ours, ref in [(dx, ref_dx), (dw, ref_dw)] + ([] if bias is None else [(db, ref_db)]):
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
        assert (db is None) == (bias is None)


def test_functional_without_bias_and_without_input_gradient():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    y, cache = conv2d_forward(x, w, None, 1, 1, workspace=Workspace())
    dy = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(dy, cache)
    assert db is None
    none_dx, dw2, _ = conv2d_backward(dy, cache, need_dx=False)
    assert none_dx is None
    np.testing.assert_array_equal(dw, dw2)
    np.testing.assert_allclose(dx, reference.conv2d_backward(dy, x, w, 1, 1)[0], rtol=1e-12)
    with pytest.raises(ValueError, match=r"`dout` must have the output's shape \(2, 4, 6, 6\)"):
        conv2d_backward(dy[:1], cache)


def test_parameters_config_and_initialisation():
    layer = Conv2D(16, 32, (3, 5), stride=2, padding=(1, 2), rng=0)
    assert layer.params["weight"].shape == (32, 16, 3, 5) and layer.params["bias"].shape == (32,)
    assert layer.param_names == ("weight", "bias")
    assert layer.params["weight"].dtype == np.float32
    assert np.all(layer.params["bias"] == 0)
    std = layer.params["weight"].std()
    assert abs(std - np.sqrt(2 / (16 * 15))) < 0.05 * std  # He: N(0, 2 / fan_in)
    np.testing.assert_array_equal(layer.params["weight"], Conv2D(16, 32, (3, 5), rng=0).params["weight"])
    layer.reset_parameters(np.random.default_rng(1), "linear")  # Glorot uniform, fan_out = 32 * 15
    bound = np.sqrt(6 / (16 * 15 + 32 * 15))
    largest = np.abs(layer.params["weight"]).max()
    assert 0.9 * bound < largest <= bound
    config = layer.get_config()
    assert config == {"in_channels": 16, "out_channels": 32, "kernel_size": [3, 5], "stride": 2,
                      "padding": [1, 2], "bias": True}
    assert Conv2D(**json.loads(json.dumps(config))).get_config() == config
    no_bias = Conv2D(1, 2, 3, bias=False)
    assert no_bias.param_names == ("weight",) and set(no_bias.params) == {"weight"}
    assert Conv2D.param_names == ("weight", "bias")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"in_channels": 0}, ValueError, r"Conv2D: `in_channels` must be an integer >= 1. Got 0."),
        ({"in_channels": 1.5}, TypeError, r"Conv2D: `in_channels` must be an integer >= 1. Got 1.5."),
        ({"out_channels": -3}, ValueError, r"Conv2D: `out_channels` must be an integer >= 1. Got -3."),
        ({"kernel_size": 0}, ValueError, r"Conv2D: `kernel_size` must be an integer >= 1. Got 0."),
        ({"kernel_size": (3, 3, 3)}, ValueError, r"Conv2D: `kernel_size` must be .* Got \(3, 3, 3\)."),
        ({"stride": 0}, ValueError, r"Conv2D: `stride` must be an integer >= 1. Got 0."),
        ({"padding": -1}, ValueError, r"Conv2D: `padding` must be an integer >= 0. Got -1."),
        ({"padding": (1, -1)}, ValueError, r"Conv2D: `padding` must be an integer >= 0. Got -1."),
        ({"bias": "yes"}, TypeError, r"Conv2D: `bias` must be True or False. Got 'yes'."),
        ({"dtype": np.int32}, TypeError, r"Conv2D: `dtype` must be float32 or float64."),
        ({"dilation": 0}, ValueError, r"Conv2D: `dilation` must be an integer >= 1. Got 0."),
        ({"groups": 2}, ValueError, r"Conv2D: `groups` must be an integer that divides both in_channels and "
                                    r"out_channels. Got groups=2, in_channels=1, out_channels=2.$"),
    ],
)
def test_constructor_errors(kwargs, error, message):
    args = {"in_channels": 1, "out_channels": 2, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=message):
        Conv2D(**args)


def test_input_errors_name_the_layer_and_shapes():
    layer = Conv2D(3, 4, 5, padding=1, rng=0)
    with pytest.raises(ValueError, match=r"Conv2D: `x` must be a 4D array \(N, C, H, W\)\. Got shape \(28, 28\)\. "
                                         r"Use x\[None, None\]"):
        layer.forward(np.zeros((28, 28), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D: `x` must be an array with 3 input channels on axis 1\. "
                                         r"Got shape \(2, 1, 8, 8\)"):
        layer.forward(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D: kernel \(5, 5\) is larger than the padded input \(4, 9\) "
                                         r"for input of shape \(2, 3, 2, 7\)"):
        layer.forward(np.zeros((2, 3, 2, 7), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D: kernel \(5, 5\) is larger than the padded input \(4, 4\)"):
        layer.output_shape((3, 2, 2))
    with pytest.raises(ValueError, match=r"Conv2D: `input_shape` must be a per-sample shape with 3 input "
                                         r"channels\. Got \(1, 9, "):
        layer.output_shape((1, 9, 9))
    with pytest.raises(RuntimeError, match=r"Conv2D: backward\(\) called before forward\(\)"):
        Conv2D(1, 1, 1).backward(np.zeros((1, 1, 2, 2), np.float32))
