"""Your own pictures (issue 27): a folder of class folders as a data set, the decoding cache, the held-out split,
the preparation a model keeps, the built-in architectures on any shape, and every hostile picture."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from numpycnn import datasets
from numpycnn.cli import main
from numpycnn.datasets import folder, folder_cache
from numpycnn.datasets.images import load_picture
from numpycnn.datasets.preparation import Preparation, parse_size, prepare_picture
from numpycnn.errors import DataError, ModelFileError
from numpycnn.model.io import load_model
from numpycnn.model.zoo import MAX_DENSE_WEIGHTS, build_model


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test decodes into its own cache folder."""
    monkeypatch.setenv("NUMPYCNN_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def picture(path, size=(20, 16), colour=True, value=None, fmt=None):
    """A random (or constant) RGB or grey picture saved at ``path``; ``size`` is (W, H)."""
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    shape = (size[1], size[0], 3) if colour else (size[1], size[0])
    pixels = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 256, shape, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_folder(root, classes=("cat", "dog"), n=5, colour=True, sizes=((20, 16),)):
    for c in classes:
        for i in range(n):
            picture(root / c / f"{i}.png", size=sizes[i % len(sizes)], colour=colour)
    return root


# -- shapes, channels, split ---------------------------------------------------------------------------------
def test_a_folder_of_colour_pictures_keeps_its_size_and_three_channels(tmp_path):
    data = datasets.load_folder(make_folder(tmp_path / "pets"))
    assert data.class_names == ["cat", "dog"]
    assert data.x_train.dtype == np.uint8 and data.x_train.shape[1:] == (3, 16, 20)
    assert len(data.y_train) + len(data.y_test) == 10
    assert data.preparation == Preparation(3, (16, 20), "stretch", "folder", 0.2, 0)


@pytest.mark.parametrize("headers", [True, False], ids=["sizes-read", "sizes-from-files"])
def test_decoding_on_threads_or_in_one_thread_gives_the_same_pictures(tmp_path, monkeypatch, headers):
    """The rule THREADED_PIXELS (THREADED_BYTES when the headers were not read) only chooses the speed."""
    root = make_folder(tmp_path / "pets", n=12, sizes=((20, 16), (33, 25), (9, 40)))
    options = {} if headers else {"image_size": 24, "channels": 3}
    results = []
    for pixels, size in ((0, 0), (10**9, 10**12)):  # every picture threaded, then none
        monkeypatch.setattr(folder, "THREADED_PIXELS", pixels)
        monkeypatch.setattr(folder, "THREADED_BYTES", size)
        results.append(datasets.load_folder(root, cache=False, **options))
    threaded, serial = results
    np.testing.assert_array_equal(threaded.x_train, serial.x_train)
    np.testing.assert_array_equal(threaded.x_test, serial.x_test)
    assert folder._small([]) is True


def test_grey_pictures_default_to_one_channel_and_channels_can_be_forced(tmp_path):
    root = make_folder(tmp_path / "grey", colour=False)
    assert datasets.load_folder(root).x_train.shape[1] == 1
    assert datasets.load_folder(root, channels=3).x_train.shape[1] == 3
    colour = make_folder(tmp_path / "colour")
    grey = datasets.load_folder(colour, channels=1)
    assert grey.x_train.shape[1] == 1


def test_mixed_sizes_are_resized_to_32_or_to_image_size(tmp_path):
    root = make_folder(tmp_path / "mixed", n=6, sizes=((20, 16), (50, 40), (7, 90)))
    assert datasets.load_folder(root).x_train.shape[2:] == (32, 32)
    assert datasets.load_folder(root, image_size="24,40").x_train.shape[2:] == (24, 40)
    assert datasets.load_folder(root, image_size=12).x_train.shape[2:] == (12, 12)


def test_parse_size():
    assert parse_size("32") == (32, 32) and parse_size("48,64") == (48, 64) and parse_size(7) == (7, 7)
    for bad in ("0", "a,b", "1,2,3", 5000, -1):
        with pytest.raises(ValueError, match="image_size"):
            parse_size(bad)


def test_the_held_out_split_is_per_class_and_follows_the_seed(tmp_path):
    root = make_folder(tmp_path / "split", classes=("a", "b", "c"), n=10)
    first, again, other = (datasets.load_folder(root, seed=s) for s in (0, 0, 1))
    assert np.bincount(first.y_test).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)
    assert any("held out 20% of each class" in note for note in first.notes)


