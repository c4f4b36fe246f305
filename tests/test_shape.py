"""Flatten: shape table, backward, errors."""

import numpy as np
import pytest

from numpycnn.layers import Flatten
from numpycnn.layers.gradcheck import gradcheck


@pytest.mark.parametrize("shape, expected", [
    ((2, 3, 4, 5), (2, 60)), ((1, 1, 28, 28), (1, 784)), ((3, 7), (3, 7)), ((4, 2, 3), (4, 6)),
    ((5, 1, 1, 1), (5, 1)),
])
def test_shapes(shape, expected):
    layer = Flatten()
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    y = layer.forward(x)
    assert y.shape == expected and y.dtype == np.float32
    np.testing.assert_array_equal(y.ravel(), x.ravel())  # row-major, like torch.flatten(x, 1)
    assert layer.output_shape(shape[1:]) == expected[1:]
    dx = layer.backward(np.arange(np.prod(shape), dtype=np.float32).reshape(expected) * 2)
    assert dx.shape == shape
    np.testing.assert_array_equal(dx, 2 * x)


def test_matches_torch_flatten():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(Flatten().forward(x), torch.nn.Flatten()(torch.tensor(x)).numpy())


@pytest.mark.parametrize("shape", [(1, 2, 3, 1), (3, 2, 2)])
def test_gradcheck(shape):
    assert gradcheck(Flatten(), np.random.default_rng(0).standard_normal(shape)) < 1e-8


def test_non_contiguous_input_and_no_mutation():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).transpose(0, 2, 1)  # (3, 5, 4), not contiguous
    x0 = x.copy()
    layer = Flatten()
    np.testing.assert_array_equal(layer.forward(x), x0.reshape(3, 20))
    assert layer.backward(np.ones((3, 20))).shape == (3, 5, 4)
    np.testing.assert_array_equal(x, x0)


def test_errors():
    with pytest.raises(ValueError, match=r"Flatten: `x` must be an array with a batch axis, \(N, \.\.\.\)\. "
                                         r"Got shape \(5,\)"):
        Flatten().forward(np.zeros(5))
    with pytest.raises(RuntimeError, match=r"Flatten: backward\(\) called before forward\(\)"):
        Flatten().backward(np.zeros((1, 1)))
