"""Max, average and global average pooling: gradients, loop oracle, PyTorch parity, ties, shapes, errors."""

import json

import numpy as np
import pytest

from numpycnn import reference
from numpycnn.layers import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from numpycnn.layers.gradcheck import gradcheck

#: (input shape, kernel_size, stride): non-overlapping (the fast path), sizes the window does not divide,
#: overlapping and gapped windows, non-square windows and strides, batch of one, one and several channels
CASES = [
    ((2, 3, 4, 6), 2, None),
    ((1, 1, 5, 7), 2, None),
    ((2, 2, 7, 5), 3, 2),
    ((1, 2, 6, 6), 3, 1),
    ((2, 1, 9, 8), (2, 3), (3, 1)),
    ((1, 3, 5, 5), (1, 2), None),
    ((3, 2, 4, 4), 4, None),
    ((1, 1, 8, 9), 2, 3),
]
IDS = [f"x{c[0]}-k{c[1]}-s{c[2]}" for c in CASES]
POOLS = {"max": (MaxPool2D, reference.maxpool2d_forward, reference.maxpool2d_backward),
         "avg": (AvgPool2D, reference.avgpool2d_forward, reference.avgpool2d_backward)}


def distinct_input(shape, seed=0, dtype=np.float64):
    """Values 1/size apart (a permutation): no window has a tie that finite differences could cross."""
    size = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(size).reshape(shape) / size).astype(dtype)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("kind", POOLS)
def test_gradcheck(kind, case):
    shape, k, s = case
    assert gradcheck(POOLS[kind][0](k, s), distinct_input(shape)) < 1e-7


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("kind", POOLS)
@pytest.mark.parametrize("ties", [False, True])
def test_matches_loop_reference(kind, case, ties):
    shape, k, s = case
    cls, ref_forward, ref_backward = POOLS[kind]
    rng = np.random.default_rng(1)
    # with ties: small integers, so most windows hold repeated maxima and the first one must win
    x = rng.integers(0, 3, size=shape).astype(np.float64) if ties else rng.standard_normal(shape)
    layer = cls(k, s)
    y = layer.forward(x)
    np.testing.assert_allclose(y, ref_forward(x, k, s), rtol=1e-12, atol=0)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(dy), ref_backward(dy, x, k, s), rtol=1e-12, atol=1e-15)


def _torch_pool(torch, kind, xt, k, s):
    if kind == "max":
        return torch.nn.functional.max_pool2d(xt, k, s)
    if kind == "avg":
        return torch.nn.functional.avg_pool2d(xt, k, s)
    return torch.nn.functional.adaptive_avg_pool2d(xt, 1).flatten(1)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-6), (np.float32, 1e-4)])
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("kind", ["max", "avg", "global"])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_pytorch(kind, case, dtype, rtol, ties):
    torch = pytest.importorskip("torch")
    shape, k, s = case
    rng = np.random.default_rng(2)
    x = (rng.integers(0, 3, size=shape) if ties else rng.standard_normal(shape)).astype(dtype)
    layer = GlobalAvgPool2D() if kind == "global" else POOLS[kind][0](k, s)
    xt = torch.tensor(x, requires_grad=True)
    yt = _torch_pool(torch, kind, xt, k, s)
    dy = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(dy))
    y = layer.forward(x)
    dx = layer.backward(dy)
    assert y.dtype == dx.dtype == dtype
    for ours, theirs in [(y, yt.detach().numpy()), (dx, xt.grad.numpy())]:
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= rtol * max(np.abs(theirs).max(), 1e-30)


def test_max_pool_routes_gradient_to_first_maximum():
    x = np.array([[[[1.0, 1.0, 0.0, 5.0],
                    [1.0, 0.0, 5.0, 5.0],
                    [2.0, 3.0, 7.0, 7.0],
                    [3.0, 3.0, 7.0, 7.0]]]])
    layer = MaxPool2D(2)
    np.testing.assert_array_equal(layer.forward(x)[0, 0], [[1.0, 5.0], [3.0, 7.0]])
    dx = layer.backward(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[10.0, 0.0, 0.0, 20.0],
                                             [0.0, 0.0, 0.0, 0.0],
                                             [0.0, 30.0, 40.0, 0.0],
                                             [0.0, 0.0, 0.0, 0.0]])


