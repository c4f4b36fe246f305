"""Dropout: inverted scaling, seeded masks, identity at inference and for p=0."""

import numpy as np
import pytest

from numpycnn.layers import Dense, Dropout, ReLU
from numpycnn.layers.gradcheck import gradcheck
from numpycnn.model.sequential import Sequential


def test_same_seed_same_mask_and_backward_uses_it():
    x = np.ones((4, 50), np.float32)
    a, b = Dropout(0.3, rng=42), Dropout(0.3, rng=np.random.default_rng(42))
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ya, Dropout(0.3, rng=43).forward(x))
    assert not np.array_equal(ya, a.forward(x))  # a fresh mask every training pass
    dy = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(b.backward(dy), dy * yb)  # y = mask * x with x = 1


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_scaling_and_expectation(p):
    x = np.full((200, 500), 3.0, np.float32)
    y = Dropout(p, rng=0).forward(x)
    assert y.dtype == np.float32
    kept = y != 0
    np.testing.assert_allclose(y[kept], 3.0 / (1 - p), rtol=1e-6)
    assert abs(1 - kept.mean() - p) < 0.01
    assert abs(y.mean() - 3.0) < 0.05 * 3.0 / np.sqrt(1 - p)  # E[y] = x


@pytest.mark.parametrize("layer, training",
                         [(Dropout(0.5), False), (Dropout(0.0), True), (Dropout(0.0), False)])
def test_identity(layer, training):
    x = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_array_equal(layer.forward(x, training=training), x)
    dy = np.random.default_rng(1).standard_normal((3, 4))
    np.testing.assert_array_equal(layer.backward(dy), dy)


@pytest.mark.parametrize("shape", [(1, 5), (4, 3), (2, 3, 4, 4)])
def test_gradcheck(shape):
    rng = np.random.default_rng(shape[0])
    assert gradcheck(Dropout(0.4, rng=1), rng.standard_normal(shape)) < 1e-8


def test_input_not_mutated():
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    dy = np.ones_like(x)
    x0 = x.copy()
    layer = Dropout(0.5, rng=0)
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, 1)


def test_initialize_gives_each_dropout_its_own_seeded_generator():
    def masks(seed):
        model = Sequential([Dense(4, 8), ReLU(), Dropout(0.5), Dense(8, 8), Dropout(0.5)]).initialize(seed)
        return [layer.forward(np.ones((3, 8))) for layer in (model.layers[2], model.layers[4])]

    first, again, other = masks(0), masks(0), masks(1)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other[0])


def test_errors():
    with pytest.raises(ValueError, match=r"Dropout: `p` must be a real number in \[0\.0, 1\.0\)\. Got 1\.0\."):
        Dropout(1.0)
    with pytest.raises(ValueError, match=r"Dropout: `p` must be a real number in \[0\.0, 1\.0\)\. Got -0\.1\."):
        Dropout(-0.1)
    with pytest.raises(TypeError, match=r"Dropout: `p` must be a real number in \[0\.0, 1\.0\)\. Got '0\.5'\."):
        Dropout("0.5")
    with pytest.raises(RuntimeError, match=r"Dropout: backward\(\) called before forward\(\)"):
        Dropout().backward(np.zeros((1, 1)))
    assert Dropout(0.25).get_config() == {"p": 0.25}
