"""The ``numpycnn data`` command, run through a parser built here (the CLI wires the same functions in).

Downloads come from a local ``file://`` mirror of synthetic Fashion-MNIST files.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib

import numpy as np
import pytest

from numpycnn.cli.data_commands import add_data_parser, run_data
from numpycnn.datasets import cache, registry
from numpycnn.datasets.idx import write_idx

NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="numpycnn")
    add_data_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    assert args.func is run_data
    return args.func(args)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A file:// mirror of a tiny synthetic Fashion-MNIST, registered in place of the real one."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "mirror"
    folder.mkdir()
    arrays = [rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), rng.integers(0, 10, 4, dtype=np.uint8),
              rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), rng.integers(0, 10, 2, dtype=np.uint8)]
    files = []
    for name, array in zip(NAMES, arrays, strict=True):
        write_idx(folder / name, array)
        files.append(registry.FileSpec(name, hashlib.sha256(gzip.decompress((folder / name).read_bytes()))
                                       .hexdigest()))
    spec = dataclasses.replace(registry.FASHION_MNIST, files={"train": tuple(files[:2]),
                                                              "test": tuple(files[2:])},
                               counts={"train": 4, "test": 2}, mirrors=(folder.as_uri(),))
    monkeypatch.setitem(registry.DATASETS, "fashion-mnist", spec)
    monkeypatch.setitem(cache.LOCAL_DIRS, "fashion-mnist", [])
    monkeypatch.setitem(cache.LOCAL_DIRS, "cifar10", [])
    monkeypatch.setenv("NUMPYCNN_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv("NUMPYCNN_MIRRORS", raising=False)
    return tmp_path / "cache" / "fashion-mnist"


def test_list_shows_each_data_set_and_where_its_files_are(mirror, capsys):
    assert run("data", "list") == 0
    out = capsys.readouterr().out
    assert "mnist: 60000 train, 10000 test images of shape (1, 28, 28), 10 classes" in out
    bundled = cache.PACKAGE_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz"
    assert f"t10k-labels-idx1-ubyte.gz: verified  {bundled}" in out
    assert f"t10k-images-idx3-ubyte.gz: MISSING   (`numpycnn data download fashion-mnist` puts it at " \
           f"{mirror / 't10k-images-idx3-ubyte.gz'})" in out
    assert "cifar-10-binary.tar.gz: MISSING" in out


def test_download_then_verify(mirror, capsys):
    assert run("data", "verify", "fashion-mnist") == 1
    assert "MISSING" in capsys.readouterr().out
    assert run("data", "download", "fashion-mnist", "--no-progress") == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in mirror.iterdir()) == sorted(NAMES)
    assert out.count("verified  ") == 4
    assert run("data", "verify", "fashion-mnist") == 0
    assert capsys.readouterr().out.count("verified  ") == 4


def test_verify_reports_a_corrupt_copy(mirror, capsys):
    assert run("data", "download", "fashion-mnist", "--no-progress") == 0
    write_idx(mirror / NAMES[1], np.zeros(4, dtype=np.uint8))
    capsys.readouterr()
    assert run("data", "verify", "fashion-mnist") == 1
    out = capsys.readouterr().out
    assert f"{NAMES[1]}: CORRUPT   {mirror / NAMES[1]}: {mirror / NAMES[1]}: SHA-256" in out


def test_download_failure_is_an_error_exit(mirror, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NUMPYCNN_MIRRORS", (tmp_path / "nowhere").as_uri())
    assert run("data", "download", "fashion-mnist", "--no-progress") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: fashion-mnist: could not download")
    assert "apt-get install dataset-fashion-mnist" in err


def test_data_dir_option(mirror, tmp_path, capsys):
    mine = tmp_path / "mine"
    assert run("data", "download", "fashion-mnist", "--data-dir", str(mine), "--no-progress") == 0
    assert sorted(p.name for p in mine.iterdir()) == sorted(NAMES)
    assert not mirror.exists()


def test_unknown_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        run("data", "download", "svhn")
    assert info.value.code == 2
    assert "invalid choice: 'svhn'" in capsys.readouterr().err
