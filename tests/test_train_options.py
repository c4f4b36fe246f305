"""``numpycnn train --augment RECIPE`` and ``--label-smoothing EPS``: parsed, checked, recorded and used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from numpycnn.cli import main
from numpycnn.layers.losses import CrossEntropyLoss
from numpycnn.model.io import read_checkpoint_state
from numpycnn.training import loop as training
from numpycnn.training.augment import RandomHorizontalFlip, RandomRotation, RandomShift, parse_recipe

QUICK = ["--limit", "200", "--epochs", "1", "--no-plots", "--quiet"]


@pytest.mark.parametrize(("recipe", "expected"), [
    ("flip", {"shift": 0, "rotate": 0.0, "flip": True}),
    ("shift=2,flip", {"shift": 2, "rotate": 0.0, "flip": True}),
    (" rotate=12.5 , shift=1", {"shift": 1, "rotate": 12.5, "flip": False}),
])
def test_a_recipe_names_its_parts(recipe, expected):
    assert parse_recipe(recipe) == expected


@pytest.mark.parametrize(("recipe", "message"), [
    ("", "`recipe` must be comma-separated parts"),
    ("blur", "`recipe` must be comma-separated parts"),
    ("flip=1", "`recipe` must be"),
    ("shift", "`recipe` must be"),
    ("flip,flip", "`recipe` must be"),
    ("shift=-1", "`shift` must be an integer >= 0. Got -1."),
    ("shift=1.5", "`shift` must be a whole number of pixels. Got '1.5'."),
    ("rotate=200", "`rotate` must be a real number in [0.0, 180.0]. Got 200.0."),
    ("rotate=nan", "`rotate` must be a real number in [0.0, 180.0]. Got nan."),
])
def test_a_bad_recipe_says_what_a_recipe_is(recipe, message):
    with pytest.raises(ValueError, match="^augment: ") as caught:
        parse_recipe(recipe)
    assert message in str(caught.value)


def fitted_with(monkeypatch, out: Path, *options: str) -> dict:
    """Run ``train`` with ``options`` and return the keyword arguments it handed to ``fit``."""
    seen: dict = {}
    original = training.fit

    def spy(model, x, y, **kwargs):
        seen.update(kwargs)
        return original(model, x, y, **kwargs)

    monkeypatch.setattr(training, "fit", spy)
    assert main(["train", *QUICK, "--out", str(out), *options]) == 0
    return seen


def test_augment_alone_is_the_data_sets_preset_and_a_recipe_is_exactly_that(monkeypatch, tmp_path):
    preset = fitted_with(monkeypatch, tmp_path / "preset", "--augment")["augment"]
    assert [type(t) for t in preset.transforms] == [RandomRotation, RandomShift]  # MNIST: no flips
    recipe = fitted_with(monkeypatch, tmp_path / "recipe", "--augment", "shift=3,flip")["augment"]
    assert [type(t) for t in recipe.transforms] == [RandomShift, RandomHorizontalFlip]
    assert recipe.transforms[0].max_shift == 3
    assert fitted_with(monkeypatch, tmp_path / "none")["augment"] is None
    config = json.loads((tmp_path / "recipe" / "config.json").read_text())
    assert config["augment"] == "shift=3,flip"
    assert json.loads((tmp_path / "preset" / "config.json").read_text())["augment"] is True


def test_label_smoothing_reaches_the_loss_and_the_run_identity(monkeypatch, tmp_path):
    loss = fitted_with(monkeypatch, tmp_path / "smooth", "--label-smoothing", "0.1")["loss"]
    assert isinstance(loss, CrossEntropyLoss) and loss.label_smoothing == 0.1
    plain = fitted_with(monkeypatch, tmp_path / "plain")["loss"]
    assert plain.label_smoothing == 0.0
    smooth_history = json.loads((tmp_path / "smooth" / "history.json").read_text())["history"]
    plain_history = json.loads((tmp_path / "plain" / "history.json").read_text())["history"]
    assert smooth_history["loss"][0] > plain_history["loss"][0]  # smoothed targets cannot be fitted to loss 0
    assert read_checkpoint_state(tmp_path / "smooth" / "checkpoint.safetensors")["run"]["label_smoothing"] == 0.1
    assert "label_smoothing" not in read_checkpoint_state(tmp_path / "plain" / "checkpoint.safetensors")["run"]


@pytest.mark.parametrize(("options", "message"), [
    (["--augment", "blur"], "`--augment` must be true, false or a recipe of comma-separated parts"),
    (["--augment", "shift=x"], "`shift` must be a whole number of pixels. Got 'x'."),
    (["--label-smoothing", "1"], "`--label-smoothing` must be a fraction in [0, 1). Got 1.0."),
    (["--label-smoothing", "-0.1"], "`--label-smoothing` must be a fraction in [0, 1)"),
    (["--label-smoothing", "nan"], "`--label-smoothing` must be a fraction in [0, 1)"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, capsys, options, message):
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--out", str(out), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_a_run_from_before_the_new_settings_still_resumes(tmp_path):
    """A config.json without ``label_smoothing`` (as numpycnn 0.1 wrote it) means no smoothing."""
    out = tmp_path / "old"
    assert main(["train", *QUICK, "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    del config["label_smoothing"]
    (out / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet", "--no-plots"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_a_hand_edited_recipe_is_refused_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--out", str(out), "--augment", "flip"]) == 0
    config = json.loads((out / "config.json").read_text())
    config["augment"] = "flip,zoom"
    (out / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "`augment` must be" in err and "'flip,zoom'" in err and "edited by hand" in err
    assert np.isfinite(json.loads((out / "metrics.json").read_text())["test_loss"])  # the finished run is intact
