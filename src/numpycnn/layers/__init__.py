"""Layers: each a small class holding parameters and a cache, its math in :mod:`numpycnn.functional`."""

from numpycnn.layers.activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from numpycnn.layers.base import LAYER_REGISTRY, Layer
from numpycnn.layers.dense import Dense
from numpycnn.layers.dropout import Dropout
from numpycnn.layers.norm import BatchNorm1D, BatchNorm2D
from numpycnn.layers.shape import Flatten

__all__ = [
    "LAYER_REGISTRY", "Layer",
    "BatchNorm1D", "BatchNorm2D", "Dense", "Dropout", "Flatten",
    "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh",
]
