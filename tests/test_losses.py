"""CrossEntropyLoss and MSELoss: finite differences, PyTorch parity, huge logits, errors."""

import numpy as np
import pytest

from numpycnn.layers.losses import CrossEntropyLoss, MSELoss

TOL = {np.float64: 1e-6, np.float32: 1e-4}


def close(actual, expected, rtol):
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(np.abs(expected).max(), 1e-30))


def numeric_grad(loss, z, target, eps=1e-6):
    """Central differences of the scalar loss with respect to every element of ``z`` (float64)."""
    grad = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        saved = z[i]
        z[i] = saved + eps
        plus = loss.forward(z, target)
        z[i] = saved - eps
        minus = loss.forward(z, target)
        z[i] = saved
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def targets_for(kind, rng, n, k):
    labels = rng.integers(0, k, n)
    if kind == "labels":
        return labels
    if kind == "onehot":
        return np.eye(k)[labels]
    return rng.dirichlet(np.ones(k), n)  # probability rows


@pytest.mark.parametrize("n, k", [(1, 3), (4, 5), (7, 2)])
@pytest.mark.parametrize("kind", ["labels", "onehot", "probs"])
def test_cross_entropy_gradcheck(n, k, kind):
    rng = np.random.default_rng(n * k)
    z, t = 2 * rng.standard_normal((n, k)), targets_for(kind, rng, n, k)
    loss = CrossEntropyLoss()
    loss.forward(z, t)
    analytic = loss.backward()
    numeric = numeric_grad(CrossEntropyLoss(), z.copy(), t)
    assert np.max(np.abs(analytic - numeric)) / np.max(np.abs(numeric)) < 1e-7


@pytest.mark.parametrize("kind", ["labels", "onehot", "probs", "unnormalised"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_matches_torch(kind, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    z = (4 * rng.standard_normal((6, 10))).astype(dtype)
    t = targets_for("probs" if kind == "unnormalised" else kind, rng, 6, 10)
    if kind == "unnormalised":
        t = 3 * t
    if kind != "labels":
        t = t.astype(dtype)
    loss = CrossEntropyLoss()
    value = loss(z, t)
    grad = loss.backward()
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(t))
    tl.backward()
    assert isinstance(value, float) and grad.dtype == dtype
    close(value, tl.item(), TOL[dtype])
    close(grad, tz.grad.numpy(), TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["labels", "onehot"])
def test_cross_entropy_huge_logits_never_nan(dtype, kind):
    z = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, -1e30], [-1e30, -1e30, -1e30]], dtype=dtype)
    labels = np.array([0, 0, 2])
    t = labels if kind == "labels" else np.eye(3, dtype=dtype)[labels]
    loss = CrossEntropyLoss()
    with np.errstate(over="raise", invalid="raise", divide="ignore"):
        value = loss.forward(z, t)
        grad = loss.backward()
    # row 0 is right (loss 0); row 1 misses by 2e30; row 2 is uniform (loss log 3)
    np.testing.assert_allclose(value, (2e30 + np.log(3)) / 3, rtol=1e-6)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0, 0, 0], [-1 / 3, 1 / 3, 0], [1 / 9, 1 / 9, -2 / 9]], atol=1e-7)


def test_cross_entropy_extreme_float32_spread_is_not_nan():
    z = np.array([[3e38, -3e38]], np.float32)  # the gap overflows float32
    loss = CrossEntropyLoss()
    with np.errstate(over="ignore"):
        for t in (np.array([0]), np.array([1]), np.array([[1.0, 0.0]], np.float32)):
            assert not np.isnan(loss.forward(z, t))
            assert not np.isnan(loss.backward()).any()


def test_cross_entropy_inputs_not_mutated():
    z = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    t = np.array([1, 0, 3])
    z0, t0 = z.copy(), t.copy()
    loss = CrossEntropyLoss()
    loss.forward(z, t)
    loss.backward()
    loss.backward()  # twice gives the same
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(t, t0)
    np.testing.assert_array_equal(loss.backward(), loss.backward())


