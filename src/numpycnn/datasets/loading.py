"""Find, verify, fetch and load the data sets: :func:`~numpycnn.datasets.loading.load`,
:func:`~numpycnn.datasets.loading.fetch` and :func:`~numpycnn.datasets.loading.locate`.

Every file is verified before its content is used, wherever it comes from: the package (MNIST),
``data_dir``, the cache or a system folder (IDX files by the SHA-256 of their decompressed content, CIFAR-10
by the archive's). A copy that fails is reported with a warning and skipped, never trusted; if no good copy
is found and ``download`` is true, the file is fetched from the mirrors (:mod:`numpycnn.datasets.download`)
into ``data_dir`` or the cache.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from numpycnn.datasets import cache
from numpycnn.datasets.cifar10 import read_cifar10
from numpycnn.datasets.download import download_file, mirrors_for
from numpycnn.datasets.idx import read_idx
from numpycnn.datasets.registry import SPLITS, DatasetSpec, FileSpec, check_split, get_spec
from numpycnn.errors import DataError

T = TypeVar("T")
PathLike = str | os.PathLike


def load(
    name: str,
    split: str = "train",
    data_dir: PathLike | None = None,
    download: bool = True,
    *,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a split of a data set as ``(images, labels)``.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "cifar10"}
        The data set. MNIST ships with the package; the others are fetched on first use.
    split : {"train", "test"}
        Which split.
    data_dir : str or path-like, optional
        Folder searched first and, if given, the one downloads go to (else the cache: ``$NUMPYCNN_DATA`` or
        the user cache folder, see :func:`numpycnn.datasets.cache.cache_dir`).
    download : bool
        Fetch missing or corrupted files from the official mirrors.
    progress : bool, optional
        Show a download progress bar; by default only on a terminal.

    Returns
    -------
    images : numpy.ndarray
        uint8, shape ``(N, C, H, W)``: ``(60000, 1, 28, 28)`` for MNIST's training split.
    labels : numpy.ndarray
        int64, shape ``(N,)``.

    Raises
    ------
    ValueError
        For an unknown ``name`` or ``split`` (the message lists the valid ones).
    DataError
        If no verified copy is found and none can be downloaded; the message says which files to put where.

    Examples
    --------
    >>> images, labels = load("mnist", "test")
    >>> images.shape, images.dtype, labels.dtype
    ((10000, 1, 28, 28), dtype('uint8'), dtype('int64'))
    """
    spec = get_spec(name)
    check_split(split)
    if spec.kind == "idx":
        images_file, labels_file = spec.files[split]
        read_images = _idx_reader(spec, split, images_file)
        read_labels = _idx_reader(spec, split, labels_file)
        images = _obtain(spec, images_file, data_dir, download, progress, read_images)
        labels = _obtain(spec, labels_file, data_dir, download, progress, read_labels)
        return images.reshape(-1, *spec.image_shape), labels.astype(np.int64)  # (N, C, H, W), (N,)
    (archive,) = spec.files[split]
    return _obtain(spec, archive, data_dir, download, progress, _archive_reader(spec, split, archive))


def fetch(name: str, data_dir: PathLike | None = None, download: bool = True, *,
          progress: bool | None = None) -> dict[str, Path]:
    """Make sure every file of data set ``name`` has a verified copy (downloading it if allowed).

    Returns
    -------
    dict of str to pathlib.Path
        The verified copy of each file, by file name.
    """
    spec = get_spec(name, owner="fetch")
    return {f.name: _obtain(spec, f, data_dir, download, progress, _path_verifier(f, expected_bytes(spec, f)))
            for f in spec.all_files}


def locate(name: str, data_dir: PathLike | None = None) -> dict[str, list[tuple[Path, str | None]]]:
    """Every copy of each file of data set ``name`` in the searched folders, each verified.

    Returns
    -------
    dict of str to list of (pathlib.Path, str or None)
        By file name, ``(path, problem)`` for each copy found, in search order; ``problem`` is None for a
        verified copy, else why it was rejected.
    """
    spec = get_spec(name, owner="locate")
    found: dict[str, list[tuple[Path, str | None]]] = {}
    for f in spec.all_files:
        found[f.name] = []
        for path in _candidates(spec, f, data_dir):
            try:
                verify_file(f, path, max_bytes=expected_bytes(spec, f))
                found[f.name].append((path, None))
            except DataError as e:
                found[f.name].append((path, str(e)))
    return found


def verify_file(file: FileSpec, path: PathLike, max_bytes: int | None = None) -> None:
    """Raise :class:`~numpycnn.errors.DataError` unless ``path`` is a correct copy of ``file`` (checked by SHA-256).

    ``max_bytes`` bounds the data an IDX header may claim (see :func:`expected_bytes`): a small gzip file whose
    header claims gigabytes is refused before anything is decompressed.
    """
    if file.content_hash:
        read_idx(path, sha256=file.sha256, **({} if max_bytes is None else {"max_bytes": max_bytes}))
        return
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e}).") from e
    if digest.hexdigest() != file.sha256:
        raise DataError(
            f"{path}: SHA-256 is {digest.hexdigest()}, expected {file.sha256}: the file is corrupted or "
            "is not the expected file. Delete it and fetch it again."
        )


