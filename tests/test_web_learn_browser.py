"""The page's "How it learns" panel in real headless Chromium: draw, choose the label, read the loss and the
gradient maps, take one SGD step and see the probabilities move, click a filter's weight and see its gradient
built as a sum equal to the backward's; with no JavaScript error and no Content-Security-Policy violation.

Uses the fixtures and helpers of test_web_browser (which skips without playwright or Chromium).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_web_browser import artifacts, browser, draw, open_page, server  # noqa: F401  (fixtures)

from numpycnn.web import explain


@pytest.fixture
def page(browser, server):  # noqa: F811
    page = open_page(browser, server)
    yield page
    violations = page.evaluate("window.cspViolations")
    errors = page.errors
    page.close()
    assert errors == [] and violations == []


def learned(page, target):
    """Wait until the panel shows the gradients for ``target``."""
    page.wait_for_selector(f'#learn-panel[data-target="{target}"]')
    page.wait_for_selector("body:not([data-learning])")


def choose(page, target):
    with page.expect_response("**/api/gradients") as response:
        page.check(f'#targets input[value="{target}"]')
    assert json.loads(response.value.request.post_data)["target"] == target
    learned(page, target)


def value(page, selector):
    return float(page.get_attribute(selector, "data-value"))


def not_blank(page, selector):
    """Whether a canvas has a pixel that is not the colour of zero (white) nor transparent."""
    return page.eval_on_selector(selector, """c => { const d = c.getContext('2d').getImageData(0, 0, c.width,
        c.height).data; for (let k = 0; k < d.length; k += 4) if (d[k + 3] && (d[k] < 240 || d[k + 2] < 240))
        return true; return false; }""")


def test_choosing_a_label_shows_the_loss_and_the_gradient_maps(page, server):  # noqa: F811
    sent = draw(page, "7")
    learned(page, 7)  # by default, the label the network gave
    assert page.is_checked('#targets input[value="7"]')
    assert "predicted" in page.get_attribute('#targets label:has(input[value="7"])', "class")
    expected = server.app.learn("/api/gradients", {"image": sent["image"], "model": "seed", "target": 7})
    assert value(page, "#loss-value") == expected["loss"] < 0.1
    choose(page, 1)
    expected = server.app.learn("/api/gradients", {"image": sent["image"], "model": "seed", "target": 1})
    assert value(page, "#loss-value") == expected["loss"] > 5
    assert "−log" in page.inner_text("#loss") and "“1”" in page.inner_text("#loss")
    # the gradient at every layer's output, drawn like the forward maps
    assert page.locator("#layer-grads .layer").count() == 5
    assert page.locator('#layer-grads .layer[data-index="0"] canvas[data-channel]').count() == 8
    assert not_blank(page, '#layer-grads .layer[data-index="2"] canvas[data-channel="3"]')
    assert "1: -1.00" in page.inner_text('#layer-grads .layer[data-index="4"]')  # p - y at the logits
    assert "∂L/∂output 8×26×26" in page.inner_text('#layer-grads .layer[data-index="0"]')
    # the first layer's filters, each above its gradient
    figures = page.locator("#filter-grads figure")
    assert figures.count() == 8 and figures.nth(0).locator("canvas").count() == 2
    assert not_blank(page, '#filter-grads canvas[aria-label="loss gradient of filter 2"]')
    # the chosen label stays for the next strokes; Clear forgets it
    page.click("#clear")
    assert page.locator("#targets input").count() == 0 and page.get_attribute("#learn-panel", "data-target") is None
    draw(page, "3")
    learned(page, 3)


def test_one_sgd_step_changes_the_probabilities(page, server):  # noqa: F811
    sent = draw(page, "7")
    learned(page, 7)
    choose(page, 1)
    page.fill("#lr", "0.01")
    with page.expect_response("**/api/sgd-step") as response:
        page.click("#sgd-step")
    assert json.loads(response.value.request.post_data)["lr"] == 0.01
    page.wait_for_selector("#sgd-loss-after")
    items = page.locator("#sgd-probs li")
    assert items.count() == 10
    before, after = ({items.nth(k).get_attribute("data-label"): float(items.nth(k).get_attribute(f"data-{when}"))
                      for k in range(10)} for when in ("before", "after"))
    expected = server.app.learn("/api/sgd-step", {"image": sent["image"], "model": "seed", "target": 1, "lr": 0.01})
    assert list(after.values()) == expected["after"]["probabilities"]
    assert list(before.values()) == expected["before"]["probabilities"]
    assert after["1"] > before["1"] + 0.01 and after["7"] < before["7"]
    assert value(page, "#sgd-loss-after") < value(page, "#sgd-loss-before") == expected["before"]["loss"]
    # the filters before, after and their change (on its own scale): 3 rows of the 8 filters
    assert page.locator(".sgd-filters canvas").count() == 24
    assert not_blank(page, '.sgd-filters canvas[aria-label="filter 0 change"]')
    assert page.locator("table.updates tr").count() == 1 + 4  # a header, then 0.weight, 0.bias, 4.weight, 4.bias
    # a new label makes the step stale: it is taken again on request
    choose(page, 4)
    assert page.locator("#sgd-loss-after").count() == 0


def test_clicking_a_weight_shows_its_gradient_as_a_sum(page, server, artifacts):  # noqa: F811
    sent = draw(page, "7")
    learned(page, 7)
    choose(page, 1)
    canvas = page.locator('#filter-grads canvas[aria-label="loss gradient of filter 2"]')
    box = canvas.bounding_box()
    row, col = 1, 2
    with page.expect_response("**/api/weight-gradient") as response:
        canvas.click(position={"x": (col + 0.5) * box["width"] / 3, "y": (row + 0.5) * box["height"] / 3})
    asked = json.loads(response.value.request.post_data)
    assert {k: asked[k] for k in ("layer", "filter", "in_channel", "row", "col", "target")} == {
        "layer": 0, "filter": 2, "in_channel": 0, "row": 1, "col": 2, "target": 1}
    page.wait_for_selector("#wgrad-sum")
    assert [page.input_value(f"#wgrad-{k}") for k in ("layer", "filter", "channel", "row", "col")] == \
        ["0", "2", "0", "1", "2"]
    grads = server.app.learn("/api/gradients", {"image": sent["image"], "model": "seed", "target": 1})
    backward = float(explain.decode(grads["param_grads"]["0.weight"])[2, 0, 1, 2])
    assert value(page, "#wgrad-layer-value") == backward
    assert value(page, "#wgrad-sum") == pytest.approx(backward, rel=1e-5, abs=1e-7)
    assert "✓ equal" in page.inner_text("#wgrad .equation")
    assert "selected" in page.get_attribute('#filter-grads figure[data-filter="2"]', "class")
    assert page.locator("#wgrad .wgrad-maps canvas").count() == 3 + 3  # three maps, each with its colour bar
    page.locator("#learn-panel").screenshot(path=str(artifacts / "web-learn.png"))
    # by keyboard: another weight typed in the form
    page.fill("#wgrad-row", "0")
    with page.expect_response("**/api/weight-gradient"):
        page.press("#wgrad-row", "Enter")
    page.wait_for_selector('#wgrad p:has-text("row 0, column 2")')
    other = float(explain.decode(grads["param_grads"]["0.weight"])[2, 0, 0, 2])
    assert value(page, "#wgrad-layer-value") == other
    # another label: the weight's gradient is computed again for it
    choose(page, 4)
    page.wait_for_selector('#wgrad p:has-text("“4”")')
    assert np.isfinite(value(page, "#wgrad-sum"))


def test_switching_models_keeps_the_label_and_the_panel(page):  # noqa: F811
    draw(page, "7")
    learned(page, 7)
    choose(page, 1)
    with page.expect_response("**/api/gradients"):
        page.select_option("#model", "file")
    learned(page, 1)
    assert page.locator("#filter-grads figure").count() == 32
    assert page.locator("#layer-grads .layer").count() == 17
    assert "16 of 32 shown" in page.locator("#layer-grads .layer").first.inner_text()
    assert page.locator("#wgrad-layer option").count() == 3


def test_the_panel_at_phone_width(browser, server):  # noqa: F811
    page = open_page(browser, server, width=375, height=740)
    try:
        draw(page, "7")
        learned(page, 7)
        choose(page, 2)
        with page.expect_response("**/api/sgd-step"):
            page.click("#sgd-step")
        page.wait_for_selector("#sgd-loss-after")
        page.locator('#filter-grads canvas[aria-label="filter 0"]').click()
        page.wait_for_selector("#wgrad-sum")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        assert page.evaluate("window.cspViolations") == [] and page.errors == []
    finally:
        page.close()
