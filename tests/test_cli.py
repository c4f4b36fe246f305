"""The ``numpycnn`` program end to end through ``main(argv)``, on small subsets of MNIST."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from numpycnn import datasets
from numpycnn.cli import main
from numpycnn.model.io import load_model

LIMIT = "600"
PLOTS = ("curves.png", "gradients.png", "confusion_matrix.png", "filters.png", "feature_maps.png", "misclassified.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One short training run: the default experiment on 600 images for one epoch."""
    out = tmp_path_factory.mktemp("run") / "seed"
    code = main(["train", "--limit", LIMIT, "--epochs", "1", "--out", str(out), "--quiet"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Five MNIST test digits saved as black-on-white PNGs, with their labels."""
    folder = tmp_path_factory.mktemp("drawn")
    images, labels = datasets.load("mnist", "test")
    paths = []
    for i in range(5):
        path = folder / f"digit{i}.png"
        Image.fromarray(255 - images[100 + i, 0]).resize((140, 140), Image.Resampling.BICUBIC).save(path)
        paths.append(str(path))
    return paths, labels[100:105]


def _one_line_error(capsys, code: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_train_writes_every_file(run):
    files = ("model.safetensors", "checkpoint.safetensors", "history.json", "metrics.json", "config.json")
    for name in files:
        assert (run / name).is_file(), name
    for name in PLOTS:
        with Image.open(run / name) as image:
            assert image.format == "PNG" and image.width > 100
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    history = json.loads((run / "history.json").read_text())
    assert len(history["history"]["loss"]) == 1 and len(history["history"]["accuracy"]) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "train_seconds", "epochs", "images_per_second", "model",
                "dataset", "optimizer", "lr", "batch_size", "seed", "numpy_version", "machine"):
        assert key in metrics, key
    assert metrics["epochs"] == 1 and metrics["train_images"] == 600 and metrics["test_images"] == 600
    settings = [metrics[k] for k in ("model", "dataset", "optimizer", "lr", "batch_size", "seed")]
    assert settings == ["seed", "mnist", "sgd", 0.1, 64, 0]
    assert 0.3 < metrics["test_accuracy"] <= 1.0  # one epoch on 600 images: well above chance (0.1)
    assert metrics["images_per_second"] > 0 and metrics["train_seconds"] > 0


def test_the_model_file_holds_class_names_normalisation_and_the_reported_accuracy(run):
    model = load_model(run / "model.safetensors")
    assert model.class_names == [str(d) for d in range(10)]
    assert model.normalization == {"mean": [0.0], "std": [1.0]}  # the original experiment: x / 255
    assert model.num_parameters() == 13_610
    images, labels = datasets.load("mnist", "test")
    scores = model.evaluate(images[:600], labels[:600])
    metrics = json.loads((run / "metrics.json").read_text())
    assert scores["accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_evaluate(run, capsys):
    assert main(["evaluate", str(run / "model.safetensors"), "--limit", LIMIT, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((run / "metrics.json").read_text())
    assert result["dataset"] == "mnist" and result["images"] == 600
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert main(["evaluate", str(run / "model.safetensors"), "--limit", "100"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_predict_json_gives_one_object_per_image(run, drawn, capsys):
    from numpycnn.datasets.images import load_image

    paths, _ = drawn
    assert main(["predict", str(run / "model.safetensors"), *paths, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(paths)
    model = load_model(run / "model.safetensors")
    for path, line in zip(paths, lines, strict=True):
        record = json.loads(line)
        assert set(record) == {"path", "label", "probabilities"} and record["path"] == path
        probabilities = np.array(record["probabilities"])
        assert probabilities.shape == (10,) and probabilities.sum() == pytest.approx(1.0, abs=1e-4)
        expected = model.predict(load_image(path)[None])[0]
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        assert record["label"] == str(int(np.argmax(expected)))


def test_predict_text_shows_the_top_classes(run, drawn, capsys):
    paths, _ = drawn
    assert main(["predict", str(run / "model.safetensors"), paths[0], "--top", "2"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(paths[0]) and out.count("%") == 2


def test_predict_reports_a_bad_image_and_goes_on(run, drawn, tmp_path, capsys):
    paths, _ = drawn
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    code = main(["predict", str(run / "model.safetensors"), str(bad), paths[0], "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert len(captured.out.strip().splitlines()) == 1  # the good image is still classified
    assert "notes.png" in captured.err and "Traceback" not in captured.err


def test_summary(run, capsys):
    assert main(["summary", str(run / "model.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "Conv2D" in out and "Dense" in out and "13,610" in out and "Classes: 0, 1" in out


def test_profile_a_named_model_and_a_file(run, capsys):
    assert main(["profile", "--model", "seed", "--batch-size", "8", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "Conv2D" in out and "Backward ms" in out and "Total" in out
    model_path = str(run / "model.safetensors")
    assert main(["profile", model_path, "--batch-size", "4", "--repeats", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["step"] for r in rows] == ["0", "1-2", "3", "4"]  # what fit runs: ReLU and pooling fused
    assert rows[1]["op"] == "relu_maxpool2d" and rows[1]["output_shape"] == [4, 8, 13, 13]
    assert rows[0]["output_shape"] == [4, 8, 26, 26]
    assert all(r["forward_ms"] > 0 and r["backward_ms"] >= 0 for r in rows)


def test_profile_model_rows():
    from numpycnn.cli.profiling import format_profile, profile_model
    from numpycnn.model.zoo import build_model

    model = build_model("lenet5", seed=0)
    before = [p.copy() for p in model.parameters()]
    rows = profile_model(model, (1, 28, 28), batch_size=4, repeats=2)
    assert [r["step"] for r in rows] == [step.span for step in model.plan().steps]
    assert rows[-1]["output_shape"] == [4, 10]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert "images/s" in format_profile(rows, 4)
    with pytest.raises(ValueError):
        profile_model(model, (3, 32, 32), batch_size=2, repeats=1)


def test_missing_model_file_is_one_line(tmp_path, capsys):
    code = main(["summary", str(tmp_path / "nothing.safetensors")])
    _one_line_error(capsys, code, "numpycnn summary: error:", "does not exist")


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"\xff" * 64, b"not a model file at all"])
def test_corrupt_model_file_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    for command in (["summary", str(path)], ["evaluate", str(path)], ["predict", str(path), str(path)]):
        code = main(command)
        assert code == 2
        _one_line_error(capsys, code, "error:")


def test_truncated_model_file_is_one_line(run, tmp_path, capsys):
    data = (run / "model.safetensors").read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    _one_line_error(capsys, main(["evaluate", str(path)]), "error:")


def test_interrupt_then_resume_matches_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    from numpycnn.training import loop as training

    common = ["train", "--limit", "300", "--epochs", "2", "--no-plots", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0

    calls = {"n": 0}
    original = training.Trainer.train_step
    steps_per_epoch = 5  # 300 images in batches of 64

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 2:  # Ctrl-C in the middle of epoch 2
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "train_step", interrupted)
    out = tmp_path / "cut"
    assert main([*common, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and str(out) in err and "Traceback" not in err
    assert (out / "checkpoint.safetensors").is_file() and not (out / "model.safetensors").exists()
    resumed_steps = {"n": 0}

    def counted(self, *args, **kwargs):
        resumed_steps["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "train_step", counted)
    assert main(["train", "--out", str(out), "--resume", "--quiet", "--no-plots"]) == 0
    assert resumed_steps["n"] == steps_per_epoch  # only the unfinished epoch 2 runs again
    whole = load_model(tmp_path / "whole" / "model.safetensors").state_dict()
    resumed = load_model(out / "model.safetensors").state_dict()
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_resume_refuses_a_changed_option_or_a_missing_run(tmp_path, run, capsys):
    code = main(["train", "--out", str(run), "--resume", "--lr", "0.01", "--quiet"])
    _one_line_error(capsys, code, "--lr", "differs")
    code = main(["train", "--out", str(tmp_path / "never"), "--resume", "--quiet"])
    _one_line_error(capsys, code, "no interrupted run")


def test_a_diverging_run_stops_with_a_clear_message(tmp_path, capsys):
    out = tmp_path / "nan"
    code = main(["train", "--limit", "300", "--epochs", "1", "--lr", "1e30", "--no-plots", "--quiet",
                 "--out", str(out)])
    line = _one_line_error(capsys, code, "numpycnn train: error:")
    # Either the loss turns NaN (TrainingError, exit 1) or the weights do before it and the checkpoint
    # refuses to save them (exit 2); both say so, and no model file is written.
    assert ("loss became" in line and code == 1) or ("diverged" in line and code == 2), line
    assert not (out / "model.safetensors").exists()


def test_usage_errors_and_version(capsys):
    assert main(["--version"]) == 0
    assert main(["train", "--optimizer", "lbfgs"]) == 2
    assert main([]) == 2
    capsys.readouterr()


def test_data_subcommand_is_wired(capsys):
    assert main(["data", "verify", "mnist"]) == 0
    assert "mnist" in capsys.readouterr().out.lower()


def test_the_model_choices_are_the_library_registry():
    from numpycnn import cli, models

    assert set(cli.MODELS) == set(models.MODELS)


def test_patience_needs_a_validation_split(tmp_path, capsys):
    code = main(["train", "--limit", "200", "--epochs", "1", "--patience", "2", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    assert "--patience needs a validation set" in capsys.readouterr().err


def test_patience_stops_early_on_the_validation_loss(tmp_path, capsys):
    # lr 5 is far too high: the validation loss soon stops improving, and patience 1 ends the run early.
    code = main(["train", "--limit", "300", "--epochs", "6", "--val-split", "0.2", "--patience", "1",
                 "--lr", "5", "--out", str(tmp_path), "--quiet", "--no-plots"])
    val_loss = json.loads((tmp_path / "history.json").read_text())["history"]["val_loss"]
    assert code == 0
    assert len(val_loss) < 6
    assert val_loss[-1] >= min(val_loss[:-1])  # it stopped because the last epoch did not improve
