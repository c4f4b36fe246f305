"""The execution plan of a ``Sequential``: which layers run on their own and which run as one fused operation.

A plan is a list of steps. Most steps are one layer, run through the layer's own ``forward`` and ``backward``.
Where two consecutive layers match one of the :data:`FUSIONS`, one step runs both with a fused operation of
:mod:`numpycnn.functional.fused`, which computes exactly the composition in fewer passes over memory. The plan
is data: ``print(model.plan())`` shows it, ``Sequential.summary()`` lists its fused steps, ``numpycnn profile``
times its steps, and the feature-map plots run it, so everything a user sees runs what ``fit`` runs.

Rules:

- A fusion matches layers by their exact class: a user's subclass, or a different class with the same name, is
  never fused. A fused step does everything the layers' own ``forward`` would (input checks, running statistics).
- The layers inside a fused step keep no cache (their ``cache`` is ``None``); the step holds it. Their
  parameters, gradients and buffers (batch norm's running statistics) are updated exactly as unfused.
- ``Sequential(..., fuse=False)`` runs every layer on its own.

Each step also says what it splits over the worker threads of :mod:`numpycnn.core.parallel` (:data:`SPLITS`) and,
once it has run, how many slices and workers its last forward pass used; the plan's first lines name the
number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from numpycnn.core import parallel
from numpycnn.functional import fused
from numpycnn.layers import BatchNorm1D, BatchNorm2D, MaxPool2D, ReLU
from numpycnn.layers.base import Layer

#: What each kind of step cuts into slices for the workers (by step name: a fused op or a layer class). The
#: optimiser's update, not a step, splits long flat parameters (numpycnn.optim.optimizers.UPDATE_SLICE).
SPLITS = {
    "Conv2D": "batch slices when its products are large (weight gradient summed in slice order)",
    "batchnorm_relu": "channel slices",
    "relu_maxpool2d": "batch slices",
    "MaxPool2D": "batch slices",
}


class Step:
    """One step of a plan: ``layers`` (consecutive, starting at index ``start`` of the model) run together."""

    #: The operation's name as plans print it; a single layer's step uses the layer's class name.
    op: ClassVar[str] = ""

    def __init__(self, layers: Sequence[Layer], start: int) -> None:
        self.layers = tuple(layers)
        self.start = start
        self.cache: Any = None
        #: ``(regions, slices, workers)`` of the last forward pass (:func:`numpycnn.core.parallel.take_usage`).
        self.usage: tuple[int, int, int] = (0, 0, 0)
        self.has_run = False  # whether a forward pass of the plan ran this step (for parallelism())

    @property
    def stop(self) -> int:
        """The index one past the step's last layer."""
        return self.start + len(self.layers)

    @property
    def name(self) -> str:
        """The fused operation's name (:attr:`op`), or the class name of the step's one layer."""
        return self.op or self.layers[0].name

    @property
    def span(self) -> str:
        """The layer indices, ``"3"`` or ``"4-5"``."""
        return str(self.start) if len(self.layers) == 1 else f"{self.start}-{self.stop - 1}"

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """The output of the step's layers for ``x``, in training or inference mode; keeps the cache."""
        raise NotImplementedError

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """The input gradient; with ``input_grad=False`` a step may skip it and return ``None``."""
        raise NotImplementedError

    def _take_cache(self) -> Any:
        if self.cache is None:
            raise RuntimeError(f"{self.name} (layers {self.span}): backward() called before forward().")
        return self.cache

    def describe(self) -> str:
        """The layer's repr, or ``"op: Layer(...) + Layer(...)"`` for a fused step."""
        inner = " + ".join(repr(layer) for layer in self.layers)
        return f"{self.op}: {inner}" if self.op else inner

    def parallelism(self) -> str:
        """What the step splits over the workers and, once it has run, how its last forward pass was split."""
        split = SPLITS.get(self.name)
        if split is None:
            return ""
        regions, slices, workers = self.usage
        if not regions:  # not run yet, or run as one call (too little work to split, or on a device)
            return f"parallel: {split}" + ("; last forward not split" if self.has_run else "")
        return f"parallel: {split}; last forward {slices} slice(s) on {workers} worker(s)"

    def __repr__(self) -> str:
        return f"{self.span}: {self.describe()}"


class LayerStep(Step):
    """A layer run on its own, through its own ``forward`` and ``backward``."""

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return self.layers[0].forward(x, training=training)

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """The layer's backward; a layer that can skip its input gradient (``compute_input_grad``, e.g. Conv2D)
        does when ``input_grad`` is false, and the result is ``None``."""
        layer = self.layers[0]
        if input_grad or not hasattr(layer, "compute_input_grad"):
            return layer.backward(grad)
        saved, layer.compute_input_grad = layer.compute_input_grad, False
        try:
            return layer.backward(grad)
        finally:
            layer.compute_input_grad = saved


