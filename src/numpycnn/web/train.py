"""Train a small network on MNIST inside the server while the page watches: one training at a time, in a
background thread, by ``fit`` itself with a callback that records what the page draws.

A training is asked for with :class:`Settings` (checked by :func:`check_settings` against :data:`LIMITS`, so
that one request costs at most 3 epochs over 10,000 images: about 15 seconds for LeNet-5 in batches of 8 on
two cores). :class:`TrainingJob` runs it on a daemon thread, in these states::

    starting -> training -> testing -> done          (the model is handed to ``publish``: the page offers it)
           \\-----------\\-----------\\-> cancelled    (cancel(): the training stops at its next step)
            \\-----------\\-----------\\> failed       (a training that diverged, data that cannot be read)

and :meth:`TrainingJob.status` is what ``GET /api/train/status`` answers: the state, the step, the epoch, the
loss and accuracy curve so far, each epoch's figures, the first-layer filters (redrawn every few dozen steps)
and, at the end, the accuracy on MNIST's 10,000 test images.

The loop is ``fit``'s: :class:`Watch` is a :class:`~numpycnn.training.callbacks.Callback` whose
``on_batch_end`` records each step and, once cancel is asked for, raises :class:`Cancelled`, which ends
``fit`` within the epoch. The model is built and trained here alone: no served model, and none of their locks,
is touched until the finished model is handed over. Nothing is written to disk.

Examples
--------
>>> job = TrainingJob(publish=lambda model, about, accuracy: ("trained-1", about))  # doctest: +SKIP
>>> job.start(check_settings({"model": "seed", "images": 256, "epochs": 1}))  # doctest: +SKIP
>>> job.status()["state"]                                                    # doctest: +SKIP
'training'
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from numpycnn import datasets
from numpycnn.core import backend
from numpycnn.errors import DataError, TrainingError
from numpycnn.model.zoo import build_model
from numpycnn.optim import SGD, Adam
from numpycnn.training.callbacks import Callback
from numpycnn.training.loop import evaluate, fit
from numpycnn.web import explain

#: The networks a page may train, with the names people read.
NETWORKS = {"seed": "Original network", "lenet5": "LeNet-5"}
#: The optimisers a page may choose.
OPTIMIZERS = {"sgd": SGD, "adam": Adam}
#: What a page may ask for: a choice, or an interval ``[low, high]`` (``lr``: ``(0, high]``).
LIMITS: dict[str, Any] = {"model": list(NETWORKS), "optimizer": list(OPTIMIZERS), "lr": [0.0, 1.0],
                          "batch_size": [8, 256], "epochs": [1, 3], "images": [64, 10_000], "seed": [0, 2**31 - 1]}
#: The curve holds at most this many points; each is the mean over a few consecutive steps.
MAX_POINTS = 300
#: The first-layer filters are copied every this many steps at most (every step in a short training).
FILTER_EVERY = 25
#: Test images evaluated between two looks at the cancel flag.
TEST_CHUNK = 2000
#: States in which a training holds the job.
RUNNING = ("starting", "training", "testing")


class Busy(RuntimeError):
    """A training is running: a second one is refused."""


class NotRunning(RuntimeError):
    """Cancel was asked for, but no training (or not that one) is running."""


class Cancelled(Exception):
    """Raised by :class:`Watch` to end ``fit`` at the next step once cancel is asked for."""


# -- settings -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """One training: which network, how it learns and on how much data (defaults: a second of the original
    network)."""

    model: str = "seed"
    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 32
    epochs: int = 1
    images: int = 5000
    seed: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.images / self.batch_size)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def curve_every(self) -> int:
        """Steps per point of the curve: enough that the whole training makes at most :data:`MAX_POINTS`."""
        return max(1, math.ceil(self.steps / MAX_POINTS))

    def describe(self) -> str:
        """``"LeNet-5, adam, lr 0.001, batches of 32, 2 epochs on 5,000 images"``."""
        epochs = f"{self.epochs} epoch{'s' if self.epochs > 1 else ''}"
        return (f"{NETWORKS[self.model]}, {self.optimizer}, lr {self.lr:g}, batches of {self.batch_size}, "
                f"{epochs} on {self.images:,} images")


def check_settings(payload: dict[str, Any]) -> Settings:
    """The :class:`Settings` in a request's JSON object, each checked against :data:`LIMITS` (a missing one
    takes its default); ``ValueError`` naming the setting, its range and the value otherwise."""
    unknown = sorted(set(payload) - set(LIMITS))
    if unknown:
        raise ValueError(f"Unknown setting {unknown[0]!r:.40}: the settings are {', '.join(LIMITS)}.")
    values: dict[str, Any] = {}
    for key, value in payload.items():
        limit = LIMITS[key]
        if isinstance(limit[0], str):
            if not isinstance(value, str) or value not in limit:
                raise ValueError(f"`{key}` must be one of {', '.join(map(repr, limit))}. Got {value!r:.40}.")
        elif key == "lr":
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= limit[1]:
                raise ValueError(f"`lr` must be a number in (0, {limit[1]:g}]. Got {value!r:.40}.")
            value = float(value)
        elif isinstance(value, bool) or not isinstance(value, int) or not limit[0] <= value <= limit[1]:
            raise ValueError(f"`{key}` must be an integer in [{limit[0]:,}, {limit[1]:,}]. Got {value!r:.40}.")
        values[key] = value
    return Settings(**values)


# -- data and model -------------------------------------------------------------------------------------------
def load_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST's first :data:`LIMITS` ``images`` training images and labels, then the 10,000 test ones, from the
    copy that ships with the package (never downloaded from a request)."""
    x, y = datasets.load("mnist", "train", download=False)
    x_test, y_test = datasets.load("mnist", "test", download=False)
    n = LIMITS["images"][1]
    return x[:n].copy(), y[:n].copy(), x_test, y_test  # copies: the 60,000 images are not kept


