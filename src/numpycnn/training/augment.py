"""Data augmentation in NumPy, layer-free: ``augment(batch, rng) -> batch`` applied to each training batch.

Every transform works on a whole batch ``(N, C, H, W)`` at once (no Python loop over images), keeps the dtype
of its input, and draws its randomness only from the ``numpy.random.Generator`` it is handed, so a seeded
``fit`` gives the same batches every time. Pixels that come from outside the image are 0 (the background of
MNIST-like images scaled to [0, 1]); ``fit`` applies augmentation before standardising.

Examples
--------
>>> augment = make_augment(shift=2, rotate=10.0)            # digits: no flips
>>> batch = np.zeros((64, 1, 28, 28), np.float32)
>>> augment(batch, np.random.default_rng(0)).shape
(64, 1, 28, 28)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from numpycnn.core import parallel
from numpycnn.core.checks import fail, positive_int, real_in_range

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _check_batch(owner: str, x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        shape = getattr(x, "shape", type(x).__name__)
        fail(owner, "x", "a batch of images (N, C, H, W)", shape, hint="Use x[:, None] for (N, H, W) images.")


def shift_images(x: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Translate images by whole pixels, zero-filled: ``out[n, c, i, j] = x[n, c, i - dy[n], j - dx[n]]``.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
    dy, dx : int arrays, (N,)
        Downward and rightward shift of each image, each in ``[-s, s]``.

    Notes
    -----
    The batch is padded once by :math:`s = \\max |d|`; a strided view of every :math:`H \\times W` window of
    the padded images, shape ``(N, C, 2s+1, 2s+1, H, W)``, is indexed at window ``(s - dy, s - dx)``.
    """
    _check_batch("shift_images", x)
    dy, dx = np.asarray(dy, np.intp), np.asarray(dx, np.intp)
    n, _, h, w = x.shape
    s = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    if s == 0:
        return x.copy()
    if s >= max(h, w):
        fail("shift_images", "dy, dx", f"shifts smaller than the image ({h}x{w})", s)
    padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))  # (N, C, H + 2s, W + 2s)
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2s + 1, 2s + 1, H, W)
    return windows[np.arange(n), :, s - dy, s - dx]  # (N, C, H, W): advanced axes first, then C, H, W


def rotate_images(x: np.ndarray, degrees: np.ndarray, order: int = 1) -> np.ndarray:
    """Rotate each image about its centre, counter-clockwise as displayed, filling with zeros.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
    degrees : float array, (N,)
        The angle of each image.
    order : {0, 1}
        Interpolation: 0 nearest neighbour, 1 bilinear.

    Notes
    -----
    Each output pixel :math:`(i, j)` samples the input at the inverse rotation of its offset from the centre
    :math:`(c_y, c_x) = ((H - 1)/2, (W - 1)/2)`, with :math:`u = j - c_x`, :math:`v = c_y - i` (y up):

    .. math::
        j_s = c_x + u\\cos\\theta + v\\sin\\theta, \\qquad i_s = c_y + u\\sin\\theta - v\\cos\\theta

    Bilinear sampling weighs the four neighbours of :math:`(i_s, j_s)`; those outside the image count as 0.
    A rotation by 90 degrees equals ``np.rot90(x, 1, axes=(2, 3))`` for square images.
    """
    _check_batch("rotate_images", x)
    if order not in (0, 1):
        fail("rotate_images", "order", "0 (nearest) or 1 (bilinear)", order)
    n, c, h, w = x.shape
    degrees = np.asarray(degrees, np.float64).reshape(n)
    parts = parallel.slices(n, c * h * w * ROTATE_PASSES)
    if len(parts) == 1:
        return _rotate(x, degrees, order)
    # every image is rotated on its own: the slices' results are the unsplit result's rows, bit for bit
    return np.concatenate(parallel.map_slices(lambda s: _rotate(x[s], degrees[s], order), parts))


#: Passes over an image's pixels that bilinear rotation makes (coordinates, four samples with their weights and the
#: sum): its work per image for :func:`numpycnn.core.parallel.slices`, which splits batches of single-channel 28x28
#: images of 34 or more in two. Every image is rotated on its own, so the split gives the same bits. Measured
#: (``python -m benchmarks.rotate_split``, AMD EPYC with AVX-512, 2 cores, 15 alternating rounds): 128 MNIST images
#: in 2 slices 3.4 ms against 9.1 ms unsplit (0.39x; the unsplit batch's temporaries outgrow the caches), 64 images
#: 1.76 ms against 1.78 ms (0.96x, within the noise).
ROTATE_PASSES = 20


