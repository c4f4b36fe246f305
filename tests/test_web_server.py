"""``numpycnn serve`` over real HTTP on 127.0.0.1: answers, numbers, every refused request, concurrency, the CLI."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import web_drawings as drawings
from PIL import Image

from numpycnn import models, pretrained, reference
from numpycnn.cli import main
from numpycnn.web import explain
from numpycnn.web.server import MAX_BODY_BYTES, make_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def deep_file(tmp_path_factory):
    """An untrained deep_cnn with 32 channels in its first layers (more than the 16 maps shown), as a file."""
    path = tmp_path_factory.mktemp("web") / "deep.safetensors"
    model = models.deep_cnn(seed=0)
    model.class_names = [str(k) for k in range(10)]
    model.normalization = {"mean": [0.1307], "std": [0.3081]}
    model.save(path)
    return path


@pytest.fixture(scope="module")
def server(deep_file):
    srv = make_server(port=0, model_path=deep_file)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def call(server, method, path, body=None, headers=None, raw=None):
    """One request; returns (status, headers, parsed JSON or bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    conn.request(method, path, body=data, headers=hdrs)
    response = conn.getresponse()
    content = response.read()
    conn.close()
    is_json = response.getheader("Content-Type", "").startswith("application/json")
    return response.status, response, json.loads(content) if is_json else content


def raw_request(server, head: bytes, timeout=5.0) -> tuple[int, dict]:
    """Send bytes as they are (no body unless in ``head``); the status and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=timeout) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks)
    status = int(text.split(b" ", 2)[1])
    return status, json.loads(text.split(b"\r\n\r\n", 1)[1])


def predict(server, image, model=None):
    body = {"image": drawings.data_url(image)}
    if model:
        body["model"] = model
    status, _, data = call(server, "POST", "/api/predict", body)
    assert status == 200, data
    return data


def still_serving(server):
    status, _, data = call(server, "GET", "/api/models")
    assert status == 200 and data["models"]


# -- the page --------------------------------------------------------------------------------------------
def test_the_page_and_its_files(server):
    status, response, html = call(server, "GET", "/")
    assert status == 200 and response.getheader("Content-Type").startswith("text/html")
    assert "default-src 'self'" in response.getheader("Content-Security-Policy")
    for pinned in (b'<canvas id="pad"', b'id="prediction"', b'id="clear"', b"/static/app.js", b"/static/style.css"):
        assert pinned in html
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, response, body = call(server, "GET", f"/static/{name}")
        assert status == 200 and response.getheader("Content-Type").startswith(kind) and len(body) > 1000
    status, response, body = call(server, "HEAD", "/")
    assert status == 200 and body == b"" and int(response.getheader("Content-Length")) > 1000


# -- answers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["seed", "lenet5", "deep"])
def test_fixture_drawings_predict_their_labels_as_numpycnn_predict_does(server, model, tmp_path, capsys):
    for label, strokes in drawings.DIGITS.items():
        image = drawings.render(strokes)
        data = predict(server, image, model)
        assert data["label"] == label and data["model"] == model
        assert len(data["probabilities"]) == 10 and abs(sum(data["probabilities"]) - 1) < 1e-5
        path = tmp_path / f"{label}.png"
        image.save(path)
        assert main(["predict", str(pretrained.path(model)), str(path), "--json"]) == 0
        cli = json.loads(capsys.readouterr().out)
        assert cli["label"] == label
        np.testing.assert_allclose(data["probabilities"], cli["probabilities"], atol=2e-6)


def test_every_layer_is_sent_and_the_last_one_gives_the_probabilities(server):
    data = predict(server, drawings.render(drawings.DIGITS["3"]), "lenet5")
    model = pretrained.load("lenet5")
    described = call(server, "GET", "/api/model?name=lenet5")[2]
    assert len(data["layers"]) == len(model.layers) == len(described["layers"])
    for act, layer in zip(data["layers"], described["layers"], strict=True):
        assert act["shape"] == layer["output_shape"]
    logits = explain.decode(data["layers"][-1]).astype(np.float64)
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(softmax, data["probabilities"], atol=1e-6)
    pixels = np.array(data["input"]["pixels"], np.uint8).reshape(data["input"]["shape"])
    assert pixels.shape == (1, 28, 28) and pixels.max() == 255 and pixels[0, 0, 0] == 0  # white ink on black


def test_more_maps_than_shown_are_cut_to_sixteen(server):
    data = predict(server, drawings.render(drawings.DIGITS["4"]), "file")
    first = data["layers"][0]
    assert (first["shown"], first["total"], first["shape"]) == (16, 32, [32, 28, 28])
    assert explain.decode(first).shape == (16, 28, 28)


def _reference_value(layer_input, weight, bias, config, at):
    out = reference.conv2d_forward(layer_input[None].astype(np.float64), weight.astype(np.float64),
                                   None if bias is None else bias.astype(np.float64), config["stride"],
                                   config["padding"])
    return out[(0, *at)]


@pytest.mark.parametrize(("model", "layer", "at"), [
    ("seed", 0, (2, 10, 12)), ("seed", 0, (7, 0, 25)),  # the original network's only convolution
    ("lenet5", 0, (1, 0, 0)),  # padding 2: the window reaches outside the picture
    ("lenet5", 3, (5, 4, 6)),  # 6 input channels
    ("file", 3, (9, 0, 27)),  # no bias, followed by batch norm and ReLU
])
def test_the_convolution_step_equals_the_layer_and_the_loop_reference(server, model, layer, at):
    image = drawings.render(drawings.DIGITS["2"])
    data = predict(server, image, model)
    channel, row, col = at
    status, _, step = call(server, "POST", "/api/conv-step", {"image": drawings.data_url(image), "model": model,
                                                              "layer": layer, "channel": channel, "row": row,
                                                              "col": col})
    assert status == 200, step
    described = call(server, "GET", f"/api/model?name={model}")[2]["layers"][layer]
    entry = server.app.models[model]
    weight = entry.model.layers[layer].params["weight"]
    bias = entry.model.layers[layer].params.get("bias")
    norm = entry.model.normalization  # the layer's input: the prepared picture, scaled, through the layers before
    layer_input = (np.array(data["input"]["pixels"], np.float32).reshape(1, 1, 28, 28) / 255 - norm["mean"][0]) \
        / norm["std"][0]
    for before in entry.model.layers[:layer]:
        layer_input = before.forward(layer_input.astype(np.float32), training=False)
    layer_input = layer_input[0]
    if layer > 0 and data["layers"][layer - 1]["shown"] == data["layers"][layer - 1]["total"]:
        np.testing.assert_allclose(explain.decode(data["layers"][layer - 1]), layer_input, rtol=1e-5, atol=1e-6)
    expected = _reference_value(layer_input, weight, bias, described["config"], at)
    sent = float(explain.decode(data["layers"][layer])[at]) if channel < 16 else step["layer_value"]
    assert step["layer_value"] == pytest.approx(sent, abs=1e-7)
    assert step["output"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert step["output"] == pytest.approx(step["layer_value"], rel=1e-5, abs=1e-5)
    assert step["sum"] + step["bias"] == pytest.approx(step["output"], abs=1e-12)
    products = np.array(step["products"])
    np.testing.assert_allclose(products, np.array(step["window"]) * np.array(step["kernel"]), rtol=1e-12)
    np.testing.assert_allclose(step["kernel"], weight[channel], rtol=1e-7)
    assert step["sum"] == pytest.approx(products.sum(), abs=1e-9)
    if model == "file":
        assert [t["name"] for t in step["then"]] == ["BatchNorm2D", "ReLU"]
        assert step["then"][1]["value"] == max(0.0, step["then"][0]["value"])


def test_models_are_listed_and_described(server):
    status, _, listing = call(server, "GET", "/api/models")
    assert status == 200 and listing["default"] == "file"
    assert [m["name"] for m in listing["models"]] == ["file", "seed", "lenet5", "deep"]
    assert {m["name"]: m["accuracy"] for m in listing["models"]}["seed"] == pretrained.SHIPPED["seed"].test_accuracy
    status, _, seed = call(server, "GET", "/api/model?name=seed")
    assert status == 200 and seed["parameters"] == 13610 and seed["conv_layers"] == [0]
    assert [layer["output_shape"] for layer in seed["layers"]] == [[8, 26, 26], [8, 26, 26], [8, 13, 13], [1352],
                                                                    [10]]
    np.testing.assert_array_equal(explain.decode(seed["filters"]), pretrained.load("seed").layers[0].params["weight"])
    assert call(server, "GET", "/api/model")[2]["name"] == "file"


# -- refusals ----------------------------------------------------------------------------------------------
def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _gif():
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="GIF")
    return buffer.getvalue()


def _url(media, raw):
    import base64

    return f"data:{media};base64," + base64.b64encode(raw).decode()


HUGE_PNG = _png(Image.new("1", (6000, 6000)))  # 36 Mpx of zeros: a few kilobytes compressed
PNG_OF_7 = _png(drawings.render(drawings.DIGITS["7"]))

BAD_PREDICTIONS = [
    ("not JSON", b"{'image': 1}", 400, "not valid JSON"),
    ("not UTF-8", b"\xff\xfe{}", 400, "not valid JSON"),
    ("a JSON list", b"[1, 2]", 400, "JSON object"),
    ("no image", b"{}", 400, "data URL"),
    ("image is a number", b'{"image": 7}', 400, "data URL"),
    ("not a data URL", b'{"image": "http://example.org/7.png"}', 400, "data URL"),
    ("GIF", json.dumps({"image": _url("image/gif", b"GIF89a")}).encode(), 415, "PNG, JPEG or WebP"),
    ("SVG", json.dumps({"image": _url("image/svg+xml", b"<svg/>")}).encode(), 415, "PNG, JPEG or WebP"),
    ("bad base64", b'{"image": "data:image/png;base64,abc$%^"}', 400, "base64"),
    ("not an image", json.dumps({"image": _url("image/png", b"hello, world")}).encode(), 400, "readable PNG"),
    ("a GIF called PNG", json.dumps({"image": _url("image/png", _gif())}).encode(), 415, "Got GIF"),
    ("too many pixels", json.dumps({"image": _url("image/png", HUGE_PNG)}).encode(), 413, "the limit is"),
    ("truncated PNG", json.dumps({"image": _url("image/png", PNG_OF_7[: len(PNG_OF_7) // 2])}).encode(), 400,
     "damaged"),
    ("blank drawing", json.dumps({"image": _url("image/png", _png(Image.new("RGB", (280, 280), "white")))}).encode(),
     422, "blank"),
    ("unknown model", json.dumps({"image": _url("image/png", PNG_OF_7), "model": "../etc"}).encode(), 404,
     "must be one of"),
]


@pytest.mark.parametrize(("case", "body", "status", "message"), BAD_PREDICTIONS, ids=[c[0] for c in BAD_PREDICTIONS])
def test_bad_predictions_get_a_4xx_and_a_json_message(server, case, body, status, message):
    got, _, data = call(server, "POST", "/api/predict", raw=body)
    assert got == status, data
    assert set(data) == {"error"} and message in data["error"] and "Traceback" not in data["error"]
    still_serving(server)


BAD_STEPS = [
    ({"layer": 1, "channel": 0, "row": 0, "col": 0}, 400, "not Conv2D"),
    ({"layer": 0, "channel": 8, "row": 0, "col": 0}, 400, "`channel` must be in [0, 7]"),
    ({"layer": 0, "channel": 0, "row": 26, "col": 0}, 400, "`row` must be in [0, 25]"),
    ({"layer": 0, "channel": 0, "row": 0, "col": -1}, 400, "`col` must be in [0, 25]"),
    ({"layer": 99, "channel": 0, "row": 0, "col": 0}, 400, "`layer` must be in [0, 4]"),
    ({"layer": "0", "channel": 0, "row": 0, "col": 0}, 400, "`layer` must be an integer"),
    ({"layer": 0, "channel": True, "row": 0, "col": 0}, 400, "`channel` must be an integer"),
    ({"layer": 0, "channel": 0, "row": 0}, 400, "`col` must be an integer"),
]


@pytest.mark.parametrize(("where", "status", "message"), BAD_STEPS)
def test_bad_convolution_steps_are_refused(server, where, status, message):
    got, _, data = call(server, "POST", "/api/conv-step", {"image": _url("image/png", PNG_OF_7), "model": "seed",
                                                           **where})
    assert got == status and message in data["error"], data
    still_serving(server)


def test_a_body_over_the_limit_is_refused_without_being_read(server):
    head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n").encode()
    status, data = raw_request(server, head)  # no body is ever sent: reading it would hang past the timeout
    assert status == 413 and "limit" in data["error"]
    status, data = raw_request(server, head.replace(f"{MAX_BODY_BYTES + 1}".encode(), b"10000000000000"))
    assert status == 413
    still_serving(server)


@pytest.mark.parametrize(("head", "status"), [
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\r\n", 411),
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n",
     400),
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", 415),
    (b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 50\r\n"
     b"\r\n{}", 400),  # the client stops after 2 of 50 bytes: half-closed below
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /api/models HTTP/1.1\r\nHost: evil.example:8000\r\n\r\n", 403),
])
def test_malformed_requests_get_their_status(server, head, status):
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as sock:
        sock.sendall(head)
        sock.shutdown(socket.SHUT_WR)
        text = b"".join(iter(lambda: sock.recv(65536), b""))
    assert int(text.split(b" ", 2)[1]) == status, text
    assert "error" in json.loads(text.split(b"\r\n\r\n", 1)[1])
    still_serving(server)


@pytest.mark.parametrize("path", [
    "/nope", "/static/", "/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py",
    "/static/%2e%2e%2f%2e%2e%2fio.py", "//etc/passwd", "/static/../../../../etc/passwd", "/server.py",
    "/static/static/app.js", "/index.html/../server.py",
])
def test_files_come_only_from_the_static_folder(server, path):
    status, _, data = call(server, "GET", path)
    assert status == 404 and "error" in data
    still_serving(server)


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/api/predict"), ("DELETE", "/"), ("PATCH", "/api/models"), ("OPTIONS", "/"), ("TRACE", "/"),
    ("FOO", "/"), ("GET", "/api/predict"), ("GET", "/api/conv-step"), ("POST", "/api/models"), ("POST", "/"),
])
def test_unknown_methods_get_405(server, method, path):
    status, response, data = call(server, method, path, raw=b"{}" if method in ("POST", "PUT", "PATCH") else None)
    assert status == 405 and "error" in data
    still_serving(server)


def test_eight_clients_at_once_get_the_same_answers_as_one_at_a_time(server):
    jobs = [(label, model) for model in ("seed", "lenet5", "file") for label in ("0", "2", "3", "7")][:8]
    images = {label: drawings.render(drawings.DIGITS[label]) for label in drawings.DIGITS}
    alone = [predict(server, images[label], model) for label, model in jobs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda job: predict(server, images[job[0]], job[1]), jobs))
    for one, other in zip(alone, together, strict=True):
        assert one["probabilities"] == other["probabilities"]
        assert [layer["data"] for layer in one["layers"]] == [layer["data"] for layer in other["layers"]]


# -- the command and the package ---------------------------------------------------------------------------
def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_numpycnn_serve_prints_the_url_serves_and_stops_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "numpycnn", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        line = proc.stdout.readline()
        assert line.startswith("numpycnn serve: http://127.0.0.1:"), line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/models")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "MISSING", "--port", "0"], "does not exist"),
    (["serve", "--port", "70000"], "must be in [0, 65535]"),
])
def test_numpycnn_serve_errors_are_one_line(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / "missing.safetensors") if a == "MISSING" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_import_numpycnn_imports_neither_the_server_nor_playwright():
    code = ("import sys, numpycnn; numpycnn.models; numpycnn.io; "
            "print([m for m in sys.modules if m.startswith(('numpycnn.web', 'playwright', 'http.server'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("dilation", "groups", "stride", "padding"), [(2, 1, 1, 0), (1, 2, 2, 1), (3, 4, 1, 2)])
def test_the_convolution_step_follows_dilation_and_groups(dilation, groups, stride, padding):
    """The open sum of one output, per input channel of the filter's group at every dilation-th pixel, equals the
    layer's own value."""
    from numpycnn import Sequential
    from numpycnn.layers import Conv2D

    model = Sequential([Conv2D(4, 8, 3, stride=stride, padding=padding, dilation=dilation, groups=groups)])
    model.initialize(seed=3)
    x = np.random.default_rng(0).standard_normal((1, 4, 13, 11)).astype(np.float32)
    outputs = explain.layer_outputs(model, x)
    _, f_total, h_out, w_out = outputs[0].shape
    for channel, row, col in [(0, 0, 0), (f_total - 1, h_out - 1, w_out - 1), (f_total // 2, h_out // 2, 1)]:
        step = explain.conv_step(model, x, outputs, 0, channel, row, col)
        assert step["groups"] == groups and step["dilation"] == [dilation, dilation]
        assert np.shape(step["window"]) == (4 // groups, 3, 3)
        assert step["output"] == pytest.approx(step["layer_value"], rel=1e-5, abs=1e-5)
