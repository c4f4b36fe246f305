"""read_idx / write_idx: round trips for every type code, a table of broken files, and fuzzing."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpycnn import DataError
from numpycnn.datasets.idx import IDX_TYPES, read_idx, write_idx


def header(code: int, shape: tuple[int, ...]) -> bytes:
    """IDX header built by hand from the format description (independent of write_idx)."""
    return bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape)


def idx_bytes(code: int, shape: tuple[int, ...]) -> bytes:
    """A valid IDX file: header, then the right number of data bytes."""
    size = int(np.prod(shape)) * IDX_TYPES[code].itemsize
    return header(code, shape) + (bytes(range(256)) * (size // 256 + 1))[:size]


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- round trips ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("code", sorted(IDX_TYPES), ids=lambda c: f"0x{c:02X}")
def test_round_trip_every_type_code(tmp_path, code, compress):
    dtype = IDX_TYPES[code].newbyteorder("=")
    rng = np.random.default_rng(code)
    if dtype.kind == "f":
        array = rng.standard_normal((3, 5, 2)).astype(dtype)
        array[0, 0, 0] = np.inf
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 5, 2), endpoint=True, dtype=dtype)
        array[0, 0, :2] = info.min, info.max
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    out = read_idx(path)
    assert out.dtype == dtype and out.dtype.isnative
    assert out.shape == (3, 5, 2)
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


@pytest.mark.parametrize("shape", [(7,), (2, 3), (1, 2, 3, 4), (1,) * 8])
def test_round_trip_shapes(tmp_path, shape):
    array = np.arange(np.prod(shape), dtype=np.int32).reshape(shape) - 3
    write_idx(tmp_path / "a.idx", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), array)


def test_written_bytes_follow_the_format(tmp_path):
    array = np.array([[1, -2, 3], [256, 0, -32768]], dtype=np.int16)
    write_idx(tmp_path / "a.idx", array)
    assert (tmp_path / "a.idx").read_bytes() == header(0x0B, (2, 3)) + array.astype(">i2").tobytes()


def test_reads_big_endian_values_written_by_hand(tmp_path):
    data = header(0x0C, (2,)) + struct.pack(">ii", 1, -70000)
    path = write(tmp_path, "a.idx", gzip.compress(data))
    np.testing.assert_array_equal(read_idx(path), np.array([1, -70000], dtype=np.int32))


def test_sha256_is_of_decompressed_content(tmp_path):
    data = idx_bytes(0x08, (4, 4))
    sha = hashlib.sha256(data).hexdigest()
    copies = [("a", data), ("b.gz", gzip.compress(data, 1)), ("c.gz", gzip.compress(data, 9, mtime=5))]
    for name, raw in copies:
        read_idx(write(tmp_path, name, raw), sha256=sha)
    with pytest.raises(DataError, match=r"a: SHA-256 of the decompressed content is [0-9a-f]{64}, expected"):
        read_idx(tmp_path / "a", sha256="00" * 32)


def test_write_idx_refuses_bad_arrays_and_is_atomic(tmp_path):
    with pytest.raises(TypeError, match="dtype uint8, int8.*Got int64"):
        write_idx(tmp_path / "a.idx", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"Got shape \(0, 3\)"):
        write_idx(tmp_path / "a.idx", np.zeros((0, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"Got shape \(\)"):
        write_idx(tmp_path / "a.idx", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


# -- broken files --------------------------------------------------------------------------------------------

def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _bad_crc(data: bytes) -> bytes:
    gz = bytearray(_gz(data))
    gz[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    return bytes(gz)


GOOD = idx_bytes(0x08, (3, 4))
BROKEN = {
    "empty file": (b"", "shorter than the 4-byte magic"),
    "three bytes": (b"\x00\x00\x08", "shorter than the 4-byte magic"),
    "bad magic": (b"\x01\x00" + GOOD[2:], "does not start with two zero bytes"),
    "text file": (b"hello world, not IDX at all", "does not start with two zero bytes"),
    "wrong type code 0x0A": (b"\x00\x00\x0a" + GOOD[3:], "unknown IDX type code 0x0A"),
    "wrong type code 0xFF": (b"\x00\x00\xff" + GOOD[3:], "unknown IDX type code 0xFF"),
    "ndim 0": (b"\x00\x00\x08\x00" + GOOD[4:], "0 dimensions"),
    "ndim 255": (b"\x00\x00\x08\xff" + b"\x00\x00\x00\x01" * 255, "255 dimensions"),
    "header ends early": (header(0x08, (3, 4, 5))[:-2], "header is truncated"),
    "zero dim": (header(0x08, (0, 5)), "zero size"),
    "zero dim with data": (header(0x08, (5, 0)) + b"\x01" * 5, "zero size"),
    "dims larger than payload": (header(0x08, (3, 4)) + b"\x01" * 11, r"truncated.*12 bytes.*found 11"),
    "no payload": (header(0x0D, (2,)), r"truncated.*8 bytes of data\), found 0"),
    "payload longer than dims": (GOOD + b"\x00", "data beyond what its header announces"),
    "2**32 items claimed": (header(0x08, (2**16, 2**16)) + b"\x00" * 16, "4294967296 bytes, more than the"),
    "2**32 float64 claimed": (header(0x0E, (2**32 - 1,)), "more than the limit"),
    "max dims claimed": (header(0x08, (2**32 - 1,) * 4), "more than the limit"),
    "truncated gzip": (_gz(GOOD)[:-12], "damaged or truncated gzip stream"),
    "gzip header only": (_gz(GOOD)[:10], "damaged or truncated gzip stream"),
    "bad gzip CRC": (_bad_crc(GOOD), "damaged or truncated gzip stream.*CRC"),
    "gzip magic then garbage": (b"\x1f\x8b" + b"\x00" * 30, "damaged or truncated gzip stream"),
    "gzip of empty file": (_gz(b""), "shorter than the 4-byte magic"),
    "gzip of longer payload": (_gz(GOOD + b"\x07\x07"), "data beyond what its header announces"),
    "gzip of short payload": (_gz(GOOD[:-1]), "truncated"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_files_raise_data_error_naming_the_file(tmp_path, case):
    data, message = BROKEN[case]
    path = write(tmp_path, "broken-file.idx", data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="nope.idx: no such file"):
        read_idx(tmp_path / "nope.idx")
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path)


def test_lying_header_does_not_allocate(tmp_path):
    # Within the size limit (2 GiB) but with almost no data: memory use must follow the data, not the header.
    path = write(tmp_path, "liar.idx", header(0x08, (2**31 - 1,)) + b"\x00" * 1000)
    bomb = write(tmp_path, "bomb.idx.gz", gzip.compress(header(0x08, (100,)) + bytes(50_000_000), 1))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="truncated"):
            read_idx(path)
        with pytest.raises(DataError, match="beyond what its header announces"):
            read_idx(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"peak {peak} bytes"


def test_max_bytes_is_checked_before_reading(tmp_path):
    path = write(tmp_path, "a.idx", idx_bytes(0x0B, (10, 10)))
    assert read_idx(path, max_bytes=200).shape == (10, 10)
    with pytest.raises(DataError, match="200 bytes, more than the limit of 199"):
        read_idx(path, max_bytes=199)


# -- fuzzing -------------------------------------------------------------------------------------------------

@st.composite
def valid_idx(draw) -> bytes:
    code = draw(st.sampled_from(sorted(IDX_TYPES)))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    size = int(np.prod(shape)) * IDX_TYPES[code].itemsize
    return header(code, shape) + draw(st.binary(min_size=size, max_size=size))


@st.composite
def mutated(draw, source) -> bytes:
    data = bytearray(draw(source))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos]
    return bytes(data)


@st.composite
def hostile_files(draw) -> bytes:
    data = draw(st.one_of(st.binary(max_size=80), valid_idx(), mutated(valid_idx())))
    if draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
        if draw(st.booleans()):
            data = draw(mutated(st.just(data)))
    return data


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "fuzz.idx"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hostile_files())
def test_only_data_error_escapes(fuzz_path, data):
    fuzz_path.write_bytes(data)
    try:
        out = read_idx(fuzz_path)
    except DataError as e:
        assert str(fuzz_path) in str(e)
        return
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    assert 4 + 4 * out.ndim + out.nbytes == len(raw)


@settings(max_examples=100, deadline=None)
@given(data=valid_idx())
def test_valid_files_always_read(fuzz_path, data):
    fuzz_path.write_bytes(data)
    out = read_idx(fuzz_path)
    assert out.shape == struct.unpack(f">{data[3]}I", data[4:4 + 4 * data[3]])
    assert out.astype(IDX_TYPES[data[2]]).tobytes() == data[4 + 4 * out.ndim:]
