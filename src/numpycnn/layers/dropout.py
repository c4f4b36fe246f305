"""Inverted dropout."""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core import backend, checks
from numpycnn.layers.base import Layer


class Dropout(Layer):
    """Inverted dropout: zero each element with probability :math:`p` during training, scale the rest.

    Notes
    -----
    With a mask :math:`r_i \\sim \\text{Bernoulli}(1 - p)` drawn afresh at each training forward pass:

    .. math::
        y_i = \\frac{r_i}{1 - p}\\, x_i, \\qquad
        \\frac{\\partial L}{\\partial x_i} = \\frac{r_i}{1 - p} \\frac{\\partial L}{\\partial y_i}

    so :math:`\\mathbb{E}[y] = x`, and at inference (``training=False``) the layer is the identity.

    Parameters
    ----------
    p : float
        Probability of zeroing an element, in [0, 1). ``p=0`` is the identity.
    rng : numpy.random.Generator or int or None
        Source of the masks; ``Sequential.initialize`` replaces ``self.rng`` with a child of its seed.

    Shape
    -----
    Any shape; the output has the shape and dtype of the input.

    Attributes
    ----------
    rng : numpy.random.Generator
        The mask generator; the same seed gives the same masks. Masks are drawn on the host with it and moved
        to the input's device (:func:`numpycnn.core.backend.like`), so a seed gives the same masks on every device.

    Raises
    ------
    ValueError
        If ``p`` is not in [0, 1).

    Examples
    --------
    >>> layer = Dropout(0.5, rng=0)
    >>> y = layer.forward(np.ones((2, 4), np.float32))
    >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | int | None = None) -> None:
        super().__init__()
        self.p = checks.real_in_range("Dropout", "p", p, 0.0, 1.0, high_inclusive=False)
        self.rng = np.random.default_rng(rng)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = checks.as_float_array(self.name, x)
        if not training or self.p == 0.0:
            self.cache = (None,)  # identity: backward passes the gradient through
            return x
        xp = backend.get_array_module(x)
        mask = backend.like(self.rng.random(x.shape, dtype=x.dtype), x)  # uniform [0, 1), drawn on the host
        xp.greater_equal(mask, self.p, out=mask)  # 1.0 keeps, 0.0 drops (in place, no bool temporary)
        mask *= 1.0 / (1.0 - self.p)
        self.cache = (mask,)
        return xp.multiply(x, mask)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        (mask,) = self._take_cache()
        if mask is None:
            return grad
        return backend.get_array_module(grad).multiply(grad, mask)

    def get_config(self) -> dict[str, Any]:
        return {"p": self.p}
