"""Weight initialisation: He/Kaiming for layers followed by a rectifier, Glorot (Xavier) otherwise.

For a weight with fan-in :math:`n_{in}` and fan-out :math:`n_{out}` (for a convolution,
:math:`n_{in} = C_{in} k_h k_w` and :math:`n_{out} = C_{out} k_h k_w`):

.. math::

    W \\sim \\mathcal{N}\\left(0, \\frac{g^2}{n_{in}}\\right) \\quad \\text{(He, } g^2 = 2 \\text{ for ReLU,}
    \\ 2/(1 + a^2) \\text{ for LeakyReLU)}

    W \\sim \\mathcal{U}\\left(-\\sqrt{\\tfrac{6}{n_{in} + n_{out}}}, \\sqrt{\\tfrac{6}{n_{in} + n_{out}}}\\right)
    \\quad \\text{(Glorot)}

Biases start at zero. For LeakyReLU the gain uses PyTorch's default slope :math:`a = 0.01`
(:data:`DEFAULT_NEGATIVE_SLOPE`) whatever the layer's own slope; for :math:`a \\le 0.1` that changes the standard
deviation by under 0.5%.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: The slope PyTorch assumes for LeakyReLU gain, and numpycnn's default.
DEFAULT_NEGATIVE_SLOPE = 0.01


def he_normal(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, dtype: Any = np.float32,
              negative_slope: float = 0.0) -> np.ndarray:
    """Kaiming-normal weights: standard deviation :math:`\\sqrt{2 / ((1 + a^2) n_{in})}`."""
    std = math.sqrt(2.0 / ((1.0 + negative_slope**2) * fan_in))
    return (rng.standard_normal(shape) * std).astype(dtype)


def glorot_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator,
                   dtype: Any = np.float32) -> np.ndarray:
    """Glorot/Xavier-uniform weights on :math:`[-b, b]`, :math:`b = \\sqrt{6 / (n_{in} + n_{out})}`."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def init_weight(shape: tuple[int, ...], fan_in: int, fan_out: int, nonlinearity: str,
                rng: np.random.Generator, dtype: Any = np.float32) -> np.ndarray:
    """Weights for a layer followed by ``nonlinearity`` (``"relu"``, ``"leaky_relu"`` or ``"linear"``)."""
    if nonlinearity == "relu":
        return he_normal(shape, fan_in, rng, dtype)
    if nonlinearity == "leaky_relu":
        return he_normal(shape, fan_in, rng, dtype, negative_slope=DEFAULT_NEGATIVE_SLOPE)
    if nonlinearity == "linear":
        return glorot_uniform(shape, fan_in, fan_out, rng, dtype)
    raise ValueError(
        f"init_weight: `nonlinearity` must be 'relu', 'leaky_relu' or 'linear'. Got {nonlinearity!r}."
    )
