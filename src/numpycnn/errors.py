"""The project's own exceptions.

Both subclass :class:`ValueError`, so code that already catches ``ValueError`` keeps working.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file is malformed, truncated, hostile or missing, or a download failed verification."""


class ModelFileError(ValueError):
    """A model or checkpoint file is malformed, of an unknown version, or does not match its architecture."""


class TrainingError(RuntimeError):
    """Training cannot go on, for example because the loss became NaN or infinite."""
