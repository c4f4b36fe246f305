"""The answer to find-the-bug: inverted dropout in training mode.

Run ``gradcheck`` on it (it fixes the random mask while it takes differences), see which gradient is wrong, fix
``backward``, then ``numpycnn exercise check find-the-bug-dropout find_the_bug_dropout.py``.
"""

import numpy as np

from numpycnn.layers import Layer


class ExerciseDropout(Layer, replace=True):  # replace: importing or checking this file again redefines it
    """Training: y = x * keep / (1 - p) with keep drawn with probability 1 - p; inference: y = x."""

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.p, self.seed = p, seed
        self.rng = np.random.default_rng(seed)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        if not training:
            self.cache = None
            return x
        keep = self.rng.random(x.shape) >= self.p
        self.cache = keep
        return x * keep / (1 - self.p)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        keep = self._take_cache()
        return grad * keep / (1 - self.p)  # the fix: the same rescaling as forward

    def get_config(self) -> dict:
        return {"p": self.p, "seed": self.seed}
