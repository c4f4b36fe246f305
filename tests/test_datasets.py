"""load(): bundled MNIST, Debian's Fashion-MNIST, CIFAR-10's archive, arguments, cache folders, transforms."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from numpycnn import DataError, datasets
from numpycnn.datasets import cache, registry
from numpycnn.datasets.cifar10 import RECORD_BYTES, read_cifar10

# Decompressed SHA-256s, copied from the data notes (not from the registry, so a typo there is caught).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed in {FASHION_DIR} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache and no mirrors, so nothing outside the test can leak in or out."""
    monkeypatch.setenv("NUMPYCNN_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("NUMPYCNN_MIRRORS", "http://127.0.0.1:9/unreachable")
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def mnist():
    return {split: datasets.load("mnist", split, download=False) for split in ("train", "test")}


# -- bundled MNIST -------------------------------------------------------------------------------------------

def test_mnist_loads_offline_with_official_shapes_and_counts(mnist):
    (x_train, y_train), (x_test, y_test) = mnist["train"], mnist["test"]
    assert x_train.shape == (60000, 1, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 1, 28, 28) and y_test.shape == (10000,)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.dtype == y_test.dtype == np.int64
    assert np.bincount(y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert np.bincount(y_train, minlength=10).sum() == 60000 and y_train.max() == 9
    assert x_test.max() == 255 and x_test.min() == 0


@pytest.mark.parametrize("name", sorted(MNIST_SHA256))
def test_bundled_mnist_files_match_official_checksums(name):
    path = cache.PACKAGE_DATA / "mnist" / name
    assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == MNIST_SHA256[name]
    assert registry.MNIST.files["train" if name.startswith("train") else "test"][
        0 if "images" in name else 1].sha256 == MNIST_SHA256[name]


def test_corrupt_copy_in_data_dir_is_reported_and_skipped(tmp_path):
    bad_dir = tmp_path / "mine"
    bad_dir.mkdir()
    datasets.write_idx(bad_dir / "t10k-labels-idx1-ubyte.gz", np.zeros(10000, dtype=np.uint8))
    with pytest.warns(UserWarning, match=r"ignoring a bad copy.*t10k-labels-idx1-ubyte.gz: SHA-256"):
        _, labels = datasets.load("mnist", "test", data_dir=bad_dir, download=False)
    assert np.bincount(labels).tolist() == MNIST_TEST_COUNTS


def test_uncompressed_copy_in_data_dir_is_used(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (mine / name[:-3]).write_bytes(gzip.decompress((cache.PACKAGE_DATA / "mnist" / name).read_bytes()))
    monkeypatch.setitem(cache.LOCAL_DIRS, "mnist", [])
    images, labels = datasets.load("mnist", "test", data_dir=mine, download=False)
    assert images.shape == (10000, 1, 28, 28) and np.bincount(labels).tolist() == MNIST_TEST_COUNTS


# -- Debian's Fashion-MNIST ----------------------------------------------------------------------------------

@needs_fashion
@pytest.mark.parametrize(("split", "n"), [("train", 6000), ("test", 1000)])
def test_real_fashion_mnist_from_debian(split, n):
    images, labels = datasets.load("fashion-mnist", split, download=False)
    assert images.shape == (10 * n, 1, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [n] * 10


def test_missing_fashion_mnist_says_which_files_to_put_where(monkeypatch, empty_cache):
    monkeypatch.setitem(cache.LOCAL_DIRS, "fashion-mnist", [])
    with pytest.raises(DataError) as info:
        datasets.load("fashion-mnist", "test", download=False)
    message = str(info.value)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz", str(empty_cache / "fashion-mnist"),
                 "apt-get install dataset-fashion-mnist", "numpycnn data download fashion-mnist"):
        assert name in message


# -- CIFAR-10's archive --------------------------------------------------------------------------------------

def cifar_archive(path: Path, batches: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:
    """A tar.gz laid out like CIFAR-10's, with the given member contents."""
    with tarfile.open(path, "w:gz") as tar:
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size))
        for name, data in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def records(labels: list[int], seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (len(labels), RECORD_BYTES - 1), dtype=np.uint8)
    return np.concatenate([np.array(labels, dtype=np.uint8)[:, None], pixels], axis=1).tobytes()


def fake_cifar(path: Path) -> Path:
    batches = {f"data_batch_{i}.bin": records([i, 9 - i], seed=i) for i in range(1, 6)}
    batches["test_batch.bin"] = records([0, 1, 2], seed=0)
    return cifar_archive(path, batches)


def test_read_cifar10_layout(tmp_path):
    archive = fake_cifar(tmp_path / "c.tar.gz")
    images, labels = read_cifar10(archive, "train")
    assert images.shape == (10, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4] and labels.dtype == np.int64
    first = np.frombuffer(records([1, 8], seed=1), dtype=np.uint8)[1:RECORD_BYTES]
    np.testing.assert_array_equal(images[0, 1], first[1024:2048].reshape(32, 32))  # green plane, row-major
    images, labels = read_cifar10(archive, "test")
    assert images.shape == (3, 3, 32, 32) and labels.tolist() == [0, 1, 2]


def test_cifar10_load_checks_the_archive_checksum(tmp_path, monkeypatch):
    archive = fake_cifar(tmp_path / "cifar-10-binary.tar.gz")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    file = registry.FileSpec("cifar-10-binary.tar.gz", sha, content_hash=False)
    spec = dataclasses.replace(registry.CIFAR10, files={"train": (file,), "test": (file,)},
                               counts={"train": 10, "test": 3})
    monkeypatch.setitem(registry.DATASETS, "cifar10", spec)
    images, labels = datasets.load("CIFAR-10", "test", data_dir=tmp_path, download=False)
    assert images.shape == (3, 3, 32, 32) and labels.tolist() == [0, 1, 2]
    with archive.open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.warns(UserWarning, match="SHA-256"), pytest.raises(DataError, match="Rejected: .*SHA-256"):
        datasets.load("cifar10", "test", data_dir=tmp_path, download=False)


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


HOSTILE = {
    "missing batch": ({"data_batch_1.bin": records([1], 1)}, [],
                      "missing cifar-10-batches-bin/data_batch_2.bin"),
    "size not whole records": ({"test_batch.bin": records([1], 1) + b"x"}, [], "not a whole number"),
    "empty batch": ({"test_batch.bin": b""}, [], "not a whole number"),
    "label out of range": ({"test_batch.bin": records([3, 10], 1)}, [], "label 10 found"),
    "symlink instead of batch": ({}, [_member("cifar-10-batches-bin/test_batch.bin", tarfile.SYMTYPE,
                                              link="/etc/passwd")], "missing"),
    "path traversal ignored": ({}, [_member("../cifar-10-batches-bin/test_batch.bin", size=RECORD_BYTES)],
                               "missing"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_cifar_archives_raise_data_error(tmp_path, case):
    batches, extra, message = HOSTILE[case]
    archive = cifar_archive(tmp_path / "c.tar.gz", batches, extra)
    split = "train" if "data_batch_1.bin" in batches else "test"
    with pytest.raises(DataError, match=message) as info:
        read_cifar10(archive, split)
    assert str(archive) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tar.gz"]  # nothing extracted


@pytest.mark.parametrize("data", [b"", b"not a tar file at all" * 30, gzip.compress(b"x" * 1000)[:-20]])
def test_unreadable_cifar_archives_raise_data_error(tmp_path, data):
    path = tmp_path / "c.tar.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match="c.tar.gz"):
        read_cifar10(path, "test")


# -- arguments, names, folders -------------------------------------------------------------------------------

def test_bad_name_and_split_list_valid_values():
    valid = "'mnist', 'fashion-mnist', 'cifar10'"
    with pytest.raises(ValueError, match=f"`name` must be one of {valid}. Got 'svhn'"):
        datasets.load("svhn")
    with pytest.raises(ValueError, match=r"`split` must be one of 'train', 'test'. Got 'val'"):
        datasets.load("mnist", "val")
    with pytest.raises(TypeError, match="`name` must be a string"):
        datasets.load(3)


def test_class_names():
    assert datasets.class_names("mnist") == [str(i) for i in range(10)]
    assert datasets.class_names("Fashion_MNIST")[0] == "T-shirt/top"
    assert datasets.class_names("cifar10")[-1] == "truck" and len(datasets.class_names("cifar10")) == 10


@pytest.mark.parametrize(("platform", "environ", "expected"), [
    ("linux", {"HOME": "/h"}, "/h/.cache/numpycnn"),
    ("linux", {"HOME": "/h", "XDG_CACHE_HOME": "/x"}, "/x/numpycnn"),
    ("linux", {"HOME": "/h", "XDG_CACHE_HOME": "relative"}, "/h/.cache/numpycnn"),
    ("darwin", {"HOME": "/h"}, "/h/Library/Caches/numpycnn"),
    ("win32", {"HOME": "/h", "LOCALAPPDATA": "/L"}, "/L/numpycnn/Cache"),
    ("win32", {"USERPROFILE": "/u"}, "/u/AppData/Local/numpycnn/Cache"),
])
def test_user_cache_dir_per_platform(platform, environ, expected):
    assert cache.user_cache_dir(platform, environ) == Path(expected)


def test_numpycnn_data_overrides_the_cache(monkeypatch):
    monkeypatch.setenv("NUMPYCNN_DATA", "/somewhere/data")
    assert datasets.cache_dir() == Path("/somewhere/data")
    assert cache.search_dirs("fashion-mnist")[0] == Path("/somewhere/data/fashion-mnist")


# -- transforms ----------------------------------------------------------------------------------------------

def test_to_float_scales_to_unit_interval_without_touching_input():
    images = np.array([[0, 51, 255]], dtype=np.uint8)
    out = datasets.to_float(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]], rtol=1e-6)
    assert images.tolist() == [[0, 51, 255]]
    with pytest.raises(TypeError, match="Got dtype float32"):
        datasets.to_float(out)


def test_channel_stats_and_standardize_match_numpy():
    images = np.random.default_rng(0).integers(0, 256, (9000, 3, 4, 5), dtype=np.uint8)
    x = datasets.to_float(images)
    mean, std = datasets.channel_stats(images)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-5)
    z = datasets.standardize(x, mean, std)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-4)
    with pytest.raises(ValueError, match=r"one value per channel, shape \(3,\)"):
        datasets.standardize(x, mean[:2], std[:2])
    with pytest.raises(ValueError, match="`std` must be positive"):
        datasets.standardize(x, mean, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"non-empty 4D array.*Got shape \(3, 4\)"):
        datasets.channel_stats(np.zeros((3, 4)))


def test_one_hot():
    out = datasets.one_hot(np.array([2, 0, 1, 2]), 3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[[2, 0, 1, 2]])
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\). Got values from 0 to 3"):
        datasets.one_hot(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="1D integer array"):
        datasets.one_hot(np.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="`num_classes` must be an integer >= 1"):
        datasets.one_hot(np.array([0]), 0)
