"""A folder of pictures as a data set, laid out as torchvision's ``ImageFolder`` and Keras'
``image_dataset_from_directory`` expect: one sub-folder per class (``PATH/cat/*.jpg``), or ``train/`` and
``test/`` folders each laid out that way.

:mod:`~numpycnn.datasets.folder_scan` lists the files and reads their headers, :func:`choose_preparation` picks
the size and channels, and :func:`load_folder` decodes every picture once (on threads: Pillow's decoders release
the GIL), keeps the result in the cache (:mod:`numpycnn.datasets.folder_cache`) and holds out a test set when
there is no ``test/`` folder.

Nothing in the folder is executed: only the picture formats in :data:`numpycnn.datasets.images.FORMATS` are
opened, sub-folders inside a class folder are not entered (so a symbolic-link loop cannot trap the scan), and each
picture goes through :func:`numpycnn.datasets.images.open_image`'s guard (size from the header first, JPEG decoded
at a reduced scale). A file that cannot be used is skipped and named, with its reason.

Examples
--------
>>> data = load_folder("pets", image_size=32, channels=3)      # doctest: +SKIP
>>> data.x_train.shape, data.class_names                        # doctest: +SKIP
((1600, 3, 32, 32), ['cat', 'dog'])
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.datasets import folder_cache
from numpycnn.datasets.folder_scan import Picture, Scan, check_classes, inspect, scan, summary
from numpycnn.datasets.images import FORMATS, load_picture
from numpycnn.datasets.own import TEST_FRACTION, ImageSet, hold_out, split_note
from numpycnn.datasets.preparation import Preparation, parse_size
from numpycnn.errors import DataError

#: Size used when the pictures' sizes differ (no size is shared by at least half of them).
DEFAULT_SIDE = 32
#: A common size larger than this on either side is not taken as the default (photos): 32 is, with a note.
MAX_DEFAULT_SIDE = 256
#: Largest decoded data set held in memory, in bytes; beyond it, a smaller ``--image-size`` is asked for.
MAX_DECODED_BYTES = 4 * 2**30
#: Pictures are decoded on threads only when the median picture has more pixels than this (or, when the headers
#: were not read, a larger file than :data:`THREADED_BYTES`): Pillow holds the GIL for most of a small picture's
#: decoding, so threads only contend. Measured (2-core Intel Xeon, 2026-12-07, ``python -m
#: benchmarks.decode_folder``): 1,500 PNGs of 28x28 took 0.13 s in one thread against 0.28 s on two; 1,500 JPEG
#: photos of 480x360 took 0.93 s on two threads against 1.58 s in one.
THREADED_PIXELS = 128 * 128
#: The median file size above which pictures are decoded on threads, when their headers were not read.
THREADED_BYTES = 32 * 1024
#: Modes that carry colour. A palette picture has colour unless every palette entry is grey.
COLOUR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def choose_preparation(found: Scan, image_size: Any = None, channels: int | None = None,
                       resize: str = "stretch") -> tuple[Preparation, list[str]]:
    """The preparation for these pictures and notes on the defaults taken.

    Defaults: 3 channels if any picture has colour, else 1; the size shared by at least half the pictures
    (if no larger than :data:`MAX_DEFAULT_SIDE`), else :data:`DEFAULT_SIDE` square.
    """
    notes = []
    size = parse_size(image_size, "load_folder")
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"load_folder: `channels` must be 1 or 3. Got {channels!r}.")
    if channels is None:
        colour = any(p.mode in COLOUR_MODES or p.mode == "P" for p in found.pictures)
        channels = 3 if colour else 1
    if size is None:
        sizes = Counter((p.height, p.width) for p in found.pictures)
        common, count = (sizes.most_common(1) or [((DEFAULT_SIDE, DEFAULT_SIDE), 0)])[0]
        if 2 * count >= len(found.pictures) and max(common) <= MAX_DEFAULT_SIDE:
            size = common
        else:
            size = (DEFAULT_SIDE, DEFAULT_SIDE)
            notes.append(f"pictures have {len(sizes)} different sizes (most common {common[1]}x{common[0]}, "
                         f"width x height); all resized to {DEFAULT_SIDE}x{DEFAULT_SIDE} (choose with --image-size)")
    return Preparation(channels, size, resize, "folder"), notes


def decode(pictures: list[Picture], preparation: Preparation, progress: bool | None = None,
           workers: int | None = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode and prepare every picture on threads; ``(images, failures)`` with ``images`` ``uint8``
    ``(N, C, H, W)`` in the order of ``pictures`` (failed rows are zero and listed in ``failures``).

    Raises
    ------
    DataError
        If the result would take more than :data:`MAX_DECODED_BYTES`.
    """
    from tqdm import tqdm

    shape = (len(pictures), *preparation.input_shape)
    needed = int(np.prod(shape, dtype=np.int64))
    if needed > MAX_DECODED_BYTES:
        raise DataError(f"{len(pictures):,} pictures of {preparation.describe()} take {needed / 2**30:.1f} GiB, "
                        f"more than the {MAX_DECODED_BYTES / 2**30:.0f} GiB allowed; choose a smaller "
                        "--image-size, or save the arrays as .npy files in a folder (memory-mapped).")
    images = np.zeros(shape, np.uint8)  # (N, C, H, W)
    failures: list[tuple[int, str]] = []

    def work(indices: range) -> None:
        for index in indices:
            try:
                images[index] = load_picture(pictures[index].path, preparation)
            except (DataError, OSError, ValueError) as err:
                failures.append((index, _reason(err, pictures[index].path)))
            bar.update(1)

    show = sys.stderr.isatty() if progress is None else progress
    if workers is None:
        workers = 1 if _small(pictures) else min(8, os.cpu_count() or 1)
    step = max(1, min(64, len(pictures) // (4 * workers)))  # a few chunks per thread: little overhead, balanced
    with tqdm(total=len(pictures), unit="pictures", desc="decoding", disable=not show, leave=False) as bar, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, [range(i, min(i + step, len(pictures))) for i in range(0, len(pictures), step)]))
    failures.sort()
    return images, [(pictures[i].name, reason) for i, reason in failures]


