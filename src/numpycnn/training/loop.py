"""The training loop: ``fit``, ``evaluate`` and ``predict`` for a :class:`~numpycnn.model.sequential.Sequential`.

One training step on a batch :math:`(x_B, y_B)` of :math:`B` images is

.. math::

    z = f_\\theta(x_B), \\qquad L = \\frac{1}{B} \\sum_{i \\in B} \\ell(z_i, y_i), \\qquad
    g = \\frac{\\partial L}{\\partial \\theta} \\ \\text{(model.backward)}, \\qquad
    \\theta \\leftarrow \\text{optimizer.step}(\\theta, g)

Data conventions: ``uint8`` images are raw pixels; each batch is gathered into a reused floating-point buffer,
scaled to :math:`[0, 1]` (:math:`x \\cdot (1/255)`, as ``datasets.to_float``), augmented (if asked) and
standardised per channel with ``model.normalization`` (:math:`(x - \\mu_c) / \\sigma_c`, as
``datasets.standardize``). Floating-point inputs are taken as already scaled to :math:`[0, 1]` (``x / 255``)
and get the same standardisation, so uint8 images and the same images as floats give the same outputs; floats
that look like 0-255 pixels raise a warning. The data set is never converted whole: MNIST stays 47 MB of
``uint8`` in memory.

Divergence stops training with :class:`~numpycnn.TrainingError`: a loss that is NaN or infinite, or that
grows to more than :data:`DIVERGENCE_FACTOR` times the first batch's (at least 1), and weights that are no
longer finite at the end of an epoch.

Devices: the data stays on the host. Each batch is gathered, augmented and standardised there, then sent to
the model's device (``model.device``, see :mod:`numpycnn.core.backend`) in one copy, :func:`to_model`; a
training batch's labels go with it, and ``evaluate`` sends all the labels once per call. The loss and the
number of correct guesses are reduced on the device and come back as one scalar each; ``predict`` returns NumPy
arrays.

Randomness: ``rng`` (a seed or a ``numpy.random.Generator``) gives two independent child generators, one for
the shuffle order and one for augmentation, so turning augmentation on does not change the order of batches.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.checks import boolean, fail, positive_int, real_in_range
from numpycnn.errors import TrainingError
from numpycnn.functional.activations import softmax_forward
from numpycnn.layers.losses import CrossEntropyLoss
from numpycnn.training.callbacks import HISTORY_KEYS, Callback, History, callback_keys
from numpycnn.training.distributed import DataParallel, SingleProcess, data_parallel
from numpycnn.training.health import GradientHealth
from numpycnn.training.resume import training_state

if TYPE_CHECKING:
    from numpycnn.model.sequential import Sequential

__all__ = ["HISTORY_KEYS", "Batches", "History", "Trainer", "evaluate", "fit", "predict"]

#: A loss this many times the first batch's loss (or 1, if larger) means training diverged.
DIVERGENCE_FACTOR = 1e4

#: A layer-free augmentation, ``augment(batch, rng) -> batch``, on float images in [0, 1], ``(B, C, H, W)``.
Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# -- data checks ---------------------------------------------------------------------------------------------
def check_inputs(owner: str, model: Sequential, x: Any, name: str = "x") -> tuple[np.ndarray, int]:
    """Return ``(x, classes)`` after checking dtype, shape and finiteness of ``x`` against ``model``."""
    x = np.asarray(x)
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        fail(owner, name, "uint8 images or a floating-point array", x.dtype, error=TypeError,
             hint="Convert with x.astype(np.float32), or pass the raw uint8 images.")
    expected = model.input_shape
    if expected is not None and x.shape[1:] != expected:
        hint = ""
        if x.shape == expected:
            hint = "Use x[None] for a single image."
        elif len(expected) == 3 and expected[0] == 1 and x.shape[1:] == expected[1:]:
            hint = "Use x[:, None] for a batch of single-channel images."
        fail(owner, f"{name}.shape", f"(N, {', '.join(map(str, expected))})", x.shape, hint=hint)
    if x.ndim < 2 or len(x) == 0:
        fail(owner, f"{name}.shape", "(N, ...) with N >= 1 samples", x.shape)
    if x.dtype.kind == "f" and not np.isfinite(np.sum(x, dtype=np.float64)):
        fail(owner, name, "finite", "an array with NaN or infinite values")
    if x.dtype.kind == "f" and x.size and float(x.max()) > 2.0 and float(x.min()) >= 0.0:
        warnings.warn(f"{owner}: `{name}` holds floats up to {float(x.max()):g}, which look like 0-255 pixels; "
                      "float images are taken as already scaled to [0, 1]. Pass the uint8 images, or x / 255.",
                      stacklevel=3)
    try:
        out_shape = model.output_shapes(x.shape[1:])[-1]
    except ValueError as err:
        raise ValueError(f"{owner}: the model cannot take `{name}` of shape {x.shape}: {err}") from None
    if len(out_shape) != 1:
        fail(owner, "model", "a classifier with outputs (N, classes)", f"outputs of shape (N, *{out_shape})")
    return x, int(out_shape[0])


def check_labels(owner: str, y: Any, n: int, classes: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as int64 class indices ``(n,)``; one-hot rows ``(n, classes)`` are converted."""
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape != (n, classes) or not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
            fail(owner, name, f"int labels (N,) or one-hot rows of shape ({n}, {classes})",
                 f"shape {y.shape}", hint="One-hot rows must hold a single 1 and zeros.")
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim != 1:
        fail(owner, f"{name}.shape", "(N,) for class labels or (N, classes) for one-hot rows", y.shape)
    if y.dtype.kind not in "iu":
        fail(owner, name, "integer class labels", f"dtype {y.dtype}", error=TypeError,
             hint="Use y.astype(np.int64) for integral float labels.")
    if len(y) != n:
        fail(owner, f"len({name})", f"the number of images ({n})", len(y))
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        fail(owner, name, f"labels in [0, {classes - 1}] for a model with {classes} outputs",
             f"labels in [{low}, {high}]")
    return y.astype(np.int64, copy=False)


