"""The drawing page's learning routes over real HTTP: ``/api/gradients`` against PyTorch autograd on the same
weights and the same prepared input, ``/api/sgd-step`` against a step written by hand, ``/api/weight-gradient``
against the layer's own backward, every refused request, and the served model left exactly as it was."""

from __future__ import annotations

import base64
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import web_drawings as drawings
from test_web_server import PNG_OF_7, _url, call, still_serving

from numpycnn import models
from numpycnn.functional.activations import softmax_forward
from numpycnn.web import explain, learn
from numpycnn.web.server import App, RequestError, ServedModel, WebServer, make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/torch_models.py builds the twin

SEVEN = drawings.render(drawings.DIGITS["7"])
MODELS = ["seed", "lenet5", "deep", "file"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The shipped models and, as ``file``, a deep_cnn whose batch norms have running statistics, scales and
    shifts far from their defaults (so inference mode visibly differs from training mode), dropout kept."""
    path = tmp_path_factory.mktemp("learn") / "deep-bn.safetensors"
    model = models.deep_cnn(seed=0)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.name == "BatchNorm2D":
            c = layer.num_features
            layer.buffers["running_mean"][...] = rng.normal(0, 0.3, c)
            layer.buffers["running_var"][...] = rng.uniform(0.3, 3.0, c)
            layer.params["weight"][...] = rng.uniform(0.5, 1.5, c)
            layer.params["bias"][...] = rng.normal(0, 0.2, c)
    model.class_names = [str(k) for k in range(10)]
    model.normalization = {"mean": [0.1307], "std": [0.3081]}
    model.save(path)
    srv = make_server(port=0, model_path=path)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def post(server, path, **body):
    status, _, data = call(server, "POST", path, {"image": drawings.data_url(SEVEN), **body})
    return status, data


def ok(server, path, **body):
    status, data = post(server, path, **body)
    assert status == 200, data
    return data


def decode(blob):
    return np.frombuffer(base64.b64decode(blob["data"]), "<f4").reshape(blob["shape"])


def close(ours, theirs, tol, what):
    """``ours`` equals ``theirs`` to ``tol`` times the largest value of ``theirs`` (float32 sums differ in order)."""
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert np.shape(ours) == np.shape(theirs), what
    scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-6)
    assert float(np.abs(np.asarray(ours) - theirs).max(initial=0.0)) <= tol * scale, what


#: Float32 tolerance, relative to the largest value of each tensor; the measured worst case is 6.6e-7.
TOL = 1e-5


# -- /api/gradients against PyTorch --------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_gradients_match_pytorch_autograd(server, name):
    torch = pytest.importorskip("torch")
    from benchmarks.torch_models import to_torch

    model = server.app.models[name].model
    pixels, x = explain.prepare(model, SEVEN)
    target = 3  # not what the 7 is taken for: large gradients everywhere
    data = ok(server, "/api/gradients", model=name, target=target)
    assert data["target"] == target and data["model"] == name
    assert data["input"] == {"shape": list(pixels.shape), "pixels": pixels.reshape(-1).tolist()}

    # end to end: the whole twin in eval mode, cross-entropy of the target, autograd
    net = to_torch(model).eval()
    loss = torch.nn.functional.cross_entropy(net(torch.tensor(x)), torch.tensor([target]))
    loss.backward()
    assert data["loss"] == pytest.approx(loss.item(), rel=TOL)
    torch_params = dict(net.named_parameters())
    assert list(data["param_grads"]) == list(torch_params) == [n for n, _ in model.named_parameters()]
    for key, blob in data["param_grads"].items():
        close(decode(blob), torch_params[key].grad, TOL, key)

    # every layer: the API sends what numpycnn's backward computed, and each layer's backward is autograd's
    run = learn.backprop(learn.working_copy(model), x, target)
    assert len(data["layer_grads"]) == len(model.layers)
    for i, (sent, grad) in enumerate(zip(data["layer_grads"], run.output_grads, strict=True)):
        assert sent["index"] == i and sent["shape"] == list(grad.shape[1:]) and sent["total"] == grad.shape[1]
        np.testing.assert_array_equal(explain.decode(sent), grad[0, :sent["shown"]])
        assert sent["scale"] == pytest.approx(float(np.abs(grad).max()), rel=1e-7)
    layer_input = x
    for i, module in enumerate(to_torch(model).eval()):
        # the same input, the same upstream gradient: dL/d(input) and dL/d(parameters) of this layer alone.
        # (End to end, float32 rounding in a different order can flip which of two values a few 1e-8 apart
        # wins a max-pooling window, as it does for the shipped deep model, routing the gradient elsewhere.)
        xt = torch.tensor(layer_input, requires_grad=True)
        y = module(xt)
        close(run.outputs[i], y, TOL, f"layer {i} output")
        y.backward(torch.tensor(run.output_grads[i]))
        if i > 0:
            close(run.output_grads[i - 1], xt.grad, TOL, f"gradient at layer {i - 1}'s output")
        for key, p in module.named_parameters():
            close(run.param_grads[f"{i}.{key}"], p.grad, TOL, f"{i}.{key}")
        layer_input = run.outputs[i]
    logits = torch.tensor(run.outputs[-1], requires_grad=True)
    torch.nn.functional.cross_entropy(logits, torch.tensor([target])).backward()
    close(run.output_grads[-1], logits.grad, TOL, "gradient at the logits: p - y")


def test_the_gradient_at_the_logits_is_p_minus_y(server):
    data = ok(server, "/api/gradients", model="seed", target=1)
    p = np.array(data["probabilities"])
    logits_grad = explain.decode(data["layer_grads"][-1])
    np.testing.assert_allclose(logits_grad, p - np.eye(10)[1], atol=1e-6)
    assert data["loss"] == pytest.approx(-np.log(p[1]), rel=1e-5)
    predicted = ok(server, "/api/predict", model="seed")
    np.testing.assert_allclose(data["probabilities"], predicted["probabilities"], atol=2e-6)
    assert data["input"] == predicted["input"]


def test_inference_mode_uses_running_statistics_and_no_dropout(server):
    first = ok(server, "/api/gradients", model="file", target=4)
    again = ok(server, "/api/gradients", model="file", target=4)
    assert first == again  # dropout off: nothing random
    model = learn.working_copy(server.app.models["file"].model)
    _, x = explain.prepare(model, SEVEN)
    inference = softmax_forward(model.forward(x, training=False).astype(np.float64))[0][0]
    training = softmax_forward(model.forward(x, training=True).astype(np.float64))[0][0]  # batch statistics
    assert first["loss"] == pytest.approx(-np.log(inference[4]), rel=1e-5)
    assert abs(first["loss"] + np.log(training[4])) > 1e-3


# -- one SGD step ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "lr"), [("seed", 0.01), ("lenet5", 0.003), ("file", 0.05)])
def test_the_sgd_step_equals_a_step_by_hand(server, name, lr):
    target = 1
    grads = ok(server, "/api/gradients", model=name, target=target)
    step = ok(server, "/api/sgd-step", model=name, target=target, lr=lr)
    assert step["target"] == target and step["lr"] == lr and step["model"] == name
    assert step["before"]["loss"] == grads["loss"] and step["before"]["probabilities"] == grads["probabilities"]
    # w - lr * g for every parameter, by hand, then the prepared picture forward in inference mode
    model = learn.working_copy(server.app.models[name].model)
    old = {key: value.copy() for key, value in model.named_parameters()}
    for key, value in model.named_parameters():
        value[...] = value - np.float32(lr) * decode(grads["param_grads"][key])
    _, x = explain.prepare(model, SEVEN)
    logits = model.forward(x, training=False).astype(np.float64)
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(step["after"]["probabilities"], probabilities[0], atol=1e-6)
    assert step["after"]["loss"] == pytest.approx(-np.log(probabilities[0, target]), rel=1e-4, abs=1e-6)
    assert step["after"]["loss"] < step["before"]["loss"]
    assert step["after"]["probabilities"][target] > step["before"]["probabilities"][target]
    conv = step["filters"]["layer"]
    assert conv == 0 and step["filters"]["total"] == old["0.weight"].shape[0]
    np.testing.assert_array_equal(decode(step["filters"]["before"]), old["0.weight"][:64])
    np.testing.assert_array_equal(decode(step["filters"]["delta"]), (model.layers[0].params["weight"]
                                                                     - old["0.weight"])[:64])
    for update in step["updates"]:
        change = model.state_dict()[update["name"]].astype(np.float64) - old[update["name"]]
        assert update["norm"] == pytest.approx(np.linalg.norm(old[update["name"]]), rel=1e-6)
        assert update["update_norm"] == pytest.approx(np.linalg.norm(change), rel=1e-6)
    assert [u["name"] for u in step["updates"]] == list(grads["param_grads"])


def test_the_largest_learning_rate_is_accepted(server):
    step = ok(server, "/api/sgd-step", model="deep", target=1, lr=10)
    assert step["lr"] == 10 and np.isfinite(step["after"]["loss"])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")  # from the forward routes
def test_numbers_that_overflow_are_a_422_not_a_500():
    model = models.seed_cnn(seed=0)
    model.layers[-1].params["weight"][...] *= 1e37  # finite weights whose step overflows float32
    app = App([ServedModel("huge", "weights near float32's limit", model, "test")])
    body = {"image": drawings.data_url(SEVEN), "target": 1, "lr": 10}
    with pytest.raises(RequestError) as refused:
        app.learn("/api/sgd-step", body)
    assert refused.value.status == 422 and "smaller learning rate" in refused.value.message
    model.layers[0].params["weight"][...] *= 1e37
    for path in ("/api/gradients", "/api/sgd-step"):
        with pytest.raises(RequestError) as refused:
            app.learn(path, body)
        assert refused.value.status == 422 and "overflowed" in refused.value.message
    srv = WebServer(("127.0.0.1", 0), app)  # the forward routes too: NaN in an answer is a 422, not a 500
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        status, _, data = call(srv, "POST", "/api/predict", body)
        assert status == 422 and "overflow" in data["error"], data
        status, _, data = call(srv, "POST", "/api/conv-step", {**body, "layer": 0, "channel": 0, "row": 5, "col": 5})
        assert status == 200, data  # the first layer's values are still finite: an answer
        model.layers[0].params["weight"][...] = 3e38  # now they overflow: the step's `layer_value` is infinite
        status, _, data = call(srv, "POST", "/api/conv-step", {**body, "layer": 0, "channel": 0, "row": 6, "col": 6})
        assert status == 422 and "overflowed" in data["error"], data
    finally:
        srv.shutdown()
        srv.server_close()


# -- one weight's gradient as a sum ----------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "where"), [
    ("seed", (0, 2, 0, 1, 2)),
    ("lenet5", (0, 5, 0, 0, 0)),  # padding 2: the weight meets the zero padding at the picture's edges
    ("lenet5", (3, 7, 4, 2, 3)),  # 6 input channels
    ("file", (3, 20, 31, 2, 0)),  # no bias; the layer's input has 32 channels
])
def test_one_weight_gradient_is_the_sum_the_backward_computed(server, name, where):
    layer, f, k, i, j = where
    data = ok(server, "/api/weight-gradient", model=name, target=3, **dict(zip(learn.WEIGHT_KEYS, where, strict=True)))
    grads = ok(server, "/api/gradients", model=name, target=3)
    weight_grad = decode(grads["param_grads"][f"{layer}.weight"])
    assert data["layer_value"] == float(weight_grad[f, k, i, j])
    assert data["sum"] == pytest.approx(data["layer_value"], rel=1e-5, abs=1e-7)
    dy, inputs, products = (decode(data[key]).astype(np.float64) for key in ("output_grad", "inputs", "products"))
    assert dy.shape == tuple(data["output_shape"]) == tuple(grads["layer_grads"][layer]["shape"][1:])
    if f < grads["layer_grads"][layer]["shown"]:
        np.testing.assert_array_equal(dy, explain.decode(grads["layer_grads"][layer])[f])
    np.testing.assert_allclose(products, dy * inputs, rtol=1e-6)
    assert data["sum"] == pytest.approx(products.sum(), rel=1e-5, abs=1e-7)
    # the inputs the weight met: the layer's input, zero-padded, shifted by (i, j), every stride-th value
    model = learn.working_copy(server.app.models[name].model)
    _, h = explain.prepare(model, SEVEN)
    for before in model.layers[:layer]:
        h = before.forward(h, training=False)
    (ph, pw), (sh, sw) = data["padding"], data["stride"]
    padded = np.pad(h[0, k], ((ph, ph), (pw, pw)))
    expected = padded[i::sh][:dy.shape[0], :][:, j::sw][:, :dy.shape[1]]
    np.testing.assert_allclose(inputs, expected, rtol=1e-6, atol=1e-7)
    assert data["has_bias"] == (f"{layer}.bias" in grads["param_grads"])
    if data["has_bias"]:
        assert data["bias_sum"] == pytest.approx(data["bias_layer_value"], rel=1e-5, abs=1e-7)
    assert data["weight"] == float(model.layers[layer].params["weight"][f, k, i, j])
    if name == "lenet5" and layer == 0:
        assert inputs[0, 0] == 0.0 and ph == 2  # row 0, col 0 of the kernel sits in the padding at (0, 0)


# -- refusals ----------------------------------------------------------------------------------------------------
BAD_TARGETS = [("missing", None), ("bool", True), ("float", 3.0), ("fraction", 2.5), ("string", "3"),
               ("negative", -1), ("too large", 10), ("huge", 10**30), ("list", [3]), ("null", "null")]


@pytest.mark.parametrize("path", ["/api/gradients", "/api/sgd-step", "/api/weight-gradient"])
@pytest.mark.parametrize(("case", "target"), BAD_TARGETS, ids=[c[0] for c in BAD_TARGETS])
def test_a_target_that_is_not_a_class_index_is_a_400(server, path, case, target):
    body = {"image": _url("image/png", PNG_OF_7), "model": "seed", "lr": 0.1,
            **dict(zip(learn.WEIGHT_KEYS, (0, 0, 0, 0, 0), strict=True))}
    if case == "null":
        body["target"] = None
    elif target is not None:
        body["target"] = target
    status, _, data = call(server, "POST", path, body)
    assert status == 400 and set(data) == {"error"}, data
    assert "`target` must be an integer class index in [0, 9]" in data["error"]
    still_serving(server)


def test_the_target_is_checked_before_the_picture_is_decoded(server):
    status, _, data = call(server, "POST", "/api/gradients", {"image": "data:image/png;base64,!!", "target": 10})
    assert status == 400 and "`target`" in data["error"]


BAD_LRS = [("missing", None), ("zero", 0), ("negative", -0.1), ("too large", 10.5), ("string", "0.1"),
           ("bool", True), ("infinite", float("inf")), ("NaN", float("nan")), ("list", [0.1])]


@pytest.mark.parametrize(("case", "lr"), BAD_LRS, ids=[c[0] for c in BAD_LRS])
def test_a_learning_rate_outside_its_range_is_a_400(server, case, lr):
    body = {"image": _url("image/png", PNG_OF_7), "model": "seed", "target": 1}
    if lr is not None:
        body["lr"] = lr
    status, _, data = call(server, "POST", "/api/sgd-step", raw=json.dumps(body).encode())
    assert status == 400 and "`lr` must be a number in (0, 10]" in data["error"], data


BAD_WEIGHTS = [
    ({"layer": 1, "filter": 0, "in_channel": 0, "row": 0, "col": 0}, "not Conv2D"),
    ({"layer": 0, "filter": 8, "in_channel": 0, "row": 0, "col": 0}, "`filter` must be in [0, 7]"),
    ({"layer": 0, "filter": 0, "in_channel": 1, "row": 0, "col": 0}, "`in_channel` must be in [0, 0]"),
    ({"layer": 0, "filter": 0, "in_channel": 0, "row": 3, "col": 0}, "`row` must be in [0, 2]"),
    ({"layer": 0, "filter": 0, "in_channel": 0, "row": 0, "col": -1}, "`col` must be in [0, 2]"),
    ({"layer": 5, "filter": 0, "in_channel": 0, "row": 0, "col": 0}, "`layer` must be in [0, 4]"),
    ({"layer": 0, "filter": "0", "in_channel": 0, "row": 0, "col": 0}, "`filter` must be an integer"),
    ({"layer": 0, "filter": 0, "in_channel": 0, "row": 0}, "`col` must be an integer"),
]


@pytest.mark.parametrize(("where", "message"), BAD_WEIGHTS)
def test_a_weight_outside_the_kernel_is_a_400(server, where, message):
    status, _, data = call(server, "POST", "/api/weight-gradient", {"image": _url("image/png", PNG_OF_7),
                                                                    "model": "seed", "target": 1, **where})
    assert status == 400 and message in data["error"], data


@pytest.mark.parametrize("path", ["/api/gradients", "/api/sgd-step", "/api/weight-gradient"])
def test_other_refusals(server, path):
    where = {"lr": 0.1, **dict(zip(learn.WEIGHT_KEYS, (0, 0, 0, 0, 0), strict=True))}
    status, _, data = call(server, "GET", path)
    assert status == 405 and "POST only" in data["error"]
    blank = drawings.data_url(drawings.render([]))
    status, _, data = call(server, "POST", path, {"image": blank, "model": "seed", "target": 1, **where})
    assert status == 422 and "blank" in data["error"]
    status, _, data = call(server, "POST", path, {"image": _url("image/png", PNG_OF_7), "model": "nope",
                                                  "target": 1, **where})
    assert status == 404 and "must be one of" in data["error"]
    status, _, data = call(server, "POST", path, {"model": "seed", "target": 1, **where})
    assert status == 400 and "data URL" in data["error"]
    still_serving(server)


# -- the served model is never changed ---------------------------------------------------------------------------
def test_the_served_models_are_unchanged(server):
    snapshot = {}
    for name in MODELS:
        model = server.app.models[name].model
        snapshot[name] = ({key: value.copy() for key, value in model.state_dict().items()},
                          [{key: g.copy() for key, g in layer.grads.items()} for layer in model.layers],
                          [layer.cache for layer in model.layers])
    for name in MODELS:
        ok(server, "/api/gradients", model=name, target=2)
        ok(server, "/api/sgd-step", model=name, target=2, lr=0.5)
        ok(server, "/api/weight-gradient", model=name, target=2, layer=0, filter=0, in_channel=0, row=1, col=1)
    for name in MODELS:
        model = server.app.models[name].model
        state, grads, caches = snapshot[name]
        for key, value in model.state_dict().items():
            assert value.tobytes() == state[key].tobytes(), f"{name}: {key} changed"
        for layer, before in zip(model.layers, grads, strict=True):
            assert all(layer.grads[key].tobytes() == g.tobytes() for key, g in before.items()), name
        assert all(layer.cache is cache for layer, cache in zip(model.layers, caches, strict=True)), name


def test_gradients_and_predictions_at_once_give_the_answers_of_one_at_a_time(server):
    jobs = [("/api/gradients", {"model": "seed", "target": 1}), ("/api/predict", {"model": "seed"}),
            ("/api/gradients", {"model": "lenet5", "target": 7}), ("/api/sgd-step", {"model": "seed", "target": 4,
                                                                                    "lr": 0.1}),
            ("/api/gradients", {"model": "seed", "target": 2}), ("/api/predict", {"model": "lenet5"}),
            ("/api/weight-gradient", {"model": "seed", "target": 1, "layer": 0, "filter": 3, "in_channel": 0,
                                      "row": 2, "col": 2}), ("/api/gradients", {"model": "seed", "target": 1})]
    alone = [ok(server, path, **body) for path, body in jobs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda job: ok(server, job[0], **job[1]), jobs))
    assert alone == together
