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