def test_cross_entropy_errors():
    loss = CrossEntropyLoss()
    z = np.zeros((4, 10), np.float32)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: `targets` must be class labels in \[0, 10\) for "
                                         r"logits of shape \(4, 10\)\. Got 10\."):
        loss.forward(z, np.array([1, 2, 10, 3]))
    with pytest.raises(ValueError, match=r"`targets` must be class labels in \[0, 10\).* Got -1\."):
        loss.forward(z, np.array([1, -1, 0, 3]))
    with pytest.raises(ValueError, match=r"`targets` must be of shape \(4,\) or \(4, 10\) for logits of shape "
                                         r"\(4, 10\)\. Got shape \(3,\)"):
        loss.forward(z, np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"Got shape \(4, 9\)"):
        loss.forward(z, np.zeros((4, 9)))
    with pytest.raises(ValueError, match=r"`logits` must be a 2D array \(N, K\)\. Got shape \(10,\)\. "
                                         r"Use logits\[None\]"):
        loss.forward(np.zeros(10), np.array([1]))
    with pytest.raises(TypeError, match=r"`targets` must be integer class labels when 1D\. "
                                        r"Got 'dtype float64'\. Use targets\.astype\(np\.int64\)"):
        loss.forward(z, np.array([1.0, 2.0, 3.0, 0.0]))
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss: backward\(\) called before forward\(\)"):
        CrossEntropyLoss().backward()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4, 4)])
def test_mse_matches_torch(dtype, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    pred, target = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    loss = MSELoss()
    value = loss(pred, target)
    grad = loss.backward()
    tp = torch.tensor(pred, requires_grad=True)
    tl = torch.nn.functional.mse_loss(tp, torch.tensor(target))
    tl.backward()
    assert isinstance(value, float) and grad.dtype == dtype and grad.shape == shape
    close(value, tl.item(), TOL[dtype])
    close(grad, tp.grad.numpy(), TOL[dtype])


def test_mse_gradcheck_and_errors():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    loss = MSELoss()
    loss.forward(pred, target)
    np.testing.assert_allclose(loss.backward(), numeric_grad(MSELoss(), pred.copy(), target), rtol=1e-7)
    with pytest.raises(ValueError, match=r"MSELoss: `target` must be of the prediction's shape \(3, 2\)\. "
                                         r"Got shape \(3,\)"):
        loss.forward(pred, target[:, 0])
    with pytest.raises(RuntimeError, match=r"MSELoss: backward\(\) called before forward\(\)"):
        MSELoss().backward()


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_label_smoothing_matches_pytorch(eps, kind, dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    logits = (rng.normal(size=(6, 5)) * 3).astype(dtype)
    if kind == "labels":
        targets = rng.integers(0, 5, 6)
    else:
        targets = rng.dirichlet(np.ones(5), 6).astype(dtype)
    loss = CrossEntropyLoss(label_smoothing=eps)
    value = loss.forward(logits, targets)
    grad = loss.backward()
    zt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.CrossEntropyLoss(label_smoothing=eps)(zt, torch.tensor(targets))
    ref.backward()
    assert abs(value - ref.item()) <= tol * max(1.0, abs(ref.item()))
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=tol, atol=tol)


def test_label_smoothing_gradcheck_and_errors():
    rng = np.random.default_rng(8)
    logits, labels = rng.normal(size=(4, 3)), np.array([0, 2, 1, 2])
    loss = CrossEntropyLoss(label_smoothing=0.2)
    loss.forward(logits, labels)
    analytic = loss.backward()
    numeric = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        shifted = logits.copy()
        shifted[index] += 1e-6
        up = CrossEntropyLoss(label_smoothing=0.2).forward(shifted, labels)
        shifted[index] -= 2e-6
        numeric[index] = (up - CrossEntropyLoss(label_smoothing=0.2).forward(shifted, labels)) / 2e-6
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)
    assert repr(loss) == "CrossEntropyLoss(label_smoothing=0.2)" and repr(CrossEntropyLoss()) == "CrossEntropyLoss()"
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(TypeError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing="0.1")
