"""Data sets saved as arrays: Keras' ``.npz`` layout (:func:`load_npz`) and a folder of ``.npy`` files read
memory-mapped (:func:`load_npy_folder`), so a set larger than memory still trains.

Both hold ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test`` and the class names (an array
``class_names`` of strings in the ``.npz``, a ``class_names.json`` list in the folder). Images are ``uint8``
``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` 1 or 3; labels integers in
``[0, number of classes)``. Nothing is unpickled (``allow_pickle=False``), and every array's header is read and
checked against the bytes really there before anything is allocated, so a small file claiming a huge array is
refused, not obeyed.

Examples
--------
>>> import numpy as np
>>> np.savez("garments.npz", x_train=x, y_train=y, class_names=np.array(["shirt", "shoe"]))  # doctest: +SKIP
>>> data = load_npz("garments.npz")                                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.datasets.own import TEST_FRACTION, ImageSet, hold_out, split_note
from numpycnn.datasets.preparation import Preparation
from numpycnn.errors import DataError

#: Largest ``.npz`` content read into memory; a larger set belongs in a folder of ``.npy`` files (memory-mapped).
MAX_NPZ_BYTES = 4 * 2**30
#: Largest ``class_names.json`` read.
MAX_NAMES_BYTES = 1 << 20
_KEYS = ("x_train", "y_train", "x_test", "y_test", "class_names")


def load_npz(path: str | os.PathLike[str], *, seed: int = 0, test_fraction: float = TEST_FRACTION) -> ImageSet:
    """Read a Keras-style ``.npz`` data set, every array checked; hold out a test set if it has none.

    Returns
    -------
    ImageSet
        ``uint8`` ``(N, C, H, W)`` images, ``int64`` labels, the class names (``"0"``, ``"1"``, ... without
        ``class_names``) and the :class:`~numpycnn.datasets.preparation.Preparation` of such pictures.

    Raises
    ------
    DataError
        For a missing ``x_train``/``y_train``, object arrays, mismatched lengths, labels outside the class list,
        non-``uint8`` images, the wrong rank, or an array header that claims more bytes than the file holds.
    """
    where = str(path)
    members = _npz_headers(where)
    missing = [k for k in ("x_train", "y_train") if k not in members]
    if missing:
        raise DataError(f"{where}: no {' or '.join(missing)} array (found {sorted(members) or 'none'}); a data "
                        "set .npz holds x_train, y_train and optionally x_test, y_test, class_names.")
    if ("x_test" in members) != ("y_test" in members):
        raise DataError(f"{where}: x_test and y_test go together; it has only one of them.")
    try:
        with np.load(where, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in _KEYS if key in members}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{where}: cannot read the arrays ({err}).") from None
    names = _names_array(where, arrays.get("class_names"))
    return _assemble(where, arrays, names, "npz", seed, test_fraction, memory_mapped=False)


def is_npy_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding ``x_train.npy``."""
    return (Path(path) / "x_train.npy").is_file()


def load_npy_folder(path: str | os.PathLike[str], *, test_fraction: float = TEST_FRACTION) -> ImageSet:
    """Open a folder of ``x_train.npy``, ``y_train.npy`` (and ``x_test.npy``, ``y_test.npy``,
    ``class_names.json``) with the images memory-mapped: batches are read from disk as training gathers them.

    Without test arrays the last ``test_fraction`` of the training arrays is the test set (a view: choosing
    pictures at random would read the whole set into memory); the returned notes say so.

    Raises
    ------
    DataError
        As :func:`load_npz`, and for a file shorter than its header claims.
    """
    folder = Path(path)
    if not (folder / "y_train.npy").is_file():
        raise DataError(f"{folder}: x_train.npy needs y_train.npy beside it (the labels).")
    if (folder / "x_test.npy").is_file() != (folder / "y_test.npy").is_file():
        raise DataError(f"{folder}: x_test.npy and y_test.npy go together; it has only one of them.")
    arrays: dict[str, np.ndarray] = {}
    for key in ("x_train", "y_train", "x_test", "y_test"):
        file = folder / f"{key}.npy"
        if file.is_file():
            arrays[key] = _open_npy(file, images=key.startswith("x"))
    names = _names_json(folder / "class_names.json")
    return _assemble(str(folder), arrays, names, "npy", None, test_fraction, memory_mapped=True)


def _open_npy(file: Path, images: bool) -> np.ndarray:
    try:
        array = np.load(file, mmap_mode="r" if images else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{file}: cannot read it as a .npy array ({err}). Object arrays are refused; images "
                        "must be uint8 and labels integers.") from None
    if not isinstance(array, np.ndarray):
        raise DataError(f"{file}: not a .npy array.")
    return array


