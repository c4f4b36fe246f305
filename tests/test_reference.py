"""The loop-based reference definitions: hand-worked values, finite differences and PyTorch.

The fast paths are tested against these functions, so they are checked here independently of the fast math.
"""

import numpy as np
import pytest

from numpycnn import reference
from numpycnn.layers.gradcheck import numeric_gradient


def test_conv_by_hand():
    x = np.arange(9.0).reshape(1, 1, 3, 3)  # [[0 1 2] [3 4 5] [6 7 8]]
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # top-left minus bottom-right
    np.testing.assert_array_equal(reference.conv2d_forward(x, w, np.array([0.5]))[0, 0], [[-3.5, -3.5],
                                                                                          [-3.5, -3.5]])
    # padding 1, stride 2: windows at rows/cols -1 and 1 of the input
    np.testing.assert_array_equal(reference.conv2d_forward(x, w, None, 2, 1)[0, 0],
                                  [[0.0, -2.0], [-6.0, -4.0]])
    dx, dw, db = reference.conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 0], [1, 0, -1], [0, -1, -1]])
    np.testing.assert_array_equal(dw[0, 0], [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]])
    np.testing.assert_array_equal(db, [4.0])


def test_pooling_by_hand():
    x = np.array([[[[1.0, 2.0, 2.0], [0.0, 2.0, 1.0], [4.0, 3.0, 9.0]]]])
    np.testing.assert_array_equal(reference.maxpool2d_forward(x, 2, 1)[0, 0], [[2.0, 2.0], [4.0, 9.0]])
    np.testing.assert_array_equal(reference.avgpool2d_forward(x, 2)[0, 0], [[1.25]])
    # window (0, 0) holds 2 twice: the first (row-major) gets the gradient
    np.testing.assert_array_equal(reference.maxpool2d_backward(np.ones((1, 1, 2, 2)), x, 2, 1)[0, 0],
                                  [[0, 2, 0], [0, 0, 0], [1, 0, 1]])
    np.testing.assert_array_equal(reference.avgpool2d_backward(np.full((1, 1, 1, 1), 4.0), x, 2)[0, 0],
                                  [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("stride, padding, kernel", [(1, 0, (2, 3)), (2, 1, 3), ((1, 2), (2, 0), (3, 2))])
def test_conv_backward_matches_finite_differences(stride, padding, kernel):
    rng = np.random.default_rng(0)
    kh, kw = np.broadcast_to(kernel, 2)
    x, w, b = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, kh, kw)), rng.standard_normal(3)
    projection = rng.standard_normal(reference.conv2d_forward(x, w, b, stride, padding).shape)

    def loss():
        return float(np.sum(reference.conv2d_forward(x, w, b, stride, padding) * projection))

    dx, dw, db = reference.conv2d_backward(projection, x, w, stride, padding)
    for analytic, array in [(dx, x), (dw, w), (db, b)]:
        np.testing.assert_allclose(analytic, numeric_gradient(loss, array), rtol=1e-6, atol=1e-8)


def test_dilated_depthwise_conv_by_hand():
    x = np.arange(32.0).reshape(1, 2, 4, 4)  # channel 0 holds 0..15, channel 1 holds 16..31
    w = np.stack([np.ones((1, 2, 2)), -np.ones((1, 2, 2))])  # one 2x2 filter per channel: +sum, -sum
    # dilation 2: the taps of output (h, w) are (h, w), (h, w + 2), (h + 2, w), (h + 2, w + 2)
    y = reference.conv2d_forward(x, w, np.array([0.0, 1.0]), dilation=2, groups=2)
    np.testing.assert_array_equal(y[0, 0], [[0 + 2 + 8 + 10, 1 + 3 + 9 + 11], [4 + 6 + 12 + 14, 5 + 7 + 13 + 15]])
    np.testing.assert_array_equal(y[0, 1], 1.0 - (y[0, 0] + 4 * 16))  # channel 1 alone: 16 more per tap
    dx, dw, db = reference.conv2d_backward(np.ones((1, 2, 2, 2)), x, w, dilation=2, groups=2)
    np.testing.assert_array_equal(dx[0, 0], np.ones((4, 4)))  # every pixel is one tap of one window
    np.testing.assert_array_equal(dx[0, 1], -np.ones((4, 4)))
    np.testing.assert_array_equal(dw[0, 0], [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])
    np.testing.assert_array_equal(dw[1, 0], dw[0, 0] + 4 * 16)
    np.testing.assert_array_equal(db, [4.0, 4.0])


