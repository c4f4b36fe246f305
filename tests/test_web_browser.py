"""The drawing page in real headless Chromium: draw with the mouse, read the answer, clear, undo, upload, switch
models, open the convolution step view, at desktop and phone width, with no JavaScript errors.

Needs Python's ``playwright`` and a Chromium binary (Debian's ``chromium`` package, ``/usr/bin/chromium``, or
``$NUMPYCNN_CHROMIUM``); skips with the reason otherwise. Screenshots go to ``$NUMPYCNN_TEST_ARTIFACTS`` (else a
temporary folder) as test artefacts.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import web_drawings as drawings

from numpycnn import models
from numpycnn.web import explain
from numpycnn.web.server import make_server

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("NUMPYCNN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set NUMPYCNN_CHROMIUM)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("web") / "deep.safetensors"
    model = models.deep_cnn(seed=0)  # untrained: 32 maps in its first layers, 16 of them shown
    model.class_names = [str(k) for k in range(10)]
    model.normalization = {"mean": [0.1307], "std": [0.3081]}
    model.save(path)
    srv = make_server(port=0, model_path=path)
    srv.app.default = "seed"  # the page opens on the original network, as `numpycnn serve` without MODEL does
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    folder = Path(os.environ.get("NUMPYCNN_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


#: Records every CSP violation the page meets (they are also console errors, but this names the directive).
CSP_LISTENER = """window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));"""


def open_page(browser, server, width=1280, height=900):
    """The page, ready, with its JavaScript errors in ``page.errors`` and its CSP violations in
    ``window.cspViolations``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.add_init_script(CSP_LISTENER)
    page.errors = []
    page.on("pageerror", lambda err: page.errors.append(f"page error: {err}"))
    page.on("console", lambda msg: page.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.goto(server.url)
    page.wait_for_selector("body[data-ready]")
    return page


@pytest.fixture
def page(browser, server):
    page = open_page(browser, server)
    yield page
    errors = page.errors
    page.close()
    assert errors == []


def draw(page, label):
    """Draw a fixture digit with mouse pointer events, stroke by stroke; wait for the answer to the last stroke."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / drawings.SIZE
    strokes = drawings.DIGITS[label]
    for k, stroke in enumerate(strokes):
        page.mouse.move(box["x"] + stroke[0][0] * scale, box["y"] + stroke[0][1] * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=6)
        with page.expect_response("**/api/predict") as response:
            page.mouse.up()
        if k == len(strokes) - 1:
            page.wait_for_selector("body:not([data-busy])")
            return json.loads(response.value.request.post_data)


def shown_label(page):
    return page.get_attribute("#prediction", "data-label")


def bars(page):
    """``{label: probability}`` read from the page's bar chart, and the label of the bar marked best."""
    items = page.locator("#probabilities li")
    values = {items.nth(k).get_attribute("data-label"): float(items.nth(k).get_attribute("data-probability"))
              for k in range(items.count())}
    return values, page.locator("#probabilities li.best").get_attribute("data-label")


@pytest.mark.parametrize("label", ["7", "3", "0"])
def test_drawing_a_digit_shows_its_label_and_probability_bars(page, label):
    draw(page, label)
    assert page.inner_text("#prediction").startswith(label)
    values, best = bars(page)
    assert best == label and values[label] > 0.9 and sorted(values) == [str(k) for k in range(10)]
    assert abs(sum(values.values()) - 1) < 1e-4
    width = page.eval_on_selector("#probabilities li.best .fill", "e => e.getBoundingClientRect().width")
    track = page.eval_on_selector("#probabilities li.best .bar", "e => e.getBoundingClientRect().width")
    assert width == pytest.approx(values[label] * track, abs=1.5)
    assert page.locator("#layers .layer").count() == 5  # the original network: conv, relu, pool, flatten, dense
    view = page.eval_on_selector("#input-view", "c => Array.from(c.getContext('2d').getImageData(0, 0, 28, 28).data)")
    assert max(view) == 255 and view[0] == 0  # the prepared picture: white ink on black


def _pad_is_blank(page):
    return page.eval_on_selector("#pad", "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
                                        ".every(v => v === 255)")


def test_clear_and_undo(page):
    draw(page, "7")
    page.click("#clear")
    assert _pad_is_blank(page) and shown_label(page) is None
    assert page.locator("#probabilities li").count() == 0 and page.locator("#layers .layer").count() == 0
    draw(page, "4")
    assert shown_label(page) == "4"
    page.click("#undo")
    assert _pad_is_blank(page) and shown_label(page) is None


def test_uploading_a_picture(page):
    image = drawings.render(drawings.DIGITS["2"]).convert("L")
    data = drawings.data_url(image, "JPEG").split(",", 1)[1]
    import base64

    with page.expect_response("**/api/predict"):
        page.set_input_files("#upload", files=[{"name": "two.jpg", "mimeType": "image/jpeg",
                                                "buffer": base64.b64decode(data)}])
    page.wait_for_selector("body:not([data-busy])")
    assert shown_label(page) == "2"
    assert not _pad_is_blank(page)  # the picture is shown on the pad


def test_switching_models(page):
    draw(page, "3")
    with page.expect_response("**/api/predict") as response:
        page.select_option("#model", "lenet5")
    assert json.loads(response.value.request.post_data)["model"] == "lenet5"
    page.wait_for_selector("body:not([data-busy])")
    assert shown_label(page) == "3"
    assert page.locator("#layers .layer").count() == 12 and "61,706 parameters" in page.inner_text("#model-info")
    with page.expect_response("**/api/predict"):
        page.select_option("#model", "file")
    page.wait_for_selector("body:not([data-busy])")
    first = page.locator("#layers .layer").first
    assert "16 of 32 shown" in first.inner_text() and "output 32×28×28" in first.inner_text()
    assert first.locator("canvas[data-channel]").count() == 16
    assert page.locator("#filters figure").count() == 32


def test_the_convolution_step_view_equals_the_api_activation(page, server, artifacts):
    sent = draw(page, "7")
    ch, h, w = 3, 26, 26
    canvas = page.locator(f'#layers .layer[data-index="0"] canvas[data-channel="{ch}"]')
    box = canvas.bounding_box()
    row, col = 9, 14
    with page.expect_response("**/api/conv-step"):
        canvas.click(position={"x": (col + 0.5) * box["width"] / w, "y": (row + 0.5) * box["height"] / h})
    page.wait_for_selector("#step-output")
    assert [page.input_value(f"#step-{k}") for k in ("layer", "channel", "row", "col")] == ["0", "3", "9", "14"]
    shown = {k: float(page.get_attribute(f"#step-{k}", "data-value")) for k in ("sum", "bias", "output", "layer-value")}
    # the activation the API itself returns for the very picture the page sent
    data = server.app.predict({"image": sent["image"], "model": "seed"})
    value = float(explain.decode(data["layers"][0])[ch, row, col])
    assert shown["output"] == pytest.approx(value, abs=1e-5)
    assert shown["layer-value"] == pytest.approx(value, abs=1e-7)
    assert shown["sum"] + shown["bias"] == pytest.approx(shown["output"], abs=1e-9)
    assert "equal" in page.inner_text("#step .equation") and "then ReLU" in page.inner_text("#step .equation")
    cells = page.locator("#step table.grid").nth(2).locator("td").all_inner_texts()
    assert len(cells) == 9 and sum(float(c) for c in cells) == pytest.approx(shown["sum"], abs=5e-3)
    # by keyboard: type another position in the form and press Enter
    page.fill("#step-row", "12")
    with page.expect_response("**/api/conv-step"):
        page.press("#step-row", "Enter")
    page.wait_for_selector("#step p:has-text(\"row 12\")")
    page.screenshot(path=str(artifacts / "web-desktop.png"), full_page=True)


def draw_by_touch(page, context, label):
    """Draw a fixture digit with a finger: Chromium's own touch events (which the page sees as pointer events)."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / drawings.SIZE
    cdp = context.new_cdp_session(page)
    for stroke in drawings.DIGITS[label]:
        points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke]
        start = {"x": points[0][0], "y": points[0][1]}
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [start]})
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
            for k in range(1, 7):
                at = {"x": x0 + (x1 - x0) * k / 6, "y": y0 + (y1 - y0) * k / 6}
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [at]})
        with page.expect_response("**/api/predict"):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_selector("body:not([data-busy])")


def test_phone_width_and_a_finger(browser, server, artifacts):
    context = browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready]")
        draw_by_touch(page, context, "7")
        assert shown_label(page) == "7"
        assert page.evaluate("window.scrollY") == 0  # drawing does not scroll the page
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        box = page.locator("#pad").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375 and box["width"] >= 250
        for control in ("#undo", "#clear", "#upload", "#model"):
            assert page.locator(control).is_visible()
        page.click("#clear")  # (headless Chromium turns a tap right after a driven touch gesture into no click)
        assert shown_label(page) is None
        draw_by_touch(page, context, "4")
        assert shown_label(page) == "4"
        page.screenshot(path=str(artifacts / "web-phone.png"), full_page=True)
        assert errors == []
    finally:
        context.close()


def test_every_control_has_a_label(page):
    missing = page.evaluate("""[...document.querySelectorAll('input, select, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.textContent.trim() && !e.getAttribute('aria-label'))
        .map(e => e.id)""")
    assert missing == []
    assert np.all([page.locator(sel).get_attribute("aria-label") for sel in ("#pad", "#input-view")])
