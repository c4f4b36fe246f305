"""Training in the page, over real HTTP on 127.0.0.1: ``POST /api/train``, ``GET /api/train/status`` and
``POST /api/train/cancel``. A short training ends with its model offered and predicting (the very weights
``fit`` gives for the same settings); a second one is refused while one runs; cancel stops it within the
epoch; bad settings are 400s; the drawing routes answer while it trains; a cancelled or failed training leaves
the server ready for the next; closing the server (and Ctrl-C on ``numpycnn serve``) ends a running one."""

from __future__ import annotations

import http.client
import json
import math
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict

import numpy as np
import pytest
import web_drawings as drawings
from test_web_server import _env

from numpycnn import models, optim
from numpycnn.errors import DataError
from numpycnn.training.loop import evaluate, fit
from numpycnn.web import explain, train
from numpycnn.web.server import MAX_TRAINED, App, ServedModel, make_server

#: A training of well under a second: the original network, 256 images, one epoch of 8 steps.
TINY = {"model": "seed", "optimizer": "sgd", "lr": 0.1, "batch_size": 32, "epochs": 1, "images": 256}
#: The largest training allowed (LeNet-5, 3 epochs of 1,250 steps): it runs until it is cancelled.
LONG = {"model": "lenet5", "optimizer": "adam", "lr": 0.001, "batch_size": 8, "epochs": 3, "images": 10_000}
SEVEN = drawings.data_url(drawings.render(drawings.DIGITS["7"]))


