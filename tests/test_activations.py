"""Activation layers: finite differences, PyTorch parity, stability, errors."""

import numpy as np
import pytest

from numpycnn.layers import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from numpycnn.layers.gradcheck import gradcheck

TOL = {np.float64: 1e-6, np.float32: 1e-4}
SHAPES = [(1, 4), (3, 5), (2, 3, 4, 5), (1, 1, 2, 3)]
LAYERS = {
    "ReLU": (ReLU, {}, "relu"),
    "LeakyReLU": (LeakyReLU, {"negative_slope": 0.2}, "leaky"),
    "Sigmoid": (Sigmoid, {}, "sigmoid"),
    "Tanh": (Tanh, {}, "tanh"),
    "Softmax": (Softmax, {}, "softmax"),
}


def close(actual, expected, rtol):
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(np.abs(expected).max(), 1e-30))


def away_from_kinks(rng, shape):
    """Normal values with |x| >= 0.05, so finite differences never straddle the ReLU kink."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck(name, shape):
    cls, kwargs, _ = LAYERS[name]
    rng = np.random.default_rng(len(shape) * 10 + shape[-1])
    assert gradcheck(cls(**kwargs), 2 * away_from_kinks(rng, shape)) < 1e-7


def torch_fn(torch, key, kwargs):
    return {
        "relu": torch.relu,
        "leaky": lambda t: torch.nn.functional.leaky_relu(t, kwargs.get("negative_slope", 0.01)),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": lambda t: torch.softmax(t, dim=1),
    }[key]


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 4, 5)])
def test_matches_torch(name, dtype, shape):
    torch = pytest.importorskip("torch")
    cls, kwargs, key = LAYERS[name]
    rng = np.random.default_rng(3)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    layer = cls(**kwargs)
    y = layer.forward(x)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_fn(torch, key, kwargs)(tx)
    ty.backward(torch.tensor(dy))
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == shape and dx.shape == shape
    close(y, ty.detach().numpy(), TOL[dtype])
    close(dx, tx.grad.numpy(), TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_stable_for_large_inputs(dtype):
    x = np.array([[-1e30, -1000.0, -50.0, 0.0, 50.0, 1000.0, 1e30]], dtype=dtype)
    layer = Sigmoid()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow warning, no NaN
        y = layer.forward(x)
        dx = layer.backward(np.ones_like(x))
    assert y[0, 0] == 0 and y[0, -1] == 1 and y[0, 3] == 0.5
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(y[0, 2], np.exp(-50.0), rtol=1e-5)  # not flushed to 0 by 1 - (1 - tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_huge_logits(dtype):
    x = np.array([[1e30, -1e30, 0.0], [1000.0, 1000.0, -1000.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = Softmax().forward(x)
    np.testing.assert_allclose(y, [[1, 0, 0], [0.5, 0.5, 0]], atol=1e-7)


def test_softmax_backward_is_full_jacobian():
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    layer = Softmax()
    y = layer.forward(x)
    dx = layer.backward(dy)
    for n in range(3):  # J_ij = y_i (delta_ij - y_j), dx = J^T dy
        jac = np.diag(y[n]) - np.outer(y[n], y[n])
        np.testing.assert_allclose(dx[n], jac.T @ dy[n], atol=1e-12)
    ones = np.ones_like(x)
    np.testing.assert_allclose(layer.backward(ones), 0, atol=1e-12)  # why R, not ones, in gradcheck
    np.testing.assert_allclose(y.sum(axis=1), 1)


def test_relu_and_leaky_values():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(ReLU().forward(x), [[0, 0, 3]])
    np.testing.assert_array_equal(LeakyReLU(0.5).forward(x), [[-1, 0, 3]])
    layer = LeakyReLU()
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(np.array([[1.0, 1.0, 1.0]])), [[0.01, 0.01, 1]])


@pytest.mark.parametrize("name", list(LAYERS))
def test_inputs_not_mutated_and_dtype_kept(name):
    cls, kwargs, _ = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    dy = rng.standard_normal((3, 4)).astype(np.float32)
    x0, dy0 = x.copy(), dy.copy()
    layer = cls(**kwargs)
    assert layer.forward(x).dtype == np.float32
    assert layer.backward(dy).dtype == np.float32
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    assert layer.forward(np.arange(12).reshape(3, 4)).dtype == np.float32  # integers become float32


@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_before_forward(name):
    cls, kwargs, _ = LAYERS[name]
    with pytest.raises(RuntimeError, match=rf"{name}: backward\(\) called before forward\(\)"):
        cls(**kwargs).backward(np.zeros((2, 3)))


def test_errors():
    with pytest.raises(ValueError, match=r"LeakyReLU: `negative_slope` must be a real number in \[0\.0, inf\)\. "
                                         r"Got -0\.1\."):
        LeakyReLU(-0.1)
    with pytest.raises(TypeError,
                       match=r"LeakyReLU: `negative_slope` must be a real number in \[0\.0, inf\)\. Got 'a'\."):
        LeakyReLU("a")
    with pytest.raises(ValueError, match=r"Softmax: `x` must be an array of at least 2 dimensions \(N, K\)\. "
                                         r"Got shape \(5,\)\. Use x\[None\]"):
        Softmax().forward(np.zeros(5))
    with pytest.raises(TypeError, match=r"ReLU: input must be a real-valued array\. Got dtype"):
        ReLU().forward(np.array([["a"]]))
