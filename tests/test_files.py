"""Atomic writes: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from numpycnn.core.files import atomic_write


def test_writes_text_and_bytes_with_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.json", "w") as handle:
            handle.write("{}")
        with atomic_write(tmp_path / "b.bin") as handle:
            handle.write(b"\x00\x01")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").read_text() == "{}"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"new, half written")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_the_block_sees_the_temporary_path(tmp_path):
    with atomic_write(tmp_path / "x") as handle:
        handle.write(b"abc")
        handle.flush()
        assert os.path.dirname(handle.name) == str(tmp_path)
        assert open(handle.name, "rb").read() == b"abc"
        assert not (tmp_path / "x").exists()


def test_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match=r"atomic_write: `mode` must be 'wb' or 'w'\. Got 'a'\."):
        with atomic_write(tmp_path / "x", "a"):
            pass
