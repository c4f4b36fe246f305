"""The README's "Train on your own pictures" section, run as written: a folder of garments (Fashion-MNIST pictures
saved as coloured PNG and JPEG files of mixed sizes, or drawn shapes where Fashion-MNIST is not installed), then
each ``numpycnn`` line of the section: ``data info``, ``train``, ``predict`` and ``serve`` (over real HTTP)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import shlex
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from numpycnn import datasets
from numpycnn.cli import main
from numpycnn.errors import DataError
from numpycnn.web.server import make_server

README = Path(__file__).resolve().parent.parent / "README.md"
CLASSES = {"shirt": 0, "trouser": 1, "sneaker": 7}  # folder name -> Fashion-MNIST label
PER_CLASS = 18


def readme_commands() -> list[str]:
    """The ``numpycnn`` lines of the section's code block, comments removed."""
    section = README.read_text(encoding="utf-8").split("## Train on your own pictures", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("numpycnn ")]


def fashion_pictures() -> dict[str, list[np.ndarray]]:
    try:
        images, labels = datasets.load("fashion-mnist", "test", download=False)
    except DataError as err:
        pytest.skip(f"Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist): {err}")
    return {name: [images[k, 0] for k in np.flatnonzero(labels == label)[:PER_CLASS]]
            for name, label in CLASSES.items()}


def shape_pictures() -> dict[str, list[np.ndarray]]:
    """White-on-black drawings: a shirt (a T), trousers (two legs), a sneaker (a low wedge)."""
    rng = np.random.default_rng(0)
    drawings: dict[str, list[np.ndarray]] = {name: [] for name in CLASSES}
    for name in CLASSES:
        for _ in range(PER_CLASS):
            image = Image.new("L", (28, 28), 0)
            draw = ImageDraw.Draw(image)
            dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
            if name == "shirt":
                draw.rectangle([4 + dx, 5 + dy, 23 + dx, 10 + dy], fill=255)
                draw.rectangle([9 + dx, 5 + dy, 18 + dx, 24 + dy], fill=255)
            elif name == "trouser":
                draw.rectangle([8 + dx, 3 + dy, 12 + dx, 25 + dy], fill=255)
                draw.rectangle([15 + dx, 3 + dy, 19 + dx, 25 + dy], fill=255)
            else:
                draw.polygon([(3 + dx, 22 + dy), (24 + dx, 22 + dy), (24 + dx, 16 + dy), (10 + dx, 12 + dy)],
                             fill=255)
            drawings[name].append(np.asarray(image))
    return drawings


def write_garments(root: Path, pictures: dict[str, list[np.ndarray]]) -> None:
    """Coloured PNG and JPEG files, two thirds 28x28 and one third 36x36."""
    rng = np.random.default_rng(1)
    for name, greys in pictures.items():
        (root / name).mkdir(parents=True)
        for i, grey in enumerate(greys):
            colour = rng.uniform(0.4, 1.0, 3)
            rgb = (grey[..., None] * colour).astype(np.uint8)  # (28, 28, 3): the garment tinted
            image = Image.fromarray(rgb)
            if i % 3 == 2:
                image = image.resize((36, 36), Image.Resampling.BILINEAR)
            image.save(root / name / f"{i}.{'jpg' if i % 2 == 0 else 'png'}")


@pytest.mark.parametrize("flavour", ["fashion-mnist", "shapes"])
def test_the_readme_walkthrough_runs_as_written(flavour, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NUMPYCNN_DATA", str(tmp_path / "cache"))
    write_garments(tmp_path / "garments", fashion_pictures() if flavour == "fashion-mnist" else shape_pictures())
    commands = readme_commands()
    assert [shlex.split(c)[1] for c in commands] == ["data", "train", "predict", "serve"]
    names = sorted(CLASSES)
    for command in commands:
        argv = shlex.split(command)[1:]
        if argv[0] == "serve":
            check_server(Path(argv[1]), tmp_path / "garments" / "sneaker" / "0.jpg", names)
            continue
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 0, err
        if argv[0] == "data":
            assert all(name in out for name in names) and "Every picture becomes 3x28x28" in out
        if argv[0] == "train":
            assert "held out 20% of each class" in out and "Test accuracy" in out
        if argv[0] == "predict":
            label = out.split(": ", 1)[1].split(" ")[0]
            assert out.startswith(argv[2]) and label in names


def check_server(model_path: Path, picture: Path, names: list[str]) -> None:
    """``numpycnn serve MODEL``: the page describes the model as one for photos and answers with its classes."""
    server = make_server(port=0, model_path=model_path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, description = request(server, "GET", "/api/model?name=file")
        assert status == 200 and description["style"] == "photos" and description["class_names"] == names
        url = "data:image/jpeg;base64," + base64.b64encode(picture.read_bytes()).decode()
        status, answer = request(server, "POST", "/api/predict", {"image": url, "model": "file"})
        assert status == 200, answer
        assert answer["class_names"] == names and answer["label"] in names
        assert len(answer["probabilities"]) == 3
        # the page's learning routes prepare the picture as the model's file says, like /api/predict
        status, grads = request(server, "POST", "/api/gradients", {"image": url, "model": "file", "target": 1})
        assert status == 200, grads
        assert grads["input"] == answer["input"] and grads["target"] == 1
        status, step = request(server, "POST", "/api/sgd-step", {"image": url, "model": "file", "target": 1,
                                                                 "lr": 0.01})
        assert status == 200, step
    finally:
        server.shutdown()
        server.server_close()


def request(server, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    response = conn.getresponse()
    content = json.loads(response.read())
    conn.close()
    return response.status, content