def _small(pictures: list[Picture]) -> bool:
    """Whether the median picture is small enough to decode faster in one thread (:data:`THREADED_PIXELS`)."""
    if not pictures:
        return True
    middle = len(pictures) // 2
    if all(p.width * p.height for p in pictures):
        return sorted(p.width * p.height for p in pictures)[middle] <= THREADED_PIXELS
    return sorted(p.size_bytes for p in pictures)[middle] <= THREADED_BYTES  # headers not read: the file sizes


def _reason(err: Exception, path: Path) -> str:
    """Why a picture was left out, in the words :func:`inspect` uses for the same problems."""
    text = " ".join(str(err).split()).replace(repr(str(path)), "").replace(str(path), "").strip(" :")
    if "is not an image Pillow can read" in text:
        return f"not a picture ({', '.join(FORMATS)})"
    if "too large" in text:
        return f"too large: {text[:160]}"
    return f"cannot be decoded ({text[:160]})" if text else "cannot be decoded"


def load_folder(path: str | os.PathLike[str], image_size: Any = None, channels: int | None = None, *,
                seed: int = 0, test_fraction: float = TEST_FRACTION, resize: str = "stretch",
                progress: bool | None = None, cache: bool = True) -> ImageSet:
    """A folder of class folders as arrays: every picture decoded, converted and resized to one shape.

    Parameters
    ----------
    path : str or path-like
        ``PATH/CLASS/picture`` or ``PATH/train/CLASS/picture`` and ``PATH/test/CLASS/picture``.
    image_size : int, (H, W) or str, optional
        Target size; default the size most pictures share, or 32x32 when they differ.
    channels : {1, 3}, optional
        Default 3 if any picture has colour, else 1.
    seed : int
        Chooses the :data:`~numpycnn.datasets.own.TEST_FRACTION` of each class held out when there is no
        ``test/`` folder.
    test_fraction : float
        The fraction held out.
    resize : {"stretch", "crop"}
    progress : bool, optional
        Progress bar while decoding; by default only on a terminal.
    cache : bool
        Reuse (and keep) the decoded pictures, keyed by the files' names, sizes and modification times.

    Returns
    -------
    ImageSet
        Arrays, class names (the folder names, sorted), the preparation, notes and the files skipped.

    Raises
    ------
    DataError
        If no pictures or one class only are left, or the decoded set would not fit in memory.
    """
    found = scan(path)
    options = {"size": list(parse_size(image_size, "load_folder") or []), "channels": channels, "resize": resize}
    files = [(p.name, p.size_bytes, p.mtime_ns) for p in found.pictures]
    key = folder_cache.entry_key(found.root, files, options)
    stored = folder_cache.read_entry(key) if cache else None
    if stored is not None:
        images, labels, parts, info = stored
        preparation = Preparation(info["channels"], tuple(info["size"]), resize, "folder")
        names, skipped, notes = info["class_names"], [tuple(s) for s in info["skipped"]], list(info["notes"])
    else:
        if image_size is None or channels is None:  # the defaults need every picture's header first
            inspect(found)
        preparation, notes = choose_preparation(found, image_size, channels, resize)
        images, failures = decode(found.pictures, preparation, progress)
        ok = np.ones(len(found.pictures), bool)
        failed = {name for name, _ in failures}
        ok[[i for i, p in enumerate(found.pictures) if p.name in failed]] = False
        images = images[ok] if not ok.all() else images
        labels = np.array([p.label for p in found.pictures], np.int64)[ok]
        parts = np.array([p.part for p in found.pictures], np.uint8)[ok]
        skipped = found.skipped + failures
        labels, names = _drop_empty_classes(found.root, labels, parts, found.class_names, skipped)
        if (labels < 0).any():  # test pictures of a class left out
            keep = labels >= 0
            images, labels, parts = images[keep], labels[keep], parts[keep]
        if cache:
            folder_cache.write_entry(key, images, labels, parts, {
                "class_names": names, "skipped": skipped, "notes": notes, "channels": preparation.channels,
                "size": list(preparation.size)})
    return _split(found.root, images, labels, parts, names, preparation, notes, skipped, seed, test_fraction)