def _rotate(x: np.ndarray, degrees: np.ndarray, order: int) -> np.ndarray:
    """:func:`rotate_images` of one batch or slice, checked already."""
    n, c, h, w = x.shape
    theta = np.deg2rad(degrees).reshape(n, 1, 1)
    cos, sin = np.cos(theta), np.sin(theta)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    v = cy - np.arange(h, dtype=np.float64).reshape(1, h, 1)
    u = np.arange(w, dtype=np.float64).reshape(1, 1, w) - cx
    src_j = cx + u * cos + v * sin  # (N, H, W)
    src_i = cy + u * sin - v * cos
    flat = x.reshape(n, c, h * w).astype(np.float32 if x.dtype != np.float64 else np.float64, copy=False)
    if order == 0:
        out = _sample(flat, np.rint(src_i), np.rint(src_j), h, w, None)
    else:
        i0, j0 = np.floor(src_i), np.floor(src_j)
        fi, fj = (src_i - i0).astype(flat.dtype), (src_j - j0).astype(flat.dtype)
        out = _sample(flat, i0, j0, h, w, (1 - fi) * (1 - fj))
        out += _sample(flat, i0, j0 + 1, h, w, (1 - fi) * fj)
        out += _sample(flat, i0 + 1, j0, h, w, fi * (1 - fj))
        out += _sample(flat, i0 + 1, j0 + 1, h, w, fi * fj)
    out = out.reshape(n, c, h, w)  # (N, C, H * W) -> (N, C, H, W)
    return _like(out, x)


def _sample(flat: np.ndarray, i: np.ndarray, j: np.ndarray, h: int, w: int,
            weight: np.ndarray | None) -> np.ndarray:
    """``flat[n, c, i * w + j] * weight`` for integer-valued ``i, j`` (N, H, W); 0 outside the image."""
    n = flat.shape[0]
    inside = (i >= 0) & (i < h) & (j >= 0) & (j < w)
    index = (np.clip(i, 0, h - 1) * w + np.clip(j, 0, w - 1)).astype(np.intp).reshape(n, 1, h * w)
    scale = inside.astype(flat.dtype) if weight is None else np.where(inside, weight, 0).astype(flat.dtype)
    return np.take_along_axis(flat, index, axis=2) * scale.reshape(n, 1, h * w)