@pytest.fixture(scope="module")
def server():
    srv = make_server(port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def nothing_left_running(server):
    yield
    server.app.training.close()  # a failed test must not leave the next one a busy server
    assert not server.app.training.status()["running"]


def call(server, method, path, body=None, raw=None):
    """One request; (status, parsed JSON)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data is not None else {})
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    return response.status, answer


def status(server):
    code, answer = call(server, "GET", "/api/train/status")
    assert code == 200, answer
    return answer


def start(server, settings):
    code, answer = call(server, "POST", "/api/train", settings)
    assert code == 200, answer
    assert answer["running"] and answer["settings"] == {**asdict(train.Settings()), **settings}
    return answer


def wait_until(server, ready, timeout=60.0):
    """Poll the status until ``ready(status)``; that status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = status(server)
        if ready(answer):
            return answer
        time.sleep(0.02)
    raise AssertionError(f"the training did not get there in {timeout} s: {answer}")


def ended(server, timeout=60.0):
    return wait_until(server, lambda s: not s["running"], timeout)


def training_steps(server):
    """Wait until a training has taken a step; its status."""
    return wait_until(server, lambda s: s["state"] == "training" and s["step"] >= 1 or not s["running"])


def model_names(server):
    return [m["name"] for m in call(server, "GET", "/api/models")[1]["models"]]


# -- a training from start to end --------------------------------------------------------------------------
def test_a_short_training_ends_with_its_model_offered_and_predicting(server):
    first = start(server, TINY)
    assert first["state"] in ("starting", "training") and first["steps"] == 8 and first["epochs"] == 1
    done = ended(server)
    assert done["state"] == "done" and done["id"] == first["id"], done["message"]
    assert (done["step"], done["epoch"], done["message"], done["curve_every"]) == (8, 0, None, 1)
    # the curve: 8 steps, 8 points (a point per step in so short a training), then one epoch's figures
    assert done["curve"]["step"] == list(range(1, 9))
    assert all(0 < loss < 10 for loss in done["curve"]["loss"])
    assert all(0 <= acc <= 1 for acc in done["curve"]["accuracy"])
    assert [h["epoch"] for h in done["history"]] == [1]
    epoch_loss = np.average(done["curve"]["loss"], weights=[32] * 8)
    assert done["history"][0]["loss"] == pytest.approx(epoch_loss, abs=1e-5)
    # the filters: at the start and after the last step, which are the offered model's
    assert done["filters_step"] == 8 and done["filters"]["shape"] == [8, 1, 3, 3]
    assert not np.array_equal(explain.decode(done["filters"]), explain.decode(done["initial_filters"]))
    name = done["model"]
    assert name.startswith("trained-") and name in model_names(server)
    code, described = call(server, "GET", f"/api/model?name={name}")
    assert code == 200 and described["accuracy"] == done["test"]["accuracy"] and described["parameters"] == 13610
    assert described["title"] == done["model_title"] == f"Trained here #{name[8:]}: Original network, sgd, " \
        "lr 0.1, batches of 32, 1 epoch on 256 images"
    np.testing.assert_array_equal(explain.decode(described["filters"]), explain.decode(done["filters"]))
    # the very model fit gives for these settings, and its accuracy on the 10,000 test images
    settings = train.check_settings(TINY)
    x, y, x_test, y_test = train.load_mnist()
    model = train.build(settings, x[:256])
    fit(model, x[:256], y[:256], epochs=1, batch_size=32, optimizer=optim.SGD(lr=0.1), verbose=0, rng=0)
    served = server.app.models[name].model
    for (key, mine), (_, theirs) in zip(model.state_dict().items(), served.state_dict().items(), strict=True):
        np.testing.assert_array_equal(mine, theirs, err_msg=key)
    scores = evaluate(model, x_test, y_test)
    assert done["test"]["images"] == 10_000 and done["test"]["accuracy"] == scores["accuracy"]
    assert done["test"]["loss"] == pytest.approx(scores["loss"], rel=1e-9)
    assert served.class_names == [str(k) for k in range(10)]
    assert served.normalization == {"mean": [0.0], "std": [1.0]}  # as `numpycnn train` gives the original one
    # and it draws: /api/predict and the learning routes take it by name
    code, answer = call(server, "POST", "/api/predict", {"image": SEVEN, "model": name})
    assert code == 200 and answer["model"] == name and math.isclose(sum(answer["probabilities"]), 1, abs_tol=1e-5)
    code, answer = call(server, "POST", "/api/gradients", {"image": SEVEN, "model": name, "target": 7})
    assert code == 200 and answer["loss"] > 0


def test_the_curve_is_a_bounded_number_of_means(server):
    """Many steps give at most MAX_POINTS points, each the mean of a few steps, none across an epoch's end."""
    run = train.Run(1, train.check_settings({"batch_size": 8, "images": 10_000, "epochs": 3}))
    watch = train.Watch(train.TrainingJob(publish=lambda *a: ("x", "x")), run)
    assert (run.settings.steps_per_epoch, watch.stride, watch.filter_every) == (1250, 13, 25)
    watch.trainer = type("Trainer", (), {"epoch": 0, "model": models.seed_cnn()})()
    for batch in range(1250):
        watch.on_batch_end(batch, {"loss": float(batch % 13), "accuracy": 0.5, "size": 8})
    assert len(run.curve["step"]) == math.ceil(1250 / 13) and run.curve["step"][-1] == 1250
    assert run.curve["loss"][0] == pytest.approx(6.0) and run.curve["step"][:2] == [13, 26]
    assert run.filters_step == 1250 and 3 * len(run.curve["step"]) <= train.MAX_POINTS  # 3 such epochs


def test_models_trained_here_are_kept_up_to_a_bound():
    app = App([ServedModel("seed", "seed", models.seed_cnn(), "test")])
    names = [app.add_trained(models.seed_cnn(), f"run {k}", 0.5)[0] for k in range(MAX_TRAINED + 2)]
    assert names == [f"trained-{k}" for k in range(1, MAX_TRAINED + 3)]
    assert list(app.models) == ["seed", *names[-MAX_TRAINED:]]
    assert app.models[names[-1]].title == f"Trained here #{MAX_TRAINED + 2}: run {MAX_TRAINED + 1}"


# -- one at a time, cancel, and what is left after -----------------------------------------------------------
def test_a_second_training_is_refused_and_cancel_stops_the_first(server):
    before = model_names(server)
    run = start(server, LONG)
    training_steps(server)
    code, answer = call(server, "POST", "/api/train", TINY)
    assert code == 409 and set(answer) == {"error"} and "one runs at a time" in answer["error"]
    code, answer = call(server, "POST", "/api/train/cancel", {"id": run["id"] + 1})
    assert code == 409 and f"Training {run['id'] + 1} is running" in answer["error"]
    code, answer = call(server, "POST", "/api/train/cancel", {"id": run["id"]})
    assert code == 200 and answer["cancel_requested"] and answer["id"] == run["id"]
    stopped = ended(server, timeout=10)
    assert stopped["state"] == "cancelled" and stopped["model"] is None and "Cancelled" in stopped["message"]
    assert 1 <= stopped["step"] <= answer["step"] + 1 and stopped["test"] is None  # at the next step
    assert model_names(server) == before
    code, answer = call(server, "POST", "/api/train/cancel", {})
    assert code == 409 and "No training is running" in answer["error"]
    # clean: the next training starts and ends
    start(server, TINY)
    assert ended(server)["state"] == "done"


def test_the_drawing_routes_answer_while_a_training_runs(server):
    run = start(server, LONG)
    before = training_steps(server)
    code, page = call(server, "GET", "/api/models")
    assert code == 200
    for model in ("seed", "lenet5"):
        code, answer = call(server, "POST", "/api/predict", {"image": SEVEN, "model": model})
        assert code == 200 and answer["label"] == "7"
    code, answer = call(server, "POST", "/api/sgd-step", {"image": SEVEN, "target": 1, "lr": 0.01})
    assert code == 200
    during = status(server)
    assert during["id"] == run["id"] and during["state"] == "training" and during["step"] >= before["step"]
    call(server, "POST", "/api/train/cancel", {})
    assert ended(server, timeout=10)["state"] == "cancelled"


def test_a_training_that_diverges_fails_and_the_next_one_starts(server):
    start(server, {"model": "lenet5", "optimizer": "adam", "lr": 1.0, "batch_size": 8, "images": 1000})
    failed = ended(server)
    assert failed["state"] == "failed" and "diverged" in failed["message"] and failed["model"] is None
    start(server, TINY)
    assert ended(server)["state"] == "done"


def test_data_that_cannot_be_read_fails_with_its_message(server, monkeypatch):
    def missing():
        raise DataError("no verified copy of train-images-idx3-ubyte.gz")

    monkeypatch.setattr(server.app.training, "data", None)
    monkeypatch.setattr(train, "load_mnist", missing)
    start(server, TINY)
    failed = ended(server)
    assert failed["state"] == "failed" and "no verified copy" in failed["message"]


BAD_SETTINGS = [
    ({"epochs": 4}, "`epochs` must be an integer in [1, 3]. Got 4."),
    ({"epochs": 0}, "`epochs` must be an integer in [1, 3]"),
    ({"epochs": 1.5}, "`epochs` must be an integer"),
    ({"epochs": True}, "`epochs` must be an integer"),
    ({"images": 63}, "`images` must be an integer in [64, 10,000]"),
    ({"images": 10_001}, "`images` must be an integer in [64, 10,000]"),
    ({"images": "all"}, "`images` must be an integer"),
    ({"batch_size": 7}, "`batch_size` must be an integer in [8, 256]"),
    ({"batch_size": 257}, "`batch_size` must be an integer in [8, 256]"),
    ({"lr": 0}, "`lr` must be a number in (0, 1]"),
    ({"lr": -0.1}, "`lr` must be a number in (0, 1]"),
    ({"lr": 1.5}, "`lr` must be a number in (0, 1]"),
    ({"lr": "0.1"}, "`lr` must be a number"),
    ({"lr": None}, "`lr` must be a number"),
    ({"optimizer": "rmsprop"}, "`optimizer` must be one of 'sgd', 'adam'"),
    ({"model": "deep"}, "`model` must be one of 'seed', 'lenet5'"),
    ({"model": ["seed"]}, "`model` must be one of"),
    ({"seed": -1}, "`seed` must be an integer in [0, 2,147,483,647]"),
    ({"epoch": 1}, "Unknown setting 'epoch'"),
]


@pytest.mark.parametrize(("settings", "message"), BAD_SETTINGS, ids=[json.dumps(s) for s, _ in BAD_SETTINGS])
def test_bad_settings_are_refused(server, settings, message):
    code, answer = call(server, "POST", "/api/train", {**TINY, **settings})
    assert code == 400 and set(answer) == {"error"} and message in answer["error"]
    assert not status(server)["running"]


@pytest.mark.parametrize(("method", "path", "raw", "code", "message"), [
    ("POST", "/api/train", b"[1]", 400, "JSON object"),
    ("POST", "/api/train", b'{"lr": NaN}', 400, "`lr` must be a number in (0, 1]"),
    ("POST", "/api/train", b"{", 400, "not valid JSON"),
    ("POST", "/api/train/cancel", b'{"id": "1"}', 400, "`id` must be an integer"),
    ("POST", "/api/train/cancel", b'{"now": true}', 400, "takes only `id`"),
    ("GET", "/api/train", None, 405, "answers POST only"),
    ("GET", "/api/train/cancel", None, 405, "answers POST only"),
    ("POST", "/api/train/status", b"{}", 405, "POST is not served"),
    ("POST", "/api/train/start", b"{}", 404, "POST is not served"),
])
def test_bad_requests_to_the_training_routes(server, method, path, raw, code, message):
    got, answer = call(server, method, path, raw=raw)
    assert got == code and set(answer) == {"error"} and message in answer["error"]


def test_the_status_before_any_training_gives_the_limits():
    srv = make_server(port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        answer = status(srv)
        assert (answer["state"], answer["running"], answer["id"]) == ("idle", False, None)
        assert answer["limits"]["epochs"] == [1, 3] and answer["limits"]["images"] == [64, 10_000]
        assert answer["defaults"] == asdict(train.Settings())
    finally:
        srv.shutdown()
        srv.server_close()


# -- shutting down while a training runs ---------------------------------------------------------------------
def test_closing_the_server_ends_a_running_training():
    srv = make_server(port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    start(srv, LONG)
    training_steps(srv)
    thread = srv.app.training.thread
    began = time.monotonic()
    srv.shutdown()
    srv.server_close()
    assert time.monotonic() - began < 5 and not thread.is_alive()
    assert srv.app.training.status()["state"] == "cancelled"


def test_ctrl_c_on_numpycnn_serve_ends_a_running_training():
    proc = subprocess.Popen([sys.executable, "-m", "numpycnn", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        line = proc.stdout.readline()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        srv = type("Remote", (), {"server_address": ("127.0.0.1", port)})()
        start(srv, LONG)
        training_steps(srv)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
