"""What every source of your own pictures returns (:class:`ImageSet`), the held-out split (:func:`hold_out`)
and how ``--dataset`` tells a path from a built-in name (:func:`is_path`); the loaders are in
:mod:`~numpycnn.datasets.folder`, :mod:`~numpycnn.datasets.arrays` and :mod:`~numpycnn.datasets.sources`.

Examples
--------
>>> import numpy as np
>>> train, test = hold_out(np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]), 0.2, seed=0)
>>> len(train), len(test)
(8, 2)
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from numpycnn.datasets.preparation import Preparation
from numpycnn.datasets.registry import DATASETS

#: Fraction of each class held out as the test set when a data set has no test part.
TEST_FRACTION = 0.2


class ImageSet(NamedTuple):
    """A user's data set, ready to train on.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        ``uint8`` ``(N, C, H, W)`` (memory-mapped views for a folder of ``.npy`` files).
    y_train, y_test : numpy.ndarray
        ``int64`` ``(N,)``, each in ``[0, len(class_names))``.
    class_names : list of str
        Indexed by label.
    preparation : Preparation
        How a new picture must be prepared to look like these.
    notes : list of str
        What a run should tell its user (the held-out split, pictures skipped).
    skipped : list of (str, str)
        ``(file name, reason)`` of every file left out.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    preparation: Preparation
    notes: list[str]
    skipped: list[tuple[str, str]]


def is_path(value: Any) -> bool:
    """Whether ``--dataset value`` names a path (a folder, an ``.npz`` file, anything with a separator)
    rather than a built-in data set such as ``mnist``."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    if os.sep in text or (os.altsep is not None and os.altsep in text):
        return True
    if text in DATASETS:  # a folder called "mnist" in the working folder does not hide the built-in set
        return False
    return text.lower().endswith(".npz") or os.path.exists(text)


def hold_out(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: ``round(fraction * n)`` pictures of each class of ``n >= 2`` (at least one),
    chosen by ``seed``, go to the test side; both index arrays are sorted.

    The choice depends only on the labels and the seed, so a later ``evaluate`` picks the same pictures.
    """
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = max(1, round(fraction * members.size)) if members.size >= 2 else 0
        test.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    keep = np.ones(labels.shape[0], bool)
    keep[test_idx] = False
    return np.flatnonzero(keep), test_idx


def split_note(fraction: float, seed: int, n_test: int, n_train: int) -> str:
    """The sentence a run prints about its held-out test set."""
    return (f"No test part found: held out {fraction:.0%} of each class ({n_test:,} pictures, chosen by --seed "
            f"{seed}) as the test set; training on the other {n_train:,}.")


__all__ = ["ImageSet", "TEST_FRACTION", "hold_out", "is_path", "split_note"]
