"""Read and write IDX files, the format of MNIST and Fashion-MNIST, plain or gzip-compressed.

An IDX file is a header followed by the array's values in C order, big-endian:

- magic: two zero bytes, a type code byte, and the number of dimensions ``ndim`` (one byte);
- ``ndim`` sizes, each a big-endian unsigned 32-bit integer;
- exactly ``prod(sizes) * itemsize`` bytes of data.

:func:`read_idx` trusts nothing: it checks the magic, type code, ``ndim`` and every size, and that the total
is within ``max_bytes``, *before* it allocates anything, then reads at most one byte more than the header
promises, so neither a lying header nor a gzip bomb can make it allocate more than the data actually present.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from numpycnn.core.files import atomic_write
from numpycnn.errors import DataError

#: IDX type code -> big-endian dtype of the stored values.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_NDIM = 8
#: Default cap on the data an IDX file may claim (2 GiB).
MAX_BYTES = 2**31
_CHUNK = 1 << 22
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike, *, sha256: str | None = None, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed, told apart by content) into an array.

    Parameters
    ----------
    path : str or path-like
        The file.
    sha256 : str, optional
        Expected hex SHA-256 of the decompressed content (header and data); checked while reading.
    max_bytes : int
        Largest data size, in bytes, that a header may claim.

    Returns
    -------
    numpy.ndarray
        Array of the stored shape, in the stored type converted to native byte order.

    Raises
    ------
    DataError
        If the file is missing, unreadable, truncated, not IDX, malformed, claims more than ``max_bytes``, has
        data beyond what its header announces, is a damaged gzip stream, or does not match ``sha256``. The
        message names the file.

    Examples
    --------
    >>> images = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape, images.dtype                           # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    compressed = False
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                    return _read_stream(f, path, sha256, max_bytes)
            return _read_stream(raw, path, sha256, max_bytes)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file.") from None
    except (OSError, EOFError, zlib.error) as e:
        kind = "damaged or truncated gzip stream" if compressed else "unreadable file"
        raise DataError(f"{path}: cannot read IDX file, {kind} ({type(e).__name__}: {e}). "
                        "Delete it and fetch it again.") from e


def _read_stream(f: BinaryIO, path: Path, sha256: str | None, max_bytes: int) -> np.ndarray:
    """Parse an open (decompressed) IDX stream; see :func:`read_idx`."""
    digest = hashlib.sha256()
    dtype, shape, header = _read_header(f, path, max_bytes)
    digest.update(header)
    expected = math.prod(shape) * dtype.itemsize
    data = bytearray()
    while len(data) <= expected:  # read at most expected + 1 bytes
        chunk = f.read(min(_CHUNK, expected + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) != expected:
        what = "is truncated" if len(data) < expected else "has data beyond what its header announces"
        got = f"{len(data)}" if len(data) < expected else f"more than {expected}"
        raise DataError(
            f"{path}: IDX file {what}: header says shape {shape} of {dtype.name} ({expected} bytes of data), "
            f"found {got} bytes. The file is damaged or not an IDX file; delete it and fetch it again."
        )
    digest.update(data)
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise DataError(
            f"{path}: SHA-256 of the decompressed content is {digest.hexdigest()}, expected {sha256}: "
            "the file is corrupted or is not the expected file. Delete it and fetch it again."
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _read_header(f: BinaryIO, path: Path, max_bytes: int) -> tuple[np.dtype, tuple[int, ...], bytes]:
    """Read and check the magic and sizes; return ``(dtype, shape, header bytes)``."""
    magic = f.read(4)
    if len(magic) < 4:
        raise DataError(f"{path}: not an IDX file: {len(magic)} bytes, shorter than the 4-byte magic number.")
    zero, code, ndim = magic[:2], magic[2], magic[3]
    if zero != b"\x00\x00":
        raise DataError(
            f"{path}: not an IDX file: magic number {magic.hex()} does not start with two zero bytes."
        )
    if code not in IDX_TYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise DataError(f"{path}: unknown IDX type code 0x{code:02X}; expected one of {valid}.")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{path}: IDX header has {ndim} dimensions; expected 1 to {MAX_NDIM}.")
    sizes = f.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(f"{path}: IDX header is truncated: {ndim} dimensions announced, header ends early.")
    shape = struct.unpack(f">{ndim}I", sizes)
    dtype = IDX_TYPES[code]
    if min(shape) == 0:
        raise DataError(f"{path}: IDX header has a zero size in shape {shape}; every size must be positive.")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > max_bytes:
        raise DataError(
            f"{path}: IDX header claims shape {shape} of {dtype.name}, {claimed} bytes, more than the "
            f"limit of {max_bytes} bytes; refusing to read it."
        )
    return dtype, shape, magic + sizes


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file, atomically (temporary file, then ``os.replace``).

    Parameters
    ----------
    path : str or path-like
        Destination.
    array : numpy.ndarray
        1 to 8 dimensions, every size positive, dtype uint8, int8, int16, int32, float32 or float64.
    compress : bool, optional
        Gzip the file; by default, when ``path`` ends in ``.gz``. The gzip header holds no time stamp, so the
        same array always gives the same bytes.

    Raises
    ------
    TypeError
        If the dtype has no IDX type code.
    ValueError
        If the array has no dimension, more than 8, or a zero size.
    """
    array = np.asarray(array)
    codes = {dt.newbyteorder("=").str: code for code, dt in IDX_TYPES.items()}
    key = array.dtype.newbyteorder("=").str
    if key not in codes:
        raise TypeError(
            f"write_idx: `array` must have dtype uint8, int8, int16, int32, float32 or float64. "
            f"Got {array.dtype}."
        )
    if not 1 <= array.ndim <= MAX_NDIM or 0 in array.shape:
        raise ValueError(
            f"write_idx: `array` must have 1 to {MAX_NDIM} dimensions, each of positive size. "
            f"Got shape {array.shape}."
        )
    code = codes[key]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    path = Path(path)
    compress = path.name.endswith(".gz") if compress is None else compress
    with atomic_write(path) as f:
        if compress:
            with gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            f.write(header)
            f.write(payload)
