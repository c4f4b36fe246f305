"""Training: the fit loop (:mod:`~numpycnn.training.loop`), callbacks and the history, resuming a run bit for bit
(:mod:`~numpycnn.training.resume`), data augmentation (:mod:`~numpycnn.training.augment`) and data-parallel
training over MPI (:mod:`~numpycnn.training.distributed`). Works on any object with a model's methods: imports
the files, optimisers, layers tiers and below, never :mod:`numpycnn.model` (only its type, for annotations)."""

from numpycnn.training.loop import HISTORY_KEYS, Batches, History, Trainer, evaluate, fit, predict

__all__ = ["HISTORY_KEYS", "Batches", "History", "Trainer", "evaluate", "fit", "predict"]
