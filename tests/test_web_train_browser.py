"""The page's "Train it yourself" panel in real headless Chromium: start a small training, watch the progress,
the two curves and the filters being redrawn while it runs, read the test accuracy at the end, pick the new
network and draw with it; cancel; a second page sees a running training and is refused a second one; with no
JavaScript error and no Content-Security-Policy violation.

Uses the fixtures and helpers of test_web_browser (which skips without playwright or Chromium).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from test_web_browser import artifacts, browser, draw, open_page, server  # noqa: F401  (fixtures)

from numpycnn.web import explain, train

#: Records each step and each filter redraw the panel shows while a training runs.
WATCHER = """window.seen = {steps: [], filters: []};
new MutationObserver(() => {
  const panel = document.getElementById("train-panel"), filters = document.getElementById("train-filters");
  if (panel.dataset.state === "training") window.seen.steps.push(Number(panel.dataset.step));
  if (filters.dataset.step) window.seen.filters.push(Number(filters.dataset.step));
}).observe(document.getElementById("train-panel"), {attributes: true, subtree: true});"""

#: The original network, 2 epochs over 2,000 images in batches of 16: 250 steps, each slowed down by
#: STEP_SECONDS in the test so that the page sees it run whatever the speed of the machine.
WATCHED = {"#train-model": "seed", "#train-optimizer": "sgd", "#train-lr": "0.1", "#train-batch": "16",
           "#train-epochs": "2", "#train-images": "2000"}
STEP_SECONDS = 0.008
#: The largest training: it runs until it is cancelled.
LONG = {"model": "lenet5", "optimizer": "adam", "lr": 0.001, "batch_size": 8, "epochs": 3, "images": 10_000}


@pytest.fixture
def page(browser, server):  # noqa: F811
    page = open_page(browser, server)
    yield page
    server.app.training.close()
    violations = page.evaluate("window.cspViolations")
    errors = page.errors
    page.close()
    assert errors == [] and violations == []


def fill(page, settings):
    for selector, value in settings.items():
        if selector.startswith("#train-model") or selector.startswith("#train-optimizer"):
            page.select_option(selector, value)
        else:
            page.fill(selector, value)


def state_is(page, state, timeout=60_000):
    page.wait_for_selector(f'#train-panel[data-state="{state}"]', timeout=timeout)


def settled(page, selector):
    """Wait until ``selector`` stops moving (a smooth scroll has ended)."""
    page.wait_for_function("""s => new Promise((done) => { const top = () => document.querySelector(s)
        .getBoundingClientRect().top; const before = top(); setTimeout(() => done(top() === before), 150); })""",
                           arg=selector)


def not_blank(page, selector):
    """Whether a canvas has a pixel that is neither white nor transparent."""
    return page.eval_on_selector(selector, """c => { const d = c.getContext('2d').getImageData(0, 0, c.width,
        c.height).data; for (let k = 0; k < d.length; k += 4) if (d[k + 3] && (d[k] < 235 || d[k + 2] < 235))
        return true; return false; }""")


def test_a_training_from_the_page_grows_its_curves_and_its_model_draws(page, server, artifacts,  # noqa: F811
                                                                     monkeypatch):
    step = train.Watch.on_batch_end

    def slowed(self, batch, logs=None):
        step(self, batch, logs)
        time.sleep(STEP_SECONDS)

    monkeypatch.setattr(train.Watch, "on_batch_end", slowed)
    page.evaluate(WATCHER)
    fill(page, WATCHED)
    with page.expect_response("**/api/train") as response:
        page.click("#train-start")
    assert json.loads(response.value.request.post_data) == {
        "model": "seed", "optimizer": "sgd", "lr": 0.1, "batch_size": 16, "epochs": 2, "images": 2000}
    # the page disables Train once its answer is handled, which may come a moment after the response
    page.wait_for_selector("#train-start:disabled", timeout=5_000)
    state_is(page, "done")
    done = server.app.training.status()
    assert done["state"] == "done" and done["steps"] == 250
    # it was watched: steps and filter redraws between the first and the last
    seen = page.evaluate("window.seen")
    assert len({s for s in seen["steps"] if 0 < s < 250}) >= 2, seen["steps"]
    assert len({s for s in seen["filters"] if 0 < s < 250}) >= 1 and seen["filters"][-1] == 250, seen["filters"]
    assert page.get_attribute("#train-progress", "value") == "1"
    assert page.inner_text("#train-state").startswith("Done: 250 steps")
    # the curves hold every point the server recorded, and the test accuracy is the server's
    for chart in ("#train-loss", "#train-accuracy"):
        assert page.get_attribute(chart, "data-points") == str(len(done["curve"]["step"]))
        assert not_blank(page, chart)
    assert float(page.get_attribute("#train-loss", "data-last")) == done["curve"]["loss"][-1]
    accuracy = float(page.get_attribute("#train-test-accuracy", "data-value"))
    assert accuracy == done["test"]["accuracy"] > 0.8
    assert f"{100 * accuracy:.2f}%" in page.inner_text("#train-result")
    assert page.locator("#train-result tr").count() == 1 + 2  # a header, then each epoch
    # the filters at the start, now, and their change: 3 rows of the 8 filters
    assert page.locator("#train-filters canvas[data-filter]").count() == 24
    assert not_blank(page, '#train-filters canvas[aria-label="filter 0 change"]')
    assert page.get_attribute("#train-filters", "data-step") == "250"
    page.locator("#train-panel").screenshot(path=str(artifacts / "web-train.png"))
    # the new network is offered and draws
    name = done["model"]
    page.wait_for_selector(f'#model option[value="{name}"]', state="attached")
    page.click("#train-use")
    page.wait_for_function(f'() => document.getElementById("model-info").textContent.includes("{100 * accuracy:.2f}%")')
    assert page.input_value("#model") == name
    # the button scrolls smoothly up to the drawing pad: draw once it is there
    page.wait_for_function('() => Math.abs(document.getElementById("draw-panel").getBoundingClientRect().top) < 2')
    settled(page, "#pad")
    sent = draw(page, "7")
    assert sent["model"] == name
    expected = server.app.predict({"image": sent["image"], "model": name})
    assert page.get_attribute("#prediction", "data-label") == expected["label"]
    assert page.locator("#layers .layer").count() == 5
    filters = server.app.describe(name)["filters"]
    np.testing.assert_array_equal(explain.decode(filters), explain.decode(done["filters"]))


def test_cancel_from_the_page(page, server):  # noqa: F811
    names = [m["name"] for m in server.app.list_models()["models"]]
    page.select_option("#train-model", "lenet5")
    page.fill("#train-batch", "8")
    page.fill("#train-epochs", "3")
    page.fill("#train-images", "10000")
    earlier = page.get_attribute("#train-panel", "data-run")  # a run of an earlier test, finished, or None
    page.click("#train-start")
    page.wait_for_function(  # this run's steps: an earlier run's last status also has a step > 0
        """earlier => { const p = document.getElementById("train-panel");
                        return p.dataset.run !== undefined && p.dataset.run !== earlier
                               && p.dataset.state === "training" && Number(p.dataset.step) > 0; }""",
        arg=earlier)
    assert page.is_enabled("#train-cancel")
    with page.expect_response("**/api/train/cancel") as response:
        page.click("#train-cancel")
    assert response.value.status == 200
    state_is(page, "cancelled", timeout=10_000)
    assert page.inner_text("#train-state").startswith("Cancelled")
    assert page.is_enabled("#train-start") and page.is_disabled("#train-cancel")
    assert page.inner_text("#train-result") == ""
    assert [m["name"] for m in server.app.list_models()["models"]] == names


def test_a_page_is_refused_a_second_training_and_another_page_follows_the_first(browser, server):  # noqa: F811
    first = open_page(browser, server)  # opened before the training: its Train button is enabled
    run = server.app.training.start(train.check_settings(LONG))
    other = None
    try:
        with first.expect_response("**/api/train") as response:
            first.click("#train-start")
        assert response.value.status == 409
        first.wait_for_selector("#train-state.error")
        assert "one runs at a time" in first.inner_text("#train-state")
        other = open_page(browser, server)  # opened during the training: it shows it, then follows it
        state_is(other, "training", timeout=10_000)
        assert other.is_disabled("#train-start") and other.get_attribute("#train-panel", "data-run") == str(run["id"])
        with other.expect_response("**/api/train/cancel"):
            other.click("#train-cancel")
        state_is(other, "cancelled", timeout=10_000)
        # Chromium reports the refused request itself as a console error; nothing else may appear
        assert [e for e in first.errors if "status of 409" not in e] == [] and other.errors == []
        assert first.evaluate("window.cspViolations") == other.evaluate("window.cspViolations") == []
    finally:
        server.app.training.close()
        first.close()
        if other is not None:
            other.close()


def test_the_panel_at_phone_width(browser, server):  # noqa: F811
    page = open_page(browser, server, width=375, height=740)
    try:
        fill(page, {"#train-images": "256", "#train-epochs": "1"})
        page.click("#train-start")
        state_is(page, "done")
        page.wait_for_selector("#train-use")
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        assert page.evaluate("window.cspViolations") == [] and page.errors == []
    finally:
        server.app.training.close()
        page.close()
