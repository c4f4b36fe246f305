"""Gradient health (numpycnn.training.health): the figures fit records per layer and epoch are the norms they claim
to be, recording them changes nothing, they survive history.json and checkpoints, and diagnose names the classic
unhealthy runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from numpycnn.cli import plots
from numpycnn.layers import Conv2D, Dense, Flatten, ReLU
from numpycnn.model.sequential import Sequential
from numpycnn.model.zoo import seed_cnn
from numpycnn.optim import SGD, Adam
from numpycnn.training.callbacks import History
from numpycnn.training.health import HEALTH_KEYS, WARN_RATIO, diagnose
from numpycnn.training.loop import fit


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, n)
    return x, y


def small(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return Sequential([Conv2D(1, 2, 3, rng=rng), ReLU(), Flatten(), Dense(72, 3, rng=rng)],
                      input_shape=(1, 8, 8)).astype(dtype)


def manual_health(model, x, y, optimizer, batch_size):
    """The figures computed by hand, step by step, on a copy of the training (no shuffle): per layer the mean of
    ||g|| and of ||theta_after - theta_before|| / ||theta_before|| over the steps."""
    from numpycnn.layers.losses import CrossEntropyLoss

    loss = CrossEntropyLoss()
    layers = [i for i, layer in enumerate(model.layers) if layer.params]
    norms, ratios = {i: [] for i in layers}, {i: [] for i in layers}
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size].astype(model.dtype), y[start:start + batch_size]
        model.zero_grad()
        loss.forward(model.forward(xb, training=True), yb)
        model.backward(loss.backward())
        before = {i: np.concatenate([p.ravel() for p in model.layers[i].params.values()]) for i in layers}
        for i in layers:
            norms[i].append(np.linalg.norm(np.concatenate([g.ravel() for g in model.layers[i].grads.values()])))
        optimizer.step(model)
        for i in layers:
            after = np.concatenate([p.ravel() for p in model.layers[i].params.values()])
            ratios[i].append(np.linalg.norm(after - before[i]) / np.linalg.norm(before[i]))
    return {i: (np.mean(norms[i]), np.mean(ratios[i]), max(norms[i]), max(ratios[i])) for i in layers}


@pytest.mark.parametrize("make_optimizer", [lambda: SGD(lr=0.05, momentum=0.9), lambda: Adam(lr=1e-2)],
                         ids=["sgd-momentum", "adam"])
def test_recorded_figures_are_the_norms_of_the_gradients_and_of_the_steps_taken(make_optimizer):
    x, y = data()
    model = small()
    history = fit(model, x, y, epochs=1, batch_size=32, optimizer=make_optimizer(), shuffle=False, verbose=0)
    expected = manual_health(small(), x, y, make_optimizer(), 32)
    assert list(history.gradients) == ["0.Conv2D", "3.Dense"]
    for i, key in ((0, "0.Conv2D"), (3, "3.Dense")):
        fields = history.gradients[key]
        assert set(fields) == set(HEALTH_KEYS)
        np.testing.assert_allclose(fields["grad_norm"], [expected[i][0]], rtol=1e-12)
        np.testing.assert_allclose(fields["update_ratio"], [expected[i][1]], rtol=1e-9)
        np.testing.assert_allclose(fields["grad_norm_max"], [expected[i][2]], rtol=1e-12)
        np.testing.assert_allclose(fields["update_ratio_max"], [expected[i][3]], rtol=1e-9)
        assert fields["grad_norm_max"][0] > fields["grad_norm"][0]  # three steps that differ
        weights = np.concatenate([p.ravel() for p in model.layers[i].params.values()])
        np.testing.assert_allclose(fields["weight_norm"], [np.linalg.norm(weights)], rtol=1e-12)


def test_plain_sgd_update_ratio_is_lr_times_gradient_over_weight_norm():
    """For theta <- theta - lr g on one step, the ratio is exactly lr ||g|| / ||theta||."""
    x, y = data(32)
    model = small()
    before = {key: np.concatenate([p.ravel() for p in model.layers[i].params.values()])
              for i, key in ((0, "0.Conv2D"), (3, "3.Dense"))}
    history = fit(model, x, y, epochs=1, batch_size=32, optimizer=SGD(lr=0.3), shuffle=False, verbose=0)
    for key, fields in history.gradients.items():
        expected = 0.3 * fields["grad_norm"][0] / np.linalg.norm(before[key])
        assert fields["update_ratio"][0] == pytest.approx(expected, rel=1e-10)


def test_recording_changes_no_result_and_can_be_turned_off():
    x, y = data()
    runs = []
    for health in (True, False):
        model = small(dtype=np.float32)
        history = fit(model, x, y, epochs=2, batch_size=16, optimizer=Adam(lr=1e-2), rng=0, verbose=0,
                      gradient_health=health)
        runs.append((model.state_dict(), history))
    (on, with_health), (off, without) = runs
    assert all(np.array_equal(on[k], off[k]) for k in on)
    assert with_health.history["loss"] == without.history["loss"]
    assert len(with_health.gradients["3.Dense"]["grad_norm"]) == 2
    assert without.gradients == {}
    with pytest.raises(TypeError, match="gradient_health"):
        fit(small(), x, y, epochs=1, optimizer=SGD(lr=0.1), verbose=0, gradient_health="yes")


def test_a_lazily_built_model_is_followed_from_its_first_step():
    x, y = data(32)
    model = Sequential([Flatten(), Dense(64, 3, rng=np.random.default_rng(0))])
    history = fit(model, x, y, epochs=2, batch_size=32, optimizer=SGD(lr=0.1), verbose=0)
    assert list(history.gradients) == ["1.Dense"] and len(history.gradients["1.Dense"]["grad_norm"]) == 2


def test_history_round_trip_keeps_gradients_and_reads_older_files():
    history = History()
    history.append(0, {"loss": 1.0, "accuracy": 0.5, "lr": 0.1, "seconds": 1.0})
    history.append_gradients({"0.Conv2D": {"grad_norm": 0.5, "update_ratio": 1e-3, "weight_norm": 2.0}})
    data = json.loads(json.dumps(history.to_dict()))
    assert History.from_dict(data).gradients == history.gradients
    del data["gradients"]  # history.json and checkpoints written before gradient health
    assert History.from_dict(data).gradients == {}


def test_diagnose_is_silent_on_a_healthy_run_and_names_a_learning_rate_too_high_or_too_low():
    x, y = data(192)
    healthy = fit(small(), x, y, epochs=2, batch_size=32, optimizer=SGD(lr=0.05), verbose=0, rng=0)
    assert diagnose(healthy.gradients) == []
    with np.errstate(all="ignore"):
        high = fit(small(), x, y, epochs=1, batch_size=32, optimizer=SGD(lr=20.0), verbose=0, rng=0)
    findings = diagnose(high.gradients)
    assert any("too high" in f and "epoch 1" in f for f in findings), findings
    low = fit(small(), x, y, epochs=1, batch_size=32, optimizer=SGD(lr=1e-7), verbose=0, rng=0)
    findings = diagnose(low.gradients)
    assert findings and all("too low" in f for f in findings), findings
    assert min(low.gradients["0.Conv2D"]["update_ratio"]) < WARN_RATIO[0]


def test_diagnose_sees_vanishing_gradients_in_a_deep_net_initialised_too_small():
    rng = np.random.default_rng(0)
    layers = [Flatten()]
    width = 64
    for _ in range(6):
        dense = Dense(width, width, rng=rng)
        dense.params["weight"] *= 0.05
        layers += [dense, ReLU()]
    layers.append(Dense(width, 3, rng=rng))
    x, y = data(64)
    history = fit(Sequential(layers).astype(np.float64), x, y, epochs=1, batch_size=32, optimizer=SGD(lr=0.01),
                  verbose=0)
    norms = [fields["grad_norm"][0] for fields in history.gradients.values()]
    assert norms[0] < 1e-3 * norms[-1]
    assert any("vanishing" in f for f in diagnose(history.gradients))


def test_diagnose_names_zero_and_overflowed_gradients():
    gradients = {"0.Conv2D": {"grad_norm": [0.0], "update_ratio": [0.0]},
                 "3.Dense": {"grad_norm": [math.inf], "update_ratio": [math.nan]}}
    findings = diagnose(gradients)
    assert any("0.Conv2D" in f and "all zero" in f for f in findings)
    assert any("3.Dense" in f and "overflowed" in f for f in findings)


def test_gradients_png_is_drawn_and_an_empty_record_is_refused(tmp_path):
    x, y = data()
    history = fit(seed_cnn(input_shape=(1, 8, 8), num_classes=3, seed=0), x, y, epochs=2, batch_size=32,
                  optimizer=SGD(lr=0.1), verbose=0)
    with Image.open(plots.plot_gradient_health(history.gradients, tmp_path / "gradients.png")) as image:
        assert image.format == "PNG" and image.width > 300
    with pytest.raises(ValueError, match="holds no epoch"):
        plots.plot_gradient_health({}, tmp_path / "none.png")
