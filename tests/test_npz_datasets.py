"""Data sets saved as arrays (issue 27): Keras' ``.npz`` layout read with ``allow_pickle=False`` and every array
checked, and a folder of ``.npy`` files read memory-mapped."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from numpycnn import datasets
from numpycnn.cli import main
from numpycnn.errors import DataError


def arrays(n=20, shape=(8, 8), classes=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), np.uint8), np.arange(n) % classes


@pytest.mark.parametrize("layout,shape,expected", [
    ("N H W", (8, 6), (1, 8, 6)),
    ("N H W C", (8, 6, 3), (3, 8, 6)),
    ("N C H W", (3, 8, 6), (3, 8, 6)),
    ("N H W 1", (8, 6, 1), (1, 8, 6)),
])
def test_every_image_layout_becomes_n_c_h_w(tmp_path, layout, shape, expected):
    x, y = arrays(shape=shape)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])
    data = datasets.load_npz(tmp_path / "d.npz")
    assert data.x_train.shape == (20, *expected) and data.x_test.shape == (4, *expected)
    assert data.class_names == ["0", "1"] and data.preparation.input_shape == expected
    if layout == "N H W C":
        np.testing.assert_array_equal(data.x_train[3, 2], x[3, :, :, 2])


def test_class_names_and_the_held_out_split(tmp_path):
    x, y = arrays(n=30, classes=3)
    np.savez_compressed(tmp_path / "d.npz", x_train=x, y_train=y, class_names=np.array(["a", "b", "c"]))
    data = datasets.load_npz(tmp_path / "d.npz", seed=3)
    assert data.class_names == ["a", "b", "c"] and np.bincount(data.y_test).tolist() == [2, 2, 2]
    assert data.preparation.split_seed == 3 and "held out 20%" in data.notes[0]


def save_bad(path, **arrays_):
    np.savez(path, **arrays_)
    return path


@pytest.mark.parametrize("case,match", [
    ("object", "object arrays|Python objects"),
    ("lengths", r"one label per picture, shape \(20,\)"),
    ("outside", "label 5 found, outside the 2 class names"),
    ("float", "uint8 pixels.*float32.*255"),
    ("rank", "Got 2 dimensions"),
    ("channels", "neither"),
    ("missing", "no y_train"),
    ("test half", "x_test and y_test go together"),
    ("float labels", "integer class labels"),
    ("one class", "one class only"),
])
def test_bad_npz_files_are_data_errors_that_say_what_is_wrong(tmp_path, case, match):
    x, y = arrays()
    path = tmp_path / "bad.npz"
    if case == "object":
        np.savez(path, x_train=np.array([x, "a"], dtype=object), y_train=y)
    elif case == "lengths":
        save_bad(path, x_train=x, y_train=y[:-1])
    elif case == "outside":
        save_bad(path, x_train=x, y_train=np.where(y == 1, 5, 0), class_names=np.array(["a", "b"]))
    elif case == "float":
        save_bad(path, x_train=x.astype(np.float32) / 255, y_train=y)
    elif case == "rank":
        save_bad(path, x_train=x.reshape(20, -1), y_train=y)
    elif case == "channels":
        save_bad(path, x_train=np.zeros((20, 5, 8, 8), np.uint8), y_train=y)
    elif case == "missing":
        save_bad(path, x_train=x)
    elif case == "test half":
        save_bad(path, x_train=x, y_train=y, x_test=x)
    elif case == "float labels":
        save_bad(path, x_train=x, y_train=y.astype(float))
    else:
        save_bad(path, x_train=x, y_train=np.zeros(20, int))
    with pytest.raises(DataError, match=match):
        datasets.load_npz(path)


def test_an_array_header_claiming_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    path = tmp_path / "liar.npz"
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 1000, 1000), }"
    header += b" " * (118 - len(header)) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", member)
        z.writestr("y_train.npy", member)
    with pytest.raises(DataError, match="claims 100,000,000,000 bytes"):
        datasets.load_npz(path)


def test_a_file_that_is_not_a_zip_is_a_data_error(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"PK not really")
    with pytest.raises(DataError, match="not a readable .npz"):
        datasets.load_npz(tmp_path / "x.npz")


def test_a_folder_of_npy_files_is_memory_mapped(tmp_path):
    x, y = arrays(n=40, shape=(8, 8, 3))
    np.save(tmp_path / "x_train.npy", x)
    np.save(tmp_path / "y_train.npy", y)
    (tmp_path / "class_names.json").write_text(json.dumps(["left", "right"]))
    data = datasets.load_path(tmp_path)
    assert isinstance(data.x_train, np.memmap) and isinstance(data.x_test, np.memmap)
    assert data.x_train.shape == (32, 3, 8, 8) and data.x_test.shape == (8, 3, 8, 8)
    assert data.class_names == ["left", "right"] and "last 20%" in data.notes[0]
    np.testing.assert_array_equal(data.x_train[np.array([1, 5])], x[[1, 5]].transpose(0, 3, 1, 2))


def test_a_truncated_npy_file_is_a_data_error(tmp_path):
    x, y = arrays()
    np.save(tmp_path / "x_train.npy", x)
    np.save(tmp_path / "y_train.npy", y)
    raw = (tmp_path / "x_train.npy").read_bytes()
    (tmp_path / "x_train.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="x_train.npy"):
        datasets.load_path(tmp_path)


def test_train_on_a_memory_mapped_folder_and_an_npz_from_the_command_line(tmp_path, capsys):
    x, y = arrays(n=40, shape=(10, 10))
    np.save(tmp_path / "x_train.npy", x)
    np.save(tmp_path / "y_train.npy", y)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    for source, out in ((tmp_path, "run-npy"), (tmp_path / "d.npz", "run-npz")):
        code = main(["train", "--dataset", str(source), "--epochs", "1", "--batch-size", "8", "--no-plots",
                     "--quiet", "--out", str(tmp_path / out)])
        assert code == 0, capsys.readouterr().err
        assert (tmp_path / out / "model.safetensors").is_file()
    assert main(["evaluate", str(tmp_path / "run-npz" / "model.safetensors"), "--dataset",
                 str(tmp_path / "d.npz"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 8


def test_image_size_cannot_resize_arrays(tmp_path):
    x, y = arrays()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    with pytest.raises(DataError, match="cannot resize arrays"):
        datasets.load_path(tmp_path / "d.npz", image_size=16)
