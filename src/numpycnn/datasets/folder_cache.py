"""The decoded pictures of a folder, kept so that a second run starts at once.

An entry is keyed by the SHA-256 of the folder's resolved path, every file's relative name, size and
modification time, and the options that shape the result (size, channels, resize): change, add, remove or
touch a picture and the key changes, so the folder is decoded again. An entry is a folder of its own in
``cache_dir()/pictures`` (``images.npy``, ``labels.npy``, ``parts.npy``, ``info.json``), written under a
temporary name and renamed into place, so a reader never sees half of one; when a folder is decoded again its
older entries are removed. Entries are read with ``allow_pickle=False``; one that does not read back as
expected is ignored (and decoded again), never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from numpycnn.datasets.cache import cache_dir

#: Bumped whenever the decoding changes, so entries made by an older numpycnn are not reused.
CACHE_VERSION = 1


def entry_key(root: Path, files: list[tuple[str, int, int]], options: dict[str, Any]) -> str:
    """The cache folder name for ``root``: ``ROOTHASH-CONTENTHASH``.

    ``files`` are ``(relative name, size in bytes, mtime in ns)`` of every file found, ``options`` the
    requested size, channels and resize mode.
    """
    root_text = os.fsencode(str(root.resolve()))
    root_hash = hashlib.sha256(root_text).hexdigest()[:16]
    digest = hashlib.sha256(root_text)
    digest.update(json.dumps([CACHE_VERSION, options, files], sort_keys=True,
                             ensure_ascii=True).encode("ascii", "backslashreplace"))
    return f"{root_hash}-{digest.hexdigest()[:32]}"


def entry_dir(key: str) -> Path:
    """Where the entry ``key`` lives."""
    return cache_dir() / "pictures" / key


def read_entry(key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]] | None:
    """``(images, labels, parts, info)`` of entry ``key``, or ``None`` if there is none or it is unreadable."""
    folder = entry_dir(key)
    if not (folder / "info.json").is_file():
        return None
    try:
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
        images = np.load(folder / "images.npy", allow_pickle=False)
        labels = np.load(folder / "labels.npy", allow_pickle=False)
        parts = np.load(folder / "parts.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    n = len(labels)
    if (images.dtype != np.uint8 or images.ndim != 4 or len(images) != n or parts.shape != (n,)
            or labels.dtype != np.int64 or not isinstance(info, dict) or "class_names" not in info):
        return None
    return images, labels, parts, info


def write_entry(key: str, images: np.ndarray, labels: np.ndarray, parts: np.ndarray, info: dict[str, Any]) -> bool:
    """Store an entry (under a temporary name, then renamed) and remove the folder's older ones.

    Returns whether it was stored; a cache that cannot be written (read-only, full) only costs the next run time.
    """
    final = entry_dir(key)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".tmp-"))
    except OSError:
        return False
    try:
        np.save(tmp / "images.npy", images, allow_pickle=False)
        np.save(tmp / "labels.npy", labels.astype(np.int64), allow_pickle=False)
        np.save(tmp / "parts.npy", parts.astype(np.uint8), allow_pickle=False)
        (tmp / "info.json").write_text(json.dumps(info, ensure_ascii=True), encoding="utf-8")
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    prefix = key.split("-")[0] + "-"
    for other in final.parent.iterdir():
        if other.name.startswith(prefix) and other.name != key:
            with contextlib.suppress(OSError):
                shutil.rmtree(other)
    return True


__all__ = ["CACHE_VERSION", "entry_dir", "entry_key", "read_entry", "write_entry"]
