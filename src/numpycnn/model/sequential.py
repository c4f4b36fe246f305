"""``Sequential``: a list of layers run in order, forward and then backward.

Training (``fit``, ``evaluate``, ``predict``) lives in :mod:`numpycnn.training.loop`; model files in
:mod:`numpycnn.files` and :mod:`numpycnn.model.io`.
The methods of the same names are conveniences that call them: :mod:`numpycnn.training.loop` and
:mod:`numpycnn.files.model_file` never import this module (only its type, for annotations), so the imports stay one
way (docs/design.md, "Layering").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from numpycnn.core import backend, checks
from numpycnn.files.model_file import save_model
from numpycnn.layers.base import LAYER_REGISTRY, Layer, iter_parameters, unknown_layer_message
from numpycnn.model.plan import ExecutionPlan
from numpycnn.training import loop

#: Layers after which a weight layer is initialised for a rectifier (He/Kaiming); Glorot otherwise.
_RECTIFIERS = ("ReLU", "LeakyReLU")
#: Layers that may stand between a weight layer and its activation without changing the choice.
_TRANSPARENT = ("BatchNorm1D", "BatchNorm2D", "MaxPool2D", "AvgPool2D", "Dropout", "Flatten")


class Sequential:
    """Layers applied one after another: :math:`y = f_{L}(\\dots f_2(f_1(x)))`.

    Backward applies the chain rule in reverse, :math:`\\partial L/\\partial x = J_1^T \\cdots J_L^T\\,
    \\partial L/\\partial y`, each layer filling its own parameter gradients on the way.

    Parameters
    ----------
    *layers : Layer, or one iterable of Layer
        The layers, in order: ``Sequential(a, b, c)`` or ``Sequential([a, b, c])``.
    input_shape : tuple of int, optional
        The per-sample input shape, e.g. ``(1, 28, 28)``; used by ``summary`` and export, and stored in model
        files. Without one, the first :meth:`forward` records the shape of its input.
    fuse : bool
        Run pairs such as batch norm + ReLU as one fused operation (exactly equal, fewer passes over memory);
        see :meth:`plan`.

    Examples
    --------
    >>> from numpycnn.layers import Conv2D, ReLU, MaxPool2D, Flatten, Dense
    >>> model = Sequential([Conv2D(1, 8, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(1352, 10)], input_shape=(1, 28, 28))
    >>> model.initialize(seed=0)
    >>> model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    """

    def __init__(self, *layers: Layer | Iterable[Layer], input_shape: Sequence[int] | None = None,
                 fuse: bool = True) -> None:
        if len(layers) == 1 and not isinstance(layers[0], Layer):
            layers = tuple(layers[0])  # Sequential([a, b, c]): one iterable of layers
        elif len(layers) == 2 and not isinstance(layers[1], Layer) and input_shape is None and (
                layers[1] is None or isinstance(layers[1], (tuple, list))):
            layers, input_shape = tuple(layers[0]), layers[1]  # Sequential([a, b], (1, 28, 28)), as before
        self.layers: list[Layer] = list(layers)  # type: ignore[arg-type]
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                hint = (f"Did you mean {layer.__name__}()? Layers are instances."
                        if isinstance(layer, type) and issubclass(layer, Layer) else "")
                checks.fail("Sequential", f"layers[{i}]", "a Layer", layer, hint, error=TypeError,
                             got=f"a {type(layer).__name__}")
        self.input_shape: tuple[int, ...] | None = tuple(int(d) for d in input_shape) if input_shape else None
        #: Whether :meth:`plan` may run pairs of layers as one fused operation (:data:`numpycnn.model.plan.FUSIONS`).
        self.fuse = bool(fuse)
        self._plan: ExecutionPlan | None = None
        self._plan_key: tuple[Any, ...] = ()
        #: Names of the output classes, saved in model files (``None`` when unknown).
        self.class_names: list[str] | None = None
        #: The input normalisation the model was trained with, ``{"mean": [...], "std": [...]}`` per channel of
        #: images scaled to [0, 1], saved in model files so ``predict`` on raw images preprocesses alike.
        self.normalization: dict[str, list[float]] | None = None
        #: How pictures are prepared for this model (a :class:`numpycnn.datasets.preparation.Preparation`), saved in
        #: model files for models trained on your own pictures; ``None``: guessed from the input shape.
        self.preparation: Any = None
        self._device = "cpu"  # where lazy layers will be: the device of the last ``to``
        if self.input_shape is not None:
            self.output_shapes(self.input_shape, build=True)  # infer lazy sizes; fail early if inconsistent

    # -- running ------------------------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False, *, keep_cache: bool = True) -> np.ndarray:
        """Run the layers (as :meth:`plan` says), in inference mode unless ``training=True``.

        Inference mode is the default: batch norm uses (and never moves) its running statistics and dropout
        is the identity, so two calls on the same input give the same output. Pass ``training=True`` for a
        training step by hand (``fit`` does); ``backward`` works after either mode. ``keep_cache=False`` drops
        each layer's cache once it has run, for inference nobody backpropagates through: memory then holds one
        layer's input and output at a time. ``x`` must be on :attr:`device` (``fit``, ``evaluate`` and
        ``predict`` move their batches there).
        """
        if not isinstance(training, (bool, np.bool_)):
            checks.fail("Sequential.forward", "training", "True or False", training, error=TypeError)
        if type(x) is not np.ndarray or self._device != "cpu":
            self._check_device(x)
        y = self.plan().forward(x, bool(training), keep_cache)
        if self.input_shape is None and getattr(x, "ndim", 0) >= 2:  # recorded on the first call, as in Keras,
            self.input_shape = tuple(int(d) for d in x.shape[1:])  # so that a model built without one exports
        return y

    def _check_device(self, x: Any) -> None:
        where, device = backend.device_of(x), self.device
        if where != device:
            checks.fail("Sequential.forward", "x", f"an array on the model's device {device!r}", x,
                         f"Move it with numpycnn.core.backend.to_device(x, {device!r}), or call model.predict(x), "
                         "which does.", TypeError, got=f"an array on {where!r}")

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``model(x)``: :meth:`forward` in inference mode; training mode only with ``training=True``."""
        return self.forward(x, training=training)

    def plan(self) -> ExecutionPlan:
        """The steps ``forward`` and ``backward`` run: each layer on its own, or two as one fused operation.

        See :mod:`numpycnn.model.plan`; ``print(model.plan())`` shows it. Recomputed when ``layers`` or ``fuse``
        change, not every batch.
        """
        key = (tuple(self.layers), self.fuse)
        if self._plan is None or key != self._plan_key:
            self._plan, self._plan_key = ExecutionPlan(self.layers, self.fuse), key
        return self._plan

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``grad`` (the loss gradient of the output); every layer fills its ``grads``.

        Returns the gradient with respect to the model's input. With ``input_grad=False`` (training, where
        nobody uses it) a first layer that can skip it (``compute_input_grad``, e.g. Conv2D) does, and the
        result is ``None``; the parameter gradients are the same either way.
        """
        steps = self.plan().steps
        for i in range(len(steps) - 1, -1, -1):
            grad = steps[i].backward(grad, input_grad=input_grad or i > 0)
        return grad

    def zero_grad(self) -> None:
        """Set every layer's gradients to zero, in place."""
        for layer in self.layers:
            layer.zero_grad()

    # -- parameters and state -----------------------------------------------------------------------------------
    def parameters(self) -> list[np.ndarray]:
        """The trainable arrays themselves (not copies), in state-dict order."""
        return [value for _, value, _ in iter_parameters(self)]

    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        """``(name, array)`` for every trainable parameter, by state-dict name (``"0.weight"``), in order."""
        return [(name, value) for name, value, _ in iter_parameters(self)]

    def num_parameters(self) -> int:
        """The number of trainable scalars of all layers."""
        return sum(layer.num_parameters() for layer in self.layers)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by PyTorch ``nn.Sequential`` names, in PyTorch's order (the arrays themselves)."""
        state: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.layers):
            for key, value in (*layer.params.items(), *layer.buffers.items()):
                state[f"{i}.{key}"] = value
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays into the model's own; names, shapes must match exactly (dtype is converted)."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"Sequential.load_state_dict: missing tensors {missing}, unexpected tensors {unexpected}.")
        for name, target in own.items():
            source = backend.to_device(state[name], backend.device_of(target))  # host or device, onto the model's
            if source.shape != target.shape:
                checks.fail("Sequential.load_state_dict", f"state[{name!r}]", f"an array of shape {target.shape}",
                             source, got=f"shape {source.shape}")
            target[...] = source

    def to(self, device: str) -> Sequential:
        """Move parameters, gradients and buffers to ``device`` and return the model, as in PyTorch.

        ``"cpu"`` is NumPy; ``"cuda"`` is CuPy on an NVIDIA GPU (``pip install "numpycnn[gpu]"``). ``fit``,
        ``evaluate`` and ``predict`` then send each batch there and bring results back; ``save`` writes host
        copies. An optimiser's state follows the parameters at its next step. Raises ``DeviceError`` naming
        the fix when the device cannot run here.

        Examples
        --------
        >>> from numpycnn.layers import Dense
        >>> model = Sequential(Dense(4, 2)).to("cpu")
        >>> model.device
        'cpu'
        """
        backend.get_device(device)  # checks the name and that the device runs here, before anything moves
        for layer in self.layers:
            layer.to(device)
        self._device = device
        return self

    @property
    def device(self) -> str:
        """Where the parameters live: ``"cpu"`` (NumPy), ``"cuda"`` (CuPy), or a registered device; for a model
        without parameters yet (lazy layers), the device of the last :meth:`to`."""
        for layer in self.layers:
            for value in (*layer.params.values(), *layer.buffers.values()):
                return backend.device_of(value)
        return self._device

    def astype(self, dtype: Any) -> Sequential:
        """Convert every layer to ``dtype`` (float32 or float64) in place, as :meth:`Layer.astype
        <numpycnn.layers.base.Layer.astype>`; return the model."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the first parameter (float32 for a model without parameters)."""
        for layer in self.layers:
            for value in layer.params.values():
                return value.dtype
        return np.dtype(np.float32)

    def initialize(self, seed: int | np.random.Generator | None = None) -> Sequential:
        """Draw every parameter and every layer's random generator from one seed.

        Weight layers followed (possibly through batch norm, pooling or dropout) by ReLU or LeakyReLU get He/Kaiming
        initialisation; others get Glorot. Each layer with its own generator (dropout) gets an independent child
        generator, so the same seed gives bit-identical runs.
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        for i, layer in enumerate(self.layers):
            if getattr(layer, "built", True) is False:  # lazy: drawn from its own child when built
                layer.reset_parameters(rng.spawn(1)[0], self._nonlinearity_after(i))
            elif layer.params:
                layer.reset_parameters(rng, self._nonlinearity_after(i))
            if hasattr(layer, "rng"):
                layer.rng = rng.spawn(1)[0]
        return self

    def _nonlinearity_after(self, index: int) -> str:
        for layer in self.layers[index + 1:]:
            if layer.name in _RECTIFIERS:
                return "relu" if layer.name == "ReLU" else "leaky_relu"
            if layer.name not in _TRANSPARENT:
                break
        return "linear"

    # -- training and files (implemented in numpycnn.training.loop and numpycnn.files) ----------------------
    def fit(self, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> Any:
        """Train the model; see :func:`numpycnn.training.loop.fit` for the arguments. Returns a ``History``."""
        return loop.fit(self, x, y, **kwargs)

    def evaluate(self, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` on ``(x, y)``; see :func:`numpycnn.training.inference.evaluate`."""
        return loop.evaluate(self, x, y, **kwargs)

    def predict(self, x: np.ndarray, **kwargs: Any) -> np.ndarray:
        """Class probabilities ``(N, classes)`` as a NumPy array, on any device; see
        :func:`numpycnn.training.inference.predict`."""
        return loop.predict(self, x, **kwargs)

    def predict_classes(self, x: np.ndarray, **kwargs: Any) -> np.ndarray:
        """The most probable class of each sample, ``(N,)`` int64."""
        return np.argmax(self.predict(x, **kwargs), axis=1).astype(np.int64)

    def save(self, path: Any) -> None:
        """Write the model as a safetensors file (atomically, host copies from any device); see
        :func:`numpycnn.model.io.save_model`."""
        save_model(self, path)

    # -- description --------------------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The architecture as JSON values; every lazy layer must know its input size by now."""
        for i, layer in enumerate(self.layers):
            if getattr(layer, "built", True) is False:
                raise RuntimeError(
                    f"Sequential: layer {i} ({layer!r}) does not know its input size yet. Give the model an "
                    "input_shape, e.g. Sequential(..., input_shape=(1, 28, 28)), or run it once on a batch.")
        return {
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "layers": [{"type": layer.name, "config": layer.get_config()} for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """Build a model from ``get_config()`` output; only registered layer types are accepted."""
        layers = []
        for spec in config["layers"]:
            layer_type = LAYER_REGISTRY.get(spec["type"])
            if layer_type is None:
                raise ValueError("Sequential.from_config: " + unknown_layer_message(spec["type"]))
            layers.append(layer_type(**spec["config"]))
        return cls(layers, input_shape=config.get("input_shape"))

    def output_shapes(self, input_shape: Sequence[int], *, build: bool = False) -> list[tuple[int, ...]]:
        """Per-sample output shape of every layer for a per-sample ``input_shape``; with ``build=True`` lazy
        layers (``Dense(out_features=10)``, ``Conv2D(out_channels=8, kernel_size=3)``) take their input size
        from it."""
        shapes, shape = [], tuple(int(d) for d in input_shape)
        for i, layer in enumerate(self.layers):
            try:
                if build and getattr(layer, "built", True) is False and shape:
                    layer.build(shape[0])
                shape = tuple(layer.output_shape(shape))
            except ValueError as err:
                message = f"Sequential: layer {i} ({layer.name}) cannot take input of shape {shape}: {err}"
                raise ValueError(message) from err
            shapes.append(shape)
        return shapes

    def summary(self, input_shape: Sequence[int] | None = None) -> str:
        """A table of layer, output shape and parameter count, like Keras' ``model.summary()``."""
        input_shape = input_shape or self.input_shape
        shapes = self.output_shapes(input_shape) if input_shape else [None] * len(self.layers)
        rows = [("#", "Layer", "Output shape", "Params")]
        for i, (layer, shape) in enumerate(zip(self.layers, shapes, strict=True)):
            shape_text = "?" if shape is None else str((None, *shape))
            rows.append((str(i), repr(layer), shape_text, f"{layer.num_parameters():,}"))
        widths = [max(len(row[c]) for row in rows) for c in range(4)]
        line = "-" * (sum(widths) + 6)

        def fmt(row: tuple[str, ...]) -> str:
            return "  ".join([row[0].rjust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]),
                              row[3].rjust(widths[3])])

        body = [fmt(rows[0]), line, *(fmt(r) for r in rows[1:]), line,
                f"Total parameters: {self.num_parameters():,}"]
        fused_steps = self.plan().fused_steps
        if fused_steps:
            body.append("Fused steps: " + ", ".join(f"layers {step.span} as {step.op}" for step in fused_steps))
        if input_shape:
            body.insert(0, f"Input shape: {(None, *input_shape)}")
        return "\n".join(body)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"
