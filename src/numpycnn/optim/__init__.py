"""Optimisers (:mod:`~numpycnn.optim.optimizers`: SGD, Adam, AdamW, RMSProp) and learning-rate schedules
(:mod:`~numpycnn.optim.schedules`). Imports the layers tier and below."""

from numpycnn.optim.optimizers import SGD, Adam, AdamW, Optimizer, RMSProp

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSProp"]
