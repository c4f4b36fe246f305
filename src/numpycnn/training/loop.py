"""The training loop: ``fit``, ``evaluate`` and ``predict`` for a :class:`~numpycnn.model.sequential.Sequential`.

One training step on a batch :math:`(x_B, y_B)` of :math:`B` images is

.. math::

    z = f_\\theta(x_B), \\qquad L = \\frac{1}{B} \\sum_{i \\in B} \\ell(z_i, y_i), \\qquad
    g = \\frac{\\partial L}{\\partial \\theta} \\ \\text{(model.backward)}, \\qquad
    \\theta \\leftarrow \\text{optimizer.step}(\\theta, g)

Data: each batch is gathered from ``x`` (uint8 pixels or floats in [0, 1]) into a reused buffer, augmented (if
asked) and standardised with ``model.normalization`` (:mod:`numpycnn.training.batches` has the rules); the data
set is never converted whole. ``evaluate`` and ``predict`` live in :mod:`numpycnn.training.inference` and are
re-exported here.

Divergence stops training with :class:`~numpycnn.TrainingError`: a loss that is NaN or infinite, or that
grows to more than :data:`DIVERGENCE_FACTOR` times the first batch's (at least 1), and weights that are no
longer finite at the end of an epoch.

Devices: the data stays on the host. Each batch is gathered, augmented and standardised there, then sent to
the model's device with its labels in one copy each (:func:`~numpycnn.training.batches.to_model`); the loss and
the number of correct guesses come back as one scalar each.

Randomness: ``rng`` (a seed or a ``numpy.random.Generator``) gives two independent child generators, one for
the shuffle order and one for augmentation, so turning augmentation on does not change the order of batches.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.checks import boolean, fail, positive_int, real_in_range
from numpycnn.errors import TrainingError
from numpycnn.training.batches import Batches, check_inputs, check_labels, chunks, count_hits, to_model
from numpycnn.training.callbacks import HISTORY_KEYS, Callback, History, callback_keys
from numpycnn.training.distributed import DataParallel, SingleProcess, data_parallel
from numpycnn.training.health import GradientHealth
from numpycnn.training.inference import (
    INFERENCE_BYTES,
    default_loss,
    evaluate,
    evaluate_batches,
    inference_batch_size,
    predict,
)
from numpycnn.training.resume import training_state

if TYPE_CHECKING:
    from numpycnn.model.sequential import Sequential

__all__ = ["HISTORY_KEYS", "INFERENCE_BYTES", "Batches", "History", "Trainer", "check_inputs", "check_labels",
           "default_loss", "evaluate", "evaluate_batches", "fit", "inference_batch_size", "predict", "to_model"]

#: A loss this many times the first batch's loss (or 1, if larger) means training diverged.
DIVERGENCE_FACTOR = 1e4

#: A layer-free augmentation, ``augment(batch, rng) -> batch``, on float images in [0, 1], ``(B, C, H, W)``.
Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# -- arguments ---------------------------------------------------------------------------------------------
def _as_generator(owner: str, rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    fail(owner, "rng", "an int seed, a numpy.random.Generator or None", rng, error=TypeError)


# -- fit --------------------------------------------------------------------------------------------------
class Trainer:
    """The state of one ``fit`` call, shared with the callbacks as ``callback.trainer``.

    Attributes
    ----------
    model, optimizer, loss : the objects being trained
    history : History
    epoch : int
        The current 0-based epoch; ``epochs`` is the index one past the last.
    base_lr : float
        The optimiser's learning rate when training began; schedules scale it.
    rng, augment_rng : numpy.random.Generator
        The shuffle and augmentation generators (saved by ``TrainingCheckpoint``).
    stop_training : bool
        Set by a callback (``EarlyStopping``) to end training after the current epoch.
    has_validation : bool
    """

    def __init__(self, model: Sequential, optimizer: Any, loss: Any, callbacks: Sequence[Callback],
                 rng: np.random.Generator, epochs: int, verbose: int) -> None:
        self.model, self.optimizer, self.loss = model, optimizer, loss
        for i, callback in enumerate(callbacks):
            if not isinstance(callback, Callback):
                fail("fit", f"callbacks[{i}]", "a numpycnn.callbacks.Callback", callback, error=TypeError)
        #: The callbacks in the order they run: those with ``runs_last`` (checkpoints) after the others.
        self.callbacks = sorted(callbacks, key=lambda c: c.runs_last)
        self.rng, self.augment_rng = rng.spawn(2)
        self.epochs, self.verbose = epochs, verbose
        self.history = History()
        self.epoch = 0
        self.base_lr = float(optimizer.lr)
        self.stop_training = False
        self.has_validation = False
        #: The first batch's loss, and the loss above which training counts as diverged.
        self.first_loss, self.loss_limit = math.nan, math.inf
        #: How many processes train this model together: a :class:`~numpycnn.training.distributed.SingleProcess`,
        #: or a :class:`~numpycnn.training.distributed.DataParallel` over MPI. Every step goes through it.
        self.dist: DataParallel | SingleProcess = SingleProcess()
        #: Records each layer's gradient and update sizes per epoch (None with ``gradient_health=False``).
        self.health: GradientHealth | None = GradientHealth(model)

    def training_state(self) -> dict[str, Any]:
        """This run's state as JSON values, for a checkpoint (:func:`numpycnn.training.resume.training_state`)."""
        return training_state(self)

    @property
    def hooks(self) -> list[Callback]:
        """The callbacks this process runs: on ranks other than 0 of a distributed run, not the file writers."""
        if self.dist.rank == 0:
            return self.callbacks
        return [callback for callback in self.callbacks if not callback.rank_zero_only]

    def train_step(self, xb: np.ndarray, yb: np.ndarray, step: int = 0, steps: int = 1,
                   global_size: int | None = None) -> tuple[float, int]:
        """One step of gradient descent; returns the batch's mean loss and its number of correct guesses.

        Forward, loss, backward, then the gradients averaged over the processes (``self.dist``; on one process
        they are the batch's already), the divergence check on the batch's loss, and one optimiser step. In a
        distributed run ``xb`` is this process's shard of a global batch of ``global_size`` images, and the
        figures returned are the global batch's, the same on every process. Around the optimiser's step,
        ``self.health`` measures the gradients and the update (:mod:`numpycnn.training.health`).
        """
        model, loss = self.model, self.loss
        model.zero_grad()
        logits = model.forward(xb, training=True)
        value, hits = float(loss.forward(logits, yb)), count_hits(logits, yb)
        model.backward(loss.backward(), input_grad=False)
        value, hits = self.dist.average_gradients(model, value, hits, len(yb), global_size or len(yb))
        self.check_loss(value, step, steps)
        if self.health is not None:
            self.health.before_step()
        self.optimizer.step(model)
        if self.health is not None:
            self.health.after_step()
        return value, hits

    def check_loss(self, value: float, step: int, steps: int) -> None:
        """Stop training if a batch's loss is NaN or infinite, or grew past the divergence limit."""
        if not math.isfinite(value) or value > self.loss_limit:
            what = f"became {value}" if not math.isfinite(value) else (
                f"grew from {self.first_loss:.3g} to {value:.3g} (more than {DIVERGENCE_FACTOR:g} times)")
            self._diverged(f"the loss {what} at epoch {self.epoch + 1}, batch {step + 1}/{steps}")
        if self.loss_limit == math.inf:
            self.first_loss, self.loss_limit = value, DIVERGENCE_FACTOR * max(value, 1.0)

    def _diverged(self, what: str) -> None:
        err = TrainingError(
            f"fit: {what}: training diverged. Training stopped; checkpoints already written are unchanged. "
            f"Try a lower learning rate (lr={self.optimizer.lr:g}) or normalised inputs."
        )
        # every process sees the same summed loss and the same weights: all stop here
        raise self.dist.same_on_every_rank(err)

    def check_weights(self) -> None:
        """Stop training if a parameter is no longer finite."""
        for name, value in self.model.named_parameters():
            if not backend.get_array_module(value).isfinite(value).all():
                self._diverged(f"parameter {name!r} holds NaN or infinite values after epoch {self.epoch + 1}")

    def train_epoch(self, batches: Batches, y: np.ndarray, batch_size: int, shuffle: bool,
                    augment: Augment | None) -> dict[str, float]:
        """One pass over the training data in batches of ``batch_size``, shuffled if ``shuffle`` and augmented if
        ``augment`` is given; return the epoch's ``loss`` and ``accuracy`` (means over its images)."""
        order = self.rng.permutation(len(y)) if shuffle else None
        n = self.dist.usable(len(y), batch_size)
        labels = np.empty(min(batch_size, n), np.int64)
        parts = chunks(n, batch_size)
        total, correct = 0.0, 0
        with _progress(self, n) as bar:
            for step, part in enumerate(parts):
                index = part if order is None else order[part]
                size = part.stop - part.start  # the global batch; a distributed process takes its shard
                index = self.dist.shard(index)
                xb = batches.gather(index)
                yb = labels[: len(xb)]
                if isinstance(index, slice):
                    np.copyto(yb, y[index])
                else:
                    np.take(y, index, out=yb)
                if augment is not None:
                    xb = augment(xb, self.augment_rng)
                xb, yb = to_model(self.model, batches.standardise(xb)), to_model(self.model, yb)
                value, hits = self.train_step(xb, yb, step, len(parts), size)
                total, correct = total + value * size, correct + hits
                self._after_batch(bar, step, size, total, correct, part.stop, value, hits)
        return {"loss": total / n, "accuracy": correct / n}

    def _after_batch(self, bar: Any, step: int, size: int, total: float, correct: int, seen: int,
                     value: float, hits: int) -> None:
        if bar is not None:
            bar.set_postfix(loss=f"{total / seen:.4f}", accuracy=f"{correct / seen:.4f}", refresh=False)
            bar.update(size)
        hooks = self.hooks
        if hooks:
            logs = {"loss": value, "accuracy": hits / size, "size": size}
            for callback in hooks:
                callback.on_batch_end(step, logs)

    def report(self, logs: dict[str, float]) -> None:
        """Print the epoch's line (``Epoch 3/10 - 4.2s - loss: ...``) when ``verbose`` is at least 1."""
        if self.verbose < 1:
            return
        parts = [f"Epoch {self.epoch + 1}/{self.epochs}", f"{logs['seconds']:.1f}s"]
        parts += [f"{k}: {v:.4f}" for k, v in logs.items() if k not in ("lr", "seconds")]
        parts.append(f"lr: {logs['lr']:.3g}")
        print(" - ".join(parts), flush=True)


