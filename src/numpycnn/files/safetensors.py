"""The safetensors container, checked: writing tensors and string metadata atomically, and reading a file whose
every byte is accounted for before anything is trusted.

The format (the `safetensors <https://github.com/huggingface/safetensors>`_ project's): an 8-byte little-endian
header length, a JSON header mapping each tensor name to ``{"dtype", "shape", "data_offsets"}`` (plus an optional
``"__metadata__"`` object of strings), then the data section. Reading refuses, with a
:class:`~numpycnn.ModelFileError` naming the problem: a header longer than :data:`MAX_HEADER_BYTES` or past the
end of the file, JSON that is not strict (duplicate keys, NaN), unknown dtypes, shapes whose size disagrees with
their offsets, tensors that overlap or leave bytes unowned, and BOOL tensors holding other bytes than 0 and 1.
This module knows nothing of models; :mod:`numpycnn.files.model_file` builds on it.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np

from numpycnn.core.files import atomic_write
from numpycnn.errors import ModelFileError

__all__ = ["DTYPES", "MAX_HEADER_BYTES", "load_state_dict_file", "save_state_dict_file"]

#: Largest header accepted: a model's header is a few kilobytes; this refuses absurd lengths before reading.
MAX_HEADER_BYTES = 100 * 1024 * 1024
#: safetensors dtype names understood here, with their little-endian NumPy dtypes.
DTYPES: dict[str, np.dtype] = {
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in DTYPES.items()}


def _error(path: Any, problem: str) -> ModelFileError:
    return ModelFileError(f"{os.fspath(path)}: {problem}")


def _atomic_write(path: Any, write: Callable[[IO[bytes]], None]) -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename it into place."""
    with atomic_write(path) as f:
        write(f)


def _little_endian(name: str, value: Any) -> tuple[str, np.ndarray]:
    array = np.asarray(value)
    code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise TypeError(f"save_state_dict_file: tensor {name!r} must have one of the dtypes "
                        f"{sorted(DTYPES)}. Got {array.dtype}.")
    return code, array.astype(DTYPES[code], order="C", copy=False)  # keeps 0-d arrays 0-d


def save_state_dict_file(path: Any, tensors: Mapping[str, np.ndarray],
                         metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> array) and string ``metadata`` as a safetensors file, atomically.

    Tensors are stored by decreasing item size (as the reference implementation does), so each is aligned to
    its item size in the file; names and values are unchanged.

    Raises
    ------
    TypeError
        For a name or metadata entry that is not a string, or an unsupported dtype.
    """
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save_state_dict_file: `metadata` must map str to str. Got {key!r}: {value!r}.")
    entries = []
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise TypeError(f"save_state_dict_file: tensor names must be non-empty strings. Got {name!r}.")
        entries.append((name, *_little_endian(name, value)))
    entries.sort(key=lambda e: -e[2].itemsize)  # stable: state-dict order within one item size
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, code, array in entries:
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)

    def write(f: IO[bytes]) -> None:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, _, array in entries:
            f.write(array.reshape(-1).view(np.uint8).data)

    _atomic_write(path, write)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _strict_json(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys and NaN/Infinity (safetensors' parser refuses them too)."""
    return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)


def _read_header(path: Any, f: IO[bytes], size: int) -> dict[str, Any]:
    if size < 8:
        raise _error(path, f"file too small to be a safetensors file ({size} bytes; needs at least 8).")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > MAX_HEADER_BYTES:
        raise _error(path, f"header length {n} is absurd (limit {MAX_HEADER_BYTES}); not a safetensors file.")
    if 8 + n > size:
        raise _error(path, f"header length {n} points past the end of the file ({size} bytes); the file is "
                           "truncated or not a safetensors file.")
    raw = f.read(n)
    try:
        header = _strict_json(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise _error(path, f"header is not valid UTF-8 (byte {err.start}).") from None
    except (ValueError, RecursionError) as err:
        raise _error(path, f"header is not valid JSON ({err}).") from None
    if not isinstance(header, dict):
        raise _error(path, f"header must be a JSON object. Got {type(header).__name__}.")
    return header


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(path: Any, name: str, entry: Any,
                 data_len: int) -> tuple[np.dtype, tuple[int, ...], int, int]:
    where = f"tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _error(path, f"{where} must be an object with exactly the keys dtype, shape, data_offsets. "
                           f"Got {entry!r:.200}.")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or code not in DTYPES:
        raise _error(path, f"{where} has unsupported dtype {code!r:.40}; expected one of {sorted(DTYPES)}.")
    if not isinstance(shape, list) or len(shape) > 16 or not all(_is_int(d) and d >= 0 for d in shape):
        raise _error(path, f"{where}: shape must be a list of at most 16 non-negative integers. "
                           f"Got {shape!r:.200}.")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise _error(path, f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end. "
                           f"Got {offsets!r:.200}.")
    begin, end = offsets
    dtype = DTYPES[code]
    if math.prod(shape) * dtype.itemsize != end - begin:
        raise _error(path, f"{where}: shape {shape} of {code} needs {math.prod(shape) * dtype.itemsize} "
                           f"bytes but data_offsets {offsets} span {end - begin}.")
    if end > data_len:
        raise _error(path, f"{where}: data_offsets {offsets} reach past the data section ({data_len} bytes); "
                           "the file is truncated or damaged.")
    return dtype, tuple(shape), begin, end


def _check_coverage(path: Any, spans: list[tuple[int, int, str]], data_len: int) -> None:
    """The tensors' byte ranges must tile ``[0, data_len)`` exactly, as safetensors requires."""
    position, previous = 0, None
    for begin, end, name in sorted(spans):
        if begin < position:
            raise _error(path, f"tensors {previous!r} and {name!r} overlap (bytes {begin}..{position}).")
        if begin > position:
            raise _error(path, f"bytes {position}..{begin} of the data section belong to no tensor.")
        position, previous = end, name
    if position != data_len:
        raise _error(path, f"the data section has {data_len - position} trailing bytes that belong to no "
                           "tensor.")


def _read(path: Any) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read and validate a safetensors file; return ``(tensors, metadata)`` with native-order owned arrays."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = _read_header(path, f, size)
        data_start = f.tell()
        data = f.read()
    data_len = size - data_start
    if len(data) != data_len:
        raise _error(path, "the file changed while it was being read.")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _error(path, f"__metadata__ must be an object of strings. Got {metadata!r:.200}.")
    checked = {name: _check_entry(path, name, entry, data_len) for name, entry in header.items()}
    _check_coverage(path, [(b, e, name) for name, (_, _, b, e) in checked.items()], data_len)
    tensors = {}
    for name, (dtype, shape, begin, end) in checked.items():
        array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=begin).reshape(shape)
        if dtype.kind == "b" and np.frombuffer(data, np.uint8, end - begin, begin).max(initial=0) > 1:
            raise _error(path, f"tensor {name!r} is BOOL but holds bytes other than 0 and 1.")
        tensors[name] = array.astype(dtype.newbyteorder("="))  # an aligned, writable, native-order copy
    return tensors, metadata


def load_state_dict_file(path: Any) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file (any producer: numpycnn, PyTorch, ...) as ``name -> array``.

    Raises
    ------
    ModelFileError
        If the file is not a well-formed safetensors file of the supported dtypes.
    """
    return _read(path)[0]
