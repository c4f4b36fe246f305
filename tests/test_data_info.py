"""``numpycnn data info PATH`` (issue 27): what would be trained on, without decoding a picture."""

from __future__ import annotations

import numpy as np
from PIL import Image

from numpycnn.cli import main


def save(path, size, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)


def test_info_on_a_folder_shows_classes_sizes_modes_skipped_files_and_the_shape(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NUMPYCNN_DATA", str(tmp_path / "cache"))
    root = tmp_path / "pets"
    for i in range(12):
        save(root / "cat" / f"{i}.png", (40, 30))
    for i in range(2):
        save(root / "dog" / f"{i}.jpg", (20, 20), "L")
    (root / "dog" / "readme.txt").write_text("hello")
    assert main(["data", "info", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"{root}: a folder of pictures, 2 classes, 14 training pictures")
    cat, dog = (next(line for line in lines if line.strip().startswith(n)) for n in ("cat", "dog"))
    assert "12" in cat and "warning" not in cat and "2" in dog and "warning: far fewer" in dog
    assert "40x30 (12), 20x20 (2)" in out and "RGB (12), L (2)" in out
    assert "Skipped 1 file: dog/readme.txt (not a picture" in out
    assert lines[-1].startswith("Every picture becomes 3x30x40")
    assert not (tmp_path / "cache").exists()  # nothing decoded, nothing cached
    assert main(["data", "info", str(root), "--image-size", "16", "--channels", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("Every picture becomes 1x16x16")


def test_info_on_an_npz_file(tmp_path, capsys):
    x = np.zeros((10, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(10) % 2, class_names=np.array(["no", "yes"]))
    assert main(["data", "info", str(tmp_path / "d.npz")]) == 0
    out = capsys.readouterr().out
    assert "an .npz file, 2 classes, 8 training and 2 test pictures" in out
    assert "Every picture is 3x8x8" in out


def test_info_on_nothing_usable_is_one_error_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "info", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no pictures found" in err and err.count("\n") == 1