def expected_bytes(spec: DatasetSpec, file: FileSpec) -> int | None:
    """The decompressed data size of an IDX file of ``spec`` (images ``N H W``, labels ``N``), else ``None``."""
    if spec.kind != "idx":
        return None
    for split in SPLITS:
        images, labels = spec.files[split]
        if file is images or file == images:
            return spec.counts[split] * math.prod(spec.image_shape)
        if file is labels or file == labels:
            return spec.counts[split]
    return None


def instructions(spec: DatasetSpec, data_dir: PathLike | None = None) -> str:
    """How to install data set ``spec`` by hand: which files to put where, and where to get them."""
    names = ", ".join(f.name for f in spec.all_files)
    mirrors = " or ".join(mirrors_for(spec)) or "its official site"
    text = (
        f"To install {spec.name} by hand, put {names} in {cache.target_dir(spec.name, data_dir)} "
        f"(downloaded from {mirrors}), or run `numpycnn data download {spec.name}` where there is network "
        "access and copy that folder."
    )
    return f"{text} {spec.install_hint}".rstrip()


def _obtain(spec: DatasetSpec, file: FileSpec, data_dir: PathLike | None, allow_download: bool,
            progress: bool | None, reader: Callable[[Path], T]) -> T:
    """Read the first copy of ``file`` that ``reader`` accepts; download one if none is and it is allowed."""
    problems: list[str] = []
    for path in _candidates(spec, file, data_dir):
        try:
            return reader(path)
        except DataError as e:
            problems.append(str(e))
            warnings.warn(f"{spec.name}: ignoring a bad copy of {file.name}: {e}", stacklevel=3)
    rejected = "".join(f"\nRejected: {p}" for p in problems)
    if not allow_download:
        looked = ", ".join(str(d) for d in cache.search_dirs(spec.name, data_dir))
        raise DataError(
            f"{spec.name}: no verified copy of {file.name} (looked in {looked}).{rejected}\n"
            f"Call load(..., download=True) or run `numpycnn data download {spec.name}`. "
            + instructions(spec, data_dir)
        )
    target = cache.target_dir(spec.name, data_dir)
    try:
        path = download_file(file, target, mirrors_for(spec), reader, progress=progress)
    except DataError as e:
        raise DataError(f"{spec.name}: {e}{rejected}\n{instructions(spec, data_dir)}") from e
    return reader(path)


def _candidates(spec: DatasetSpec, file: FileSpec, data_dir: PathLike | None) -> list[Path]:
    """Existing files in the search folders that may be copies of ``file``, in search order."""
    paths = []
    for directory in cache.search_dirs(spec.name, data_dir):
        names = cache.candidate_paths(directory, file.name) if file.content_hash else [directory / file.name]
        paths.extend(p for p in names if p.is_file())
    return paths


def _path_verifier(file: FileSpec, max_bytes: int | None = None) -> Callable[[Path], Path]:
    def verify(path: Path) -> Path:
        verify_file(file, path, max_bytes)
        return path
    return verify


def _idx_reader(spec: DatasetSpec, split: str, file: FileSpec) -> Callable[[Path], np.ndarray]:
    """A reader returning the verified IDX array of ``file``, checked against the split's expected shape."""
    is_images = file is spec.files[split][0]
    n = spec.counts[split]
    expected = (n, *spec.image_shape[1:]) if is_images else (n,)  # IDX images are (N, H, W), one channel

    def read(path: Path) -> np.ndarray:
        array = read_idx(path, sha256=file.sha256, max_bytes=math.prod(expected))  # uint8: one byte each
        if array.dtype != np.uint8 or array.shape != expected:
            raise DataError(
                f"{path}: expected uint8 values of shape {expected}, "
                f"found {array.dtype} of shape {array.shape}."
            )
        if not is_images and array.max() >= len(spec.class_names):
            raise DataError(
                f"{path}: label {array.max()} found; {spec.name} has {len(spec.class_names)} classes."
            )
        return array
    return read


def _archive_reader(spec: DatasetSpec, split: str,
                    file: FileSpec) -> Callable[[Path], tuple[np.ndarray, np.ndarray]]:
    """A reader returning ``(images, labels)`` of ``split`` from the verified CIFAR-10 archive."""
    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        verify_file(file, path)
        images, labels = read_cifar10(path, split)
        if images.shape != (spec.counts[split], *spec.image_shape):
            raise DataError(f"{path}: {split} split has {len(images)} images, expected {spec.counts[split]}.")
        return images, labels
    return read


__all__ = ["SPLITS", "fetch", "instructions", "load", "locate", "verify_file"]
