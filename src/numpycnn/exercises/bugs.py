"""The find-the-bug exercises: layers with a planted bug that ``gradcheck`` finds.

Each layer lives in ``_planted/`` as the learner receives it (``numpycnn exercise start find-the-bug-...``) and in
``_solutions/`` fixed. The checker loads the learner's class, checks its forward pass against the hunt's ``forward``
(a fix must not change what the layer computes) and runs :func:`numpycnn.gradcheck.gradcheck` on it at random
parameter values.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from numpycnn.exercises.catalogue import BugHunt


def _scale(layer: Any, x: np.ndarray) -> np.ndarray:
    return x * layer.params["a"][:, None, None]


def _dense(layer: Any, x: np.ndarray) -> np.ndarray:
    return x @ layer.params["weight"].T + layer.params["bias"]


def _sigmoid(layer: Any, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _dropout(layer: Any, x: np.ndarray) -> np.ndarray:
    keep = copy.deepcopy(layer.rng).random(x.shape) >= layer.p  # the mask the layer is about to draw
    return x * keep / (1 - layer.p)


def _batchnorm(layer: Any, x: np.ndarray) -> np.ndarray:
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + layer.eps)
    return layer.params["gamma"] * x_hat + layer.params["beta"]


def _avgpool(layer: Any, x: np.ndarray) -> np.ndarray:
    N, C, H, W = x.shape
    return x.reshape(N, C, H // 2, 2, W // 2, 2).mean(axis=(3, 5))


_RUN = ("Run gradcheck(layer, x) on it: the result names the gradient that is wrong (\"input\" or a parameter) "
        "and the index of its worst element. Then fix backward.")

BUG_HUNTS = (
    BugHunt("find-the-bug-scale", "Find the bug: a per-channel scale", "ExerciseChannelScale", "find_the_bug_scale",
            "ExerciseChannelScale multiplies each channel by a learnable factor a[c]. " + _RUN,
            "Its factor starts at 1. Why would a check at a = 1 pass?", {"channels": 3},
            ((2, 3, 4, 4), (1, 3, 2, 5)), _scale,
            "backward returns grad, forgetting the factor a (exact at a = 1, the initial value)", "input"),
    BugHunt("find-the-bug-dense", "Find the bug: a dense layer", "ExerciseDense", "find_the_bug_dense",
            "ExerciseDense computes z = x W^T + b. " + _RUN,
            "Check with a batch of more than one sample.", {"in_features": 4, "out_features": 3},
            ((5, 4), (2, 4)), _dense, "the weight gradient of only the first sample", "weight"),
    BugHunt("find-the-bug-sigmoid", "Find the bug: the sigmoid", "ExerciseSigmoid", "find_the_bug_sigmoid",
            "ExerciseSigmoid computes y = 1 / (1 + exp(-x)). " + _RUN,
            "Differentiate 1 / (1 + exp(-x)) and write the result in terms of y.", {},
            ((4, 5), (2, 3, 2, 2)), _sigmoid, "dy/dx = y instead of y (1 - y)", "input"),
    BugHunt("find-the-bug-dropout", "Find the bug: inverted dropout", "ExerciseDropout", "find_the_bug_dropout",
            "ExerciseDropout drops inputs with probability p and rescales the survivors. " + _RUN,
            "Compare what forward does to a survivor with what backward does to its gradient.",
            {"p": 0.3, "seed": 1}, ((4, 6), (2, 2, 3, 3)), _dropout,
            "dropout without rescaling in backward (forward divides by 1 - p)", "input"),
    BugHunt("find-the-bug-batchnorm", "Find the bug: batch norm", "ExerciseBatchNorm", "find_the_bug_batchnorm",
            "ExerciseBatchNorm normalises each feature over the batch, then scales and shifts it. " + _RUN,
            "The mean and the variance are computed from x.", {"features": 3},
            ((6, 3), (3, 3)), _batchnorm, "the mean and the variance treated as constants in dx", "input"),
    BugHunt("find-the-bug-avgpool", "Find the bug: average pooling", "ExerciseAvgPool", "find_the_bug_avgpool",
            "ExerciseAvgPool averages each 2x2 window. " + _RUN,
            "How much does one input change the mean of its window?", {},
            ((2, 2, 4, 4), (1, 3, 2, 6)), _avgpool, "missing 1/4 (the 1/N of the mean) in backward", "input"),
)
