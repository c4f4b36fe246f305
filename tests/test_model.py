"""Sequential's execution order: ReLU followed by MaxPool2D runs swapped, with identical results."""

from __future__ import annotations

import numpy as np
import pytest

from numpycnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sigmoid
from numpycnn.model import Sequential, iter_parameters


def declared_order_pass(model: Sequential, x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward layer by layer in the declared order (the definition)."""
    for layer in model.layers:
        x = layer.forward(x)
    out, grad = x, dy
    for layer in reversed(model.layers):
        grad = layer.backward(grad)
    return out, grad


@pytest.mark.parametrize("ties", [False, True])
def test_relu_maxpool_swap_gives_identical_outputs_and_gradients(ties):
    rng = np.random.default_rng(1)
    layers = [Conv2D(2, 4, 3, padding=1), BatchNorm2D(4), ReLU(), MaxPool2D(2), ReLU(), MaxPool2D(3, 2),
              Flatten(), Dense(8, 3)]
    model = Sequential(layers, input_shape=(2, 9, 10)).initialize(0)
    assert model._execution_order() == [0, 1, 3, 2, 5, 4, 6, 7]
    x = rng.normal(size=(5, 2, 9, 10))
    if ties:
        x = np.round(x)  # equal values and all-negative windows
    model.astype(np.float64)
    dy = rng.normal(size=(5, 3))
    reference_out, reference_dx = declared_order_pass(model, x, dy)
    reference_grads = {k: g.copy() for k, _, g in iter_parameters(model)}
    out = model.forward(x)
    dx = model.backward(dy)
    np.testing.assert_array_equal(out, reference_out)
    np.testing.assert_array_equal(dx, reference_dx)
    for key, _, grad in iter_parameters(model):
        np.testing.assert_array_equal(grad, reference_grads[key], err_msg=key)


def test_execution_order_follows_edits_of_the_layer_list():
    model = Sequential([Conv2D(1, 2, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(8, 2)], input_shape=(1, 6, 6))
    assert model._execution_order() == [0, 2, 1, 3, 4]
    assert model._execution_order() is model._execution_order()  # cached between batches
    model.layers[1] = Sigmoid()
    assert model._execution_order() == [0, 1, 2, 3, 4]
    model.layers.insert(2, ReLU())
    assert model._execution_order() == [0, 1, 3, 2, 4, 5]


def test_a_leading_relu_pool_pair_returns_the_input_gradient():
    model = Sequential([ReLU(), MaxPool2D(2), Flatten(), Dense(4, 2)], input_shape=(1, 4, 4)).initialize(0)
    assert model._execution_order() == [1, 0, 2, 3]
    x = np.random.default_rng(0).normal(size=(3, 1, 4, 4)).astype(np.float32)
    model.forward(x)
    dx = model.backward(np.ones((3, 2), np.float32), input_grad=False)
    assert dx is not None and dx.shape == x.shape  # neither layer can skip its input gradient
