"""Atomic file writes, shared by model files, data files, JSON outputs and plots.

A reader never sees a half-written file: everything is written to a temporary file in the destination's folder,
flushed to disk, then renamed onto the destination in one step (``os.replace``). If anything fails on the way,
Ctrl-C included, the temporary file is removed and the destination is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (``mode`` ``"wb"`` or ``"w"``); on success move it onto ``path``.

    The temporary file's name is ``handle.name``, so the block may check what it wrote before the rename. The
    new file gets the usual permissions (``0o666`` less the umask) rather than ``mkstemp``'s ``0o600``.

    Examples
    --------
    >>> with atomic_write("history.json", "w") as handle:    # doctest: +SKIP
    ...     json.dump(history, handle)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: `mode` must be 'wb' or 'w'. Got {mode!r}.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)  # reopened by name, so that ``handle.name`` is the temporary file's path
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable, where the platform allows it."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
