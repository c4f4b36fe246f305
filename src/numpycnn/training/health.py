"""Gradient health: how large each layer's gradients and updates are, per epoch, recorded by every ``fit``.

For each layer :math:`l` with parameters :math:`\\theta_l` (its weight and bias together, as one vector) and each
training step :math:`t`, after the gradients are averaged over the processes and before the optimiser's step:

.. math::

    \\lVert g_l^{(t)} \\rVert = \\sqrt{\\textstyle\\sum_i (\\partial L / \\partial \\theta_{l,i})^2}, \\qquad
    r_l^{(t)} = \\frac{\\lVert \\theta_l^{(t+1)} - \\theta_l^{(t)} \\rVert}{\\lVert \\theta_l^{(t)} \\rVert}

:math:`r` is measured on the step the optimiser actually took (momentum, Adam's scaling, weight decay and the
learning-rate schedule included), not estimated from ``lr * g``. Per epoch, :class:`GradientHealth` records for
each layer the mean of :math:`\\lVert g \\rVert` and of :math:`r` over the epoch's steps (``grad_norm``,
``update_ratio``), their largest values in the epoch (``grad_norm_max``, ``update_ratio_max``: a few wild steps
hide in a mean over hundreds) and :math:`\\lVert \\theta \\rVert` at the end of the epoch (``weight_norm``).
``fit`` keeps them in ``History.gradients`` (and ``history.json``), keyed by the layer's index and name
(``"0.Conv2D"``).

Reading them (CS231n's rule of thumb; :func:`diagnose` applies it):

- **update/weight ratio near 1e-3** (1e-4 to 1e-2) is healthy. Far above (1e-1 and more), the learning rate is too
  high: each step rewrites a large part of the weights and the loss jumps or diverges. Far below (1e-5 and less),
  the learning rate is too low, or that layer has stopped learning.
- **gradient norms of the same order from the last layer to the first** are healthy. Norms that shrink by orders of
  magnitude towards the input are vanishing gradients (too small an initialisation, saturated activations, no
  normalisation in a deep network); norms that grow towards the input and from epoch to epoch are exploding ones.

Cost: two dot products and one copy per parameter per step (the copy to measure the update): 0.5-0.6 ms per step
for ``deep_cnn``'s 431,018 parameters, against 240-250 ms for its forward and backward pass at batch 128, under
1% (``python -m benchmarks.health_cost``; 2-core Intel Xeon with AVX-512, 2026-12-07; 0.25 ms against 216 ms on
an AMD EPYC with AVX-512 the same day), and 0.03 ms against 2.5 ms (about 1%) for the original network's 13,610
parameters at batch 64, whose steps are short;
``fit(..., gradient_health=False)`` turns it off. Recording reads the arrays and writes
nothing into the model or the optimiser, so training's results are bit for bit the same with and without it.
"""

from __future__ import annotations

import math
from typing import Any

from numpycnn.core import backend

__all__ = ["HEALTHY_RATIO", "HEALTH_KEYS", "MAX_STEP_RATIO", "WARN_RATIO", "GradientHealth", "diagnose"]

#: The per-layer lists that ``History.gradients`` holds, one value per epoch.
HEALTH_KEYS = ("grad_norm", "grad_norm_max", "update_ratio", "update_ratio_max", "weight_norm")

#: The range of update/weight ratios that counts as healthy, around CS231n's 1e-3 (shaded in ``gradients.png``).
HEALTHY_RATIO = (1e-4, 1e-2)

#: Epoch-mean ratios :func:`diagnose` warns about: ten times outside the healthy range, clearly wrong.
WARN_RATIO = (1e-5, 1e-1)

#: A single step whose ratio reaches this moved a layer's weights by as much as their own size: :func:`diagnose`
#: calls the learning rate too high. (The original network at lr 0.1, healthy, peaks at 0.18 in its first steps;
#: at lr 1.0 it peaks at 2.7 and ends at chance.)
MAX_STEP_RATIO = 1.0