def build(settings: Settings, x: np.ndarray) -> Any:
    """The network of ``settings``, initialised from its seed, with MNIST's class names and the input
    normalisation ``numpycnn train`` gives it (none for the original network, the training images' mean and
    standard deviation for LeNet-5)."""
    model = build_model(settings.model, seed=settings.seed)
    model.class_names = list(datasets.class_names("mnist"))
    if settings.model == "seed":
        model.normalization = {"mean": [0.0], "std": [1.0]}
    else:
        mean, std = datasets.channel_stats(x)
        model.normalization = {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}
    return model


def first_filters(model: Any) -> dict[str, Any] | None:
    """The first convolution's filters as the page reads them (at most :data:`explain.MAX_FILTERS`)."""
    conv = next((i for i, layer in enumerate(model.layers) if layer.name == "Conv2D"), None)
    if conv is None:
        return None
    weight = backend.to_host(model.layers[conv].params["weight"])  # (F, C, kh, kw)
    return {"layer": conv, "total": int(weight.shape[0]), **explain.encode(weight[:explain.MAX_FILTERS])}


# -- one training ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one training has done so far; changed only under its job's lock."""

    id: int
    settings: Settings
    state: str = "starting"
    step: int = 0
    epoch: int = 0
    curve: dict[str, list[float]] = field(default_factory=lambda: {"step": [], "loss": [], "accuracy": []})
    history: list[dict[str, float]] = field(default_factory=list)
    initial_filters: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None
    filters_step: int = 0
    test: dict[str, float] | None = None
    model: str | None = None
    model_title: str | None = None
    message: str | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def answer(self) -> dict[str, Any]:
        s = self.settings
        elapsed = self.seconds if self.seconds is not None else time.monotonic() - self.started
        return {"id": self.id, "state": self.state, "running": self.state in RUNNING,
                "cancel_requested": self.cancel.is_set(), "settings": asdict(s),
                "step": self.step, "steps": s.steps, "steps_per_epoch": s.steps_per_epoch,
                "curve_every": s.curve_every,
                "epoch": self.epoch, "epochs": s.epochs, "seconds": round(elapsed, 3),
                "curve": {key: list(values) for key, values in self.curve.items()},
                "history": [dict(entry) for entry in self.history],
                "initial_filters": self.initial_filters, "filters": self.filters, "filters_step": self.filters_step,
                "test": self.test, "model": self.model, "model_title": self.model_title, "message": self.message}


