"""Dense: finite differences, PyTorch parity, initialisation, errors."""

import numpy as np
import pytest

from numpycnn.layers import Dense
from numpycnn.layers.gradcheck import gradcheck

TOL = {np.float64: 1e-6, np.float32: 1e-4}


def close(actual, expected, rtol):
    """Relative to the largest magnitude of ``expected`` (normwise), so near-zero entries don't dominate."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(np.abs(expected).max(), 1e-30))


@pytest.mark.parametrize("n, fin, fout", [(1, 3, 2), (4, 5, 3), (6, 1, 1), (2, 7, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(n, fin, fout, bias):
    rng = np.random.default_rng(n * 100 + fin)
    layer = Dense(fin, fout, bias=bias, rng=rng)
    assert gradcheck(layer, rng.standard_normal((n, fin))) < 1e-7
    assert set(layer.grads) == ({"weight", "bias"} if bias else {"weight"})


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch(dtype, bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    layer = Dense(6, 4, bias=bias, rng=rng, dtype=dtype)
    if bias:
        layer.params["bias"][...] = rng.standard_normal(4)
    x = rng.standard_normal((5, 6)).astype(dtype)
    dy = rng.standard_normal((5, 4)).astype(dtype)

    y = layer.forward(x)
    dx = layer.backward(dy)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(layer.params["weight"], requires_grad=True)
    tb = torch.tensor(layer.params["bias"], requires_grad=True) if bias else None
    ty = torch.nn.functional.linear(tx, tw, tb)
    ty.backward(torch.tensor(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    close(y, ty.detach().numpy(), TOL[dtype])
    close(dx, tx.grad.numpy(), TOL[dtype])
    close(layer.grads["weight"], tw.grad.numpy(), TOL[dtype])
    if bias:
        close(layer.grads["bias"], tb.grad.numpy(), TOL[dtype])


def test_forward_is_x_wt_plus_b():
    layer = Dense(3, 2, rng=0, dtype=np.float64)
    layer.params["weight"][...] = [[1, 2, 3], [4, 5, 6]]
    layer.params["bias"][...] = [10, 20]
    np.testing.assert_array_equal(layer.forward(np.array([[1.0, 0, -1]])), [[8.0, 18.0]])


def test_he_init_in_constructor_and_reset():
    w = Dense(2000, 50, rng=0).params["weight"]
    assert w.dtype == np.float32 and w.shape == (50, 2000)
    assert abs(w.std() - np.sqrt(2 / 2000)) < 0.03 * np.sqrt(2 / 2000)
    np.testing.assert_array_equal(w, Dense(2000, 50, rng=0).params["weight"])
    assert not np.array_equal(w, Dense(2000, 50, rng=1).params["weight"])

    layer = Dense(300, 200, rng=0)
    layer.params["bias"][...] = 5
    weight = layer.params["weight"]
    layer.reset_parameters(np.random.default_rng(0), "linear")
    bound = np.sqrt(6 / 500)
    assert layer.params["weight"] is weight  # redrawn in place
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.95 * bound
    assert not layer.params["bias"].any()


def test_float64_dtype_and_config():
    layer = Dense(3, 2, bias=False, dtype=np.float64)
    assert layer.params["weight"].dtype == np.float64 and "bias" not in layer.params
    assert layer.get_config() == {"in_features": 3, "out_features": 2, "bias": False}
    assert layer.output_shape((3,)) == (2,)


def test_input_not_mutated():
    layer = Dense(4, 3, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    dy = np.ones((2, 3), np.float32)
    x0, dy0 = x.copy(), dy.copy()
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


def test_errors():
    layer = Dense(12, 3)
    with pytest.raises(ValueError, match=r"`x` must be a 2D array \(N, features\)\. Got shape \(2, 3, 2, 2\)\. "
                                         r"Put a Flatten\(\) layer before it"):
        layer.forward(np.zeros((2, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"Dense: `x` must be an array with 12 input features on axis 1\. "
                                         r"Got shape \(2, 5\)"):
        layer.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"Got shape \(12,\)\. Use x\[None\] for a single sample"):
        layer.forward(np.zeros(12))
    with pytest.raises(ValueError, match=r"Put a Flatten\(\) layer before it"):
        layer.output_shape((3, 2, 2))
    with pytest.raises(ValueError, match=r"Dense: `in_features` must be an integer >= 1\. Got 0\."):
        Dense(0, 3)
    with pytest.raises(TypeError, match=r"Dense: `out_features` must be an integer >= 1\. Got 2\.5\."):
        Dense(3, 2.5)
    with pytest.raises(TypeError, match=r"Dense: `bias` must be True or False\. Got 'yes'\."):
        Dense(3, 2, bias="yes")
    with pytest.raises(TypeError, match=r"Dense: `dtype` must be float32 or float64"):
        Dense(3, 2, dtype=np.int32)
    with pytest.raises(RuntimeError, match=r"Dense: backward\(\) called before forward\(\)"):
        Dense(3, 2).backward(np.zeros((1, 2)))
