"""Hostile or broken inputs stay bounded in memory and time, and wrong outputs are errors, not numbers.

The memory bombs run in a child process under an address-space cap (``RLIMIT_AS``): without the checks they
would need gigabytes and fail there with a ``MemoryError`` traceback instead of the one-line refusal.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from numpycnn import DataError, ModelFileError, TrainingError, datasets, io
from numpycnn.cli import main
from numpycnn.layers import Conv2D, Dense, GlobalAvgPool2D
from numpycnn.model.sequential import Sequential
from numpycnn.model.zoo import build_model

SRC = str(Path(__file__).resolve().parents[1] / "src")
CAP_MIB = 768


def capped(code: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """Run Python ``code`` in a child limited to :data:`CAP_MIB` of address space; return it and its time."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP_MIB << 20, CAP_MIB << 20))

    env = {**os.environ, "PYTHONPATH": SRC, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            preexec_fn=limit, timeout=timeout)
    return result, time.perf_counter() - start


def digit_png(folder: Path, index: int = 2) -> Path:
    images, _ = datasets.load("mnist", "test")
    path = folder / f"digit{index}.png"
    Image.fromarray(255 - images[index, 0]).resize((112, 112)).save(path)
    return path


# -- model files ---------------------------------------------------------------------------------------------
def bomb(padding: int, channels: int = 1) -> Sequential:
    """A 1 KB model whose first layer pads a 28x28 digit to (2 padding + 28)^2 pixels per channel."""
    layers = [Conv2D(1, channels, 1, padding=padding), GlobalAvgPool2D(), Dense(channels, 10)]
    return Sequential(layers, input_shape=(1, 28, 28)).initialize(0)


def test_the_1kb_memory_bomb_is_refused_under_a_memory_cap(tmp_path):
    path = tmp_path / "bomb.safetensors"
    bomb(65536).save(path)
    assert path.stat().st_size < 2048
    code = f"import sys; from numpycnn.cli import main; sys.exit(main(['predict', {str(path)!r}, " \
           f"{str(digit_png(tmp_path))!r}]))"
    result, seconds = capped(code)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "layer 0 (Conv2D) needs 65,564 MiB per image" in lines[0], result.stderr
    assert "MemoryError" not in result.stderr and seconds < 30


def test_activation_budget_names_the_layer_and_lets_real_models_through(tmp_path):
    bomb(3000, channels=8).save(tmp_path / "wide.safetensors")
    with pytest.raises(ModelFileError, match=r"layer 0 \(Conv2D\) needs 1,109 MiB per image .* 128 MiB allowed"):
        io.load_model(tmp_path / "wide.safetensors")
    for name in ("seed", "lenet5", "deep"):
        build_model(name, seed=0).save(tmp_path / f"{name}.safetensors")
        io.load_model(tmp_path / f"{name}.safetensors")
    cifar = build_model("deep", seed=0, input_shape=(3, 32, 32))
    assert max(size for _, _, size in io.activation_sizes(cifar, (3, 32, 32))) < 4 * 2**20


def seed_model() -> Sequential:
    model = build_model("seed", seed=0)
    model.class_names = [str(d) for d in range(10)]
    model.normalization = {"mean": [0.0], "std": [1.0]}
    return model


@pytest.mark.parametrize(("attribute", "value", "message", "on_load"), [
    ("class_names", ["a", "b", "c"], r"one name per output of the model \(10\). Got 3 names", None),
    ("class_names", [str(d) for d in range(12)], r"one name per output of the model \(10\). Got 12 names", None),
    ("class_names", "0123456789", "must be None or a list of strings", "must be null or a list of strings"),
    ("normalization", {"std": [0]}, r"must be None \(null in a file\) or", None),
    ("normalization", {"mean": [0.0], "std": [0.0]}, "std must be > 0", None),
    ("normalization", {"mean": [0.0, 0.0], "std": [1.0, 1.0]}, r"one mean and one std per input channel \(1\)",
     None),
    ("normalization", {"mean": [float("nan")], "std": [1.0]}, "finite mean", "NaN is not valid JSON"),
])
def test_class_names_and_normalisation_are_checked_at_save_and_load(tmp_path, attribute, value, message, on_load):
    model = seed_model()
    setattr(model, attribute, value)
    with pytest.raises(ValueError, match=message):
        model.save(tmp_path / "model.safetensors")
    assert not (tmp_path / "model.safetensors").exists()
    # A file written by another tool with the same mistake is refused when it is read.
    metadata = io._model_metadata(seed_model(), "model")
    metadata[attribute] = json.dumps(value)
    io.save_state_dict_file(tmp_path / "bad.safetensors", model.state_dict(), metadata)
    with pytest.raises(ModelFileError, match=on_load or message):
        io.load_model(tmp_path / "bad.safetensors")