def _as_generator(owner: str, rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    fail(owner, "rng", "an int seed, a numpy.random.Generator or None", rng, error=TypeError)


# -- batches ----------------------------------------------------------------------------------------------
class Batches:
    """Gathers batches of ``x`` into one reused buffer of ``dtype``: uint8 scaled to [0, 1], standardised.

    Parameters
    ----------
    x : ndarray, (N, C, H, W) or (N, features)
        uint8 raw images or a floating-point array.
    batch_size : int
        The largest batch ``gather`` is asked for.
    dtype : numpy dtype
        The model's dtype (float32 or float64).
    normalization : dict or None
        ``{"mean": [...], "std": [...]}`` per channel of images in [0, 1], applied to uint8 inputs (after
        ``x / 255``) and to float inputs alike.
    """

    def __init__(self, x: np.ndarray, batch_size: int, dtype: Any, normalization: dict | None = None) -> None:
        self.x, self.dtype = x, np.dtype(dtype)
        shape = (min(batch_size, len(x)), *x.shape[1:])
        self.out = np.empty(shape, self.dtype)
        self.raw = None if x.dtype == self.dtype else np.empty(shape, x.dtype)
        self.mean = self.std = None
        if normalization:
            channels = x.shape[1]
            mean = np.asarray(normalization["mean"], self.dtype).reshape(-1)
            std = np.asarray(normalization["std"], self.dtype).reshape(-1)
            if mean.size not in (1, channels) or std.size not in (1, channels) or np.any(std <= 0):
                fail("Batches", "model.normalization", f"a mean and positive std per channel ({channels})",
                     normalization)
            stat_shape = (1, -1) + (1,) * (x.ndim - 2)  # (1, C, 1, 1) for images
            self.mean, self.std = mean.reshape(stat_shape), std.reshape(stat_shape)

    def gather(self, index: np.ndarray | slice) -> np.ndarray:
        """``x[index]`` as floats (uint8 scaled to [0, 1]) in the reused buffer, not yet standardised."""
        b = len(index) if isinstance(index, np.ndarray) else len(range(*index.indices(len(self.x))))
        out = self.out[:b]
        target = out if self.raw is None else self.raw[:b]
        if isinstance(index, slice):
            np.copyto(target, self.x[index])
        else:
            np.take(self.x, index, axis=0, out=target, mode="clip")
        if self.raw is not None and self.x.dtype == np.uint8:
            np.multiply(target, self.dtype.type(1 / 255), out=out)  # as datasets.to_float does
        elif self.raw is not None:
            np.copyto(out, target, casting="unsafe")
        return out

    def standardise(self, batch: np.ndarray) -> np.ndarray:
        """:math:`(x - \\mu_c) / \\sigma_c` in place when the model has a normalisation; returns ``batch``."""
        if self.mean is not None:
            np.subtract(batch, self.mean, out=batch)
            np.divide(batch, self.std, out=batch)
        return batch

    def get(self, index: np.ndarray | slice) -> np.ndarray:
        """The batch ``x[index]`` scaled and standardised (:meth:`gather`, then :meth:`standardise`)."""
        return self.standardise(self.gather(index))


def to_model(model: Sequential, array: np.ndarray) -> Any:
    """A host batch (images or labels) on the model's device: the one place where ``fit``, ``evaluate`` and
    ``predict`` copy data to a device (the array itself on the CPU)."""
    return backend.to_device(array, model.device)


def _chunks(n: int, batch_size: int) -> list[slice]:
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


# -- evaluate and predict ------------------------------------------------------------------------------
#: Bytes that the largest activation of one inference batch may take. ``evaluate`` and ``predict`` lower their
#: batch size to stay within it and keep no layer caches, so their memory does not grow with the data: for
#: ``deep_cnn`` (100 KB per image in its largest layer) batches of 640 images, about 300 MB at the peak.
INFERENCE_BYTES = 64 << 20


def inference_batch_size(model: Sequential, sample_shape: tuple[int, ...], batch_size: int) -> int:
    """``batch_size``, lowered so that the model's largest activation for one batch fits in :data:`INFERENCE_BYTES`."""
    largest = max((int(np.prod(shape)) for shape in model.output_shapes(sample_shape)), default=1)
    largest = max(largest, int(np.prod(sample_shape)))
    return max(1, min(batch_size, INFERENCE_BYTES // (largest * model.dtype.itemsize)))


def _evaluate_batches(model: Sequential, batches: Batches, y: np.ndarray, loss: Any) -> dict[str, float]:
    total, correct = 0.0, 0
    labels = to_model(model, y)
    for part in _chunks(len(y), len(batches.out)):
        logits = model.forward(to_model(model, batches.get(part)), training=False, keep_cache=False)
        total += float(loss.forward(logits, labels[part])) * (part.stop - part.start)
        correct += _hits(logits, labels[part])
    return {"loss": total / len(y), "accuracy": correct / len(y)}


def _hits(logits: Any, labels: Any) -> int:
    """Correct guesses of a batch, counted where the logits are; one scalar comes back."""
    xp = backend.get_array_module(logits)
    return int(xp.count_nonzero(xp.argmax(logits, axis=1) == labels))


def _default_loss() -> Any:
    return CrossEntropyLoss()


def evaluate(model: Sequential, x: Any, y: Any, batch_size: int = 1000, loss: Any = None) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, run with ``training=False``.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
        uint8 images or floats (see the module notes).
    y : ndarray, (N,) int or (N, classes) one-hot
    batch_size : int
        Images per forward pass, at most; lowered to keep the largest activation within
        :data:`INFERENCE_BYTES`.
    loss : loss object, optional
        Defaults to ``CrossEntropyLoss()``.

    Returns
    -------
    dict
        ``{"loss": float, "accuracy": float}``, both averaged over the N images.
    """
    batch_size = positive_int("evaluate", "batch_size", batch_size)
    x, classes = check_inputs("evaluate", model, x)
    y = check_labels("evaluate", y, len(x), classes)
    batches = Batches(x, inference_batch_size(model, x.shape[1:], batch_size), model.dtype, model.normalization)
    scores = _evaluate_batches(model, batches, y, loss if loss is not None else _default_loss())
    if not math.isfinite(scores["loss"]):
        raise ValueError(f"evaluate: the model's outputs are NaN or infinite (loss {scores['loss']}), so its "
                         f"scores mean nothing: its weights overflow {model.dtype}.")
    return scores


def predict(model: Sequential, x: Any, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities ``(N, classes)``: softmax of the logits, unless the model ends with ``Softmax``.

    Always a NumPy array, whatever ``model.device``: each batch's probabilities are copied back to the host.
    Runs in batches of at most ``batch_size`` images, lowered as in :func:`evaluate` to bound memory.

    Examples
    --------
    >>> probs = predict(model, images)           # doctest: +SKIP
    >>> probs.sum(axis=1)                         # doctest: +SKIP
    array([1., 1., ...], dtype=float32)
    """
    batch_size = positive_int("predict", "batch_size", batch_size)
    x, classes = check_inputs("predict", model, x)
    batches = Batches(x, inference_batch_size(model, x.shape[1:], batch_size), model.dtype, model.normalization)
    ends_with_softmax = bool(model.layers) and model.layers[-1].name == "Softmax"
    probs = np.empty((len(x), classes), model.dtype)
    for part in _chunks(len(x), len(batches.out)):
        outputs = model.forward(to_model(model, batches.get(part)), training=False, keep_cache=False)
        probs[part] = backend.to_host(outputs if ends_with_softmax else softmax_forward(outputs)[0])
    bad = int(np.count_nonzero(~np.isfinite(probs).all(axis=1)))
    if bad:
        raise ValueError(f"predict: the model's outputs are NaN or infinite for {bad} of {len(x)} inputs: "
                         f"its weights overflow {model.dtype}.")
    return probs


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
        value, hits = float(loss.forward(logits, yb)), _hits(logits, yb)
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
        parts = _chunks(n, batch_size)
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
        (:mod:`numpycnn.training.health`); it changes no result and costs under 1% of a step.

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
    loss = loss if loss is not None else _default_loss()
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
            local = (_evaluate_batches(model, val_batches, validation[1], trainer.loss)
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

