"""Fully connected layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core import backend, checks
from numpycnn.functional.dense import dense_backward, dense_forward
from numpycnn.layers.base import Layer
from numpycnn.layers.init import init_weight


class Dense(Layer):
    """Fully connected layer, :math:`z = x W^T + b` (PyTorch's ``nn.Linear``).

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.dense.dense_forward`
    (written once, there and in docs/math.md).

    Parameters
    ----------
    in_features : int or None
        Size of each input sample. ``None`` (write ``Dense(out_features=10)``) infers it: from the model's
        ``input_shape`` when ``Sequential`` is given one, else at the first forward pass. Model files always
        record the resolved size.
    out_features : int
        Size of each output sample.
    bias : bool
        Whether to add the learnable bias :math:`b`.
    rng : numpy.random.Generator or int or None
        Source of the initial weights.
    dtype : float32 or float64
        Dtype of the parameters.

    Shape
    -----
    Input (N, in_features); output (N, out_features). Images need a ``Flatten()`` first.

    Attributes
    ----------
    params["weight"] : ndarray, shape (out_features, in_features)
        He/Kaiming normal, :math:`\\mathcal{N}(0, 2 / \\text{in\\_features})`; ``Sequential.initialize``
        redraws it (Glorot when no rectifier follows).
    params["bias"] : ndarray, shape (out_features,)
        Zeros. Absent when ``bias=False``.

    Raises
    ------
    TypeError, ValueError
        For a non-integer or non-positive size, or input that is not (N, in_features).

    Examples
    --------
    >>> layer = Dense(4, 3, rng=0)
    >>> layer.forward(np.ones((2, 4), np.float32)).shape
    (2, 3)
    >>> lazy = Dense(out_features=3)
    >>> lazy.forward(np.ones((2, 5), np.float32)).shape, lazy.params["weight"].shape
    ((2, 3), (3, 5))
    """

    build_axis = 1  # Dense(out_features=3) takes its in_features from the first input

    def __init__(self, in_features: int | None = None, out_features: int | None = None, bias: bool = True, *,
                 rng: np.random.Generator | int | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        if out_features is None:
            hint = (f"Dense({in_features}) gives only in_features. Write Dense({in_features}, OUT) or, to infer "
                    f"the input size, Dense(out_features={in_features})." if in_features is not None else "")
            checks.fail("Dense", "out_features", "given", out_features, hint=hint, error=TypeError)
        self.in_features = (None if in_features is None
                            else checks.positive_int("Dense", "in_features", in_features))
        self.out_features = checks.positive_int("Dense", "out_features", out_features)
        if not isinstance(bias, (bool, np.bool_)):
            checks.fail("Dense", "bias", "True or False", bias, error=TypeError)
        self.use_bias = bool(bias)
        self._dtype = checks.float_dtype("Dense", dtype)
        self._init = (np.random.default_rng(rng), "relu")
        if self.in_features is not None:
            self.build(self.in_features)

    def build(self, in_features: int) -> None:
        """Create the parameters for ``in_features`` inputs (done by the constructor unless it was lazy)."""
        self.in_features = checks.positive_int("Dense", "in_features", in_features)
        self.add_param("weight", np.empty((self.out_features, self.in_features), dtype=self._dtype))
        if self.use_bias:
            self.add_param("bias", np.empty(self.out_features, dtype=self._dtype))
        self.reset_parameters(*self._init)

    def reset_parameters(self, rng: np.random.Generator, nonlinearity: str = "relu") -> None:
        if self._draw_when_built(rng, nonlinearity):  # lazy, not built yet
            return
        w = self.params["weight"]
        drawn = init_weight(w.shape, self.in_features, self.out_features, nonlinearity, rng, w.dtype)  # on the host
        w[...] = backend.like(drawn, w)
        if self.use_bias:
            self.params["bias"].fill(0)

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        x = checks.as_float_array("Dense", x)
        checks.input_ndim("Dense", x, 2, "(N, features)")
        self.build_for(x)  # a lazy layer (in_features=None) learns its input size here
        checks.input_size("Dense", x, 1, self.in_features, "input features")
        z, self.cache = dense_forward(x, self.params["weight"], self.params.get("bias"))
        return z

    def backward(self, grad: np.ndarray) -> np.ndarray:
        cache = self._take_cache()
        dx, dweight, dbias = dense_backward(grad, cache)
        self.grads["weight"][...] = dweight
        if dbias is not None:
            self.grads["bias"][...] = dbias
        return dx

    def astype(self, dtype: Any) -> Dense:
        self._dtype = checks.float_dtype("Dense", dtype)
        return super().astype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.use_bias}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        expected = (self.in_features,) if self.in_features is not None else tuple(input_shape)[:1]
        if tuple(input_shape) != expected or len(input_shape) != 1:
            hint = "Put a Flatten() layer before it." if len(input_shape) > 1 else ""
            checks.fail("Dense", "input_shape", f"a per-sample shape ({self.in_features},)", tuple(input_shape), hint)
        return (self.out_features,)