def _drop_empty_classes(root: Path, labels: np.ndarray, parts: np.ndarray, names: list[str],
                        skipped: list[tuple[str, str]]) -> tuple[np.ndarray, list[str]]:
    """Leave out the classes no training picture of which could be decoded (named in ``skipped``); renumber."""
    used = np.unique(labels[parts == 0])
    if len(used) == len(names):
        return labels, names
    for label, name in enumerate(names):
        if label not in used:
            skipped.append((name + "/", "no usable pictures in this class folder"))
    renumber = np.full(len(names), -1, np.int64)
    renumber[used] = np.arange(len(used))
    kept = [names[k] for k in used]
    check_classes(root, kept, skipped)
    return renumber[labels], kept


def _split(root: Path, images: np.ndarray, labels: np.ndarray, parts: np.ndarray, names: list[str],
           preparation: Preparation, notes: list[str], skipped: list[tuple[str, str]], seed: int,
           fraction: float) -> ImageSet:
    present = np.unique(labels[parts == 0]) if len(labels) else np.zeros(0, np.int64)
    if len(present) < 2:
        raise DataError(f"{root}: fewer than two classes hold a picture that can be read. Skipped: "
                        f"{summary(skipped)}")
    if skipped:
        notes = [*notes, f"Skipped {summary(skipped)}"]
    if (parts == 1).any():
        train, test = np.flatnonzero(parts == 0), np.flatnonzero(parts == 1)
        preparation = Preparation(preparation.channels, preparation.size, preparation.resize, "folder")
    else:
        train, test = hold_out(labels, fraction, seed)
        notes.append(split_note(fraction, seed, len(test), len(train)))
        preparation = Preparation(preparation.channels, preparation.size, preparation.resize, "folder",
                                  fraction, seed)
    return ImageSet(images[train], labels[train], images[test], labels[test], list(names), preparation,
                    notes, list(skipped))


__all__ = ["choose_preparation", "decode", "load_folder"]
