"""Fetch one data file from a list of mirrors: streamed to a temporary file, verified, then moved into place.

Each mirror is tried in turn. A download is written to a temporary file beside its destination; only after
the caller's ``verify`` accepts it is it moved onto the destination with ``os.replace``. On any failure (HTTP
error, timeout, dropped connection, short or corrupted file, interruption) the temporary file is removed and
the next mirror is tried, so an interrupted or corrupted download never leaves a file a later run would trust.

``$NUMPYCNN_MIRRORS`` (base URLs separated by commas or spaces) replaces every data set's official mirrors,
for a local mirror or for tests; ``file://`` URLs work too.
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from numpycnn.core.files import atomic_write
from numpycnn.datasets.registry import DatasetSpec, FileSpec
from numpycnn.errors import DataError

USER_AGENT = "numpycnn/0.1 (dataset download; Python urllib)"
#: Seconds to wait for a server to connect or send data, unless the caller gives another timeout.
TIMEOUT = 30.0
#: Largest download accepted from a server, whatever it announces.
MAX_DOWNLOAD_BYTES = 2**31
_CHUNK = 1 << 16


def mirrors_for(spec: DatasetSpec) -> list[str]:
    """Base URLs to try for ``spec``: ``$NUMPYCNN_MIRRORS`` if set, else the data set's official mirrors."""
    override = os.environ.get("NUMPYCNN_MIRRORS", "").strip()
    if override:
        return [m for m in re.split(r"[,\s]+", override) if m]
    return list(spec.mirrors)


def download_file(
    file: FileSpec,
    directory: str | os.PathLike,
    mirrors: Sequence[str],
    verify: Callable[[Path], object],
    *,
    progress: bool | None = None,
    timeout: float | None = None,
) -> Path:
    """Download ``file`` into ``directory`` from the first mirror that serves a copy ``verify`` accepts.

    Parameters
    ----------
    file : FileSpec
        The file; its URL on a mirror is ``mirror + "/" + file.name``.
    directory : str or path-like
        Destination folder, created if needed; the file ends up at ``directory / file.name``.
    mirrors : sequence of str
        Base URLs, tried in order.
    verify : callable
        Called with the temporary file's path; raises :class:`DataError` to reject the copy.
    progress : bool, optional
        Show a progress bar; by default only when standard error is a terminal.
    timeout : float, optional
        Seconds to wait for a server to connect or send data; default :data:`TIMEOUT`.

    Returns
    -------
    pathlib.Path
        The verified file.

    Raises
    ------
    DataError
        If every mirror fails; the message lists each mirror's URL and what went wrong.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the data folder {directory} ({e}); set NUMPYCNN_DATA to a writable folder."
        ) from e
    progress = sys.stderr.isatty() if progress is None else progress
    timeout = TIMEOUT if timeout is None else timeout
    failures: list[str] = []
    for base in mirrors:
        url = f"{base.rstrip('/')}/{file.name}"
        try:
            return _fetch(url, file, directory, verify, progress, timeout)
        except (OSError, http.client.HTTPException, ValueError) as e:  # DataError is a ValueError
            failures.append(f"  - {url}: {_describe(e, timeout)}")
    tried = "\n".join(failures) if failures else "  (no mirrors configured)"
    raise DataError(f"could not download {file.name} from any mirror:\n{tried}")


def _fetch(url: str, file: FileSpec, directory: Path, verify: Callable[[Path], object],
           progress: bool, timeout: float) -> Path:
    """Stream ``url`` to a temporary file in ``directory``, verify it, move it to ``directory/file.name``."""
    target = directory / file.name
    with atomic_write(target) as out:  # the temporary file is removed if anything below fails
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            _stream(response, out, file, progress)
        out.flush()
        try:
            verify(Path(out.name))
        except DataError as e:
            reason = str(e).replace(out.name, file.name).replace(" Delete it and fetch it again.", "")
            raise DataError(f"downloaded file rejected: {reason}") from e
    return target


def _stream(response: http.client.HTTPResponse, out: BinaryIO, file: FileSpec, progress: bool) -> None:
    """Copy the response body to ``out``, checking its length against Content-Length and the size cap."""
    header = response.headers.get("Content-Length", "")
    length = int(header) if header.strip().isdigit() else None
    if length is not None and length > MAX_DOWNLOAD_BYTES:
        raise DataError(f"server announces {length} bytes, more than the limit of {MAX_DOWNLOAD_BYTES}")
    received = 0
    with tqdm(total=length or file.size, unit="B", unit_scale=True, unit_divisor=1024, desc=file.name,
              disable=not progress, leave=False) as bar:
        while chunk := response.read(_CHUNK):
            received += len(chunk)
            if received > MAX_DOWNLOAD_BYTES or (length is not None and received > length):
                raise DataError(f"server sent more than the {length or MAX_DOWNLOAD_BYTES} bytes expected")
            out.write(chunk)
            bar.update(len(chunk))
    if length is not None and received != length:
        raise DataError(f"connection closed after {received} of {length} bytes")


def _describe(error: BaseException, timeout: float) -> str:
    """One line saying what went wrong with a mirror."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot connect ({error.reason})"
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed after {len(error.partial)} bytes ({error.expected} more expected)"
    if isinstance(error, DataError):
        return str(error)
    return f"{type(error).__name__}: {error}"
