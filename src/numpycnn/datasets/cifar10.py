"""Read CIFAR-10's binary archive (``cifar-10-binary.tar.gz``) with NumPy and the standard library alone.

The archive holds ``cifar-10-batches-bin/data_batch_1.bin`` to ``data_batch_5.bin`` (training) and
``test_batch.bin`` (test). Each is a run of fixed-size records: one label byte (0-9), then 3072 pixel bytes,
channel-major (1024 red, 1024 green, 1024 blue, each 32x32 row-major), so a record is already ``(C, H, W)``.

The archive is read as a stream and never extracted to disk: only regular files with the expected names are
read, anything else (links, devices, other names) is skipped, and sizes are checked before reading.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path

import numpy as np

from numpycnn.errors import DataError

RECORD_BYTES = 1 + 3 * 32 * 32
BATCH_DIR = "cifar-10-batches-bin"
BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
#: Largest batch file accepted (the official ones hold 10,000 records, 30,730,000 bytes).
MAX_BATCH_BYTES = 2 * 10000 * RECORD_BYTES
MAX_MEMBERS = 1000
NUM_CLASSES = 10


def read_cifar10(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split from the CIFAR-10 binary archive.

    Parameters
    ----------
    path : str or path-like
        ``cifar-10-binary.tar.gz`` (gzip-compressed or plain tar).
    split : {"train", "test"}
        Which batches to read.

    Returns
    -------
    images : numpy.ndarray
        uint8, shape ``(N, 3, 32, 32)``.
    labels : numpy.ndarray
        int64, shape ``(N,)``, values 0 to 9.

    Raises
    ------
    DataError
        If the archive is unreadable or damaged, a batch is missing, has a size that is not a whole number of
        records, or holds a label outside 0-9. The message names the archive and the member.
    """
    path = Path(path)
    wanted = {f"{BATCH_DIR}/{name}": name for name in BATCHES[split]}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_MEMBERS:
                    raise DataError(f"{path}: over {MAX_MEMBERS} archive members; not a CIFAR-10 archive.")
                if member.name in wanted and member.isreg():
                    found[wanted[member.name]] = _read_batch(tar, member, path)
                if len(found) == len(wanted):
                    break
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file.") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path}: cannot read the CIFAR-10 archive ({type(e).__name__}: {e}). "
            "Delete it and fetch it again."
        ) from e
    missing = [f"{BATCH_DIR}/{n}" for n in BATCHES[split] if n not in found]
    if missing:
        raise DataError(f"{path}: not a CIFAR-10 binary archive: missing {', '.join(missing)}.")
    batches = [np.frombuffer(found[n], dtype=np.uint8).reshape(-1, RECORD_BYTES) for n in BATCHES[split]]
    labels = np.concatenate([b[:, 0] for b in batches]).astype(np.int64)  # (N,)
    if labels.max() >= NUM_CLASSES:
        raise DataError(f"{path}: label {labels.max()} found; CIFAR-10 labels are 0 to {NUM_CLASSES - 1}.")
    images = np.concatenate([b[:, 1:] for b in batches]).reshape(-1, 3, 32, 32)  # (N, C, H, W)
    return images, labels


def _read_batch(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    """Return the bytes of one batch member after checking its size."""
    if member.size == 0 or member.size % RECORD_BYTES or member.size > MAX_BATCH_BYTES:
        raise DataError(
            f"{path}: member {member.name} has {member.size} bytes, not a whole number of "
            f"{RECORD_BYTES}-byte records (at most {MAX_BATCH_BYTES} bytes); "
            "the archive is damaged or not CIFAR-10's."
        )
    f = tar.extractfile(member)
    if f is None:  # pragma: no cover - isreg() members always have a file object
        raise DataError(f"{path}: member {member.name} cannot be read.")
    data = f.read(member.size)
    if len(data) != member.size:
        raise DataError(f"{path}: member {member.name} is truncated: {len(data)} of {member.size} bytes.")
    return data
