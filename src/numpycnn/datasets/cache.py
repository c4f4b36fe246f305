"""Where data files live: the user cache directory, known local copies, and atomic writes.

Search order for a data set's files: the ``data_dir`` passed by the caller, the cache directory
(``$NUMPYCNN_DATA``, else the platform's user cache directory, in a sub-folder named after the data set),
then the known local folders in :data:`LOCAL_DIRS` (the package's own MNIST, Debian's Fashion-MNIST).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "data"

#: Folders searched after ``data_dir`` and the cache, by data set name; tests monkeypatch this.
LOCAL_DIRS: dict[str, list[Path]] = {
    "mnist": [PACKAGE_DATA / "mnist"],
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
    "cifar10": [],
}


def user_cache_dir(platform: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The platform's per-user cache folder for numpycnn (not created).

    ``$XDG_CACHE_HOME/numpycnn`` or ``~/.cache/numpycnn`` on Linux and other Unixes,
    ``~/Library/Caches/numpycnn`` on macOS, ``%LOCALAPPDATA%\\numpycnn\\Cache`` on Windows.

    Parameters
    ----------
    platform : str, optional
        A ``sys.platform`` value; defaults to the running one.
    environ : mapping, optional
        Environment variables; defaults to ``os.environ``.
    """
    platform = sys.platform if platform is None else platform
    environ = os.environ if environ is None else environ
    home = Path(environ.get("HOME") or environ.get("USERPROFILE") or Path.home())
    if platform == "darwin":
        return home / "Library" / "Caches" / "numpycnn"
    if platform.startswith("win"):
        local = environ.get("LOCALAPPDATA")
        base = Path(local) if local else home / "AppData" / "Local"
        return base / "numpycnn" / "Cache"
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".cache"
    return base / "numpycnn"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The data cache: ``$NUMPYCNN_DATA`` if set, else :func:`~numpycnn.datasets.cache.user_cache_dir` (not created)."""
    environ = os.environ if environ is None else environ
    override = environ.get("NUMPYCNN_DATA", "")
    if override:
        return Path(override).expanduser()
    return user_cache_dir(environ=environ)


def target_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Folder downloads of data set ``name`` go to: ``data_dir`` if given, else ``cache_dir() / name``."""
    return Path(data_dir).expanduser() if data_dir is not None else cache_dir() / name


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for data set ``name``'s files, in order, without duplicates."""
    dirs = [target_dir(name, data_dir)]
    if data_dir is not None:
        dirs.append(cache_dir() / name)
    dirs.extend(Path(d) for d in LOCAL_DIRS.get(name, []))
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def candidate_paths(directory: Path, file_name: str) -> list[Path]:
    """Paths a file may have in ``directory``: its name, and for ``.gz`` files the uncompressed name too."""
    paths = [directory / file_name]
    if file_name.endswith(".gz"):
        paths.append(directory / file_name[: -len(".gz")])
    return paths
