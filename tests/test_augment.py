"""Augmentation: shapes, dtypes, determinism, and that each transform moves pixels where it should."""

from __future__ import annotations

import numpy as np
import pytest

from numpycnn.training.augment import (
    Compose,
    RandomHorizontalFlip,
    RandomRotation,
    RandomShift,
    augment_for,
    make_augment,
    rotate_images,
    shift_images,
)


def images(n=6, c=2, h=7, w=9, dtype=np.float32, seed=0):
    x = np.random.default_rng(seed).random((n, c, h, w))
    return (x * 255).astype(np.uint8) if dtype == np.uint8 else x.astype(dtype)


def shift_reference(x, dy, dx):
    """Loop-based translation with zero fill: out[i, j] = x[i - dy, j - dx]."""
    out = np.zeros_like(x)
    n, _, h, w = x.shape
    for k in range(n):
        for i in range(h):
            for j in range(w):
                si, sj = i - dy[k], j - dx[k]
                if 0 <= si < h and 0 <= sj < w:
                    out[k, :, i, j] = x[k, :, si, sj]
    return out


# -- shifts -------------------------------------------------------------------------------------------------
def test_shift_images_matches_the_loop_reference():
    x = images()
    dy, dx = np.array([0, 1, -2, 3, -1, 2]), np.array([0, -3, 2, 1, 0, -1])
    np.testing.assert_array_equal(shift_images(x, dy, dx), shift_reference(x, dy, dx))


def test_a_shift_moves_a_single_pixel():
    x = np.zeros((2, 1, 28, 28), np.float32)
    x[:, 0, 10, 12] = 1.0
    out = shift_images(x, np.array([2, -1]), np.array([-2, 1]))
    assert out[0, 0, 12, 10] == 1.0 and out[1, 0, 9, 13] == 1.0
    assert out.sum() == 2.0


def test_random_shift_stays_within_its_range_and_keeps_the_pixel():
    x = np.zeros((200, 1, 28, 28), np.float32)
    x[:, 0, 14, 14] = 1.0
    out = RandomShift(2)(x, np.random.default_rng(0))
    rows, cols = np.nonzero(out[:, 0].sum(axis=2))[1], np.nonzero(out[:, 0].sum(axis=1))[1]
    assert len(rows) == len(cols) == 200  # every image keeps its one pixel
    assert set(rows - 14) == set(cols - 14) == {-2, -1, 0, 1, 2}  # all shifts in range occur, none beyond


def test_shift_fills_with_zeros_and_does_not_touch_its_input():
    x = np.ones((1, 1, 4, 4), np.float32)
    before = x.copy()
    out = shift_images(x, np.array([1]), np.array([0]))
    np.testing.assert_array_equal(out[0, 0, 0], 0.0)
    np.testing.assert_array_equal(out[0, 0, 1:], 1.0)
    np.testing.assert_array_equal(x, before)


# -- rotations ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [0, 1])
def test_rotation_by_90_degrees_is_rot90(order):
    x = images(h=8, w=8)
    out = rotate_images(x, np.full(len(x), 90.0), order=order)
    np.testing.assert_allclose(out, np.rot90(x, 1, axes=(2, 3)), atol=1e-5)


def test_rotation_by_180_degrees_on_non_square_images_and_0_is_identity():
    x = images(h=7, w=10)
    np.testing.assert_allclose(rotate_images(x, np.full(len(x), 180.0)), x[..., ::-1, ::-1], atol=1e-5)
    np.testing.assert_allclose(rotate_images(x, np.zeros(len(x))), x, atol=1e-6)


def test_rotation_is_counter_clockwise_as_displayed():
    x = np.zeros((1, 1, 9, 9), np.float32)
    x[0, 0, 4, 8] = 1.0  # right of centre
    out = rotate_images(x, np.array([90.0]))
    assert out[0, 0, 0, 4] == pytest.approx(1.0)  # now above the centre


def test_small_rotation_keeps_a_centred_blob():
    yy, xx = np.mgrid[:28, :28]
    blob = np.exp(-((yy - 13.5) ** 2 + (xx - 13.5) ** 2) / 20).astype(np.float32)[None, None]
    out = RandomRotation(15)(np.repeat(blob, 4, axis=0), np.random.default_rng(0))
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), blob.sum(), rtol=1e-3)  # round: rotation-invariant


