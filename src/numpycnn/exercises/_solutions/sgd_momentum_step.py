"""The answer to sgd-momentum-step."""

import numpy as np


def sgd_momentum_step(w: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float) -> tuple:
    """One step of SGD with momentum, PyTorch's form."""
    velocity_new = momentum * velocity + grad
    w_new = w - lr * velocity_new
    return w_new, velocity_new
