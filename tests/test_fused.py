"""The fused operations against the unfused composition they replace, and against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from numpycnn.functional import activations, fused, norm, pool

SHAPES = [(2, 3, 5, 4), (1, 2, 3, 3), (4, 64, 7, 7), (3, 32, 6, 9), (6, 5), (2, 16)]


def _bn_inputs(shape, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rng.normal(size=shape) * rng.uniform(0.5, 3) + rng.normal()).astype(dtype)  # off-centre, scaled
    gamma = rng.uniform(-1.5, 1.5, c).astype(dtype)  # negative scales flip which side ReLU keeps
    beta = rng.normal(size=c).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    return x, gamma, beta, dy


@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_relu_equals_batch_norm_then_relu(shape):
    x, gamma, beta, dy = _bn_inputs(shape)
    z, bn_cache = norm.batch_norm_forward(x, gamma, beta, 1e-5)
    y_ref, relu_cache = activations.relu_forward(z)
    dx_ref, dgamma_ref, dbeta_ref = norm.batch_norm_backward(activations.relu_backward(dy, relu_cache), bn_cache)
    y, cache = fused.batchnorm_relu_forward(x, gamma, beta, 1e-5)
    dx, dgamma, dbeta = fused.batchnorm_relu_backward(dy, cache)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-13)
    for ours, ref in [(dx, dx_ref), (dgamma, dgamma_ref), (dbeta, dbeta_ref)]:
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cache[4], bn_cache[4], rtol=1e-12)  # mean and variance for the running statistics
    np.testing.assert_allclose(cache[5], bn_cache[5], rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_relu_inference_equals_batch_norm_then_relu(shape):
    x, gamma, beta, dy = _bn_inputs(shape, seed=1)
    rng = np.random.default_rng(2)
    mean, var = rng.normal(size=shape[1]), rng.uniform(0.2, 3, shape[1])
    z, bn_cache = norm.batch_norm_inference_forward(x, gamma, beta, mean, var, 1e-5)
    y_ref, relu_cache = activations.relu_forward(z)
    dx_ref, dgamma_ref, dbeta_ref = norm.batch_norm_inference_backward(
        activations.relu_backward(dy, relu_cache), bn_cache)
    y, cache = fused.batchnorm_relu_inference_forward(x, gamma, beta, mean, var, 1e-5)
    dx, dgamma, dbeta = fused.batchnorm_relu_inference_backward(dy, cache)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-13)
    for ours, ref in [(dx, dx_ref), (dgamma, dgamma_ref), (dbeta, dbeta_ref)]:
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [((2, 3, 6, 8), 2, None), ((1, 4, 7, 5), 3, 2), ((3, 2, 5, 5), (2, 3), 1),
                                  ((2, 32, 14, 14), 2, 2)])
@pytest.mark.parametrize("ties", [False, True])
def test_relu_maxpool2d_equals_relu_then_maxpool(case, ties):
    shape, k, s = case
    rng = np.random.default_rng(3)
    x = (rng.integers(-2, 2, size=shape) if ties else rng.normal(size=shape)).astype(np.float64)
    r, relu_cache = activations.relu_forward(x)
    y_ref, pool_cache = pool.maxpool2d_forward(r, k, s)
    dy = rng.normal(size=y_ref.shape)
    dx_ref = activations.relu_backward(pool.maxpool2d_backward(dy, pool_cache), relu_cache)
    y, cache = fused.relu_maxpool2d_forward(x, k, s)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(fused.relu_maxpool2d_backward(dy, cache), dx_ref)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-6), (np.float32, 1e-4)])
@pytest.mark.parametrize("shape", [(8, 32, 10, 10), (4, 64, 7, 7), (16, 24)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_relu_matches_pytorch(shape, training, dtype, tol):
    torch = pytest.importorskip("torch")
    x, gamma, beta, dy = _bn_inputs(shape, seed=4, dtype=dtype)
    mean = np.linspace(-1, 1, shape[1]).astype(dtype)
    var = np.linspace(0.5, 2, shape[1]).astype(dtype)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    zt = torch.nn.functional.batch_norm(xt, torch.tensor(mean), torch.tensor(var), gt, bt, training=training,
                                        eps=1e-5)
    torch.relu(zt).backward(torch.tensor(dy))
    if training:
        y, cache = fused.batchnorm_relu_forward(x, gamma, beta, 1e-5)
        dx, dgamma, dbeta = fused.batchnorm_relu_backward(dy, cache)
    else:
        y, cache = fused.batchnorm_relu_inference_forward(x, gamma, beta, mean, var, 1e-5)
        dx, dgamma, dbeta = fused.batchnorm_relu_inference_backward(dy, cache)
    assert y.dtype == dx.dtype == dtype
    for ours, theirs in [(y, torch.relu(zt)), (dx, xt.grad), (dgamma, gt.grad), (dbeta, bt.grad)]:
        theirs = theirs.detach().numpy()
        assert np.abs(ours - theirs).max() <= tol * max(np.abs(theirs).max(), 1.0)
