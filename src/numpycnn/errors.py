"""The project's own exceptions.

The file and data errors subclass :class:`ValueError`, the others :class:`RuntimeError`, so code that already
catches those keeps working.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file is malformed, truncated, hostile or missing, or a download failed verification."""


class ModelFileError(ValueError):
    """A model or checkpoint file is malformed, of an unknown version, or does not match its architecture."""


class TrainingError(RuntimeError):
    """Training cannot go on, for example because the loss became NaN or infinite."""


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot run: ``"cuda"`` without CuPy or without a usable GPU."""