def test_floor_drops_uncovered_rows_and_columns():
    x = np.arange(35.0).reshape(1, 1, 5, 7)
    layer = AvgPool2D(2)
    y = layer.forward(x)
    assert y.shape == (1, 1, 2, 3)
    assert y[0, 0, 0, 0] == np.mean([0, 1, 7, 8])
    dx = layer.backward(np.ones_like(y))
    assert np.all(dx[0, 0, 4, :] == 0) and np.all(dx[0, 0, :, 6] == 0) and np.all(dx[0, 0, :4, :6] == 0.25)


def test_global_avg_pool_values_and_gradient():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4))
    layer = GlobalAvgPool2D()
    y = layer.forward(x)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)), rtol=1e-12)
    dy = np.random.default_rng(1).standard_normal((2, 3))
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, np.broadcast_to(dy[:, :, None, None] / 20, x.shape), rtol=1e-12)
    assert dx.flags.writeable and dx.flags.c_contiguous
    assert gradcheck(GlobalAvgPool2D(), x) < 1e-7


@pytest.mark.parametrize(
    "layer, in_shape, out_shape",
    [
        (MaxPool2D(2), (8, 26, 26), (8, 13, 13)),
        (MaxPool2D(2), (3, 5, 7), (3, 2, 3)),
        (MaxPool2D(3, 2), (1, 7, 8), (1, 3, 3)),
        (AvgPool2D((2, 3)), (2, 6, 9), (2, 3, 3)),
        (AvgPool2D(2, (1, 2)), (4, 3, 3), (4, 2, 1)),
        (MaxPool2D(4), (1, 4, 4), (1, 1, 1)),
        (GlobalAvgPool2D(), (16, 7, 5), (16,)),
    ],
)
def test_shape_table(layer, in_shape, out_shape):
    assert layer.output_shape(in_shape) == out_shape
    assert layer.forward(np.zeros((2, *in_shape), np.float32)).shape == (2, *out_shape)


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D, GlobalAvgPool2D])
def test_dtypes_and_inputs_not_mutated(cls):
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    x0 = x.copy()
    layer = cls()
    y = layer.forward(x)
    dy = np.ones_like(y)
    dx = layer.backward(dy)
    assert y.dtype == dx.dtype == np.float64
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, np.ones_like(y))
    assert cls().forward(x.astype(np.float32)).dtype == np.float32
    assert cls().forward(np.ones((1, 1, 4, 4), np.uint8)).dtype == np.float32


def test_stride_defaults_to_kernel_and_config_round_trips():
    assert MaxPool2D(3).stride == (3, 3) and AvgPool2D((2, 3)).stride == (2, 3)
    assert MaxPool2D().get_config() == {"kernel_size": 2, "stride": 2}
    config = AvgPool2D((2, 3), (1, 2)).get_config()
    assert config == {"kernel_size": [2, 3], "stride": [1, 2]}
    assert AvgPool2D(**json.loads(json.dumps(config))).get_config() == config
    assert GlobalAvgPool2D().get_config() == {}


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_errors(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}: `kernel_size` must be an integer >= 1. Got 0."):
        cls(0)
    with pytest.raises(TypeError, match=rf"{name}: `stride` must be an integer >= 1. Got 1.5."):
        cls(2, 1.5)
    with pytest.raises(ValueError, match=rf"{name}: `x` must be a 4D array \(N, C, H, W\)\. Got shape "
                                         r"\(3, 8, 8\)\. Use x\[:, None\]"):
        cls(2).forward(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match=rf"{name}: kernel \(3, 3\) is larger than the input \(2, 5\) "
                                         r"of shape \(1, 1, 2, 5\)"):
        cls(3).forward(np.zeros((1, 1, 2, 5)))
    with pytest.raises(ValueError, match=rf"{name}: kernel \(3, 3\) is larger than the input \(4, 2\)"):
        cls(3).output_shape((1, 4, 2))
    with pytest.raises(RuntimeError, match=rf"{name}: backward\(\) called before forward\(\)"):
        cls().backward(np.zeros((1, 1, 2, 2)))