class BatchNormReLU(Step):
    """``BatchNorm1D`` or ``BatchNorm2D`` followed by ``ReLU``, as ``fused.batchnorm_relu_forward`` (training)
    or ``fused.batchnorm_relu_inference_forward`` (:mod:`numpycnn.functional.fused`)."""

    op = "batchnorm_relu"
    pattern: ClassVar[tuple[tuple[type[Layer], ...], ...]] = ((BatchNorm1D, BatchNorm2D), (ReLU,))

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        bn = self.layers[0]
        x = bn.check_input(x, training)
        gamma, beta = bn.params["weight"], bn.params["bias"]
        if training:
            y, cache = fused.batchnorm_relu_forward(x, gamma, beta, bn.eps)
            bn.update_running_stats(cache[4], cache[5], x.size // bn.num_features)
        else:
            y, cache = fused.batchnorm_relu_inference_forward(
                x, gamma, beta, bn.buffers["running_mean"], bn.buffers["running_var"], bn.eps)
        self.cache = (training, cache)
        return y

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray:
        training, cache = self._take_cache()
        backward = fused.batchnorm_relu_backward if training else fused.batchnorm_relu_inference_backward
        dx, dgamma, dbeta = backward(grad, cache)
        bn = self.layers[0]
        bn.grads["weight"][...] = dgamma
        bn.grads["bias"][...] = dbeta
        return dx


class ReLUMaxPool2D(Step):
    """``ReLU`` followed by ``MaxPool2D``, as :func:`~numpycnn.functional.fused.relu_maxpool2d_forward`."""

    op = "relu_maxpool2d"
    pattern: ClassVar[tuple[tuple[type[Layer], ...], ...]] = ((ReLU,), (MaxPool2D,))

    @staticmethod
    def accepts(layers: Sequence[Layer]) -> bool:
        """Only an unpadded pooling fuses: the fused kernel pools the ReLU's output as it is (with padding the
        layers run one by one, the pooling's :math:`-\\infty` border included)."""
        return not layers[1].padded

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        pool = self.layers[1]
        y, self.cache = fused.relu_maxpool2d_forward(pool.check_input(x), pool.kernel_size, pool.stride)
        return y

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray:
        return fused.relu_maxpool2d_backward(grad, self._take_cache())


#: The fused steps a plan may use, tried in this order at each position.
FUSIONS: tuple[type[BatchNormReLU | ReLUMaxPool2D], ...] = (BatchNormReLU, ReLUMaxPool2D)


def _matches(fusion: type[BatchNormReLU | ReLUMaxPool2D], layers: Sequence[Layer]) -> bool:
    return len(layers) == len(fusion.pattern) and all(
        type(layer) in allowed for layer, allowed in zip(layers, fusion.pattern, strict=True)) and (
        getattr(fusion, "accepts", lambda _: True)(layers))


class ExecutionPlan:
    """The steps that run a list of layers, in order. ``str(plan)`` prints one line per step."""

    def __init__(self, layers: Sequence[Layer], fuse: bool = True) -> None:
        self.steps: list[Step] = []
        i = 0
        while i < len(layers):
            fusion = next((f for f in FUSIONS if fuse and _matches(f, layers[i:i + len(f.pattern)])), None)
            if fusion is None:
                self.steps.append(LayerStep(layers[i:i + 1], i))
            else:
                self.steps.append(fusion(layers[i:i + len(fusion.pattern)], i))
            i = self.steps[-1].stop

    @property
    def fused_steps(self) -> list[Step]:
        """The steps that run two layers as one fused operation."""
        return [step for step in self.steps if step.op]

    def forward(self, x: np.ndarray, training: bool, keep_cache: bool = True) -> np.ndarray:
        """Run every step; with ``keep_cache=False`` (inference that nobody backpropagates through) each step's
        cache is dropped as soon as it has run, so only a step's input and output are alive at a time."""
        parallel.take_usage()  # count this pass's regions only
        for step in self.steps:
            x = step.forward(x, training)
            step.usage, step.has_run = parallel.take_usage(), True
            if step.op or not keep_cache:
                for layer in step.layers:  # the step holds the cache; a layer's own backward must not run
                    layer.cache = None
            if not keep_cache:
                step.cache = None
        return x

    def __str__(self) -> str:
        fused_count = len(self.fused_steps)
        head = f"Execution plan: {len(self.steps)} steps for {sum(len(s.layers) for s in self.steps)} layers"
        head += f" ({fused_count} fused)" if fused_count else ""
        lines = [head, f"  Parallel: {parallel.describe()}"]
        for step in self.steps:
            where = step.parallelism()
            lines.append(f"  {step!r}" + (f"  [{where}]" if where else ""))
        return "\n".join(lines)
