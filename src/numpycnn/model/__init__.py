"""The model: :class:`~numpycnn.model.sequential.Sequential` and its execution plan, the networks of the results
table (:mod:`~numpycnn.model.zoo`, public as ``numpycnn.models``) and building a model from a file
(:mod:`~numpycnn.model.io`, public as ``numpycnn.io``). Imports the training tier and below."""

from numpycnn.model.sequential import Sequential

__all__ = ["Sequential"]
