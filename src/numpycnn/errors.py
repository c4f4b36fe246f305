"""The project's own exceptions, and the one message template of every argument error (:func:`fail`).

The file and data errors subclass :class:`ValueError`, the others :class:`RuntimeError`, so code that already
catches those keeps working.
"""

from __future__ import annotations

from typing import Any, NoReturn


def fail(owner: str, name: str, expectation: str, value: Any, hint: str = "", error: type = ValueError, *,
         got: str | None = None) -> NoReturn:
    """Raise ``error`` with the house message template, in the manner of scikit-learn's and Keras' errors.

    The message is ``{owner}: `{name}` must be {expectation}. Got {value!r}.`` plus ``hint`` where one
    exists; ``got`` describes the value instead of its ``repr`` (``"shape (28, 28)"`` for an array).

    Examples
    --------
    >>> fail("Conv2D", "stride", "an integer >= 1", 0)
    Traceback (most recent call last):
        ...
    ValueError: Conv2D: `stride` must be an integer >= 1. Got 0.
    """
    message = f"{owner}: `{name}` must be {expectation}. Got {repr(value) if got is None else got}."
    if hint:
        message += f" {hint}"
    raise error(message)


class DataError(ValueError):
    """A data file is malformed, truncated, hostile or missing, or a download failed verification."""


class ModelFileError(ValueError):
    """A model or checkpoint file is malformed, of an unknown version, or does not match its architecture."""


class TrainingError(RuntimeError):
    """Training cannot go on, for example because the loss became NaN or infinite."""


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot run: ``"cuda"`` without CuPy or without a usable GPU."""