def test_a_model_with_wrong_class_names_is_one_line_in_predict(tmp_path, capsys):
    model = seed_model()
    metadata = io._model_metadata(model, "model")
    metadata["class_names"] = json.dumps(["a", "b", "c"])
    io.save_state_dict_file(tmp_path / "three.safetensors", model.state_dict(), metadata)
    assert main(["predict", str(tmp_path / "three.safetensors"), str(digit_png(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "one name per output" in err and "IndexError" not in err


# -- NaN outputs and divergence -----------------------------------------------------------------------------
@pytest.fixture
def overflowing(tmp_path) -> Path:
    """A model with finite weights so large that its outputs overflow float32 to inf, and softmax to NaN."""
    model = seed_model()
    model.layers[-1].params["weight"][...] = 3e38
    path = tmp_path / "overflow.safetensors"
    model.save(path)
    return path


def test_nan_outputs_are_an_error_naming_the_model(overflowing, tmp_path, capsys):
    assert main(["evaluate", str(overflowing), "--limit", "50", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "nan%" not in captured.err.lower()
    assert len(captured.err.strip().splitlines()) == 1 and str(overflowing) in captured.err
    assert "NaN or infinite" in captured.err
    assert main(["predict", str(overflowing), str(digit_png(tmp_path)), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and str(overflowing) in captured.err and "NaN or infinite" in captured.err


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_library_predict_and_evaluate_refuse_nan_outputs(overflowing):
    model = io.load_model(overflowing)
    images, labels = datasets.load("mnist", "test")
    with pytest.raises(ValueError, match="outputs are NaN or infinite for 20 of 20 inputs"):
        model.predict(images[:20])
    with pytest.raises(ValueError, match="outputs are NaN or infinite"):
        model.evaluate(images[:20], labels[:20])


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_a_loss_growing_by_orders_of_magnitude_stops_training():
    from numpycnn.optim import SGD

    images, labels = datasets.load("mnist", "train")
    model = build_model("seed", seed=0)
    with pytest.raises(TrainingError, match=r"loss grew from 2.\d+ to [\d.e+]+ \(more than 10000 times\) at "
                                            r"epoch 1, batch \d+/10: training diverged"):
        model.fit(images[:640], labels[:640], epochs=1, optimizer=SGD(lr=1e9), verbose=0, rng=0)


def test_non_finite_weights_stop_training():
    from numpycnn.optim import SGD
    from numpycnn.training.loop import Trainer

    model = build_model("seed", seed=0)
    trainer = Trainer(model, SGD(lr=0.1), None, [], np.random.default_rng(0), 1, 0)
    trainer.check_weights()
    model.layers[0].params["bias"][3] = np.nan
    with pytest.raises(TrainingError, match="parameter '0.bias' holds NaN or infinite values after epoch 1"):
        trainer.check_weights()


def test_a_diverging_cli_run_stops_and_saves_no_model(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--limit", "300", "--epochs", "2", "--lr", "1e9", "--no-plots", "--quiet",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "training diverged" in err, err
    assert not (out / "model.safetensors").exists()


# -- pictures ------------------------------------------------------------------------------------------------
def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header announces ``width x height`` grey pixels, with a tiny (truncated) image stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("size", [(5000, 5000), (13000, 13000)])
def test_pictures_over_the_pixel_budget_are_refused_before_decoding(tmp_path, size):
    import warnings

    from numpycnn.datasets.images import load_image

    path = header_only_png(tmp_path / "huge.png", *size)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"too large|more than the 16.8 allowed"):
            load_image(path)
    assert time.perf_counter() - start < 1.0


def test_one_bad_picture_does_not_stop_the_others(tmp_path, capsys):
    model_path = tmp_path / "seed.safetensors"
    seed_model().save(model_path)
    nan_tiff = tmp_path / "nan.tiff"
    Image.fromarray(np.full((40, 40), np.nan, np.float32), mode="F").save(nan_tiff)
    huge = header_only_png(tmp_path / "huge.png", 13000, 13000)
    good = digit_png(tmp_path)
    assert main(["predict", str(model_path), str(nan_tiff), str(huge), str(good), "--json"]) == 2
    captured = capsys.readouterr()
    assert [json.loads(line)["path"] for line in captured.out.splitlines()] == [str(good)]
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and "nan.tiff" in errors[0] and "huge.png" in errors[1]
    assert "Traceback" not in captured.err and "Warning" not in captured.err


# -- data files ----------------------------------------------------------------------------------------------
def gzip_bomb(path: Path, claimed: tuple[int, ...], members: int) -> Path:
    """An IDX images file whose header claims ``claimed`` uint8 values; ``members`` gzip members of 1 MiB
    of zeros each follow (2 MB of file for 2 GiB of content)."""
    header = bytes([0, 0, 0x08, len(claimed)]) + struct.pack(f">{len(claimed)}I", *claimed)
    zeros = gzip.compress(b"\0" * 2**20, compresslevel=9, mtime=0)
    path.write_bytes(gzip.compress(header, mtime=0) + zeros * members)
    return path


def test_a_gzip_claiming_2_gib_is_rejected_quickly_under_a_memory_cap(tmp_path):
    claimed = (2_739_137, 28, 28)  # 2,147,483,408 bytes: just under read_idx's general 2 GiB limit
    path = gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", claimed, members=2048)
    assert path.stat().st_size < 3 * 2**20
    code = ("from numpycnn.datasets import locate\n"
            f"for path, problem in locate('mnist', {str(tmp_path)!r})['train-images-idx3-ubyte.gz']:\n"
            "    print(path, '|', problem)\n")
    result, seconds = capped(code)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(str(path)) and "more than the limit of 47040000 bytes" in first, result.stdout
    assert seconds < 20


# -- out of memory -------------------------------------------------------------------------------------------
def test_out_of_memory_is_one_line_saying_what_to_lower():
    code = ("import sys; from numpycnn.cli import main; "
            "sys.exit(main(['profile', '--model', 'seed', '--batch-size', '100000000', '--repeats', '1']))")
    result, _ = capped(code)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("numpycnn profile: error: out of memory") and "Traceback" not in result.stderr
    assert "lower --batch-size (now 100000000)" in lines[0]
