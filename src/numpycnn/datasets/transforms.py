"""Preprocessing as the original project did it: pixels to [0, 1], per-channel standardisation, one-hot.

None of these functions changes its input; each returns a new array. :func:`normalization_problem` is the one
check of a model's normalisation record, used when a model is saved, loaded and trained.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_STATS_CHUNK = 4096


def to_float(images: np.ndarray) -> np.ndarray:
    """Scale uint8 pixels to float32 in [0, 1].

    .. math:: x = \\mathrm{images} / 255

    Parameters
    ----------
    images : numpy.ndarray
        uint8, any shape, typically ``(N, C, H, W)``.

    Returns
    -------
    numpy.ndarray
        float32, same shape, values in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> to_float(np.array([0, 255], dtype=np.uint8))
    array([0., 1.], dtype=float32)
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(
            f"to_float: `images` must be a uint8 array of pixels 0-255. Got dtype {images.dtype}; "
            "if it is already scaled, use it as it is."
        )
    out = images.astype(np.float32)
    out *= np.float32(1 / 255)
    return out


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over images, rows and columns.

    .. math:: \\mu_c = \\mathrm{mean}_{n,h,w}\\, x_{nchw}, \\qquad
              \\sigma_c = \\sqrt{\\mathrm{mean}_{n,h,w}\\, x_{nchw}^2 - \\mu_c^2}

    uint8 input is taken on the [0, 1] scale of :func:`to_float`, so the result can be passed straight to
    :func:`standardize` with the output of :func:`to_float`. Sums are accumulated in float64, in chunks of
    images, so no float copy of the whole data set is made.

    Parameters
    ----------
    images : numpy.ndarray
        Shape ``(N, C, H, W)``, uint8 or floating point.

    Returns
    -------
    mean, std : numpy.ndarray
        float32, shape ``(C,)`` each.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            f"channel_stats: `images` must be a non-empty 4D array (N, C, H, W). Got shape {images.shape}."
        )
    total = np.zeros(images.shape[1])
    total_sq = np.zeros(images.shape[1])
    for start in range(0, images.shape[0], _STATS_CHUNK):
        chunk = images[start:start + _STATS_CHUNK].astype(np.float64)
        total += chunk.sum(axis=(0, 2, 3))
        total_sq += np.square(chunk).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    if images.dtype == np.uint8:
        mean, std = mean / 255, std / 255
    return mean.astype(np.float32), std.astype(np.float32)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Subtract a per-channel mean and divide by a per-channel standard deviation.

    .. math:: y_{nchw} = (x_{nchw} - \\mu_c) / \\sigma_c

    Parameters
    ----------
    x : numpy.ndarray
        Floating point, shape ``(N, C, H, W)`` (for example the output of :func:`to_float`).
    mean, std : array_like
        Shape ``(C,)``; every ``std`` entry positive.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(
            f"standardize: `x` must be floating point. Got dtype {x.dtype}; use to_float(x) first."
        )
    if x.ndim != 4:
        raise ValueError(f"standardize: `x` must be 4D (N, C, H, W). Got shape {x.shape}.")
    channels = x.shape[1]
    mean = np.asarray(mean, dtype=x.dtype).reshape(-1)
    std = np.asarray(std, dtype=x.dtype).reshape(-1)
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(
            f"standardize: `mean` and `std` must have one value per channel, shape ({channels},). "
            f"Got shapes {mean.shape} and {std.shape}."
        )
    if not np.all(std > 0):
        raise ValueError(f"standardize: `std` must be positive. Got {std.tolist()!r}.")
    return (x - mean[:, None, None]) / std[:, None, None]  # (C,) -> (C, 1, 1), broadcast over (N, C, H, W)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot encode integer labels.

    Parameters
    ----------
    labels : numpy.ndarray
        Integers in ``[0, num_classes)``, shape ``(N,)``.
    num_classes : int
        Number of classes, at least 1.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(N, num_classes)``, with ``out[i, labels[i]] = 1``.

    Examples
    --------
    >>> import numpy as np
    >>> one_hot(np.array([2, 0]), 3)
    array([[0., 0., 1.],
           [1., 0., 0.]], dtype=float32)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"one_hot: `num_classes` must be an integer >= 1. Got {num_classes!r}.")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"one_hot: `labels` must be a 1D integer array. Got dtype {labels.dtype}, shape {labels.shape}."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"one_hot: `labels` must lie in [0, {num_classes}). "
            f"Got values from {labels.min()} to {labels.max()}."
        )
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def normalization_problem(normalization: Any, channels: int | None = None) -> str:
    """What is wrong with a normalisation record for images of ``channels`` channels; ``""`` if nothing.

    A model's ``normalization`` is ``None`` (``null`` in a model file) or ``{"mean": [...], "std": [...]}``: the
    :math:`\\mu_c` and :math:`\\sigma_c` of :func:`standardize`, finite numbers with every :math:`\\sigma_c > 0`,
    one of each per channel or one of each for all channels. This is the only place these rules are written:
    ``save``, ``load_model`` and ``fit`` all ask it.

    Parameters
    ----------
    normalization : object
        The record to check.
    channels : int, optional
        The images' channels, when known.

    Returns
    -------
    str
        One sentence naming the problem and what was given, or ``""``.

    Examples
    --------
    >>> normalization_problem({"mean": [0.5], "std": [0.25]})
    ''
    >>> print(normalization_problem({"mean": [0.5], "std": [0.0]}))
    `normalization` std must be > 0 for every channel. Got {'mean': [0.5], 'std': [0.0]}.
    """
    if normalization is None:
        return ""
    expected = ('None (null in a file) or {"mean": [...], "std": [...]} with a finite mean and a std > 0 per '
                "input channel")
    if not isinstance(normalization, dict) or set(normalization) != {"mean", "std"}:
        return f"`normalization` must be {expected}. Got {normalization!r:.200}."
    values = [normalization["mean"], normalization["std"]]
    if not all(isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                 and math.isfinite(x) for x in v) for v in values):
        return f"`normalization` must be {expected}. Got {normalization!r:.200}."
    mean, std = values
    if not all(x > 0 for x in std):
        return f"`normalization` std must be > 0 for every channel. Got {normalization!r:.200}."
    sizes = {len(mean), len(std)}
    if len(sizes) != 1 or (channels is not None and sizes - {1, channels}):
        return (f"`normalization` must have one mean and one std per input channel ({channels}), or one "
                f"of each for all. Got {normalization!r:.200}.")
    return ""
