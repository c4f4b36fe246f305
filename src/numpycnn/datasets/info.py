"""What ``numpycnn data info PATH`` shows: what would be trained on, without decoding a single picture.

For a folder: the classes and their counts (with a warning for a class far smaller than the rest), the sizes and
modes found in the pictures' headers, the files skipped and why, and the shape everything becomes. For an
``.npz`` file or a folder of ``.npy`` files: the arrays' shapes and the classes' counts.

Examples
--------
>>> print("\\n".join(describe("pets")))                           # doctest: +SKIP
pets: a folder of pictures, 2 classes, 1,500 pictures
  cat   800
  dog   700
...
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.datasets.arrays import is_npy_folder
from numpycnn.datasets.folder import choose_preparation
from numpycnn.datasets.folder_scan import inspect, scan, summary
from numpycnn.datasets.sources import load_path

#: A class with fewer pictures than this fraction of the largest class is flagged.
SMALL_CLASS = 0.25


def describe(path: str | os.PathLike[str], image_size: Any = None, channels: int | None = None) -> list[str]:
    """The lines ``numpycnn data info`` prints for the data set at ``path``.

    Raises
    ------
    DataError
        If ``path`` holds no usable data set (the message says why).
    """
    where = Path(path)
    if where.is_dir() and not is_npy_folder(where):
        return _describe_folder(where, image_size, channels)
    data = load_path(where, image_size, channels)
    kind = "an .npz file" if where.is_file() else "a folder of .npy files (memory-mapped)"
    lines = [f"{where}: {kind}, {len(data.class_names)} classes, {len(data.y_train):,} training and "
             f"{len(data.y_test):,} test pictures"]
    lines += _class_lines(data.class_names, np.bincount(data.y_train, minlength=len(data.class_names)))
    lines += [f"  {note}" for note in data.notes]
    lines.append(f"Every picture is {_shape(data.preparation)}.")
    return lines


def _describe_folder(where: Path, image_size: Any, channels: int | None) -> list[str]:
    found = inspect(scan(where))
    preparation, notes = choose_preparation(found, image_size, channels)
    counts = np.bincount([p.label for p in found.pictures if p.part == 0], minlength=len(found.class_names))
    tests = sum(p.part == 1 for p in found.pictures)
    split = (f"{tests:,} in test/" if found.has_test
             else "no test/ folder: 20% of each class will be held out (chosen by --seed)")
    lines = [f"{where}: a folder of pictures, {len(found.class_names)} classes, {int(counts.sum()):,} training "
             f"pictures; {split}"]
    lines += _class_lines(found.class_names, counts)
    sizes = Counter(f"{p.width}x{p.height}" for p in found.pictures)
    modes = Counter(p.mode for p in found.pictures)
    lines.append(f"Sizes (width x height): {_top(sizes)}")
    lines.append(f"Modes: {_top(modes)}")
    if found.skipped:
        lines.append(f"Skipped {summary(found.skipped)}")
    lines += [f"Note: {note}." for note in notes]
    lines.append(f"Every picture becomes {_shape(preparation)}.")
    return lines


def _class_lines(names: list[str], counts: np.ndarray) -> list[str]:
    largest = int(counts.max()) if len(counts) else 0
    width = max((len(n) for n in names), default=0)
    lines = []
    for name, count in zip(names, counts, strict=True):
        flag = (f"   warning: far fewer than the largest class ({largest:,}); the model will rarely predict it"
                if count < SMALL_CLASS * largest else "")
        lines.append(f"  {name:<{width}}  {int(count):>7,}{flag}")
    return lines


def _top(counter: Counter, limit: int = 8) -> str:
    shown = ", ".join(f"{key} ({count:,})" for key, count in counter.most_common(limit))
    more = f", and {len(counter) - limit} more" if len(counter) > limit else ""
    return shown + more if shown else "none"


def _shape(preparation: Any) -> str:
    c, h, w = preparation.input_shape
    return f"{c}x{h}x{w} (C x H x W: {preparation.describe()})"


__all__ = ["SMALL_CLASS", "describe"]
