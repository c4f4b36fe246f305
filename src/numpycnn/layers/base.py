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
- Lazy layers (``Dense(out_features=3)``) set ``build_axis`` and define ``build(size)``; their ``forward`` calls
  ``self.build_for(x)``, which builds them once, from the first input, the same way for every lazy layer.
- Layers that draw random numbers while running (``Dropout``) keep their generator in ``self.rng``.
- ``to(device)`` moves ``params``, ``grads`` and ``buffers`` to ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy); the math
  takes its array module from its input, ``xp = numpycnn.core.backend.get_array_module(x)``, so one code path runs
  on both. A custom layer that creates arrays in ``forward``/``backward`` does the same to run on a GPU.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Iterator
from typing import Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.checks import fail


def _fail_name(owner: str, name: Any) -> None:
    raise ValueError(f"{owner}: `name` must be a Python identifier such as 'weight'. Got {name!r}.")

#: Every concrete layer class by name, filled in automatically; model files name layers by these keys.
LAYER_REGISTRY: dict[str, type[Layer]] = {}


def _register(cls: type[Layer], replace: bool) -> None:
    """Add ``cls`` to :data:`LAYER_REGISTRY`; a name already taken by another class is an error unless
    ``replace`` (re-running the same definition, as a notebook cell does, replaces it quietly)."""
    old = LAYER_REGISTRY.get(cls.__name__)
    same_definition = old is not None and (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__)
    if old is not None and not replace and not same_definition:
        raise TypeError(
            f"Layer: `{cls.__name__}` must be a new layer name. Got {cls.__name__!r}, already registered by "
            f"{old.__module__}.{old.__qualname__}. Model files name layers by class name, so two classes "
            f"cannot share one. Rename the class, or write `class {cls.__name__}(..., replace=True)` to make "
            "it the class that model files with this name load."
        )
    LAYER_REGISTRY[cls.__name__] = cls


def unknown_layer_message(layer_type: str, module: str | None = None) -> str:
    """What to say about a layer type that :data:`LAYER_REGISTRY` does not hold: which module to import."""
    where = (f"import {module} (the module that defines it)" if module
             else "import the module that defines it (a subclass of numpycnn.layers.Layer)")
    return (f"unknown layer type {layer_type!r:.60}. If it is a custom layer, {where} before loading; "
            f"known types are {sorted(LAYER_REGISTRY)}.")


def _first_call_checked(forward: Any) -> Any:
    """Wrap a custom layer's ``forward`` so that its first call checks the layer keeps the per-sample shape,
    as the inherited :meth:`Layer.output_shape` claims; later calls cost one attribute look-up."""

    @functools.wraps(forward)
    def checked(self: Layer, x: Any, *args: Any, **kwargs: Any) -> Any:
        y = forward(self, x, *args, **kwargs)
        if not self.__dict__.get("_shape_checked"):
            self._shape_checked = True
            in_shape, out_shape = tuple(np.shape(x))[1:], tuple(np.shape(y))[1:]
            if in_shape != out_shape:
                raise NotImplementedError(
                    f"{self.name}: `output_shape` must be defined by a layer that changes the shape of its input. "
                    f"Got forward mapping per-sample shape {in_shape} to {out_shape} with the inherited "
                    "output_shape, which returns its input unchanged. Define "
                    "`def output_shape(self, input_shape): return ...` (the per-sample output shape)."
                )
        return y

    return checked


#: Argument names of other libraries (Keras, PyTorch) and the numpycnn name they mean.
_FOREIGN_NAMES = {
    "pool_size": "kernel_size", "kernel": "kernel_size", "strides": "stride", "filters": "out_channels",
    "units": "out_features", "input_dim": "in_features", "output_dim": "out_features", "use_bias": "bias",
    "rate": "p", "alpha": "negative_slope", "epsilon": "eps", "in_dim": "in_features", "out_dim": "out_features",
    "channels": "out_channels", "padding_mode": "padding", "num_channels": "num_features",
}


