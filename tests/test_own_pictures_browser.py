"""The drawing page with a model of your own pictures (issue 27), in a real browser: no digit pad, the upload, and
the model's own class names in the answer."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from numpycnn.datasets.preparation import Preparation
from numpycnn.model.zoo import build_model
from numpycnn.web.server import make_server

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("NUMPYCNN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set NUMPYCNN_CHROMIUM)",
                allow_module_level=True)

NAMES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("own") / "pets.safetensors"
    model = build_model("seed", seed=0, input_shape=(3, 16, 16), num_classes=3)
    model.class_names = NAMES
    model.normalization = {"mean": [0.0] * 3, "std": [1.0] * 3}
    model.preparation = Preparation(3, (16, 16))
    model.save(path)
    srv = make_server(port=0, model_path=path)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_the_page_offers_the_upload_and_answers_with_the_model_s_class_names(server, tmp_path):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8)).save(photo)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda err: errors.append(f"page error: {err}"))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready]")
        assert not page.locator("#pad").is_visible() and not page.locator("#undo").is_visible()
        assert page.locator("#upload").is_visible()
        assert "this model knows cat, dog, fox" in page.locator("#prediction").inner_text()
        page.locator("#upload").set_input_files(str(photo))
        page.wait_for_selector("#probabilities li:nth-child(3)")  # (the page's CSP forbids wait_for_function)
        text = page.locator("#probabilities").inner_text()
        assert all(name in text for name in NAMES)
        browser.close()
    assert errors == []
