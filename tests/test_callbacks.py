"""Callbacks: hooks, early stopping, model checkpoints, learning-rate schedules, checkpoint and resume."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from numpycnn import ModelFileError, TrainingError
from numpycnn.datasets import load
from numpycnn.layers import BatchNorm1D, Dense, Dropout, Flatten, ReLU
from numpycnn.model.io import load_model
from numpycnn.model.sequential import Sequential
from numpycnn.model.zoo import deep_cnn
from numpycnn.optim import SGD, Adam
from numpycnn.optim.schedules import StepLR
from numpycnn.training.augment import make_augment
from numpycnn.training.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    TrainingCheckpoint,
)
from numpycnn.training.loop import fit
from numpycnn.training.resume import generator_from_state, generator_state


@cache
def mnist(n: int = 512) -> tuple[np.ndarray, np.ndarray]:
    x, y = load("mnist", "train", download=False)
    return x[:n], y[:n]


def mlp(seed: int = 0) -> Sequential:
    layers = [Flatten(), Dense(784, 32), BatchNorm1D(32), ReLU(), Dropout(0.3), Dense(32, 10)]
    return Sequential(layers, input_shape=(1, 28, 28)).initialize(seed)


def snapshot(model: Sequential) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.state_dict().items()}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


class Recorder(Callback):
    """Records the hooks called, and the weights after each epoch."""

    def __init__(self):
        self.events: list[str] = []
        self.weights: list[dict[str, np.ndarray]] = []
        self.lrs: list[float] = []

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_batch_end(self, batch, logs=None):
        self.events.append("batch")
        self.lrs.append(self.trainer.optimizer.lr)
        assert set(logs) == {"loss", "accuracy", "size"}

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(f"epoch_end {epoch}")
        self.weights.append(snapshot(self.trainer.model))

    def on_train_end(self, logs=None):
        self.events.append("train_end")


class Scripted(Callback):
    """Puts a scripted metric ``score`` into each epoch's logs (before the callbacks after it read them)."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.values[epoch]


# -- hooks --------------------------------------------------------------------------------------------------
def test_hooks_are_called_in_order():
    x, y = mnist(200)
    recorder = Recorder()
    fit(mlp(), x, y, epochs=2, batch_size=64, optimizer=SGD(lr=0.1), callbacks=[recorder], verbose=0, rng=0)
    epoch = ["batch"] * 4  # ceil(200 / 64)
    assert recorder.events == ["train_begin", "epoch_begin 0", *epoch, "epoch_end 0",
                               "epoch_begin 1", *epoch, "epoch_end 1", "train_end"]