def _check_keywords(cls: type, kwargs: dict[str, Any]) -> None:
    """Raise a ``TypeError`` naming the right argument for a keyword ``cls.__init__`` does not take."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [name for name in params if name != "self"]
    for key in kwargs:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        suggestion = _FOREIGN_NAMES.get(key) if _FOREIGN_NAMES.get(key) in known else (close[0] if close else None)
        hint = f" Did you mean `{suggestion}`?" if suggestion else ""
        raise TypeError(f"{cls.__name__}: `{key}` must be one of its arguments {known}. Got {key}={kwargs[key]!r}."
                        + hint)


class Layer:
    r"""Base class of all layers: subclass it to write your own.

    .. rubric:: The contract

    ``forward(self, x, training=True) -> y``
        Compute the output and keep exactly what ``backward`` needs in ``self.cache`` (overwrite it on every
        call; never append). ``training`` says whether to behave as in training (dropout drops, batch norm
        uses and updates batch statistics) or in inference. A layer's own ``forward`` defaults to training,
        but ``Sequential`` runs it in inference unless asked (``model(x)``, ``model.forward(x)``).
    ``backward(self, grad) -> grad_x``
        Given :math:`\partial L/\partial y`, fill ``self.grads[name]`` for every parameter and return
        :math:`\partial L/\partial x`. Call ``self._take_cache()`` to get the cache (it raises a clear error
        when forward has not run).
    ``output_shape(self, input_shape) -> tuple``
        The per-sample output shape (no batch axis). The default returns ``input_shape`` unchanged, so a layer
        that changes the shape must define it; if it does not, its first forward raises a clear error.
    ``get_config(self) -> dict``
        The JSON-serialisable constructor arguments, so ``type(layer)(**layer.get_config())`` rebuilds it;
        model files store it (never code). Default ``{}``.
    ``reset_parameters(self, rng, nonlinearity="relu")``
        Redraw the parameters from a ``numpy.random.Generator`` (``Sequential.initialize`` calls it).

    Parameters are created with :meth:`add_param` (which also creates the gradient), or by filling
    ``self.params`` and ``self.grads`` with the same keys. ``self.buffers`` hold non-trainable state saved in
    model files (batch norm's running statistics). A layer that draws random numbers keeps its generator in
    ``self.rng``. Every subclass registers itself in :data:`LAYER_REGISTRY` under its class name, so that
    model files can name it; a name already taken is an error unless ``class MyLayer(Layer, replace=True)``.
    Loading a model file that uses a custom layer needs the module that defines it imported first.

    Examples
    --------
    >>> class LearnedScale(Layer):
    ...     # y = a * x with one learnable scalar a
    ...     def __init__(self) -> None:
    ...         super().__init__()
    ...         self.add_param("a", np.ones(1, np.float32))
    ...     def forward(self, x, training=True):
    ...         self.cache = x
    ...         return self.params["a"] * x
    ...     def backward(self, grad):
    ...         x = self._take_cache()
    ...         self.grads["a"][...] = np.sum(grad * x)
    ...         return grad * self.params["a"]
    >>> LearnedScale()(np.ones((2, 3), np.float32)).shape
    (2, 3)
    """

    def __init_subclass__(cls, *, replace: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            _register(cls, replace)
        if not cls.__module__.startswith("numpycnn.") and "forward" in cls.__dict__ and (
                cls.output_shape is Layer.output_shape):
            cls.forward = _first_call_checked(cls.__dict__["forward"])  # type: ignore[method-assign]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            _check_keywords(cls, kwargs)
        return super().__new__(cls)

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.cache: Any = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Return the output for input ``x`` and keep what :meth:`backward` needs in ``self.cache``."""
        raise NotImplementedError(f"{self.name}: a layer must define forward(self, x, training=True).")

    def backward(self, grad: np.ndarray) -> np.ndarray:
        """Fill ``self.grads`` from the output gradient ``grad`` and return the input gradient."""
        raise NotImplementedError(f"{self.name}: a layer must define backward(self, grad) to be trained.")

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON values (stored in model files); ``{}`` by default."""
        return {}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample output shape for a per-sample ``input_shape``; by default the same shape."""
        return tuple(input_shape)

    def reset_parameters(self, rng: np.random.Generator, nonlinearity: str = "relu") -> None:
        """Redraw the parameters; layers without parameters do nothing."""

    # -- lazy building: parameters whose shape the first input decides ------------------------------------------
    #: The input axis whose size sets the parameters' shapes, for layers that may be built lazily (1 for
    #: ``Dense(out_features=3)``'s features and ``Conv2D(out_channels=8, kernel_size=3)``'s channels); ``None`` for
    #: layers whose parameters never depend on the input.
    build_axis = None

    @property
    def built(self) -> bool:
        """Whether the parameters exist: always without :attr:`build_axis`; for a lazy layer, once its first input
        has given their size."""
        return self.build_axis is None or bool(self.params)

    def build(self, size: int) -> None:
        """Create the parameters for inputs of ``size`` along :attr:`build_axis` (defined by the lazy layers)."""
        raise NotImplementedError(f"{self.name}: a layer with a build_axis must define build(self, size).")

    def build_for(self, x: np.ndarray) -> None:
        """Build a lazy layer from its first input ``x``: the parameters are drawn on the host with the generator
        given at construction (so a seed gives the same weights on every device), then moved to ``x``'s device.
        Does nothing once the layer is built."""
        if not self.built:
            self.build(int(x.shape[self.build_axis]))
            self.to(backend.device_of(x))

    def _draw_when_built(self, rng: np.random.Generator, nonlinearity: str) -> bool:
        """For :meth:`reset_parameters` of a lazy layer not yet built: keep ``(rng, nonlinearity)`` for
        :meth:`build` and return True (nothing to draw yet); False once built."""
        if self.built:
            return False
        self._init = (rng, nonlinearity)
        return True

    def add_param(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register the trainable array ``value`` as ``self.params[name]`` with a zero gradient of the same
        shape and dtype in ``self.grads[name]``; return the array (the layer's own, not a copy)."""
        if not isinstance(name, str) or not name.isidentifier():
            _fail_name(self.name, name)
        if type(value) is not np.ndarray:
            value = backend.get_array_module(value).asarray(value)  # a device array stays on its device
        if value.dtype.kind != "f":
            raise TypeError(f"{self.name}: `{name}` must be a floating-point array. Got dtype {value.dtype}. "
                            "Use for example np.zeros(shape, np.float32).")
        self.params[name] = value
        self.grads[name] = backend.get_array_module(value).zeros_like(value)
        return value

    # -- helpers shared by all layers ---------------------------------------------------------------------------
    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``layer(x)``: :meth:`forward` in inference mode unless ``training=True``, like ``model(x)``."""
        return self.forward(x, training=training)

    @property
    def name(self) -> str:
        """The class name, as messages and summaries show the layer."""
        return type(self).__name__

    def _take_cache(self) -> Any:
        """Return the cache of the last forward pass, or raise if there was none."""
        if self.cache is None:
            raise RuntimeError(
                f"{self.name}: backward() called before forward(). Call forward(x, training=True) first."
            )
        return self.cache

    def zero_grad(self) -> None:
        """Set every gradient in ``self.grads`` to zero, in place."""
        for g in self.grads.values():
            g.fill(0)

    def num_parameters(self) -> int:
        """The number of trainable scalars: the sizes of ``self.params`` added up."""
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

    def to(self, device: str) -> Layer:
        """Move parameters, gradients and buffers to ``device`` (``"cpu"``, ``"cuda"``, see
        :mod:`numpycnn.core.backend`) and drop the cache; returns the layer. Arrays already there are kept."""
        for store in (self.params, self.grads, self.buffers):
            for key, value in store.items():
                store[key] = backend.to_device(value, device)
        self.cache = None
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.name}({args})"


def iter_parameters(model: Any) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(name, value, grad)`` for every trainable parameter of a model (anything with ``layers``) or a
    sequence of layers, named as in PyTorch (``"0.weight"``)."""
    layers = model.layers if hasattr(model, "layers") else list(model)
    for i, layer in enumerate(layers):
        for key in layer.params:
            grad = layer.grads.get(key)
            if grad is None or np.shape(grad) != np.shape(layer.params[key]):
                fail(f"{layer.name} (layer {i})", f"grads[{key!r}]",
                     f"an array shaped like params[{key!r}] {np.shape(layer.params[key])}",
                     None if grad is None else f"shape {np.shape(grad)}",
                     hint=f"Create parameters with self.add_param({key!r}, array), which also "
                          "creates the gradient.", error=RuntimeError)
            yield f"{i}.{key}", layer.params[key], grad
