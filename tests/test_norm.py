"""BatchNorm1D/2D: finite differences, PyTorch parity (training, running statistics, eval mode), errors."""

import numpy as np
import pytest

from numpycnn.layers import BatchNorm1D, BatchNorm2D
from numpycnn.layers.gradcheck import gradcheck

TOL = {np.float64: 1e-6, np.float32: 1e-4}


def close(actual, expected, rtol):
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(np.abs(expected).max(), 1e-30))


def randomise(layer, rng):
    """Non-trivial gamma, beta and running statistics, so every term of the gradients shows."""
    c = layer.num_features
    layer.params["weight"][...] = rng.uniform(0.5, 2.0, c)
    layer.params["bias"][...] = rng.standard_normal(c)
    layer.buffers["running_mean"][...] = rng.standard_normal(c)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
    return layer


CASES = [(BatchNorm2D, (1, 2, 3, 3)), (BatchNorm2D, (4, 3, 2, 5)), (BatchNorm2D, (2, 1, 3, 1)),
         (BatchNorm1D, (3, 4)), (BatchNorm1D, (8, 2))]


@pytest.mark.parametrize("cls, shape", CASES)
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(cls, shape, training):
    rng = np.random.default_rng(sum(shape))
    layer = randomise(cls(shape[1]), rng)
    x = 2 * rng.standard_normal(shape) + 1
    assert gradcheck(layer, x, training=training) < 1e-6


def torch_bn(torch, cls, layer):
    tcls = torch.nn.BatchNorm2d if cls is BatchNorm2D else torch.nn.BatchNorm1d
    tdtype = torch.float64 if layer.params["weight"].dtype == np.float64 else torch.float32
    t = tcls(layer.num_features, eps=layer.eps, momentum=layer.momentum).to(tdtype)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(layer.params["weight"]))
        t.bias.copy_(torch.tensor(layer.params["bias"]))
        t.running_mean.copy_(torch.tensor(layer.buffers["running_mean"]))
        t.running_var.copy_(torch.tensor(layer.buffers["running_var"]))
    return t