# -- flips and composition ----------------------------------------------------------------------------------
def test_flip_probability_one_and_zero():
    x = images()
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(x, rng), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(x, rng), x)


def test_make_augment_never_flips_unless_asked():
    assert not any(isinstance(t, RandomHorizontalFlip) for t in make_augment().transforms)
    assert any(isinstance(t, RandomHorizontalFlip) for t in make_augment(flip=True).transforms)
    assert not any(isinstance(t, RandomHorizontalFlip) for t in augment_for("mnist").transforms)
    assert [type(t) for t in make_augment(shift=0, rotate=0).transforms] == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_shapes_and_dtypes_are_kept(dtype):
    x = images(n=5, c=3, h=12, w=10, dtype=dtype)
    out = make_augment(shift=2, rotate=10.0, flip=True)(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_same_seed_same_batch_and_different_seed_different_batch():
    x = images(n=16, h=28, w=28)
    augment = make_augment()
    a = augment(x, np.random.default_rng(1))
    b = augment(x, np.random.default_rng(1))
    c = augment(x, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_compose_applies_in_order():
    calls = []
    compose = Compose([lambda x, rng: calls.append("a") or x + 1, lambda x, rng: calls.append("b") or x * 2])
    np.testing.assert_array_equal(compose(np.zeros((1, 1, 2, 2)), np.random.default_rng(0)), 2.0)
    assert calls == ["a", "b"]


# -- errors -------------------------------------------------------------------------------------------------
def test_errors_are_clear():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"RandomShift: `x` must be a batch of images \(N, C, H, W\)\. "
                                         r"Got \(3, 28, 28\)\. Use x\[:, None\]"):
        RandomShift(2)(np.zeros((3, 28, 28)), rng)
    with pytest.raises(ValueError, match=r"`max_shift` must be an integer >= 0\. Got -1"):
        RandomShift(-1)
    with pytest.raises(ValueError, match=r"`max_degrees` must be a real number in \[0\.0, 180\.0\]"):
        RandomRotation(200)
    with pytest.raises(ValueError, match=r"`dataset` must be one of \['cifar10', 'fashion-mnist', 'mnist'\]"):
        augment_for("svhn")
    with pytest.raises(ValueError, match=r"shifts smaller than the image"):
        shift_images(np.zeros((1, 1, 3, 3)), np.array([3]), np.array([0]))


def test_fit_with_augmentation_is_reproducible_and_differs_from_without():
    from numpycnn.datasets import load
    from numpycnn.layers import Dense, Flatten
    from numpycnn.model.sequential import Sequential
    from numpycnn.optim import SGD
    from numpycnn.training.loop import fit

    x, y = load("mnist", "train", download=False)
    x, y = x[:256], y[:256]

    def run(augment):
        model = Sequential([Flatten(), Dense(784, 10)], input_shape=(1, 28, 28)).initialize(0)
        fit(model, x, y, epochs=1, optimizer=SGD(lr=0.1), rng=0, verbose=0, augment=augment)
        return model.state_dict()["1.weight"].copy()

    a, b, plain = run(make_augment()), run(make_augment()), run(None)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, plain)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("n", [1, 5, 7])
def test_rotation_split_over_workers_gives_the_same_bits(dtype, order, n, monkeypatch):
    """rotate_images cuts a batch into slices for the worker threads (numpycnn.core.parallel): every image is
    rotated on its own, so 1 or several workers, split or not, give the same bits."""
    from numpycnn.core import parallel

    rng = np.random.default_rng(n)
    x = (rng.integers(0, 256, size=(n, 2, 9, 7)) if dtype == np.uint8 else rng.random((n, 2, 9, 7))).astype(dtype)
    degrees = rng.uniform(-30, 30, size=n)
    monkeypatch.setattr(parallel, "MAX_SLICES", 1)
    whole = rotate_images(x, degrees, order)
    monkeypatch.setattr(parallel, "MAX_SLICES", 4)
    monkeypatch.setattr(parallel, "MIN_SLICE_WORK", 1)  # split even these tiny images
    assert len(parallel.slices(n, 1)) == min(n, 4)
    try:
        for workers in (1, 2, 3):
            parallel.set_num_threads(workers)
            split = rotate_images(x, degrees, order)
            assert split.dtype == whole.dtype and split.shape == whole.shape
            np.testing.assert_array_equal(split, whole)
    finally:
        parallel.set_num_threads(None)
