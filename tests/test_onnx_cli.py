"""``numpycnn export`` and ``numpycnn import`` end to end through ``main(argv)``."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_helpers import run_onnx  # noqa: E402

from numpycnn import datasets, models  # noqa: E402
from numpycnn.cli import main  # noqa: E402
from numpycnn.model.io import load_model  # noqa: E402


@pytest.fixture()
def model_file(tmp_path):
    model = models.lenet5(seed=0)
    model.class_names = [str(d) for d in range(10)]
    model.normalization = {"mean": [0.1307], "std": [0.3081]}
    path = tmp_path / "lenet5.safetensors"
    model.save(path)
    return path


def _one_line_error(capsys, code: int, *fragments: str) -> None:
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_export_then_import_round_trips_through_the_command_line(model_file, tmp_path, capsys):
    out = tmp_path / "lenet5.onnx"
    assert main(["export", str(model_file), str(out)]) == 0
    assert "opset 17, IR version 8" in capsys.readouterr().out
    back = tmp_path / "back.safetensors"
    assert main(["import", str(out), str(back)]) == 0
    assert "61,706 parameters" in capsys.readouterr().out
    original, again = load_model(model_file), load_model(back)
    assert again.get_config() == original.get_config() and again.class_names == original.class_names
    for name, value in original.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], value)


def test_export_with_baked_preprocessing_classifies_raw_pixels_like_predict(model_file, tmp_path):
    out = tmp_path / "pixels.onnx"
    assert main(["export", str(model_file), str(out), "--bake-preprocessing"]) == 0
    images = datasets.load("mnist", "test")[0][:7]
    probabilities = load_model(model_file).predict(images)
    logits = run_onnx(out.read_bytes(), images, "pixels")
    assert (logits.argmax(1) == probabilities.argmax(1)).all()


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_export_of_a_bad_model_file_is_one_line_and_writes_nothing(model_file, tmp_path, capsys, damage):
    if damage == "missing":
        model_file.unlink()
    elif damage == "truncated":
        model_file.write_bytes(model_file.read_bytes()[:500])
    else:
        model_file.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    out = tmp_path / "out.onnx"
    _one_line_error(capsys, main(["export", str(model_file), str(out)]), "numpycnn export: error:")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_import_of_a_bad_onnx_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    _one_line_error(capsys, main(["import", str(tmp_path / "nope.onnx"), str(out)]), "does not exist")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x12\x34 this is not protobuf")
    _one_line_error(capsys, main(["import", str(bad), str(out)]), "numpycnn import: error:", "bad.onnx")
    assert not out.exists()


def test_without_the_onnx_package_the_commands_name_the_extra(model_file, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    code = main(["export", str(model_file), str(tmp_path / "m.onnx")])
    _one_line_error(capsys, code, 'pip install "numpycnn[onnx]"')


def test_the_onnx_page_runs_an_exported_model_in_onnxruntime(tmp_path, monkeypatch, capsys):
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "onnx.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL) if "InferenceSession" in b)
    model = models.seed_cnn(seed=0)
    model.save(tmp_path / "model.safetensors")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "model.safetensors", "seed-pixels.onnx", "--bake-preprocessing"]) == 0
    capsys.readouterr()
    namespace: dict = {}
    exec(compile(block, "docs/onnx.md", "exec"), namespace)
    images = datasets.load("mnist", "test")[0][:8]
    np.testing.assert_allclose(namespace["logits"], model.forward(images * np.float32(1 / 255), training=False),
                               rtol=1e-5, atol=1e-5)
    assert capsys.readouterr().out.count("[") == 2


def _hand_built():
    from numpycnn.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
    from numpycnn.model.sequential import Sequential

    return Sequential([Conv2D(1, 4, 3, dilation=2, groups=1), ReLU(), MaxPool2D(2), Flatten(), Dense(100, 10)])


def test_a_model_built_without_input_shape_records_it_when_run_and_exports(tmp_path, capsys):
    model = _hand_built().initialize(0)
    assert model.input_shape is None
    x = np.random.default_rng(0).normal(size=(3, 1, 14, 14)).astype(np.float32)
    expected = model.forward(x)
    assert model.input_shape == (1, 14, 14)
    model.save(tmp_path / "m.safetensors")
    assert load_model(tmp_path / "m.safetensors").input_shape == (1, 14, 14)
    assert main(["export", str(tmp_path / "m.safetensors"), str(tmp_path / "m.onnx")]) == 0
    assert "('N', 1, 14, 14)" in capsys.readouterr().out
    proto = onnx.load(str(tmp_path / "m.onnx"))
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    assert {a.name: list(a.ints) for a in conv.attribute if a.name == "dilations"} == {"dilations": [2, 2]}
    np.testing.assert_allclose(run_onnx(proto, x), expected, rtol=1e-5, atol=1e-5)


def test_input_shape_option_exports_a_file_that_records_none(tmp_path, capsys):
    model = _hand_built().initialize(0)
    model.save(tmp_path / "m.safetensors")  # never run: no input shape in the file
    assert load_model(tmp_path / "m.safetensors").input_shape is None
    _one_line_error(capsys, main(["export", str(tmp_path / "m.safetensors"), str(tmp_path / "a.onnx")]),
                    "records no input shape. Give it with --input-shape C,H,W")
    assert not (tmp_path / "a.onnx").exists()
    assert main(["export", str(tmp_path / "m.safetensors"), str(tmp_path / "b.onnx"), "--input-shape",
                 "1,14,14"]) == 0
    x = np.random.default_rng(1).normal(size=(2, 1, 14, 14)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(onnx.load(str(tmp_path / "b.onnx")), x), model.forward(x),
                               rtol=1e-5, atol=1e-5)
    capsys.readouterr()
    _one_line_error(capsys, main(["export", str(tmp_path / "m.safetensors"), str(tmp_path / "c.onnx"),
                                  "--input-shape", "1,13,13"]), "cannot take input of shape")
    assert main(["export", str(tmp_path / "m.safetensors"), str(tmp_path / "d.onnx"), "--input-shape",
                 "1,x,14"]) == 2  # a usage error
    assert "must be C,H,W" in capsys.readouterr().err


def test_input_shape_option_must_agree_with_the_recorded_one(model_file, tmp_path, capsys):
    _one_line_error(capsys, main(["export", str(model_file), str(tmp_path / "m.onnx"), "--input-shape", "3,32,32"]),
                    "disagrees with the input shape (1, 28, 28) recorded in")


def test_import_reads_a_model_zoo_style_opset_8_graph(tmp_path, capsys):
    from onnx_helpers import mnist8_graph

    proto = mnist8_graph()
    onnx.save(proto, str(tmp_path / "mnist-8.onnx"))
    assert main(["import", str(tmp_path / "mnist-8.onnx"), str(tmp_path / "mnist.safetensors")]) == 0
    assert "8 layers" in capsys.readouterr().out
    model = load_model(tmp_path / "mnist.safetensors")
    x = np.random.default_rng(2).normal(size=(1, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), run_onnx(proto, x, "x"), rtol=1e-4, atol=1e-5)