def _like(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``out`` in ``x``'s dtype (rounded and clipped for integer images)."""
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(x.dtype)
    return out.astype(x.dtype, copy=False)


class RandomShift:
    """Translate each image by a random whole number of pixels in ``[-max_shift, max_shift]`` on each axis.

    Parameters
    ----------
    max_shift : int
        The largest shift, in pixels (2 suits 28x28 digits; 4 with flips suits CIFAR-10, as random crops do).
    """

    def __init__(self, max_shift: int = 2) -> None:
        self.max_shift = positive_int("RandomShift", "max_shift", max_shift, minimum=0)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch("RandomShift", x)
        if self.max_shift == 0:
            return x
        d = rng.integers(-self.max_shift, self.max_shift + 1, size=(2, len(x)))
        return shift_images(x, d[0], d[1])

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"


class RandomRotation:
    """Rotate each image by a random angle drawn uniformly from ``[-max_degrees, max_degrees]``.

    Parameters
    ----------
    max_degrees : float
        The largest angle; about 10-15 degrees for digits (a 6 must not become a 9).
    order : {0, 1}
        0 nearest neighbour, 1 bilinear interpolation.
    """

    def __init__(self, max_degrees: float = 10.0, order: int = 1) -> None:
        self.max_degrees = real_in_range("RandomRotation", "max_degrees", max_degrees, 0.0, 180.0)
        if order not in (0, 1):
            fail("RandomRotation", "order", "0 (nearest) or 1 (bilinear)", order)
        self.order = order

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch("RandomRotation", x)
        if self.max_degrees == 0:
            return x
        return rotate_images(x, rng.uniform(-self.max_degrees, self.max_degrees, size=len(x)), self.order)

    def __repr__(self) -> str:
        return f"RandomRotation(max_degrees={self.max_degrees}, order={self.order})"


class RandomHorizontalFlip:
    """Mirror each image left to right with probability ``p``.

    Valid for photographs and garments (CIFAR-10, Fashion-MNIST); not for digits or letters, whose mirror
    images are other symbols or none.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = real_in_range("RandomHorizontalFlip", "p", p, 0.0, 1.0)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch("RandomHorizontalFlip", x)
        flip = rng.random(len(x)) < self.p  # drawn for every image, so the stream does not depend on the data
        return np.where(flip.reshape(-1, 1, 1, 1), x[..., ::-1], x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms in order with one generator: ``Compose([RandomRotation(), RandomShift()])``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                fail("Compose", f"transforms[{i}]", "a callable t(batch, rng) -> batch", t, error=TypeError)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def make_augment(shift: int = 2, rotate: float = 10.0, flip: bool = False) -> Compose:
    """The usual recipe: a small rotation, then a shift, then (if ``flip``) a horizontal flip.

    Parameters
    ----------
    shift : int
        Largest shift in pixels (0 for none).
    rotate : float
        Largest rotation in degrees (0 for none).
    flip : bool
        Random horizontal flips; leave False for digits (MNIST).
    """
    transforms: list[Transform] = []
    if rotate:
        transforms.append(RandomRotation(rotate))
    if shift:
        transforms.append(RandomShift(shift))
    if flip:
        transforms.append(RandomHorizontalFlip())
    return Compose(transforms)


#: Sensible augmentation per data set: digits are rotated and shifted, never flipped.
PRESETS: dict[str, dict[str, float]] = {
    "mnist": {"shift": 2, "rotate": 10.0, "flip": False},
    "fashion-mnist": {"shift": 2, "rotate": 0.0, "flip": True},
    "cifar10": {"shift": 4, "rotate": 0.0, "flip": True},
}


def parse_recipe(text: str) -> dict[str, float]:
    """The :func:`make_augment` arguments of a recipe as ``numpycnn train --augment RECIPE`` takes it.

    A recipe is comma-separated parts, each ``shift=N`` (pixels), ``rotate=DEG`` (degrees) or ``flip``; parts
    left out are off. ``"shift=2,flip"`` is the random crop with 2 pixels of zero padding plus mirroring that
    suits garments and photographs; ``"flip"`` mirrors only.

    Raises
    ------
    ValueError
        For an empty recipe, an unknown or repeated part, or a value out of range.

    Examples
    --------
    >>> parse_recipe("shift=2,flip")
    {'shift': 2, 'rotate': 0.0, 'flip': True}
    """
    owner, expected = "augment", "comma-separated parts shift=N, rotate=DEG, flip (e.g. 'shift=2,flip')"
    if not isinstance(text, str) or not text.strip():
        fail(owner, "recipe", expected, text)
    settings: dict[str, float] = {"shift": 0, "rotate": 0.0, "flip": False}
    seen: set[str] = set()
    for part in text.split(","):
        name, has_value, value = part.strip().partition("=")
        if name not in settings or name in seen or bool(has_value) == (name == "flip"):  # flip takes no value
            fail(owner, "recipe", expected, text)
        seen.add(name)
        try:
            if name == "shift":
                settings["shift"] = positive_int(owner, "shift", int(value), minimum=0)
            elif name == "rotate":
                settings["rotate"] = real_in_range(owner, "rotate", float(value), 0.0, 180.0)
            else:
                settings["flip"] = True
        except ValueError as err:
            if "augment:" in str(err):
                raise
            fail(owner, name, "a number" if name == "rotate" else "a whole number of pixels", value)
    return settings


def augment_for(dataset: str) -> Compose:
    """The :data:`PRESETS` recipe for ``dataset`` (``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``)."""
    if dataset not in PRESETS:
        fail("augment_for", "dataset", f"one of {sorted(PRESETS)}", dataset)
    return make_augment(**PRESETS[dataset])


__all__ = ["Compose", "PRESETS", "RandomHorizontalFlip", "RandomRotation", "RandomShift", "augment_for",
           "make_augment", "parse_recipe", "rotate_images", "shift_images"]