def _progress(trainer: Trainer, total: int) -> Any:
    if trainer.verbose != 1:
        return contextlib.nullcontext()
    from tqdm import tqdm

    return tqdm(total=total, desc=f"Epoch {trainer.epoch + 1}/{trainer.epochs}", unit="img", leave=False,
                dynamic_ncols=True)


def _split_validation(x: np.ndarray, y: np.ndarray, validation_data: Any, validation_split: float,
                      model: Sequential, classes: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """Return ``(x_train, y_train, (x_val, y_val) or None)``; a split takes the *last* samples, like Keras."""
    if validation_data is not None:
        if validation_split:
            fail("fit", "validation_split", "0 when validation_data is given", validation_split)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            fail("fit", "validation_data", "a pair (x_val, y_val)", type(validation_data).__name__,
                 error=TypeError)
        x_val, _ = check_inputs("fit", model, validation_data[0], name="validation_data[0]")
        y_val = check_labels("fit", validation_data[1], len(x_val), classes, name="validation_data[1]")
        return x, y, (x_val, y_val)
    split = real_in_range("fit", "validation_split", validation_split, 0.0, 1.0, high_inclusive=False)
    n_val = int(len(x) * split)
    if split and not 0 < n_val < len(x):
        fail("fit", "validation_split", f"a fraction leaving a sample on each side of {len(x)}", split)
    if n_val == 0:
        return x, y, None
    return x[:-n_val], y[:-n_val], (x[-n_val:], y[-n_val:])


def fit(model: Sequential, x: Any, y: Any, *, epochs: int, batch_size: int = 64, optimizer: Any,
        loss: Any = None, validation_data: tuple[Any, Any] | None = None, validation_split: float = 0.0,
        shuffle: bool = True, callbacks: Sequence[Callback] = (), verbose: int = 1,
        rng: int | np.random.Generator | None = None, augment: Augment | None = None, initial_epoch: int = 0,
        resume_from: Any = None, distributed: Any = False, gradient_health: bool = True) -> History:
    """Train ``model`` on ``(x, y)`` by mini-batch gradient descent; the module notes give the data rules.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
        uint8 images (scaled per batch to [0, 1] and standardised with ``model.normalization``) or floats.
    y : ndarray, (N,) int labels or (N, classes) one-hot rows
    epochs : int
        Index of the last epoch plus one (Keras' meaning): epochs ``initial_epoch .. epochs - 1`` run.
    batch_size : int
    optimizer : optimiser with ``step(model)`` and an ``lr`` attribute
    loss : loss with ``forward(logits, targets) -> float`` and ``backward() -> grad``; default cross-entropy
    validation_data : (x_val, y_val), optional
        Evaluated after each epoch as ``val_loss`` and ``val_accuracy``. Never pass the test set here.
    validation_split : float in [0, 1)
        Fraction of ``(x, y)`` held out for validation instead: the last samples, before any shuffling.
    shuffle : bool
        Draw a new order of the training samples each epoch.
    callbacks : sequence of Callback
    verbose : int
        0 silent, 1 a progress bar per epoch and a line per epoch, 2 the line only.
    rng : int, Generator or None
        Seed of the shuffle and augmentation generators; the same seed (with the same model seed) gives
        bit-identical weights.
    augment : callable ``augment(batch, rng) -> batch``, optional
        Applied to each training batch of floats (in [0, 1] for uint8 data) before standardisation.
    initial_epoch : int
        Epoch index to start from.
    resume_from : path, optional
        A ``TrainingCheckpoint`` file: restores weights, optimiser, generators, history and callback states
        and continues after the saved epoch, reaching bit for bit the weights of an uninterrupted run.
    distributed : bool, mpi4py communicator or DataParallel
        Train together with the other processes of ``mpiexec`` (``True``: all of them), data-parallel over MPI
        (:mod:`numpycnn.training.distributed`): ``batch_size`` is then the global batch, of which each of the K
        processes takes ``batch_size / K`` images per step, and ``lr`` keeps its single-process meaning. Every
        process must call ``fit`` with the same data and arguments; only rank 0 prints and writes files.
    gradient_health : bool
        Record each layer's gradient norm and update/weight ratio per epoch in ``History.gradients``
        (:mod:`numpycnn.training.health`); it changes no result and costs about 1% of a step or less.

    Returns
    -------
    History

    Raises
    ------
    ValueError, TypeError
        For inconsistent data (shapes, lengths, labels outside the model's classes) or arguments.
    numpycnn.TrainingError
        When the loss becomes NaN or infinite.
    RuntimeError
        With ``distributed`` but without mpi4py (``pip install "numpycnn[mpi]"``).
    """
    epochs = positive_int("fit", "epochs", epochs)
    batch_size = positive_int("fit", "batch_size", batch_size)
    initial_epoch = positive_int("fit", "initial_epoch", initial_epoch, minimum=0)
    if not (callable(getattr(optimizer, "step", None)) and hasattr(optimizer, "lr")):
        fail("fit", "optimizer", "an optimiser with a step(model) method and an lr attribute", optimizer,
             error=TypeError)
    if augment is not None and not callable(augment):
        fail("fit", "augment", "a callable augment(batch, rng) -> batch", augment, error=TypeError)
    x, classes = check_inputs("fit", model, x)
    y = check_labels("fit", y, len(x), classes)
    x, y, validation = _split_validation(x, y, validation_data, validation_split, model, classes)
    loss = loss if loss is not None else default_loss()
    trainer = Trainer(model, optimizer, loss, callbacks, _as_generator("fit", rng), epochs, int(verbose))
    trainer.has_validation = validation is not None
    if not boolean("fit", "gradient_health", gradient_health):
        trainer.health = None
    if distributed is not False and model.device != "cpu":
        fail("fit", "model.device", "'cpu' for distributed training (MPI sums host arrays)", model.device,
             "Use model.to('cpu'), or train on one GPU without distributed.")
    trainer.dist = data_parallel(distributed)
    with trainer.dist.abort_on_error("fit"), trainer.dist.quiet_unless_root():
        start, callback_states = trainer.dist.setup(trainer, len(x), batch_size, resume_from)
        initial_epoch = initial_epoch if start is None else start
        _run(trainer, x, y, validation, batch_size, shuffle, augment, initial_epoch, callback_states)
    return trainer.history


def _run(trainer: Trainer, x: np.ndarray, y: np.ndarray, validation: Any, batch_size: int, shuffle: bool,
         augment: Augment | None, initial_epoch: int, callback_states: dict | None) -> None:
    model, dist = trainer.model, trainer.dist
    validation = dist.shard_validation(validation)
    batches = Batches(x, batch_size, model.dtype, model.normalization)
    val_batches = None if validation is None else Batches(
        validation[0], inference_batch_size(model, validation[0].shape[1:], max(batch_size, 256)), model.dtype,
        model.normalization)
    for callback in trainer.callbacks:
        callback.set_trainer(trainer)
    for callback in trainer.hooks:
        callback.on_train_begin({})
    if callback_states:
        for key, callback in zip(callback_keys(trainer.callbacks), trainer.callbacks, strict=True):
            if key in callback_states:
                callback.load_state_dict(callback_states[key])
    for epoch in range(initial_epoch, trainer.epochs):
        trainer.epoch = epoch
        for callback in trainer.hooks:
            callback.on_epoch_begin(epoch, {})
        start = time.perf_counter()
        logs = trainer.train_epoch(batches, y, batch_size, shuffle, augment)
        trainer.check_weights()
        dist.average_buffers(model)
        if val_batches is not None:
            local = (evaluate_batches(model, val_batches, validation[1], trainer.loss)
                     if len(validation[1]) else None)
            scores = dist.combine_scores(local, len(validation[1]))
            logs.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        logs.update(lr=float(trainer.optimizer.lr), seconds=time.perf_counter() - start)
        trainer.history.append(epoch, logs)
        if trainer.health is not None:
            trainer.history.append_gradients(trainer.health.end_epoch())
        trainer.report(logs)
        for callback in trainer.hooks:
            callback.on_epoch_end(epoch, logs)
        trainer.stop_training = dist.agree(trainer.stop_training)
        if trainer.stop_training:
            break
    for callback in trainer.hooks:
        callback.on_train_end({})

