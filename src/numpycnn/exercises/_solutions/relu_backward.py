"""The answer to relu-backward."""

import numpy as np


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dx = dy * [x > 0]."""
    return dy * (x > 0)