#: Gradient norms shrinking by more than this factor from the last layer to the first are called vanishing, and
#: growing by more than it towards the first layer are called exploding.
SPREAD = 1e3


class GradientHealth:
    """Accumulates the gradient and update sizes of each layer with parameters over one epoch's steps.

    ``fit`` calls :meth:`before_step` after the backward pass (and the gradients' average over processes) and
    before ``optimizer.step``, :meth:`after_step` after it, and :meth:`end_epoch` once per epoch. The layers'
    parameters are looked up at the first step, so lazily built layers are found.

    Parameters
    ----------
    model : Sequential
        The model being trained; its ``layers`` with non-empty ``params`` are followed.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.keys: list[str] | None = None  # "0.Conv2D" per layer with parameters, found at the first step
        self._layers: list[Any] = []
        self._before: list[list[Any]] = []  # a copy of each parameter before the step, reused
        self._reset()

    def _reset(self) -> None:
        self._grad_sums: list[float] = []  # per layer: the sum of ||g|| over the epoch's steps
        self._ratio_sums: list[float] = []
        self._ratio_steps: list[int] = []
        self._grad_max: list[float] = []
        self._ratio_max: list[float] = []
        self._steps = 0

    def _find_layers(self) -> None:
        layers = [(i, layer) for i, layer in enumerate(self.model.layers) if layer.params]
        self.keys = [f"{i}.{layer.name}" for i, layer in layers]
        self._layers = [layer for _, layer in layers]
        self._before = [[backend.get_array_module(p).empty_like(p) for p in layer.params.values()]
                        for layer in self._layers]

    def before_step(self) -> None:
        """Add each layer's gradient norm to the epoch's sum and keep a copy of its parameters."""
        if self.keys is None:
            self._find_layers()
        if not self._grad_sums:
            self._grad_sums = [0.0] * len(self._layers)
            self._ratio_sums = [0.0] * len(self._layers)
            self._ratio_steps = [0] * len(self._layers)
            self._grad_max = [0.0] * len(self._layers)
            self._ratio_max = [0.0] * len(self._layers)
        for i, layer in enumerate(self._layers):
            squares = 0.0
            for key, copy in zip(layer.params, self._before[i], strict=True):
                xp = backend.get_array_module(copy)
                grad = layer.grads[key].reshape(-1)
                squares = squares + xp.vdot(grad, grad)
                xp.copyto(copy, layer.params[key])
            norm = float(squares) ** 0.5
            self._grad_sums[i] += norm
            self._grad_max[i] = max(self._grad_max[i], norm) if math.isfinite(norm) else norm

    def after_step(self) -> None:
        """Add each layer's update/weight ratio, :math:`\\lVert \\Delta\\theta \\rVert / \\lVert \\theta \\rVert`."""
        for i, layer in enumerate(self._layers):
            change, size = 0.0, 0.0
            for value, copy in zip(layer.params.values(), self._before[i], strict=True):
                xp = backend.get_array_module(copy)
                before = copy.reshape(-1)
                size = size + xp.vdot(before, before)
                xp.subtract(value, copy, out=copy)  # the copy now holds the update
                update = copy.reshape(-1)
                change = change + xp.vdot(update, update)
            size = float(size)
            if size > 0.0:  # a layer whose weights are all zero has no ratio for this step
                ratio = (float(change) / size) ** 0.5
                self._ratio_sums[i] += ratio
                self._ratio_max[i] = max(self._ratio_max[i], ratio) if math.isfinite(ratio) else ratio
                self._ratio_steps[i] += 1
        self._steps += 1

    def end_epoch(self, model: Any = None) -> dict[str, dict[str, float]]:
        """The epoch's means and the weights' norms, ``{"0.Conv2D": {"grad_norm": ..., ...}}``; starts a new epoch.

        Layers that took no step this epoch (no batch) get NaN.
        """
        if self.keys is None:
            self._find_layers()
        record = {}
        for i, (key, layer) in enumerate(zip(self.keys, self._layers, strict=True)):
            weights = 0.0
            for value in layer.params.values():
                flat = value.reshape(-1)
                weights = weights + backend.get_array_module(flat).vdot(flat, flat)
            steps = self._ratio_steps[i] if self._ratio_steps else 0
            record[key] = {
                "grad_norm": self._grad_sums[i] / self._steps if self._steps else math.nan,
                "grad_norm_max": self._grad_max[i] if self._steps else math.nan,
                "update_ratio": self._ratio_sums[i] / steps if steps else math.nan,
                "update_ratio_max": self._ratio_max[i] if steps else math.nan,
                "weight_norm": float(weights) ** 0.5,
            }
        self._reset()
        return record