def test_global_avg_pool_errors():
    with pytest.raises(ValueError, match=r"GlobalAvgPool2D: `x` must be a 4D array \(N, C, H, W\)\. Got shape "
                                         r"\(4, 5\)"):
        GlobalAvgPool2D().forward(np.zeros((4, 5)))
    with pytest.raises(RuntimeError, match=r"GlobalAvgPool2D: backward\(\) called before forward\(\)"):
        GlobalAvgPool2D().backward(np.zeros((1, 1)))


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 1, 5, 7), (3, 2, 2, 2)])
@pytest.mark.parametrize("ties", [False, True])
def test_maxpool_2x2_fast_kernel_matches_general_kernel(shape, ties):
    """The 2x2 stride-2 fast path gives the general kernel's maximum and window index, ties included."""
    from numpycnn.functional import pool

    rng = np.random.default_rng(4)
    x = (rng.integers(0, 2, size=shape) if ties else rng.standard_normal(shape)).astype(np.float32)
    g = pool.pool_geometry(x.shape, 2, 2)
    fast_out, fast_index = pool._maxpool2x2_forward(x, g)
    out, index = pool._maxpool_by_offsets(x, g)
    np.testing.assert_array_equal(fast_out, out)
    np.testing.assert_array_equal(fast_index, index)
    assert fast_index.dtype == index.dtype == np.uint8


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (3, 2, 2, 2), (5, 4, 10, 4)])
@pytest.mark.parametrize("values", ["normal", "ties", "nan"])
@pytest.mark.parametrize("chunk_bytes", [None, 64])
def test_maxpool_2x2_shifted_kernel_matches_general_kernel(shape, values, chunk_bytes, monkeypatch):
    """The shifted 2x2 kernel gives the strided 2x2 kernel's maximum and window index bit for bit, NaN included,
    and the general kernel's where there is no NaN: ties (the first maximum in row-major order), and inputs run a
    chunk of images at a time."""
    from numpycnn.functional import pool

    if chunk_bytes is not None:  # a chunk of one image at a time
        monkeypatch.setattr(pool, "SHIFTED_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(5)
    x = (rng.integers(0, 2, size=shape) if values == "ties" else rng.standard_normal(shape)).astype(np.float32)
    if values == "nan":
        x.reshape(-1)[rng.choice(x.size, size=max(1, x.size // 7), replace=False)] = np.nan
    g = pool.pool_geometry(x.shape, 2, 2)
    shifted_out, shifted_index = pool._maxpool2x2_shifted(x, g)
    strided_out, strided_index = pool._maxpool2x2_forward(x, g)
    np.testing.assert_array_equal(shifted_out, strided_out)  # NaN in the same places
    np.testing.assert_array_equal(shifted_index, strided_index)
    assert shifted_index.dtype == np.uint8 and shifted_out.dtype == x.dtype
    if values != "nan":
        out, index = pool._maxpool_by_offsets(x, g)
        np.testing.assert_array_equal(shifted_out, out)
        np.testing.assert_array_equal(shifted_index, index)


def test_maxpool_2x2_kernel_rule():
    """Contiguous NumPy inputs of even size take the shifted kernel; odd sizes and non-contiguous inputs the
    strided one, and both give the general kernel's results through maxpool2d_forward."""
    from numpycnn.functional import pool

    even = np.random.default_rng(6).standard_normal((3, 2, 6, 8)).astype(np.float32)
    assert pool._kernel_2x2(even, pool.pool_geometry(even.shape, 2)) is pool._maxpool2x2_shifted
    for x in (even[:, :, :5, :7], even[:, :, :, ::-1], even[:, :, :6, :7]):
        g = pool.pool_geometry(x.shape, 2)
        assert pool._kernel_2x2(x, g) is pool._maxpool2x2_forward
        y, cache = pool.maxpool2d_forward(x, 2)
        out, index = pool._maxpool_by_offsets(x, g)
        np.testing.assert_array_equal(y, out)
        np.testing.assert_array_equal(cache.argmax, index)