def _assemble(where: str, arrays: dict[str, np.ndarray], names: list[str] | None, source: str, seed: int | None,
              fraction: float, memory_mapped: bool) -> ImageSet:
    """Check the arrays together and make the :class:`ImageSet`."""
    x_train = _images(where, "x_train", arrays["x_train"])
    y_train = _labels(where, "y_train", arrays["y_train"], len(x_train))
    has_test = "x_test" in arrays
    if has_test:
        x_test = _images(where, "x_test", arrays["x_test"])
        y_test = _labels(where, "y_test", arrays["y_test"], len(x_test))
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(f"{where}: x_test pictures are {x_test.shape[1:]} but x_train pictures are "
                            f"{x_train.shape[1:]}; both must have one shape (C, H, W).")
    top = int(max(y_train.max(), y_test.max() if has_test and len(y_test) else 0))
    if names is None:
        names = [str(k) for k in range(top + 1)]
    if top >= len(names):
        raise DataError(f"{where}: label {top} found, outside the {len(names)} class names {names!r:.200}; labels "
                        f"must be 0 to {len(names) - 1}.")
    if len(names) < 2:
        raise DataError(f"{where}: one class only ({names!r:.100}); a classifier needs at least two.")
    notes: list[str] = []
    if not has_test:
        if memory_mapped:
            n_test = max(1, round(fraction * len(x_train)))
            x_train, x_test = x_train[:-n_test], x_train[-n_test:]  # views: nothing is read
            y_train, y_test = y_train[:-n_test], y_train[-n_test:]
            notes.append(f"No x_test.npy: the last {fraction:.0%} of the training arrays ({n_test:,} pictures) "
                         f"is the test set (memory-mapped arrays are not shuffled into memory; save x_test.npy "
                         f"and y_test.npy to choose).")
        else:
            seed = 0 if seed is None else seed
            train_idx, test_idx = hold_out(y_train, fraction, seed)
            x_train, x_test = x_train[train_idx], x_train[test_idx]
            y_train, y_test = y_train[train_idx], y_train[test_idx]
            notes.append(split_note(fraction, seed, len(y_test), len(y_train)))
    preparation = Preparation(channels=int(x_train.shape[1]), size=(int(x_train.shape[2]), int(x_train.shape[3])),
                              source=source, test_fraction=0.0 if has_test else fraction,
                              split_seed=None if has_test or memory_mapped else seed)
    return ImageSet(x_train, y_train, x_test, y_test, list(names), preparation, notes, [])


def _images(where: str, key: str, array: np.ndarray) -> np.ndarray:
    """``array`` as ``uint8`` ``(N, C, H, W)`` (a view where possible), or a :class:`DataError` saying why not."""
    if array.dtype != np.uint8:
        hint = (" If it holds values in [0, 1], save (x * 255).round().astype(np.uint8)."
                if array.dtype.kind == "f" else "")
        raise DataError(f"{where}: {key} must hold uint8 pixels 0-255. Got dtype {array.dtype}.{hint}")
    if array.ndim == 3:
        array = array[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif array.ndim == 4:
        if array.shape[1] not in (1, 3) and array.shape[3] in (1, 3):
            array = array.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W), a view
        elif array.shape[1] not in (1, 3):
            raise DataError(f"{where}: {key} has shape {array.shape}: neither (N, C, H, W) nor (N, H, W, C) "
                            "with C = 1 (grey) or 3 (RGB).")
    else:
        raise DataError(f"{where}: {key} must be (N, H, W), (N, H, W, C) or (N, C, H, W). Got {array.ndim} "
                        f"dimensions, shape {array.shape}.")
    if 0 in array.shape:
        raise DataError(f"{where}: {key} is empty (shape {array.shape}).")
    return array


def _labels(where: str, key: str, array: np.ndarray, n: int) -> np.ndarray:
    """``array`` as ``int64`` ``(N,)`` labels >= 0, one per picture."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]  # (N, 1) -> (N,)
    if array.dtype.kind not in "iu":
        raise DataError(f"{where}: {key} must hold integer class labels. Got dtype {array.dtype}.")
    if array.ndim != 1 or len(array) != n:
        raise DataError(f"{where}: {key} must be one label per picture, shape ({n},). Got shape {array.shape}.")
    labels = np.asarray(array, dtype=np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{where}: {key} holds the negative label {labels.min()}; labels are 0, 1, 2, ...")
    return labels


def _names_array(where: str, names: np.ndarray | None) -> list[str] | None:
    if names is None:
        return None
    if names.dtype.kind != "U" or names.ndim != 1:
        raise DataError(f"{where}: class_names must be a 1-D array of strings. Got dtype {names.dtype}, shape "
                        f"{names.shape}.")
    return [str(n) for n in names]


def _names_json(file: Path) -> list[str] | None:
    if not file.is_file():
        return None
    if file.stat().st_size > MAX_NAMES_BYTES:
        raise DataError(f"{file}: larger than {MAX_NAMES_BYTES:,} bytes; it should be a short JSON list of names.")
    try:
        names = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{file}: not valid JSON ({err}).") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{file}: must be a JSON list of strings. Got {names!r:.200}.")
    return names


def _npz_headers(where: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's ``(shape, dtype)`` from its ``.npy`` header, checked against the bytes stored for it."""
    found: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    total = 0
    try:
        with zipfile.ZipFile(where) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    shape, dtype = _npy_header(where, info.filename, member)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > info.file_size:
                    raise DataError(f"{where}: array {info.filename[:-4]!r} claims {claimed:,} bytes "
                                    f"({shape}, {dtype}) but holds {info.file_size:,}; the file is damaged.")
                total += claimed
                found[info.filename[:-4]] = (shape, dtype)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"{where}: not a readable .npz file ({err}).") from None
    if total > MAX_NPZ_BYTES:
        raise DataError(f"{where}: its arrays take {total / 2**30:.1f} GiB, more than the {MAX_NPZ_BYTES / 2**30:.0f} "
                        "GiB read into memory; save them as x_train.npy, y_train.npy, ... in a folder instead, "
                        "which is memory-mapped.")
    return found


def _npy_header(where: str, name: str, member: Any) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(member)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{where}: member {name!r} is not a valid .npy array ({err}).") from None
    if dtype.hasobject:
        raise DataError(f"{where}: array {name[:-4]!r} holds Python objects ({dtype}); object arrays would need "
                        "pickle and are refused. Save images as uint8 and labels as integers.")
    return tuple(int(s) for s in shape), dtype


__all__ = ["MAX_NPZ_BYTES", "is_npy_folder", "load_npy_folder", "load_npz"]