#: (stride, padding, kernel, dilation, groups, C_in, C_out): dilated, grouped, depthwise with a multiplier
DILATED_GROUPED = [(1, 0, 3, 2, 1, 2, 3), (2, 2, (3, 2), (1, 3), 2, 4, 2), ((1, 2), (2, 1), 2, 2, 3, 3, 6),
                   (1, 1, (2, 3), (3, 1), 2, 2, 4)]


@pytest.mark.parametrize("stride, padding, kernel, dilation, groups, c_in, c_out", DILATED_GROUPED)
def test_dilated_and_grouped_conv_matches_finite_differences_and_pytorch(stride, padding, kernel, dilation, groups,
                                                                         c_in, c_out):
    rng = np.random.default_rng(6)
    kh, kw = np.broadcast_to(kernel, 2)
    x, w = rng.standard_normal((2, c_in, 7, 6)), rng.standard_normal((c_out, c_in // groups, kh, kw))
    b = rng.standard_normal(c_out)
    args = (stride, padding, dilation, groups)
    y = reference.conv2d_forward(x, w, b, *args)
    projection = rng.standard_normal(y.shape)
    dx, dw, db = reference.conv2d_backward(projection, x, w, *args)
    for analytic, array in [(dx, x), (dw, w), (db, b)]:
        numeric = numeric_gradient(lambda: float(np.sum(reference.conv2d_forward(x, w, b, *args) * projection)),
                                   array)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    torch = pytest.importorskip("torch")
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, *args)
    yt.backward(torch.tensor(projection))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10)
    for ours, theirs in zip((dx, dw, db), (xt.grad, wt.grad, bt.grad), strict=True):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 1), ((2, 3), (1, 2))])
def test_pool_backward_matches_finite_differences(kind, kernel, stride):
    x = np.random.default_rng(1).permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) / 60.0  # no ties
    forward = getattr(reference, f"{kind}pool2d_forward")
    backward = getattr(reference, f"{kind}pool2d_backward")
    projection = np.random.default_rng(2).standard_normal(forward(x, kernel, stride).shape)
    analytic = backward(projection, x, kernel, stride)
    numeric = numeric_gradient(lambda: float(np.sum(forward(x, kernel, stride) * projection)), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("stride, padding, kernel", [(1, 0, 3), (2, 2, (3, 2)), ((2, 1), (0, 1), (1, 3))])
def test_conv_matches_pytorch(stride, padding, kernel):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, *np.broadcast_to(kernel, 2))), \
        rng.standard_normal(4)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    y = reference.conv2d_forward(x, w, b, stride, padding)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10)
    grads = reference.conv2d_backward(dy, x, w, stride, padding)
    for ours, theirs in zip(grads, (xt.grad, wt.grad, bt.grad), strict=True):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 2), ((2, 3), (1, 2))])
def test_pool_matches_pytorch_including_ties(kind, kernel, stride):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).integers(0, 3, size=(2, 3, 7, 6)).astype(np.float64)  # many ties
    xt = torch.tensor(x, requires_grad=True)
    pool = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    yt = pool(xt, kernel, stride)
    dy = np.random.default_rng(5).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    forward = getattr(reference, f"{kind}pool2d_forward")
    backward = getattr(reference, f"{kind}pool2d_backward")
    np.testing.assert_allclose(forward(x, kernel, stride), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(backward(dy, x, kernel, stride), xt.grad.numpy(), rtol=1e-12, atol=1e-15)
