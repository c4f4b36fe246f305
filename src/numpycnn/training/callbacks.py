"""Callbacks: code run by ``fit`` at the start and end of training, of each epoch and after each batch.

``fit`` itself records every epoch's metrics in a :class:`History`, returned when training ends.

Each callback sees the running ``fit`` as ``self.trainer`` (:class:`numpycnn.training.loop.Trainer`: ``model``,
``optimizer``, ``history``, ``epoch``, ``base_lr``, the generators, and the ``stop_training`` flag).

``TrainingCheckpoint`` and ``fit(..., resume_from=path)`` make training resumable bit for bit: the checkpoint
holds the weights and buffers, the optimiser state, the shuffle and augmentation generators, every layer's
generator (dropout), the history, the epoch and the state of the other callbacks (:mod:`numpycnn.training.resume`
writes and restores that state).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from numpycnn.core.checks import fail, positive_int, real_in_range
from numpycnn.files.model_file import save_checkpoint, save_model

if TYPE_CHECKING:
    from numpycnn.training.loop import Trainer

#: The per-epoch lists every ``History`` holds (the ``val_`` lists stay empty without validation data).
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class History:
    """Per-epoch metrics of a ``fit`` call, like Keras' ``History``.

    Attributes
    ----------
    history : dict of str to list of float
        ``loss``, ``accuracy`` (training, averaged over the epoch's images), ``val_loss``, ``val_accuracy``
        (empty without validation data), ``lr`` (the learning rate used in the epoch) and ``seconds``.
    epoch : list of int
        The 0-based index of each recorded epoch.
    gradients : dict of str to dict of str to list of float
        Gradient health per layer with parameters (:mod:`numpycnn.training.health`), keyed ``"0.Conv2D"``:
        ``grad_norm`` and ``update_ratio`` (means over the epoch's steps) and ``weight_norm`` (at its end), one
        value per epoch; empty when ``fit`` ran with ``gradient_health=False``.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
        self.epoch: list[int] = []
        self.gradients: dict[str, dict[str, list[float]]] = {}

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        """Record the metrics ``logs`` of the 0-based ``epoch``."""
        self.epoch.append(int(epoch))
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def append_gradients(self, record: dict[str, dict[str, float]]) -> None:
        """Record one epoch's gradient health, ``{"0.Conv2D": {"grad_norm": ..., ...}}``, after :meth:`append`."""
        for layer, fields in record.items():
            lists = self.gradients.setdefault(layer, {})
            for key, value in fields.items():
                lists.setdefault(key, []).append(float(value))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy, as stored in checkpoints and ``history.json``."""
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()},
                "gradients": {layer: {k: list(v) for k, v in fields.items()}
                              for layer, fields in self.gradients.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """The ``History`` that :meth:`to_dict` wrote (from a checkpoint or ``history.json``; files written before
        gradient health was recorded have no ``gradients``)."""
        history = cls()
        history.epoch = [int(e) for e in data["epoch"]]
        history.history.update({k: [float(v) for v in values] for k, values in data["history"].items()})
        history.gradients = {str(layer): {str(k): [float(v) for v in values] for k, values in fields.items()}
                             for layer, fields in data.get("gradients", {}).items()}
        return history

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={sorted(k for k, v in self.history.items() if v)})"


class Callback:
    """Base class: override any of the hooks. ``logs`` holds the epoch's (or batch's) metrics.

    Epoch logs: ``loss``, ``accuracy``, ``val_loss`` and ``val_accuracy`` (with validation data), ``lr``,
    ``seconds``. Batch logs: ``loss``, ``accuracy`` and ``size`` of the batch.
    """

    #: Callbacks with ``runs_last = True`` run after all others (a checkpoint must see their updated state).
    runs_last = False
    #: In a distributed run (``fit(..., distributed=True)``) only rank 0 runs callbacks with
    #: ``rank_zero_only = True``: those that write files.
    rank_zero_only = False
    trainer: Trainer | None = None

    def set_trainer(self, trainer: Trainer) -> None:
        """Called by ``fit`` before training: the :class:`~numpycnn.training.loop.Trainer` the hooks may read."""
        self.trainer = trainer

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        """Called once before the first epoch (and after a resumed run's state is restored)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Called before each epoch; ``epoch`` is 0-based."""

    def on_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        """Called after each training step."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Called after each epoch, once its metrics (validation ones too) are in ``logs`` and the history."""

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        """Called once after the last epoch; not called when training fails."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state saved by ``TrainingCheckpoint`` (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def callback_keys(callbacks: Sequence[Callback]) -> list[str]:
    """Stable names of the callbacks, ``"0:EarlyStopping"``, used to match saved callback states."""
    return [f"{i}:{type(c).__name__}" for i, c in enumerate(callbacks)]


class _Monitor(Callback):
    """Shared logic for callbacks that track the best value of one metric."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        if mode not in ("auto", "min", "max"):
            fail(owner, "mode", "'auto', 'min' or 'max'", mode)
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.owner, self.monitor, self.mode = owner, monitor, mode
        self.min_delta = real_in_range(owner, "min_delta", min_delta, 0.0, math.inf)
        self.best = math.inf if mode == "min" else -math.inf

    def _check_monitor(self) -> None:
        if self.monitor.startswith("val_") and self.trainer is not None and not self.trainer.has_validation:
            fail(self.owner, "monitor", "a metric fit computes", self.monitor,
                 hint="Pass validation_data or validation_split to fit, or monitor 'loss'.")

    def _value(self, logs: dict[str, float] | None) -> float:
        logs = logs or {}
        if self.monitor not in logs:
            fail(self.owner, "monitor", f"one of the epoch logs {sorted(logs)}", self.monitor)
        return float(logs[self.monitor])

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _best_state(self) -> float | None:
        return None if math.isinf(self.best) else self.best  # JSON has no infinity

    def _load_best(self, best: float | None) -> None:
        self.best = (math.inf if self.mode == "min" else -math.inf) if best is None else float(best)


class EarlyStopping(_Monitor):
    """Stop training when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        An epoch log, e.g. ``"val_loss"`` or ``"val_accuracy"``.
    patience : int
        Epochs without improvement tolerated before stopping.
    min_delta : float
        The smallest change that counts as an improvement.
    restore_best_weights : bool
        At the end of training, put back the weights (and buffers) of the best epoch. After a resumed run the
        weights of a best epoch from before the interruption are not in the checkpoint and are not restored.
    mode : {"auto", "min", "max"}
        ``"auto"`` maximises metrics whose name contains ``"acc"`` and minimises others.

    Attributes
    ----------
    best, best_epoch, wait, stopped_epoch
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0,
                 restore_best_weights: bool = True, mode: str = "auto", verbose: int = 0) -> None:
        super().__init__("EarlyStopping", monitor, mode, min_delta)
        self.patience = positive_int("EarlyStopping", "patience", patience, minimum=0)
        self.restore_best_weights, self.verbose = bool(restore_best_weights), verbose
        self.wait, self.best_epoch, self.stopped_epoch = 0, None, None
        self.best_weights: dict[str, np.ndarray] | None = None

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        self._check_monitor()
        self._load_best(None)
        self.wait, self.best_epoch, self.stopped_epoch, self.best_weights = 0, None, None, None

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        value = self._value(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: v.copy() for k, v in self.trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            if self.verbose:
                print(f"EarlyStopping: {self.monitor} has not improved for {self.wait} epochs; "
                      f"stopping after epoch {epoch + 1} (best {self.best:.4f} in {self.best_epoch + 1}).")

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        last = self.trainer.history.epoch[-1] if self.trainer.history.epoch else None
        if self.best_weights is not None and self.best_epoch != last:
            self.trainer.model.load_state_dict(self.best_weights)
            if self.verbose:
                print(f"EarlyStopping: restored the weights of epoch {self.best_epoch + 1}.")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._best_state(), "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_best(state["best"])
        self.best_epoch, self.wait = state["best_epoch"], int(state["wait"])


class ModelCheckpoint(_Monitor):
    """Save the model with :func:`numpycnn.model.io.save_model` after each epoch, or when ``monitor`` improves.

    Parameters
    ----------
    path : str or Path
        File name; may hold ``{epoch}`` (1-based) and log names, e.g. ``"model-{epoch:02d}.safetensors"``.
    save_best_only : bool
        Save only when ``monitor`` improves on the best value so far.
    monitor, mode : see :class:`EarlyStopping`
    """

    rank_zero_only = True

    def __init__(self, path: str | os.PathLike, save_best_only: bool = False, monitor: str = "val_loss",
                 mode: str = "auto", verbose: int = 0) -> None:
        super().__init__("ModelCheckpoint", monitor, mode)
        self.path, self.save_best_only, self.verbose = str(path), bool(save_best_only), verbose

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        if self.save_best_only:
            self._check_monitor()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.save_best_only:
            value = self._value(logs)
            if not self._improved(value):
                return
            self.best = value
        path = Path(self.path.format(epoch=epoch + 1, **(logs or {})))
        path.parent.mkdir(parents=True, exist_ok=True)
        save_model(self.trainer.model, path)
        if self.verbose:
            print(f"ModelCheckpoint: saved {path}")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._best_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_best(state["best"])


class LearningRateScheduler(Callback):
    """Set ``optimizer.lr`` at the start of each epoch from a schedule.

    Parameters
    ----------
    schedule : object with ``lr_at(epoch, base_lr)`` (``numpycnn.optim.schedules``), or a callable of the same
        ``base_lr`` is the optimiser's learning rate when training began (``trainer.base_lr``).
    """

    def __init__(self, schedule: Any, verbose: int = 0) -> None:
        self.lr_at: Callable[[int, float], float]
        if callable(getattr(schedule, "lr_at", None)):
            self.lr_at = schedule.lr_at
        elif callable(schedule):
            self.lr_at = schedule
        else:
            fail("LearningRateScheduler", "schedule", "an object with lr_at(epoch, base_lr) or a callable",
                 schedule, error=TypeError)
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        lr = float(self.lr_at(epoch, self.trainer.base_lr))
        if not (math.isfinite(lr) and lr >= 0):
            fail("LearningRateScheduler", "schedule", "a finite learning rate >= 0", lr,
                 hint=f"It returned this for epoch {epoch}.")
        self.trainer.optimizer.lr = lr
        if self.verbose:
            print(f"LearningRateScheduler: epoch {epoch + 1}, lr = {lr:.4g}")


class TrainingCheckpoint(Callback):
    """Save everything needed to resume training, atomically, after each epoch.

    Resume with ``fit(..., resume_from=path)`` on a freshly built model and optimiser of the same kind: the
    remaining epochs then produce, bit for bit, the weights of a run that was never interrupted.

    Parameters
    ----------
    path : str or Path
        The checkpoint file (safetensors layout, written by :func:`numpycnn.model.io.save_checkpoint`).
    run : dict, optional
        The identity of the run (``numpycnn train`` stores its settings), saved in the checkpoint's state as
        ``"run"`` so that a later ``--resume`` can refuse a checkpoint that belongs to another run.
    """

    runs_last = True
    rank_zero_only = True

    def __init__(self, path: str | os.PathLike, run: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.run = None if run is None else dict(run)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer = self.trainer
        state = trainer.training_state()
        if self.run is not None:
            state["run"] = self.run
        save_checkpoint(self.path, trainer.model, trainer.optimizer, state)
