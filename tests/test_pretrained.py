"""The models shipped in the package: their files are the ones recorded (SHA-256), they load, and docs/web.md
states how each was trained."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from numpycnn import ModelFileError, datasets, pretrained

WEB_PAGE = Path(__file__).resolve().parents[1] / "docs" / "web.md"


@pytest.mark.parametrize("name", sorted(pretrained.SHIPPED))
def test_the_shipped_file_is_the_recorded_one_and_loads(name):
    record = pretrained.SHIPPED[name]
    assert pretrained.sha256(pretrained.path(name)) == record.sha256
    model = pretrained.load(name)
    assert model.input_shape == (1, 28, 28) and model.class_names == [str(k) for k in range(10)]


@pytest.mark.parametrize("name", sorted(pretrained.SHIPPED))
def test_the_shipped_model_scores_what_is_recorded_on_part_of_the_test_set(name):
    images, labels = datasets.load("mnist", "test")
    accuracy = pretrained.load(name).evaluate(images[:2000], labels[:2000])["accuracy"]
    assert accuracy > pretrained.SHIPPED[name].test_accuracy - 0.015  # the first 2,000 test digits are harder


def test_the_docs_record_each_command_accuracy_and_sha256():
    text = WEB_PAGE.read_text()
    for record in pretrained.SHIPPED.values():
        row = next((line for line in text.splitlines() if record.filename in line), None)
        assert row is not None, record.filename
        assert record.sha256 in row and f"`{record.command}`" in row
        assert f"{100 * record.test_accuracy:.2f}%" in row


def test_a_damaged_or_missing_file_is_refused(tmp_path, monkeypatch):
    for record in pretrained.SHIPPED.values():
        shutil.copy(pretrained.FOLDER / record.filename, tmp_path / record.filename)
    monkeypatch.setattr(pretrained, "FOLDER", tmp_path)
    target = tmp_path / pretrained.SHIPPED["seed"].filename
    data = bytearray(target.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    target.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="differs from the recorded"):
        pretrained.load("seed")
    target.unlink()
    with pytest.raises(ModelFileError, match="is missing"):
        pretrained.load("seed")
    with pytest.raises(ValueError, match=re.escape("`name` must be one of")):
        pretrained.load("resnet")
