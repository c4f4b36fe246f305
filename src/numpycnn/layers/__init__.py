"""Layers: each a small class holding parameters and a cache, its math in :mod:`numpycnn.functional`."""

from numpycnn.layers.activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from numpycnn.layers.base import LAYER_REGISTRY, Layer
from numpycnn.layers.conv import Conv2D
from numpycnn.layers.dense import Dense
from numpycnn.layers.dropout import Dropout
from numpycnn.layers.norm import BatchNorm1D, BatchNorm2D
from numpycnn.layers.pool import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from numpycnn.layers.shape import Flatten

__all__ = [
    "LAYER_REGISTRY", "Layer",
    "AvgPool2D", "Conv2D", "GlobalAvgPool2D", "MaxPool2D",
    "BatchNorm1D", "BatchNorm2D", "Dense", "Dropout", "Flatten",
    "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh",
]