def test_train_and_test_folders_are_used_as_they_are(tmp_path):
    make_folder(tmp_path / "tt" / "train", n=4)
    make_folder(tmp_path / "tt" / "test", n=2)
    data = datasets.load_folder(tmp_path / "tt")
    assert (len(data.y_train), len(data.y_test)) == (8, 4)
    assert data.preparation.test_fraction == 0 and not any("held out" in n for n in data.notes)


# -- the cache -----------------------------------------------------------------------------------------------
def test_a_second_run_reads_the_cache_and_a_changed_file_is_decoded_again(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "cached")
    first = datasets.load_folder(root)
    calls = []
    real_decode = folder.decode
    monkeypatch.setattr(folder, "decode", lambda *a, **k: calls.append(1) or real_decode(*a, **k))
    again = datasets.load_folder(root)
    assert calls == []
    np.testing.assert_array_equal(first.x_train, again.x_train)
    changed = root / "cat" / "0.png"
    picture(changed, value=0)
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
    third = datasets.load_folder(root)
    assert calls == [1]
    assert third.x_train.min() == 0 and len(list((tmp_path / "cache" / "pictures").iterdir())) == 1


def test_a_damaged_cache_entry_is_ignored(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "damaged")
    first = datasets.load_folder(root)
    (entry,) = (tmp_path / "cache" / "pictures").iterdir()
    (entry / "images.npy").write_bytes(b"not an array")
    again = datasets.load_folder(root)
    np.testing.assert_array_equal(first.x_train, again.x_train)


def test_cache_key_follows_names_sizes_times_and_options(tmp_path):
    files = [("a/1.png", 10, 5)]
    key = folder_cache.entry_key(tmp_path, files, {"size": []})
    assert key != folder_cache.entry_key(tmp_path, [("a/1.png", 11, 5)], {"size": []})
    assert key != folder_cache.entry_key(tmp_path, [("a/1.png", 10, 6)], {"size": []})
    assert key != folder_cache.entry_key(tmp_path, files, {"size": [32, 32]})


