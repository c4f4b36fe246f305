"""Downloads for real, against a small HTTP server on 127.0.0.1 serving synthetic data sets.

The server's first path segment says how it behaves: ``good``, ``404``, ``503``, ``drop`` (announces the full
length, sends half, closes), ``corrupt`` (a well-formed file with the wrong content), ``hang`` (answers late).
The registry entries are swapped for ones whose checksums are those of the synthetic files.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from numpycnn import DataError, datasets
from numpycnn.datasets import cache, download, registry
from numpycnn.datasets.idx import write_idx

IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CIFAR_NAME = "cifar-10-binary.tar.gz"


def fake_fashion(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        IDX_NAMES[0]: rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 10, 12, dtype=np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 10, 8, dtype=np.uint8),
    }


def fake_cifar(rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """A small tar.gz laid out like CIFAR-10's (2 records per training batch, 3 test records)."""
    test = rng.integers(0, 256, (3, 3073), dtype=np.uint8)
    test[:, 0] = [7, 8, 9]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in [(f"data_batch_{i}.bin", rng.integers(0, 10, (2, 3073), dtype=np.uint8).tobytes())
                           for i in range(1, 6)] + [("test_batch.bin", test.tobytes())]:
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), test


class Server(ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, bytes]
    corrupt: dict[str, bytes]
    log: list[str]

    def handle_error(self, request, client_address) -> None:
        pass  # clients that time out or give up close early; that is the point of those tests


class Handler(BaseHTTPRequestHandler):
    timeout = 5  # seconds, for a client that stops reading
    server: Server

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        mode, _, name = self.path.strip("/").partition("/")
        self.server.log.append(self.path)
        body = self.server.files.get(name)
        if body is None or mode == "404":
            self.send_error(404)
        elif mode == "503":
            self.send_error(503, "Slow Down")
        elif mode == "hang":
            time.sleep(1.0)
            self.send_error(500)
        else:
            body = self.server.corrupt[name] if mode == "corrupt" else body
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if mode == "drop" else body)
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    """An HTTP server on 127.0.0.1 (a free port), stopped after the module or after 120 s, whichever first."""
    rng = np.random.default_rng(0)
    arrays = fake_fashion(rng)
    srv = Server(("127.0.0.1", 0), Handler)
    srv.files, srv.corrupt, srv.log = {}, {}, []
    for name, array in arrays.items():
        srv.files[name] = _idx_gz(array)
        wrong = array.copy()
        wrong.flat[0] ^= 1
        srv.corrupt[name] = _idx_gz(wrong)
    srv.files[CIFAR_NAME], cifar_test = fake_cifar(rng)
    srv.corrupt[CIFAR_NAME] = srv.files[CIFAR_NAME][:-100] + bytes(100)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(120, srv.shutdown)
    watchdog.daemon = True
    watchdog.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    srv.arrays, srv.cifar_test = arrays, cifar_test
    yield srv
    watchdog.cancel()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.tobytes(), mtime=0)


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("NUMPYCNN_DATA", str(root))
    monkeypatch.delenv("NUMPYCNN_MIRRORS", raising=False)
    monkeypatch.setitem(cache.LOCAL_DIRS, "fashion-mnist", [])
    monkeypatch.setitem(cache.LOCAL_DIRS, "cifar10", [])
    return root