class Watch(Callback):
    """Records each step of ``fit`` into a :class:`Run`: the curve (a point per ``stride`` steps, the mean of
    their losses and accuracies weighted by batch size), each epoch's figures and the first-layer filters every
    ``filter_every`` steps; raises :class:`Cancelled` at the first step after cancel is asked for."""

    def __init__(self, job: TrainingJob, run: Run) -> None:
        self.job, self.run = job, run
        self.stride = run.settings.curve_every
        self.filter_every = max(1, min(FILTER_EVERY, run.settings.steps // 10))
        self.sums = [0.0, 0.0, 0]  # loss x size, correct guesses, images since the last point

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.run.cancel.is_set():
            raise Cancelled
        with self.job.lock:
            self.run.epoch = epoch

    def on_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        if self.run.cancel.is_set():
            raise Cancelled
        size = int(logs["size"])
        self.sums = [self.sums[0] + logs["loss"] * size, self.sums[1] + logs["accuracy"] * size,
                     self.sums[2] + size]
        step = self.trainer.epoch * self.run.settings.steps_per_epoch + batch + 1
        last = batch + 1 == self.run.settings.steps_per_epoch
        filters = first_filters(self.trainer.model) if step % self.filter_every == 0 or last else None
        with self.job.lock:
            self.run.step = step
            if step % self.stride == 0 or last:  # a point never spans two epochs
                loss, correct, seen = self.sums
                for key, value in (("step", step), ("loss", round(loss / seen, 6)),
                                   ("accuracy", round(correct / seen, 6))):
                    self.run.curve[key].append(value)
                self.sums = [0.0, 0.0, 0]
            if filters is not None:
                self.run.filters, self.run.filters_step = filters, step

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs or {}
        with self.job.lock:
            self.run.history.append({"epoch": epoch + 1, "loss": float(logs["loss"]),
                                     "accuracy": float(logs["accuracy"]), "seconds": round(logs["seconds"], 3)})


class TrainingJob:
    """At most one training at a time, on a daemon thread; the last one's :meth:`status` stays until the next.

    Parameters
    ----------
    publish : callable ``publish(model, description, accuracy) -> (name, title)``
        Called from the training thread with the trained model, a description of its settings and its test
        accuracy; it offers the model (the server adds it to ``/api/models``) and returns the name and the
        title it is offered under.
    """

    def __init__(self, publish: Callable[[Any, str, float], tuple[str, str]]) -> None:
        self.publish = publish
        self.lock = threading.Lock()
        self.run: Run | None = None
        self.thread: threading.Thread | None = None
        self.runs = 0
        self.data: tuple[np.ndarray, ...] | None = None

    def status(self) -> dict[str, Any]:
        """The last training's :meth:`Run.answer` (``{"state": "idle", ...}`` before the first), with the
        :data:`LIMITS` and the defaults a page offers."""
        with self.lock:
            answer = self.run.answer() if self.run is not None else {"id": None, "state": "idle", "running": False}
        return {**answer, "limits": LIMITS, "defaults": asdict(Settings())}

    def start(self, settings: Settings) -> dict[str, Any]:
        """Start a training of ``settings`` on a new thread; :class:`Busy` while another one runs.

        Returns the new training's status as it starts (``"running": true``), taken before its thread runs: a
        training that fails at once (no data) says so in the next status, never in this answer.
        """
        with self.lock:
            if self.run is not None and self.run.state in RUNNING:
                raise Busy(f"Training {self.run.id} is running (step {self.run.step} of {self.run.settings.steps}); "
                           "one runs at a time: wait for it to end, or cancel it.")
            self.runs += 1
            self.run = run = Run(self.runs, settings)
            answer = run.answer()
            self.thread = threading.Thread(target=self._train, args=(run,), name=f"numpycnn-train-{run.id}",
                                           daemon=True)
            self.thread.start()
        return {**answer, "limits": LIMITS, "defaults": asdict(Settings())}

    def cancel(self, run_id: int | None = None) -> dict[str, Any]:
        """Ask the running training (``run_id``'s, when given) to stop at its next step; :class:`NotRunning`
        if there is none. The state becomes ``"cancelled"`` once it has stopped."""
        with self.lock:
            run = self.run
            if run is None or run.state not in RUNNING or run_id not in (None, run.id):
                which = "No training" if run_id is None else f"Training {run_id}"
                raise NotRunning(f"{which} is running: there is nothing to cancel.")
            run.cancel.set()
        return self.status()

    def close(self, timeout: float = 10.0) -> None:
        """Cancel the running training and wait (at most ``timeout`` seconds) for its thread to end."""
        with self.lock:
            if self.run is not None and self.run.state in RUNNING:
                self.run.cancel.set()
            thread = self.thread
        if thread is not None:
            thread.join(timeout)

    # -- the thread ---------------------------------------------------------------------------------------------
    def _train(self, run: Run) -> None:
        try:
            model, accuracy = self._fit(run)
            name, title = self.publish(model, run.settings.describe(), accuracy)
            self._end(run, "done", model=name, model_title=title)
        except Cancelled:
            self._end(run, "cancelled", message="Cancelled: the partly trained network was dropped.")
        except (TrainingError, DataError, ValueError, TypeError, FloatingPointError) as err:
            self._end(run, "failed", message=str(err))
        except Exception as err:  # a bug: tell the page without a traceback, log it here
            print(f"numpycnn serve: training {run.id} failed: {err!r}", file=sys.stderr)
            self._end(run, "failed", message=f"Internal error ({type(err).__name__}).")

    def _fit(self, run: Run) -> tuple[Any, float]:
        """Build, train and test the network of ``run``; its model and test accuracy."""
        settings = run.settings
        if self.data is None:
            self.data = load_mnist()
        x, y, x_test, y_test = self.data
        x, y = x[:settings.images], y[:settings.images]
        model = build(settings, x)
        optimizer = OPTIMIZERS[settings.optimizer](lr=settings.lr)
        with self.lock:
            run.state, run.initial_filters = "training", first_filters(model)
            run.filters = run.initial_filters
        fit(model, x, y, epochs=settings.epochs, batch_size=settings.batch_size, optimizer=optimizer,
            callbacks=[Watch(self, run)], verbose=0, rng=settings.seed)
        with self.lock:
            run.state = "testing"
        loss = correct = 0.0
        for start in range(0, len(y_test), TEST_CHUNK):  # a look at the cancel flag between chunks
            if run.cancel.is_set():
                raise Cancelled
            part = slice(start, start + TEST_CHUNK)
            scores = evaluate(model, x_test[part], y_test[part])
            size = len(y_test[part])
            loss, correct = loss + scores["loss"] * size, correct + scores["accuracy"] * size
        test = {"loss": loss / len(y_test), "accuracy": correct / len(y_test), "images": len(y_test)}
        with self.lock:
            run.test = test
        return model, test["accuracy"]

    def _end(self, run: Run, state: str, **fields: Any) -> None:
        with self.lock:
            run.state, run.seconds = state, time.monotonic() - run.started
            for key, value in fields.items():
                setattr(run, key, value)
