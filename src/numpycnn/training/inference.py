"""Inference over a data set: ``evaluate`` (mean loss and accuracy) and ``predict`` (class probabilities).

Both run the model with ``training=False`` in batches whose size is lowered to keep the largest activation within
:data:`INFERENCE_BYTES`, and keep no layer caches, so their memory does not grow with the data. The batches are
gathered and standardised as for training (:mod:`numpycnn.training.batches`); ``evaluate`` sends all the labels to
the model's device once per call, and the loss and the number of correct guesses come back as one scalar each per
batch; ``predict`` returns NumPy arrays whatever the device.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.checks import positive_int
from numpycnn.functional.activations import softmax_forward
from numpycnn.layers.losses import CrossEntropyLoss
from numpycnn.training.batches import Batches, check_inputs, check_labels, chunks, count_hits, to_model

if TYPE_CHECKING:
    from numpycnn.model.sequential import Sequential

__all__ = ["INFERENCE_BYTES", "default_loss", "evaluate", "evaluate_batches", "inference_batch_size", "predict"]


#: Bytes that the largest activation of one inference batch may take. ``evaluate`` and ``predict`` lower their
#: batch size to stay within it and keep no layer caches, so their memory does not grow with the data: for
#: ``deep_cnn`` (100 KB per image in its largest layer) batches of 640 images, about 300 MB at the peak.
INFERENCE_BYTES = 64 << 20


def inference_batch_size(model: Sequential, sample_shape: tuple[int, ...], batch_size: int) -> int:
    """``batch_size``, lowered so that the model's largest activation for one batch fits in :data:`INFERENCE_BYTES`."""
    largest = max((int(np.prod(shape)) for shape in model.output_shapes(sample_shape)), default=1)
    largest = max(largest, int(np.prod(sample_shape)))
    return max(1, min(batch_size, INFERENCE_BYTES // (largest * model.dtype.itemsize)))


def evaluate_batches(model: Sequential, batches: Batches, y: np.ndarray, loss: Any) -> dict[str, float]:
    """Mean ``loss`` and ``accuracy`` over ``y``, the batches run in inference mode without layer caches."""
    total, correct = 0.0, 0
    labels = to_model(model, y)
    for part in chunks(len(y), len(batches.out)):
        logits = model.forward(to_model(model, batches.get(part)), training=False, keep_cache=False)
        total += float(loss.forward(logits, labels[part])) * (part.stop - part.start)
        correct += count_hits(logits, labels[part])
    return {"loss": total / len(y), "accuracy": correct / len(y)}


def default_loss() -> Any:
    """The loss of ``fit`` and ``evaluate`` when none is given: ``CrossEntropyLoss()``."""
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
    scores = evaluate_batches(model, batches, y, loss if loss is not None else default_loss())
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
    for part in chunks(len(x), len(batches.out)):
        outputs = model.forward(to_model(model, batches.get(part)), training=False, keep_cache=False)
        probs[part] = backend.to_host(outputs if ends_with_softmax else softmax_forward(outputs)[0])
    bad = int(np.count_nonzero(~np.isfinite(probs).all(axis=1)))
    if bad:
        raise ValueError(f"predict: the model's outputs are NaN or infinite for {bad} of {len(x)} inputs: "
                         f"its weights overflow {model.dtype}.")
    return probs