@pytest.fixture
def use_mirrors(server, monkeypatch):
    """Swap the registry's Fashion-MNIST and CIFAR-10 for the synthetic files, served from the given modes."""
    def use(*modes: str) -> None:
        mirrors = tuple(f"{server.base}/{m}" for m in modes)
        sha = {n: hashlib.sha256(gzip.decompress(server.files[n])).hexdigest() for n in IDX_NAMES}
        files = {"train": (registry.FileSpec(IDX_NAMES[0], sha[IDX_NAMES[0]]),
                           registry.FileSpec(IDX_NAMES[1], sha[IDX_NAMES[1]])),
                 "test": (registry.FileSpec(IDX_NAMES[2], sha[IDX_NAMES[2]]),
                          registry.FileSpec(IDX_NAMES[3], sha[IDX_NAMES[3]]))}
        fashion = dataclasses.replace(registry.FASHION_MNIST, files=files, counts={"train": 12, "test": 8},
                                      mirrors=mirrors)
        archive = registry.FileSpec(CIFAR_NAME, hashlib.sha256(server.files[CIFAR_NAME]).hexdigest(),
                                    content_hash=False)
        cifar = dataclasses.replace(registry.CIFAR10, files={"train": (archive,), "test": (archive,)},
                                    counts={"train": 10, "test": 3}, mirrors=mirrors)
        monkeypatch.setitem(registry.DATASETS, "fashion-mnist", fashion)
        monkeypatch.setitem(registry.DATASETS, "cifar10", cifar)
        server.log.clear()
    return use


def leftovers(root: Path) -> list[str]:
    """Temporary or partial files anywhere under ``root``."""
    return [str(p) for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]


def assert_fashion_test_split(server, images, labels):
    assert images.shape == (8, 1, 28, 28) and labels.dtype == np.int64
    np.testing.assert_array_equal(images[:, 0], server.arrays[IDX_NAMES[2]])
    np.testing.assert_array_equal(labels, server.arrays[IDX_NAMES[3]])


# -- one mirror, then fallbacks ------------------------------------------------------------------------------

def test_good_mirror(server, use_mirrors, cache_root):
    use_mirrors("good")
    images, labels = datasets.load("fashion-mnist", "test", progress=False)
    assert_fashion_test_split(server, images, labels)
    target = cache_root / "fashion-mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(IDX_NAMES[2:])
    assert (target / IDX_NAMES[2]).read_bytes() == server.files[IDX_NAMES[2]]
    server.log.clear()
    datasets.load("fashion-mnist", "test", progress=False)
    assert server.log == []  # found in the cache, verified, not fetched again


@pytest.mark.parametrize("first", ["404", "503", "drop", "corrupt", "hang"])
def test_failing_mirror_then_good_one(server, use_mirrors, cache_root, monkeypatch, first):
    monkeypatch.setattr(download, "TIMEOUT", 0.3)
    use_mirrors(first, "good")
    images, labels = datasets.load("fashion-mnist", "test", progress=False)
    assert_fashion_test_split(server, images, labels)
    assert server.log[:2] == [f"/{first}/{IDX_NAMES[2]}", f"/good/{IDX_NAMES[2]}"]
    assert leftovers(cache_root) == []


@pytest.mark.parametrize(("mode", "reason"), [
    ("404", "HTTP 404"),
    ("503", "HTTP 503"),
    ("drop", r"connection closed after \d+ (of \d+ bytes|bytes)"),
    ("corrupt", "downloaded file rejected: .*SHA-256 of the decompressed content"),
    ("hang", "timed out after 0.3 s"),
])
def test_single_failing_mirror_leaves_nothing(server, use_mirrors, cache_root, monkeypatch, mode, reason):
    monkeypatch.setattr(download, "TIMEOUT", 0.3)
    use_mirrors(mode)
    with pytest.raises(DataError, match=reason):
        datasets.load("fashion-mnist", "test", progress=False)
    target = cache_root / "fashion-mnist"
    assert not target.exists() or list(target.iterdir()) == []


def test_all_mirrors_failing_lists_each_error_and_says_what_to_do(server, use_mirrors, cache_root):
    use_mirrors("404", "503", "drop", "corrupt")
    with pytest.raises(DataError) as info:
        datasets.load("fashion-mnist", "train", progress=False)
    message = str(info.value)
    for mode, reason in [("404", "HTTP 404"), ("503", "HTTP 503"), ("drop", "connection closed"),
                         ("corrupt", "downloaded file rejected")]:
        assert f"{server.base}/{mode}/{IDX_NAMES[0]}: {reason}" in message
    assert f"put {', '.join(IDX_NAMES)} in {cache_root / 'fashion-mnist'}" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert list((cache_root / "fashion-mnist").iterdir()) == []


