"""fit / evaluate / predict: learning, history, reproducibility, data checks, NaN handling, buffers."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from numpycnn import TrainingError
from numpycnn.datasets import load
from numpycnn.datasets.transforms import channel_stats, standardize, to_float
from numpycnn.layers import BatchNorm1D, Dense, Dropout, Flatten, ReLU, Softmax
from numpycnn.model.sequential import Sequential, iter_parameters
from numpycnn.optim import SGD, Adam
from numpycnn.training.loop import HISTORY_KEYS, Batches, History, evaluate, fit, predict


@cache
def mnist(split: str = "train", n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    x, y = load("mnist", split, download=False)
    return x[:n], y[:n]


def mlp(seed: int = 0, dropout: float = 0.0, batch_norm: bool = False) -> Sequential:
    """A small dense network on MNIST images: fast enough for many short fits."""
    layers = [Flatten(), Dense(784, 32)]
    layers += [BatchNorm1D(32)] if batch_norm else []
    layers += [ReLU()]
    layers += [Dropout(dropout)] if dropout else []
    layers += [Dense(32, 10)]
    return Sequential(layers, input_shape=(1, 28, 28)).initialize(seed)


def weights(model: Sequential) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.state_dict().items()}


# -- learning -----------------------------------------------------------------------------------------------
def test_fit_seed_cnn_learns_in_one_epoch():
    from numpycnn.model.zoo import seed_cnn

    x, y = mnist()
    x_test, y_test = mnist("test", 1000)
    model = seed_cnn(seed=0)
    history = fit(model, x, y, epochs=1, batch_size=64, optimizer=SGD(lr=0.1), rng=0, verbose=0)
    scores = evaluate(model, x_test, y_test)
    assert history.history["accuracy"][0] > 0.5  # chance is 0.1
    assert scores["accuracy"] > 0.6, scores  # 0.731 measured with these seeds; chance is 0.1
    assert scores["loss"] < 1.2, scores


def test_fit_mlp_learns_and_loss_falls():
    x, y = mnist()
    history = fit(mlp(), x, y, epochs=3, optimizer=Adam(lr=3e-3), rng=0, verbose=0)
    loss = history.history["loss"]
    assert loss[0] > loss[1] > loss[2]
    assert history.history["accuracy"][-1] > 0.85


# -- history ------------------------------------------------------------------------------------------------
def test_history_contents_with_validation_split():
    x, y = mnist()
    history = fit(mlp(), x, y, epochs=2, optimizer=SGD(lr=0.05), validation_split=0.25, rng=0, verbose=0)
    assert isinstance(history, History)
    assert history.epoch == [0, 1]
    assert set(HISTORY_KEYS) <= set(history.history)
    for key in HISTORY_KEYS:
        assert len(history.history[key]) == 2, key
    assert history.history["lr"] == [0.05, 0.05]
    assert all(s > 0 for s in history.history["seconds"])
    assert all(0 <= a <= 1 for a in history.history["accuracy"] + history.history["val_accuracy"])


def test_history_val_lists_stay_empty_without_validation():
    x, y = mnist(n=256)
    history = fit(mlp(), x, y, epochs=1, optimizer=SGD(lr=0.05), rng=0, verbose=0)
    assert history.history["val_loss"] == [] and history.history["val_accuracy"] == []
    assert History.from_dict(history.to_dict()).history == history.history


def test_validation_split_holds_out_the_last_samples():
    """The validation metrics equal evaluate() on the last 25%, which training never saw."""
    x, y = mnist(n=400)
    model = mlp()
    history = fit(model, x, y, epochs=1, optimizer=SGD(lr=0), validation_split=0.25, rng=0, verbose=0)
    scores = evaluate(model, x[300:], y[300:])
    assert history.history["val_loss"][0] == pytest.approx(scores["loss"], rel=1e-6)
    assert history.history["val_accuracy"][0] == scores["accuracy"]


def test_initial_epoch_runs_the_remaining_epochs():
    x, y = mnist(n=256)
    history = fit(mlp(), x, y, epochs=3, initial_epoch=1, optimizer=SGD(lr=0.05), rng=0, verbose=0)
    assert history.epoch == [1, 2]


# -- reproducibility ----------------------------------------------------------------------------------------
def train_weights(rng: int, dropout: float = 0.2, augment=None) -> dict[str, np.ndarray]:
    x, y = mnist(n=512)
    model = mlp(seed=1, dropout=dropout, batch_norm=True)
    fit(model, x, y, epochs=2, batch_size=50, optimizer=Adam(lr=1e-3), rng=rng, verbose=0, augment=augment)
    return weights(model)


def test_same_seed_gives_bit_identical_weights():
    a, b, c = train_weights(rng=7), train_weights(rng=7), train_weights(rng=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_one_hot_labels_train_like_int_labels():
    x, y = mnist(n=256)
    a, b = mlp(), mlp()
    fit(a, x, y, epochs=1, optimizer=SGD(lr=0.1), rng=0, verbose=0)
    fit(b, x, np.eye(10, dtype=np.float32)[y], epochs=1, optimizer=SGD(lr=0.1), rng=0, verbose=0)
    assert all(np.array_equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_shuffle_false_uses_the_given_order():
    """Without shuffling, training does not depend on the seed."""
    x, y = mnist(n=256)
    a, b = mlp(), mlp()
    for model, seed in ((a, 0), (b, 1)):
        fit(model, x, y, epochs=1, optimizer=SGD(lr=0.1), shuffle=False, rng=seed, verbose=0)
    assert all(np.array_equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


# -- evaluate and predict -----------------------------------------------------------------------------------
def test_evaluate_and_predict_shapes_and_probabilities():
    x, y = mnist("test", 300)
    model = mlp()
    fit(model, *mnist(n=512), epochs=1, optimizer=SGD(lr=0.1), rng=0, verbose=0)
    probs = predict(model, x, batch_size=128)  # 3 batches, the last one short
    assert probs.shape == (300, 10) and probs.dtype == np.float32
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    scores = evaluate(model, x, y, batch_size=128)
    assert set(scores) == {"loss", "accuracy"}
    assert scores["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    nll = -np.mean(np.log(probs[np.arange(300), y].astype(np.float64)))
    assert scores["loss"] == pytest.approx(nll, rel=1e-4)
    np.testing.assert_array_equal(model.predict_classes(x), probs.argmax(axis=1))


def test_predict_returns_softmax_outputs_as_they_are():
    x, _ = mnist("test", 10)
    model = Sequential([Flatten(), Dense(784, 10), Softmax()], input_shape=(1, 28, 28)).initialize(0)
    np.testing.assert_array_equal(predict(model, x), model.forward(to_float(x), training=False))


def test_uint8_batches_match_to_float_and_standardize():
    """uint8 input is scaled and standardised per batch exactly as the datasets helpers do it."""
    x, y = mnist("test", 200)
    model, plain = mlp(), mlp()  # the same weights; ``plain`` has no normalisation
    mean, std = channel_stats(x)
    model.normalization = {"mean": mean.tolist(), "std": std.tolist()}
    ready = standardize(to_float(x), mean, std)
    np.testing.assert_array_equal(predict(model, x, batch_size=64), predict(plain, ready, batch_size=64))
    assert evaluate(model, x, y) == evaluate(plain, ready, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_floats_in_0_1_get_the_same_normalisation_as_uint8(dtype):
    """The same images give the same outputs and scores whatever their dtype (floats are x / 255)."""
    x, y = mnist("test", 200)
    model = mlp()
    mean, std = channel_stats(x)
    model.normalization = {"mean": mean.tolist(), "std": std.tolist()}
    scaled = (x / 255).astype(dtype)
    np.testing.assert_allclose(predict(model, scaled), predict(model, x), rtol=1e-5, atol=1e-6)
    assert evaluate(model, scaled, y)["accuracy"] == evaluate(model, x, y)["accuracy"]
    with pytest.warns(UserWarning, match="look like 0-255 pixels"):
        predict(model, x.astype(dtype))


def test_batches_reuse_one_buffer():
    x, _ = mnist(n=300)
    batches = Batches(x, 64, np.float32, None)
    first = batches.get(np.arange(64))
    second = batches.get(slice(64, 128))
    last = batches.get(np.arange(280, 300))
    assert np.shares_memory(first, second) and np.shares_memory(first, last)
    assert last.dtype == np.float32 and last.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(last, to_float(x[280:300]))


# -- NaN and infinite losses --------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_exploding_learning_rate_raises_training_error():
    x, y = mnist(n=512)
    with pytest.raises(TrainingError, match=r"epoch 1, batch \d+/8.*lower learning rate"):
        fit(mlp(), x, y, epochs=2, optimizer=SGD(lr=1e30), rng=0, verbose=0)


def test_nan_in_loss_is_caught_before_the_update():
    class NaNAtThirdBatch:
        def __init__(self):
            from numpycnn.layers.losses import CrossEntropyLoss

            self.inner, self.calls = CrossEntropyLoss(), 0

        def forward(self, logits, targets):
            self.calls += 1
            value = self.inner.forward(logits, targets)
            return float("nan") if self.calls == 3 else value

        def backward(self):
            return self.inner.backward()

    x, y = mnist(n=256)
    model = mlp()
    before = weights(model)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, batch 3/4"):
        fit(model, x, y, epochs=1, batch_size=64, optimizer=SGD(lr=0.0), loss=NaNAtThirdBatch(), verbose=0)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


# -- data checks --------------------------------------------------------------------------------------------
def bad_cases():
    x, y = mnist(n=64)
    return [
        ("x[:, 0]", x[:, 0], y, ValueError, r"x\.shape.*\(N, 1, 28, 28\).*x\[:, None\]"),
        ("x int32", x.astype(np.int32), y, TypeError, r"`x` must be uint8 images or a floating-point array"),
        ("x NaN", np.full((64, 1, 28, 28), np.nan, np.float32), y, ValueError, r"`x` must be finite"),
        ("short y", x, y[:-1], ValueError, r"`len\(y\)` must be the number of images \(64\)\. Got 63"),
        ("label 10", x, np.where(y == y[0], 10, y), ValueError,
         r"labels in \[0, 9\].*Got 'labels in \[0, 10\]'"),
        ("negative", x, y - 1, ValueError, r"labels in \[0, 9\]"),
        ("float y", x, y.astype(np.float32), TypeError, r"integer class labels.*astype\(np\.int64\)"),
        ("2D y", x, np.ones((64, 10)), ValueError, r"one-hot rows of shape \(64, 10\)"),
        ("empty", x[:0], y[:0], ValueError, r"N >= 1"),
    ]


@pytest.mark.parametrize("name, x, y, error, match", bad_cases(), ids=[c[0] for c in bad_cases()])
def test_fit_rejects_bad_data_before_training(name, x, y, error, match):
    model = mlp()
    before = weights(model)
    with pytest.raises(error, match=match):
        fit(model, x, y, epochs=1, optimizer=SGD(lr=0.1), verbose=0)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kwargs, error, match", [
    ({"epochs": 0}, ValueError, r"fit: `epochs` must be an integer >= 1\. Got 0"),
    ({"batch_size": 0}, ValueError, r"`batch_size` must be an integer >= 1"),
    ({"optimizer": None}, TypeError, r"`optimizer` must be an optimiser with a step\(model\)"),
    ({"validation_split": 1.0}, ValueError, r"`validation_split` must be a real number in \[0\.0, 1\.0\)"),
    ({"validation_split": 0.0001}, ValueError, r"a fraction leaving a sample on each side"),
    ({"validation_data": (np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.int64))}, ValueError,
     r"`validation_data\[0\]\.shape`"),
    ({"validation_data": (np.zeros((3, 1, 28, 28), np.uint8), np.zeros(2, np.int64))}, ValueError,
     r"`len\(validation_data\[1\]\)`"),
    ({"rng": "seed"}, TypeError, r"`rng` must be an int seed"),
    ({"augment": 3}, TypeError, r"`augment` must be a callable"),
    ({"callbacks": [print]}, TypeError, r"`callbacks\[0\]` must be a numpycnn.callbacks.Callback"),
])
def test_fit_rejects_bad_arguments(kwargs, error, match):
    x, y = mnist(n=64)
    args = {"epochs": 1, "optimizer": SGD(lr=0.1), "verbose": 0, **kwargs}
    with pytest.raises(error, match=match):
        fit(mlp(), x, y, **args)


def test_predict_hints_at_a_missing_batch_axis():
    x, _ = mnist(n=1)
    with pytest.raises(ValueError, match=r"Use x\[None\] for a single image"):
        predict(mlp(), x[0])


def test_model_that_cannot_take_the_input_is_reported():
    model = Sequential([Flatten(), Dense(100, 10)]).initialize(0)  # no input_shape to check against
    x, y = mnist(n=8)
    with pytest.raises(ValueError, match=r"fit: the model cannot take `x` of shape \(8, 1, 28, 28\)"):
        fit(model, x, y, epochs=1, optimizer=SGD(lr=0.1), verbose=0)


# -- progress output ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("verbose, lines", [(0, 0), (1, 2), (2, 2)])
def test_verbose_prints_a_line_per_epoch(capsys, verbose, lines):
    x, y = mnist(n=128)
    fit(mlp(), x, y, epochs=2, optimizer=SGD(lr=0.1), verbose=verbose, rng=0)
    captured = capsys.readouterr()
    out = [line for line in captured.out.splitlines() if line.strip()]
    assert len(out) == lines
    if lines:
        assert out[0].startswith("Epoch 1/2") and "loss: " in out[0] and "accuracy: " in out[0]
    if verbose == 0:
        assert captured.err == ""


def test_fit_leaves_the_callers_data_and_evaluate_leaves_the_model_alone():
    from numpycnn.training.augment import make_augment

    x, y = mnist(n=256)
    x_float = to_float(x)
    x_before, float_before = x.copy(), x_float.copy()
    model = mlp(batch_norm=True)
    model.normalization = {"mean": [0.13], "std": [0.31]}
    fit(model, x, y, epochs=1, optimizer=SGD(lr=0.1), augment=make_augment(), rng=0, verbose=0)
    fit(model, x_float, y, epochs=1, optimizer=SGD(lr=0.1), augment=make_augment(), rng=0, verbose=0)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(x_float, float_before)
    state = weights(model)
    evaluate(model, x, y)
    predict(model, x)
    assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())  # BN statistics too


def test_backward_without_input_grad_gives_identical_parameter_gradients():
    """``fit`` calls ``backward(grad, input_grad=False)``: the first conv skips dx, the other gradients match."""
    from numpycnn.model.zoo import deep_cnn, seed_cnn

    x = np.random.default_rng(0).random((6, 1, 28, 28), dtype=np.float32)
    for build in (seed_cnn, deep_cnn, mlp):
        grads = []
        for input_grad in (True, False):
            model = build(seed=0)
            model.forward(x, training=False)
            dx = model.backward(np.ones((6, 10), np.float32), input_grad=input_grad)
            assert (dx is None) == (not input_grad and build is not mlp)
            assert model.layers[0].__dict__.get("compute_input_grad", True)  # restored afterwards
            grads.append({k: g.copy() for k, _, g in iter_parameters(model)})
        for key in grads[0]:
            np.testing.assert_array_equal(grads[0][key], grads[1][key], err_msg=key)


def test_evaluate_and_predict_bound_their_batches_and_keep_no_caches(monkeypatch):
    """Inference lowers the batch size to the activation budget and drops each layer's cache once it has run."""
    from numpycnn.functional.activations import softmax_forward
    from numpycnn.model.zoo import deep_cnn
    from numpycnn.training import inference as training

    model = deep_cnn(seed=0)
    per_image = 32 * 28 * 28 * 4  # the largest activation, bytes per image
    assert training.inference_batch_size(model, (1, 28, 28), 1000) == training.INFERENCE_BYTES // per_image
    monkeypatch.setattr(training, "INFERENCE_BYTES", 3 * per_image)
    assert training.inference_batch_size(model, (1, 28, 28), 1000) == 3
    assert training.inference_batch_size(model, (1, 28, 28), 2) == 2
    x = np.random.default_rng(0).integers(0, 256, (7, 1, 28, 28), dtype=np.uint8)
    y = np.arange(7) % 10
    whole = model.forward(x / np.float32(255), training=False)
    np.testing.assert_allclose(model.predict(x), softmax_forward(whole)[0], rtol=1e-5, atol=1e-6)
    model.evaluate(x, y)
    assert all(layer.cache is None for layer in model.layers)
    assert all(step.cache is None for step in model.plan().steps)