def test_a_callback_can_stop_training():
    class StopAfterFirst(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.trainer.stop_training = True

    x, y = mnist(128)
    history = fit(mlp(), x, y, epochs=5, optimizer=SGD(lr=0.1), callbacks=[StopAfterFirst()], verbose=0)
    assert history.epoch == [0]


# -- early stopping -----------------------------------------------------------------------------------------
def test_early_stopping_stops_and_restores_the_best_weights():
    x, y = mnist(256)
    recorder = Recorder()
    stopper = EarlyStopping(monitor="score", patience=2)
    scores = [3.0, 2.0, 2.5, 2.6, 1.0, 0.5]  # best at epoch 1; epochs 2 and 3 do not improve
    model = mlp()
    history = fit(model, x, y, epochs=6, optimizer=SGD(lr=0.1), rng=0, verbose=0,
                  callbacks=[Scripted(scores), recorder, stopper])
    assert history.epoch == [0, 1, 2, 3]
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 1 and stopper.best == 2.0
    assert not same(recorder.weights[3], recorder.weights[1])  # training did change the weights
    assert same(snapshot(model), recorder.weights[1])


def test_early_stopping_min_delta_and_mode():
    x, y = mnist(128)
    stopper = EarlyStopping(monitor="score", patience=1, min_delta=0.1, mode="max",
                            restore_best_weights=False)
    history = fit(mlp(), x, y, epochs=5, optimizer=SGD(lr=0.1), verbose=0,
                  callbacks=[Scripted([0.5, 0.55, 0.9, 0.95, 0.99]), stopper])
    assert history.epoch == [0, 1]  # +0.05 is below min_delta


def test_early_stopping_on_val_loss_needs_validation_data():
    x, y = mnist(128)
    with pytest.raises(ValueError, match=r"EarlyStopping: `monitor` must be a metric fit computes\. "
                                         r"Got 'val_loss'\. Pass validation_data"):
        fit(mlp(), x, y, epochs=2, optimizer=SGD(lr=0.1), callbacks=[EarlyStopping()], verbose=0)


def test_early_stopping_on_real_validation_loss_runs():
    x, y = mnist(256)
    stopper = EarlyStopping(patience=1)
    history = fit(mlp(), x, y, epochs=2, optimizer=SGD(lr=0.1), validation_split=0.25, callbacks=[stopper],
                  verbose=0, rng=0)
    assert stopper.best == min(history.history["val_loss"])


# -- learning-rate schedules --------------------------------------------------------------------------------
def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    x, y = mnist(128)
    recorder = Recorder()
    optimizer = SGD(lr=0.1)
    history = fit(mlp(), x, y, epochs=3, batch_size=64, optimizer=optimizer, verbose=0,
                  callbacks=[LearningRateScheduler(StepLR(step_size=1, gamma=0.5)), recorder])
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.05, 0.025])
    np.testing.assert_allclose(recorder.lrs, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_learning_rate_scheduler_takes_a_function():
    x, y = mnist(128)
    history = fit(mlp(), x, y, epochs=2, optimizer=SGD(lr=0.2), verbose=0,
                  callbacks=[LearningRateScheduler(lambda epoch, base: base / (epoch + 1))])
    np.testing.assert_allclose(history.history["lr"], [0.2, 0.1])


def test_learning_rate_scheduler_rejects_bad_schedules():
    with pytest.raises(TypeError, match="`schedule` must be an object with lr_at"):
        LearningRateScheduler(0.1)
    x, y = mnist(64)
    with pytest.raises(ValueError, match=r"a finite learning rate >= 0\. Got -1\.0"):
        fit(mlp(), x, y, epochs=1, optimizer=SGD(lr=0.1), verbose=0,
            callbacks=[LearningRateScheduler(lambda epoch, base: -1.0)])


# -- model checkpoints --------------------------------------------------------------------------------------
def test_model_checkpoint_saves_every_epoch_with_a_pattern(tmp_path):
    x, y = mnist(128)
    recorder = Recorder()
    fit(mlp(), x, y, epochs=2, optimizer=SGD(lr=0.1), verbose=0, rng=0,
        callbacks=[recorder, ModelCheckpoint(tmp_path / "m-{epoch:02d}.safetensors")])
    for epoch in (0, 1):
        loaded = load_model(tmp_path / f"m-{epoch + 1:02d}.safetensors")
        assert same(snapshot(loaded), recorder.weights[epoch])


def test_model_checkpoint_save_best_only(tmp_path):
    x, y = mnist(128)
    recorder = Recorder()
    path = tmp_path / "best.safetensors"
    fit(mlp(), x, y, epochs=4, optimizer=SGD(lr=0.1), verbose=0, rng=0,
        callbacks=[Scripted([0.5, 0.3, 0.4, 0.35]), recorder,
                   ModelCheckpoint(path, save_best_only=True, monitor="score")])
    assert same(snapshot(load_model(path)), recorder.weights[1])


# -- checkpoint and resume ----------------------------------------------------------------------------------
class Crash(Callback):
    """Simulates a crash (Ctrl-C, power cut) at the start of an epoch."""

    def __init__(self, at_epoch: int):
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt


def resumable_run(path, epochs=3, crash_at=None, resume=False, seed=0):
    """Fit a fresh small conv net (batch norm, two dropouts) with Adam, a schedule and augmentation."""
    x, y = mnist(384)
    model, optimizer = deep_cnn(widths=(4, 4, 8), hidden=16, seed=seed), Adam(lr=2e-3)
    callbacks = [LearningRateScheduler(StepLR(step_size=1, gamma=0.7)),
                 EarlyStopping(patience=5, restore_best_weights=False),  # best weights are not checkpointed
                 TrainingCheckpoint(path)]
    if crash_at is not None:
        callbacks.append(Crash(crash_at))
    history = fit(model, x, y, epochs=epochs, batch_size=32, optimizer=optimizer, validation_split=0.25,
                  callbacks=callbacks, augment=make_augment(shift=2, rotate=10.0), rng=seed, verbose=0,
                  resume_from=path if resume else None)
    return model, optimizer, history


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one_bit_for_bit(tmp_path):
    straight, straight_opt, straight_history = resumable_run(tmp_path / "a.safetensors")

    with pytest.raises(KeyboardInterrupt):
        resumable_run(tmp_path / "b.safetensors", crash_at=1)  # epoch 0 done and saved, then the crash
    resumed, resumed_opt, resumed_history = resumable_run(tmp_path / "b.safetensors", resume=True, seed=123)

    assert same(snapshot(straight), snapshot(resumed))
    a, b = straight_opt.state_dict(), resumed_opt.state_dict()
    assert a["scalars"] == b["scalars"] and same(a["arrays"], b["arrays"])
    assert resumed_history.epoch == [0, 1, 2]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert resumed_history.history[key] == straight_history.history[key], key
    assert resumed_history.gradients == straight_history.gradients  # gradient health, saved in the checkpoint
    assert len(resumed_history.gradients["0.Conv2D"]["update_ratio"]) == 3
    for index in (11, 15):  # the two Dropout layers' generators continue alike
        assert straight.layers[index].name == "Dropout"
        assert np.array_equal(straight.layers[index].rng.random(4), resumed.layers[index].rng.random(4))


def test_resume_reaches_different_weights_without_the_generator_states(tmp_path, monkeypatch):
    """The check above can fail: resuming without restoring the shuffle generator changes the result."""
    import numpycnn.training.resume as resume

    straight, _, _ = resumable_run(tmp_path / "a.safetensors")
    with pytest.raises(KeyboardInterrupt):
        resumable_run(tmp_path / "b.safetensors", crash_at=1)
    original = resume.generator_from_state
    calls = []

    def forgetful(text):
        calls.append(text)
        return np.random.default_rng(99) if len(calls) == 1 else original(text)

    monkeypatch.setattr(resume, "generator_from_state", forgetful)
    resumed, _, _ = resumable_run(tmp_path / "b.safetensors", resume=True)
    assert not same(snapshot(straight), snapshot(resumed))


def test_nan_loss_leaves_the_last_checkpoint_untouched(tmp_path):
    path = tmp_path / "run.safetensors"

    class ReadFile(Callback):
        runs_last = True  # after TrainingCheckpoint (both run last; this one comes later in the list)

        def on_epoch_end(self, epoch, logs=None):
            self.saved = path.read_bytes()

    class Explode(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.trainer.optimizer.lr = 1e30

    x, y = mnist(256)
    reader = ReadFile()
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match=r"epoch 2, batch \d+/8"):
        fit(mlp(), x, y, epochs=3, batch_size=32, optimizer=SGD(lr=0.1), verbose=0, rng=0,
            callbacks=[Explode(), TrainingCheckpoint(path), reader])
    assert path.read_bytes() == reader.saved


def test_resume_from_a_missing_file_says_so(tmp_path):
    x, y = mnist(64)
    with pytest.raises(FileNotFoundError, match=r"`resume_from` must be an existing checkpoint file"):
        fit(mlp(), x, y, epochs=1, optimizer=SGD(lr=0.1), verbose=0, resume_from=tmp_path / "none")


def test_resume_after_the_last_epoch_trains_no_more(tmp_path):
    path = tmp_path / "done.safetensors"
    model, _, _ = resumable_run(path, epochs=2)
    resumed, _, history = resumable_run(path, epochs=2, resume=True)
    assert history.epoch == [0, 1]
    assert same(snapshot(model), snapshot(resumed))


def test_generator_states_round_trip_and_unknown_generators_are_refused():
    rng = np.random.default_rng(5)
    rng.random(3)
    copy = generator_from_state(generator_state(rng))
    assert np.array_equal(copy.random(5), rng.random(5))
    with pytest.raises(ModelFileError, match="unknown bit generator 'os.system'"):
        generator_from_state('{"bit_generator": "os.system", "state": {}}')
    with pytest.raises(ModelFileError, match="malformed"):
        generator_from_state("not json")