def diagnose(gradients: dict[str, dict[str, list[float]]]) -> list[str]:
    """Plain-language warnings about a run's ``History.gradients``; empty when it looks healthy.

    The rules of the module notes, with margins so that only clear cases are named: an epoch-mean update/weight
    ratio above ``WARN_RATIO[1]``, or one step's above :data:`MAX_STEP_RATIO`, in any epoch (the learning rate is
    too high: the loss jumps, then units often die); an epoch-mean ratio below ``WARN_RATIO[0]`` in the last epoch
    (learning has stalled); a gradient norm that is not finite, or zero, in the last epoch; gradient norms of the
    last epoch that change by more than :data:`SPREAD` between the last and the first layer with parameters
    (vanishing or exploding gradients).

    Parameters
    ----------
    gradients : dict
        ``History.gradients``: per layer key, ``{"grad_norm": [...], "update_ratio": [...], ...}``, one value per
        epoch.

    Returns
    -------
    list of str
        One sentence per finding, naming the layer, the epoch (1-based, of the recorded ones) and the figure.
    """
    findings = []
    low, high = WARN_RATIO
    last_norms = {}
    for key, fields in gradients.items():
        norms, ratios = fields.get("grad_norm", []), fields.get("update_ratio", [])
        dead = False
        if norms:
            last_norms[key] = norm = norms[-1]
            if not math.isfinite(norm):
                findings.append(f"layer {key}: its gradient norm is {norm}: the gradients overflowed.")
            elif norm == 0.0:
                dead = True
                findings.append(f"layer {key}: its gradients are all zero in the last epoch: it does not learn "
                                "(dead ReLUs after too large steps, or a layer cut off from the loss).")
        means = [(r, epoch) for epoch, r in enumerate(ratios, 1) if math.isfinite(r)]
        peaks = [(r, epoch) for epoch, r in enumerate(fields.get("update_ratio_max", []), 1) if math.isfinite(r)]
        if means and max(means)[0] > high:
            ratio, epoch = max(means)
            findings.append(f"layer {key}: update/weight ratio {ratio:.1e} on average in epoch {epoch}, above "
                            f"{high:.0e}: each step rewrites its weights; the learning rate is too high.")
        elif peaks and max(peaks)[0] >= MAX_STEP_RATIO:
            ratio, epoch = max(peaks)
            findings.append(f"layer {key}: one step in epoch {epoch} changed its weights by {ratio:.1f} times "
                            "their size: the learning rate is too high.")
        if not dead and ratios and math.isfinite(ratios[-1]) and ratios[-1] < low:
            findings.append(f"layer {key}: update/weight ratio {ratios[-1]:.1e} in the last epoch, below "
                            f"{low:.0e}: it barely changes; the learning rate is too low, or its gradients vanish.")
    norms = list(last_norms.values())
    if len(norms) >= 2 and all(math.isfinite(n) and n > 0 for n in norms):
        keys = list(last_norms)
        spread = norms[0] / norms[-1]
        if spread < 1 / SPREAD:
            findings.append(f"gradient norms shrink {1 / spread:.0e} times from layer {keys[-1]} back to layer "
                            f"{keys[0]}: vanishing gradients.")
        elif spread > SPREAD:
            findings.append(f"gradient norms grow {spread:.0e} times from layer {keys[-1]} back to layer "
                            f"{keys[0]}: exploding gradients.")
    return findings