# -- local copies --------------------------------------------------------------------------------------------

def test_corrupted_cached_file_is_reported_then_downloaded_again(server, use_mirrors, cache_root):
    use_mirrors("good")
    target = cache_root / "fashion-mnist"
    target.mkdir(parents=True)
    (target / IDX_NAMES[2]).write_bytes(server.corrupt[IDX_NAMES[2]])
    with pytest.warns(UserWarning, match=f"{IDX_NAMES[2]}: SHA-256"), \
            pytest.raises(DataError, match=f"Rejected: .*{IDX_NAMES[2]}: SHA-256"):
        datasets.load("fashion-mnist", "test", download=False)
    with pytest.warns(UserWarning, match="ignoring a bad copy"):
        images, labels = datasets.load("fashion-mnist", "test", progress=False)
    assert_fashion_test_split(server, images, labels)
    assert (target / IDX_NAMES[2]).read_bytes() == server.files[IDX_NAMES[2]]
    assert leftovers(cache_root) == []


def test_recompressed_copy_in_a_local_folder_is_accepted(server, use_mirrors, cache_root, tmp_path,
                                                         monkeypatch):
    use_mirrors("404")
    debian = tmp_path / "debian"
    debian.mkdir()
    for name in IDX_NAMES:
        write_idx(debian / name, server.arrays[name])
        recompressed = gzip.compress(gzip.decompress(server.files[name]), 1, mtime=12345)
        (debian / name).write_bytes(recompressed)
        assert recompressed != server.files[name]
    monkeypatch.setitem(cache.LOCAL_DIRS, "fashion-mnist", [debian])
    images, labels = datasets.load("fashion-mnist", "test")
    assert_fashion_test_split(server, images, labels)
    assert server.log == [] and not (cache_root / "fashion-mnist").exists()


def test_data_dir_receives_downloads(server, use_mirrors, cache_root, tmp_path):
    use_mirrors("good")
    mine = tmp_path / "mine"
    datasets.load("fashion-mnist", "test", data_dir=mine, progress=False)
    assert sorted(p.name for p in mine.iterdir()) == sorted(IDX_NAMES[2:])
    assert not (cache_root / "fashion-mnist").exists()


def test_environment_variable_replaces_mirrors(server, use_mirrors, cache_root, monkeypatch):
    use_mirrors("404")
    monkeypatch.setenv("NUMPYCNN_MIRRORS", f"{server.base}/503, {server.base}/good")
    datasets.load("fashion-mnist", "test", progress=False)
    assert [p.split("/")[1] for p in server.log] == ["503", "good", "503", "good"]


def test_progress_bar_when_asked(server, use_mirrors, cache_root, capsys):
    use_mirrors("good")
    datasets.load("fashion-mnist", "test", progress=True)
    assert IDX_NAMES[2] in capsys.readouterr().err


# -- CIFAR-10 ------------------------------------------------------------------------------------------------

def test_cifar10_downloads_verifies_and_loads(server, use_mirrors, cache_root):
    use_mirrors("corrupt", "good")
    images, labels = datasets.load("cifar10", "test", progress=False)
    assert images.shape == (3, 3, 32, 32) and labels.tolist() == [7, 8, 9]
    np.testing.assert_array_equal(images.reshape(3, -1), server.cifar_test[:, 1:])
    assert [p.split("/")[1] for p in server.log] == ["corrupt", "good"]
    images, labels = datasets.load("cifar10", "train", progress=False)
    assert images.shape == (10, 3, 32, 32) and len(server.log) == 2
    assert leftovers(cache_root) == []


def test_cifar10_corrupt_archive_is_refused(server, use_mirrors, cache_root):
    use_mirrors("corrupt")
    with pytest.raises(DataError, match=r"cifar-10-binary.tar.gz: SHA-256 is [0-9a-f]{64}, expected"):
        datasets.load("cifar10", "test", progress=False)
    assert list((cache_root / "cifar10").iterdir()) == []
