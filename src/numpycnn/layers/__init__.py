"""Layers: each a small class holding parameters and a cache, its math in :mod:`numpycnn.functional`."""

from numpycnn.layers.base import LAYER_REGISTRY, Layer

__all__ = ["LAYER_REGISTRY", "Layer"]
