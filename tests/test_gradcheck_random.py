"""gradcheck that cannot be fooled: random parameter values on a float64 copy, the layer left untouched, a warning
for parameters at 0 or 1, and the index of the worst element of every gradient."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpycnn.gradcheck import GradcheckResult, gradcheck

from numpycnn.layers import BatchNorm2D, Conv2D, Dense, Layer


class _Scale(Layer):
    """y = a * x per channel, a starting at 1 (the tutorial's ChannelScale)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.add_param("a", np.ones(channels, np.float32))

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        self.cache = x
        return x * self.params["a"][:, None, None]

    def backward(self, grad: np.ndarray) -> np.ndarray:
        self.grads["a"][...] = np.sum(grad * self._take_cache(), axis=(0, 2, 3))
        return grad * self.params["a"][:, None, None]


class _ScaleForgetsA(_Scale):
    def backward(self, grad: np.ndarray) -> np.ndarray:
        super().backward(grad)
        return grad


X = np.random.default_rng(0).standard_normal((2, 3, 4, 4))


def test_the_dropped_factor_is_caught_in_the_default_use():
    result = gradcheck(_ScaleForgetsA(), X)
    assert not result.passed and result.errors["input"] > 1e-3 and result.errors["a"] < 1e-8
    assert gradcheck(_Scale(), X).passed


def test_at_the_initial_values_it_would_pass_and_a_warning_says_why():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fooled = gradcheck(_ScaleForgetsA(), X, random_params=False)
    assert fooled.passed  # the trap the default avoids
    assert any("'a' is 1 everywhere" in str(w.message) for w in caught)


def test_the_layer_is_left_untouched():
    layer = Conv2D(3, 2, 3, rng=0)
    before = {k: v.copy() for k, v in layer.params.items()}
    assert gradcheck(layer, X).passed
    for key, value in layer.params.items():
        assert value.dtype == np.float32 and np.array_equal(value, before[key])
    assert layer.cache is None


def test_a_layer_that_builds_its_parameters_on_first_use():
    layer = Dense(out_features=4)
    assert gradcheck(layer, np.random.default_rng(1).standard_normal((3, 5))).passed
    assert not layer.params or layer.params["weight"].dtype == np.float32


def test_batch_norm_at_random_gamma_and_beta():
    assert gradcheck(BatchNorm2D(3), 2 * X + 1).passed


class _OneWrongWeight(Dense):
    """Dense whose weight gradient is off in one element only."""

    def backward(self, grad: np.ndarray) -> np.ndarray:
        dx = super().backward(grad)
        self.grads["weight"][1, 2] += 1.0
        return dx


def test_the_worst_element_is_reported_for_the_input_and_each_parameter():
    result = gradcheck(_OneWrongWeight(4, 3, rng=0), np.random.default_rng(2).standard_normal((5, 4)))
    assert isinstance(result, GradcheckResult) and not result.passed
    assert result.worst["weight"] == (1, 2)
    assert set(result.worst) == {"input", "weight", "bias"}
    assert len(result.worst["input"]) == 2
    assert "worst element weight[1, 2]" in repr(result)


def test_the_old_signature_still_works():
    errors = gradcheck(Dense(3, 2, rng=0), np.ones((2, 3)), eps=1e-6, training=True, seed=3, return_all=True,
                       threshold=1e-6)
    assert set(errors) == {"input", "weight", "bias"} and max(errors.values()) < 1e-6
    assert GradcheckResult({"input": 0.5}).passed is False  # the result can still be built from errors alone


@pytest.mark.parametrize("seed", [0, 1])
def test_the_seed_draws_the_parameters_reproducibly(seed):
    a = gradcheck(_ScaleForgetsA(), X, seed=seed)
    b = gradcheck(_ScaleForgetsA(), X, seed=seed)
    assert float(a) == float(b)