# -- bad input: each used correctly, or skipped with its name and reason -------------------------------------
def png_claiming(width, height):
    """A tiny PNG file whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.fixture
def hostile(tmp_path):
    """One folder with every kind of troublesome file next to good pictures."""
    root = make_folder(tmp_path / "hostile", classes=("good", "plain"), n=3)
    bad = root / "good"
    full = (bad / "truncated.png")
    picture(full, size=(64, 64))
    full.write_bytes(full.read_bytes()[:200])
    (bad / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    (bad / "notes.txt").write_text("not a picture")
    (bad / "bomb.png").write_bytes(png_claiming(20000, 20000))
    (bad / "evil.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(pwned) print\n")
    frames = [Image.new("RGB", (20, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(bad / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    Image.fromarray(np.full((16, 20), 65535, np.uint16)).save(bad / "deep16.png")
    Image.new("CMYK", (20, 16), (0, 255, 255, 0)).save(bad / "cmyk.jpg")
    pal = Image.new("P", (20, 16), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(bad / "palette.png", transparency=0)
    picture(bad / "日本語 ñ é 🐍.png")
    (bad / "nested").mkdir()
    picture(bad / "nested" / "inner.png")
    os.symlink("loop", bad / "loop")
    os.symlink("..", bad / "parent")
    (root / "empty").mkdir()
    (root / "stray.png").write_bytes(b"x")
    return root


@pytest.mark.parametrize("options", [{}, {"image_size": 16, "channels": 3}], ids=["defaults", "given"])
def test_every_hostile_file_is_used_or_skipped_with_its_name_and_reason(hostile, options):
    data = datasets.load_folder(hostile, **options)
    skipped = dict(data.skipped)
    assert set(skipped) == {"good/truncated.png", "good/corrupt.jpg", "good/notes.txt", "good/bomb.png",
                            "good/evil.eps", "good/nested/", "good/loop", "good/parent/", "empty/",
                            "stray.png"}
    assert "too large" in skipped["good/bomb.png"] and "not a picture" in skipped["good/evil.eps"]
    assert "not a picture" in skipped["good/notes.txt"] and "decoded" in skipped["good/truncated.png"]
    assert "symbolic link" in skipped["good/loop"] and "empty class" in skipped["empty/"]
    assert "not entered" in skipped["good/nested/"] and "not inside a class folder" in skipped["stray.png"]
    assert data.class_names == ["good", "plain"]
    assert len(data.y_train) + len(data.y_test) == 3 + 3 + 5  # 3 good, 3 plain, 5 odd pictures used
    (line,) = [n for n in data.notes if n.startswith("Skipped")]
    assert "\n" not in line and all(name in line for name in skipped)


def test_odd_modes_are_converted_correctly(tmp_path):
    prep = Preparation(3, (4, 4))
    deep = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    assert prepare_picture(deep, prep).min() == 255
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    pal.info["transparency"] = 0
    assert prepare_picture(pal, prep).min() == 255  # transparent onto white
    cmyk = prepare_picture(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), prep)  # red ink
    assert cmyk[0].min() > 200 and cmyk[1].max() < 60
    gif_path = tmp_path / "a.gif"
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(gif_path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    first = load_picture(gif_path, prep)
    assert first[0].mean() > 200 and first[2].mean() < 60  # the first (red) frame


@pytest.mark.parametrize("layout", ["no pictures", "one class", "only bad files"])
def test_a_folder_without_two_usable_classes_is_a_data_error(tmp_path, layout, capsys):
    root = tmp_path / "bad"
    if layout == "no pictures":
        (root / "a").mkdir(parents=True)
        (root / "notes.txt").parent.mkdir(exist_ok=True)
        (root / "notes.txt").write_text("x")
    elif layout == "one class":
        make_folder(root, classes=("only",))
    else:
        make_folder(root, classes=("a",))
        (root / "b").mkdir(parents=True)
        (root / "b" / "x.txt").write_text("x")
        (root / "b" / "cut.png").write_bytes(picture(tmp_path / "whole.png").read_bytes()[:60])
    for options in ({}, {"image_size": 8, "channels": 1}):
        with pytest.raises(DataError, match="no pictures|one class") as info:
            datasets.load_folder(root, **options)
        if layout == "only bad files":
            assert "b/ (no usable pictures" in str(info.value) and "b/x.txt (not a picture" in str(info.value)
    assert main(["train", "--dataset", str(root), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "numpycnn train: error:" in err


def test_a_set_too_large_for_memory_asks_for_a_smaller_size(tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "MAX_DECODED_BYTES", 1000)
    with pytest.raises(DataError, match="smaller --image-size"):
        datasets.load_folder(make_folder(tmp_path / "big"), image_size=64)


# -- the preparation record in model files -------------------------------------------------------------------
def test_the_preparation_survives_the_model_file_and_old_files_keep_today_s_behaviour(tmp_path):
    model = build_model("seed", seed=0, input_shape=(3, 12, 10), num_classes=2)
    model.class_names = ["cat", "dog"]
    model.preparation = Preparation(3, (12, 10), "crop", "folder", 0.2, 7)
    model.save(tmp_path / "own.safetensors")
    assert load_model(tmp_path / "own.safetensors").preparation == model.preparation
    model.preparation = None
    model.save(tmp_path / "old.safetensors")
    assert load_model(tmp_path / "old.safetensors").preparation is None
    from numpycnn.datasets.images import style_for

    assert style_for((3, 32, 32), None, None) == "cifar10"


def test_a_bad_preparation_record_is_a_model_file_error(tmp_path):
    from numpycnn.files.model_file import _read, save_state_dict_file

    model = build_model("seed", seed=0, input_shape=(1, 8, 8), num_classes=2)
    model.preparation = Preparation(1, (8, 8))
    model.save(tmp_path / "m.safetensors")
    tensors, metadata = _read(tmp_path / "m.safetensors")
    for record in ('{"version": 1}', '[1]', metadata["preparation"].replace('"channels": 1', '"channels": 3')):
        save_state_dict_file(tmp_path / "bad.safetensors", tensors, {**metadata, "preparation": record})
        with pytest.raises(ModelFileError, match="preparation"):
            load_model(tmp_path / "bad.safetensors")
    model.preparation = Preparation(3, (8, 8))
    with pytest.raises(ValueError, match="preparation"):
        model.save(tmp_path / "mismatch.safetensors")


# -- architectures for any shape -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["seed", "lenet5", "deep", "deep-plain", "deep-dropout"])
@pytest.mark.parametrize("shape,classes", [((3, 40, 24), 5), ((1, 16, 16), 2), ((3, 64, 64), 37)])
def test_every_architecture_builds_for_any_picture_shape_and_class_count(name, shape, classes):
    model = build_model(name, seed=0, input_shape=shape, num_classes=classes)
    assert model.predict(np.zeros((2, *shape), np.float32)).shape == (2, classes)


@pytest.mark.parametrize("name", ["lenet5", "deep"])
def test_pictures_too_large_for_an_architecture_say_how_large_and_what_size_fits(name):
    with pytest.raises(ValueError, match=r"weights .*--image-size (\d+)") as info:
        build_model(name, seed=0, input_shape=(3, 224, 224), num_classes=10)
    side = int(info.value.args[0].rsplit(" ", 1)[1].rstrip("."))
    build_model(name, seed=0, input_shape=(3, side, side), num_classes=10)  # the suggestion fits
    assert MAX_DENSE_WEIGHTS == 4_000_000


def test_pictures_too_small_for_an_architecture_say_so():
    with pytest.raises(ValueError, match="too small.*--image-size"):
        build_model("lenet5", seed=0, input_shape=(3, 6, 6), num_classes=2)


# -- the command line ----------------------------------------------------------------------------------------
def test_train_evaluate_and_predict_on_a_folder_from_the_command_line(tmp_path, capsys):
    import json

    root = make_folder(tmp_path / "pets", classes=("cat", "dog", "fox"), n=10, sizes=((20, 16), (33, 41)))
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(root), "--image-size", "12,10", "--channels", "1", "--epochs", "1",
                 "--batch-size", "8", "--no-plots", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "held out 20% of each class (6 pictures, chosen by --seed 0)" in out
    model = load_model(run / "model.safetensors")
    assert model.class_names == ["cat", "dog", "fox"] and model.input_shape == (1, 12, 10)
    assert model.preparation == Preparation(1, (12, 10), "stretch", "folder", 0.2, 0)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["image_size"], metrics["channels"], metrics["test_images"]) == ("12,10", 1, 6)
    assert main(["evaluate", str(run / "model.safetensors"), "--dataset", str(root), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["images"] == 6 and scores["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert main(["predict", str(run / "model.safetensors"), str(root / "fox" / "3.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("cat", "dog", "fox")
    assert main(["evaluate", str(run / "model.safetensors")]) == 2
    assert "give them with --dataset PATH" in capsys.readouterr().err


def test_image_options_need_a_path_and_valid_values(tmp_path, capsys):
    root = make_folder(tmp_path / "pets")
    assert main(["train", "--dataset", "mnist", "--image-size", "32", "--out", str(tmp_path / "a")]) == 2
    assert "apply to your own pictures" in capsys.readouterr().err
    assert main(["train", "--dataset", str(root), "--image-size", "0", "--out", str(tmp_path / "b")]) == 2
    assert "`--image-size` must be N or H,W" in capsys.readouterr().err
    assert main(["train", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["train", "--dataset", "mnsit", "--out", str(tmp_path / "d")]) == 2
    assert "or the path of a folder of pictures" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_undecodable_file_and_folder_names_are_used_and_printed(tmp_path, capsys):
    root = make_folder(tmp_path / "names", classes=("a",), n=3)
    odd = os.fsencode(str(root)) + b"/\xffb"
    os.mkdir(odd)
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 80, 0, 0)).save(os.fsdecode(odd + f"/{i}\xe9.png".encode("latin-1")))
    data = datasets.load_folder(root)
    assert data.class_names == ["a", "\ufffdb"] and len(data.y_train) + len(data.y_test) == 6
    assert main(["data", "info", str(root)]) == 0
    assert "\ufffdb" in capsys.readouterr().out
