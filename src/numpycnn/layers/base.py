"""The layer contract that every layer in :mod:`numpycnn.layers` follows.

A layer holds its parameters and the cache of its last forward pass; the math lives in :mod:`numpycnn.functional`.

- ``forward(x, training=True) -> y`` keeps exactly what ``backward`` needs in ``self.cache`` (overwritten each call).
- ``backward(grad_y) -> grad_x`` returns the input gradient and fills ``self.grads`` (same keys as ``self.params``).
- ``params`` and ``grads`` are the layer's own arrays, not copies: ``layer.params["weight"][...] = w`` changes it.
- ``buffers`` hold non-trainable state saved in model files (BatchNorm's running statistics).
- ``params`` and ``buffers`` are filled in PyTorch's state-dict order (``weight`` before ``bias``), which
  ``Sequential.state_dict`` follows.
- ``get_config()`` returns the JSON-serialisable constructor arguments, so ``type(layer)(**layer.get_config())``
  builds the same architecture; model files store it, never code.
- ``output_shape(input_shape)`` maps a per-sample shape (no batch axis) to the output's, raising ``ValueError`` for
  an input the layer cannot take. ``Sequential.summary`` and model-file checks use it.
- ``reset_parameters(rng, nonlinearity)`` (re)draws the parameters from a ``numpy.random.Generator``.
- Layers that draw random numbers while running (``Dropout``) keep their generator in ``self.rng``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Every concrete layer class by name, filled in automatically; model files name layers by these keys.
LAYER_REGISTRY: dict[str, type[Layer]] = {}


class Layer:
    """Base class of all layers.

    Subclasses implement :meth:`forward`, :meth:`backward`, :meth:`get_config` and :meth:`output_shape`, and
    :meth:`reset_parameters` if they have parameters.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            LAYER_REGISTRY[cls.__name__] = cls

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.cache: Any = None

    # -- the contract -------------------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(input_shape)

    def reset_parameters(self, rng: np.random.Generator, nonlinearity: str = "relu") -> None:
        """Redraw the parameters; layers without parameters do nothing."""

    # -- helpers shared by all layers ---------------------------------------------------------------------------
    def __call__(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        return self.forward(x, training=training)

    @property
    def name(self) -> str:
        return type(self).__name__

    def _take_cache(self) -> Any:
        """Return the cache of the last forward pass, or raise if there was none."""
        if self.cache is None:
            raise RuntimeError(
                f"{self.name}: backward() called before forward(). Call forward(x, training=True) first."
            )
        return self.cache

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0)

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def astype(self, dtype: Any) -> Layer:
        """Convert parameters, gradients and floating-point buffers to ``dtype`` (float32 or float64), in place."""
        dtype = np.dtype(dtype)
        for store in (self.params, self.grads):
            for key, value in store.items():
                store[key] = value.astype(dtype)
        for key, value in self.buffers.items():
            if value.dtype.kind == "f":
                self.buffers[key] = value.astype(dtype)
        self.cache = None
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.name}({args})"
