"""Batches for training and inference: the checks on ``(x, y)`` and the gathering of each batch.

Data conventions: ``uint8`` images are raw pixels; each batch is gathered into a reused floating-point buffer,
scaled to :math:`[0, 1]` (:math:`x \\cdot (1/255)`, as ``datasets.to_float``), augmented (if asked) and
standardised per channel with ``model.normalization`` (:math:`(x - \\mu_c) / \\sigma_c`, as
``datasets.standardize``). Floating-point inputs are taken as already scaled to :math:`[0, 1]` (``x / 255``)
and get the same standardisation, so uint8 images and the same images as floats give the same outputs; floats
that look like 0-255 pixels raise a warning. The data set is never converted whole: MNIST stays 47 MB of
``uint8`` in memory.

Devices: the data stays on the host. Each batch is gathered and standardised there, then sent to the model's
device (``model.device``, see :mod:`numpycnn.core.backend`) in one copy, :func:`to_model`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.checks import fail
from numpycnn.datasets.transforms import normalization_problem

if TYPE_CHECKING:
    from numpycnn.model.sequential import Sequential

__all__ = ["Batches", "check_inputs", "check_labels", "chunks", "count_hits", "to_model"]


def check_inputs(owner: str, model: Sequential, x: Any, name: str = "x") -> tuple[np.ndarray, int]:
    """Return ``(x, classes)`` after checking dtype, shape and finiteness of ``x`` against ``model``."""
    x = np.asarray(x)
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        fail(owner, name, "uint8 images or a floating-point array", x.dtype, error=TypeError,
             hint="Convert with x.astype(np.float32), or pass the raw uint8 images.")
    expected = model.input_shape
    if expected is not None and x.shape[1:] != expected:
        hint = ""
        if x.shape == expected:
            hint = "Use x[None] for a single image."
        elif len(expected) == 3 and expected[0] == 1 and x.shape[1:] == expected[1:]:
            hint = "Use x[:, None] for a batch of single-channel images."
        fail(owner, f"{name}.shape", f"(N, {', '.join(map(str, expected))})", x.shape, hint=hint)
    if x.ndim < 2 or len(x) == 0:
        fail(owner, f"{name}.shape", "(N, ...) with N >= 1 samples", x.shape)
    if x.dtype.kind == "f" and not np.isfinite(np.sum(x, dtype=np.float64)):
        fail(owner, name, "finite", "an array with NaN or infinite values")
    if x.dtype.kind == "f" and x.size and float(x.max()) > 2.0 and float(x.min()) >= 0.0:
        warnings.warn(f"{owner}: `{name}` holds floats up to {float(x.max()):g}, which look like 0-255 pixels; "
                      "float images are taken as already scaled to [0, 1]. Pass the uint8 images, or x / 255.",
                      stacklevel=3)
    try:
        out_shape = model.output_shapes(x.shape[1:])[-1]
    except ValueError as err:
        raise ValueError(f"{owner}: the model cannot take `{name}` of shape {x.shape}: {err}") from None
    if len(out_shape) != 1:
        fail(owner, "model", "a classifier with outputs (N, classes)", f"outputs of shape (N, *{out_shape})")
    return x, int(out_shape[0])


def check_labels(owner: str, y: Any, n: int, classes: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as int64 class indices ``(n,)``; one-hot rows ``(n, classes)`` are converted."""
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape != (n, classes) or not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
            fail(owner, name, f"int labels (N,) or one-hot rows of shape ({n}, {classes})",
                 f"shape {y.shape}", hint="One-hot rows must hold a single 1 and zeros.")
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim != 1:
        fail(owner, f"{name}.shape", "(N,) for class labels or (N, classes) for one-hot rows", y.shape)
    if y.dtype.kind not in "iu":
        fail(owner, name, "integer class labels", f"dtype {y.dtype}", error=TypeError,
             hint="Use y.astype(np.int64) for integral float labels.")
    if len(y) != n:
        fail(owner, f"len({name})", f"the number of images ({n})", len(y))
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        fail(owner, name, f"labels in [0, {classes - 1}] for a model with {classes} outputs",
             f"labels in [{low}, {high}]")
    return y.astype(np.int64, copy=False)


class Batches:
    """Gathers batches of ``x`` into one reused buffer of ``dtype``: uint8 scaled to [0, 1], standardised.

    Parameters
    ----------
    x : ndarray, (N, C, H, W) or (N, features)
        uint8 raw images or a floating-point array.
    batch_size : int
        The largest batch ``gather`` is asked for.
    dtype : numpy dtype
        The model's dtype (float32 or float64).
    normalization : dict or None
        ``{"mean": [...], "std": [...]}`` per channel of images in [0, 1], applied to uint8 inputs (after
        ``x / 255``) and to float inputs alike.
    """

    def __init__(self, x: np.ndarray, batch_size: int, dtype: Any, normalization: dict | None = None) -> None:
        self.x, self.dtype = x, np.dtype(dtype)
        shape = (min(batch_size, len(x)), *x.shape[1:])
        self.out = np.empty(shape, self.dtype)
        self.raw = None if x.dtype == self.dtype else np.empty(shape, x.dtype)
        self.mean = self.std = None
        if normalization:
            problem = normalization_problem(normalization, x.shape[1])
            if problem:
                raise ValueError(f"fit: the model's {problem}")
            mean = np.asarray(normalization["mean"], self.dtype).reshape(-1)
            std = np.asarray(normalization["std"], self.dtype).reshape(-1)
            stat_shape = (1, -1) + (1,) * (x.ndim - 2)  # (1, C, 1, 1) for images
            self.mean, self.std = mean.reshape(stat_shape), std.reshape(stat_shape)

    def gather(self, index: np.ndarray | slice) -> np.ndarray:
        """``x[index]`` as floats (uint8 scaled to [0, 1]) in the reused buffer, not yet standardised."""
        b = len(index) if isinstance(index, np.ndarray) else len(range(*index.indices(len(self.x))))
        out = self.out[:b]
        target = out if self.raw is None else self.raw[:b]
        if isinstance(index, slice):
            np.copyto(target, self.x[index])
        else:
            np.take(self.x, index, axis=0, out=target, mode="clip")
        if self.raw is not None and self.x.dtype == np.uint8:
            np.multiply(target, self.dtype.type(1 / 255), out=out)  # as datasets.to_float does
        elif self.raw is not None:
            np.copyto(out, target, casting="unsafe")
        return out

    def standardise(self, batch: np.ndarray) -> np.ndarray:
        """:math:`(x - \\mu_c) / \\sigma_c` in place when the model has a normalisation; returns ``batch``."""
        if self.mean is not None:
            np.subtract(batch, self.mean, out=batch)
            np.divide(batch, self.std, out=batch)
        return batch

    def get(self, index: np.ndarray | slice) -> np.ndarray:
        """The batch ``x[index]`` scaled and standardised (:meth:`gather`, then :meth:`standardise`)."""
        return self.standardise(self.gather(index))


def to_model(model: Sequential, array: np.ndarray) -> Any:
    """A host batch (images or labels) on the model's device: the one place where ``fit``, ``evaluate`` and
    ``predict`` copy data to a device (the array itself on the CPU)."""
    return backend.to_device(array, model.device)


def chunks(n: int, batch_size: int) -> list[slice]:
    """``slice``s of ``range(n)`` of ``batch_size`` items each, the last one shorter."""
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def count_hits(logits: Any, labels: Any) -> int:
    """Correct guesses of a batch, counted where the logits are; one scalar comes back."""
    xp = backend.get_array_module(logits)
    return int(xp.count_nonzero(xp.argmax(logits, axis=1) == labels))