@pytest.mark.parametrize("cls, shape", [(BatchNorm2D, (5, 3, 4, 6)), (BatchNorm1D, (7, 4))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
def test_matches_torch_over_steps(cls, shape, dtype, momentum):
    """Several training steps (outputs, all gradients, running statistics), then eval mode."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    layer = randomise(cls(shape[1], eps=1e-3, momentum=momentum, dtype=dtype), rng)
    t = torch_bn(torch, cls, layer)
    tol = TOL[dtype]
    for step, training in enumerate([True, True, True, False]):
        t.train(training)
        x = (3 * rng.standard_normal(shape) + step).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        y = layer.forward(x, training=training)
        dx = layer.backward(dy)
        tx = torch.tensor(x, requires_grad=True)
        t.zero_grad()
        ty = t(tx)
        ty.backward(torch.tensor(dy))
        assert y.dtype == dtype and dx.dtype == dtype
        close(y, ty.detach().numpy(), tol)
        close(dx, tx.grad.numpy(), tol)
        close(layer.grads["weight"], t.weight.grad.numpy(), tol)
        close(layer.grads["bias"], t.bias.grad.numpy(), tol)
        close(layer.buffers["running_mean"], t.running_mean.numpy(), tol)
        close(layer.buffers["running_var"], t.running_var.numpy(), tol)
        assert layer.buffers["num_batches_tracked"] == t.num_batches_tracked.item()
    assert layer.buffers["num_batches_tracked"] == 3


def test_running_stats_use_unbiased_variance():
    layer = BatchNorm1D(1, momentum=1.0, dtype=np.float64)
    x = np.array([[1.0], [2.0], [3.0], [6.0]])  # mean 3, biased var 3.5, unbiased var 14/3
    y = layer.forward(x)
    np.testing.assert_allclose(layer.buffers["running_mean"], [3.0])
    np.testing.assert_allclose(layer.buffers["running_var"], [14 / 3])
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 3) / np.sqrt(3.5 + 1e-5))  # biased for normalisation


def test_eval_mode_uses_running_stats_and_leaves_them():
    layer = BatchNorm2D(2, dtype=np.float64)
    layer.buffers["running_mean"][...] = [1.0, -1.0]
    layer.buffers["running_var"][...] = [4.0, 0.25]
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    y = layer.forward(x, training=False)
    np.testing.assert_allclose(y[0, 0], (x[0, 0] - 1) / np.sqrt(4 + 1e-5))
    np.testing.assert_allclose(y[0, 1], (x[0, 1] + 1) / np.sqrt(0.25 + 1e-5))
    np.testing.assert_array_equal(layer.buffers["running_mean"], [1.0, -1.0])
    assert layer.buffers["num_batches_tracked"] == 0
    dx = layer.backward(np.ones_like(x))  # affine: dx = gamma / sqrt(var + eps) * dy
    np.testing.assert_allclose(dx[0, 1], 1 / np.sqrt(0.25 + 1e-5))


def test_state_layout_and_reset():
    layer = BatchNorm2D(3)
    assert list(layer.params) == ["weight", "bias"]
    assert list(layer.buffers) == ["running_mean", "running_var", "num_batches_tracked"]
    tracked = layer.buffers["num_batches_tracked"]
    assert tracked.dtype == np.int64 and tracked.shape == ()
    assert layer.params["weight"].dtype == np.float32 and layer.buffers["running_var"].dtype == np.float32
    np.testing.assert_array_equal(layer.params["weight"], 1)
    np.testing.assert_array_equal(layer.buffers["running_var"], 1)
    layer.forward(np.random.default_rng(0).standard_normal((2, 3, 2, 2)).astype(np.float32))
    layer.params["weight"][...] = 3
    layer.reset_parameters(np.random.default_rng(0))
    np.testing.assert_array_equal(layer.params["weight"], 1)
    np.testing.assert_array_equal(layer.buffers["running_mean"], 0)
    assert layer.buffers["num_batches_tracked"] == 0
    assert layer.get_config() == {"num_features": 3, "eps": 1e-5, "momentum": 0.1}


@pytest.mark.parametrize("training", [True, False])
def test_inputs_not_mutated(training):
    layer = randomise(BatchNorm2D(3), np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    x0, dy0 = x.copy(), dy.copy()
    layer.forward(x, training=training)
    layer.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)


def test_errors():
    with pytest.raises(ValueError, match=r"BatchNorm2D: `x` must be an array with 3 channels on axis 1\. Got shape "
                                         r"\(2, 4, 5, 5\)"):
        BatchNorm2D(3).forward(np.zeros((2, 4, 5, 5)))
    with pytest.raises(ValueError, match=r"BatchNorm2D: `x` must be a 4D array \(N, C, H, W\)\. "
                                         r"Got shape \(3, 5, 5\)"):
        BatchNorm2D(3).forward(np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match=r"BatchNorm1D: `x` must be a 2D array \(N, C\)\. "
                                         r"Got shape \(2, 3, 4, 4\)"):
        BatchNorm1D(3).forward(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"BatchNorm1D: `x` must be an array with more than 1 value per channel in "
                                         r"training\. Got shape \(1, 3\)"):
        BatchNorm1D(3).forward(np.zeros((1, 3)))
    assert BatchNorm1D(3).forward(np.zeros((1, 3)), training=False).shape == (1, 3)
    with pytest.raises(ValueError,
                       match=r"BatchNorm2D: `momentum` must be a real number in \[0\.0, 1\.0\]\. Got 1\.5\."):
        BatchNorm2D(3, momentum=1.5)
    with pytest.raises(ValueError, match=r"BatchNorm1D: `eps` must be a real number in \(0\.0, inf\)\. Got 0\."):
        BatchNorm1D(3, eps=0)
    with pytest.raises(ValueError, match=r"BatchNorm2D: `num_features` must be an integer >= 1\. Got 0\."):
        BatchNorm2D(0)
    with pytest.raises(ValueError, match=r"BatchNorm2D: `input_shape` must be a per-sample shape"):
        BatchNorm2D(3).output_shape((4, 5, 5))
    with pytest.raises(RuntimeError, match=r"BatchNorm1D: backward\(\) called before forward\(\)"):
        BatchNorm1D(3).backward(np.zeros((2, 3)))
