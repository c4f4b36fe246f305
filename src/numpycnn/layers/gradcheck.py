"""Finite-difference gradient checks for layers, in float64.

The scalar checked is a random projection of the output, :math:`L = \\sum_i y_i R_i` with :math:`R` drawn once, so
that :math:`\\partial L / \\partial y = R`. (An all-ones upstream gradient hides bugs: for softmax it makes the input
gradient exactly zero.) Each input and parameter element is perturbed by :math:`\\pm\\epsilon` and

.. math::

    \\frac{\\partial L}{\\partial \\theta} \\approx
    \\frac{L(\\theta + \\epsilon) - L(\\theta - \\epsilon)}{2\\epsilon}

is compared with the analytic gradient that ``backward(R)`` returns or stores in ``layer.grads``.

The check runs on a float64 copy of the layer whose parameters are redrawn at random (``random_params=True``, the
default), so the layer you pass is left untouched. Parameters at their initial values can hide a bug: a factor that
starts at 1 (``ChannelScale``'s ``a``, batch norm's ``gamma``) makes a backward that forgets to multiply by it
exact, and a parameter at 0 hides any wrong term of backward that it multiplies. The result names the worst element
of every gradient (:attr:`GradcheckResult.worst`), so a failing check says where to look.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from numpycnn.layers.base import Layer

#: The pass mark: a correct layer checked in float64 with ``eps=1e-6`` scores about 1e-10 to 1e-8 (rounding in
#: the differences); a wrong gradient term scores 1e-3 or more. Between the two, look closer (a kink of ReLU or a
#: pooling tie in the input, or a layer that is not smooth).
THRESHOLD = 1e-6

#: Tag of the projection's random stream: ``SeedSequence(seed, spawn_key=(_STREAM,))`` never yields the stream
#: of ``np.random.default_rng(seed)`` (whose spawn key is empty), so an input drawn by a user from any seed cannot
#: coincide with the projection.
_STREAM = 0x67726164  # "grad"


class GradcheckResult(float):
    """The largest relative error (a ``float``, as before) that also says whether the check passed.

    Attributes
    ----------
    errors : dict of str to float
        The error of the input gradient (``"input"``) and of each parameter's gradient.
    threshold : float
        The pass mark, :data:`THRESHOLD` unless given.
    worst : dict of str to tuple of int
        For each gradient, the index of its element farthest from the finite difference (empty when not known).
    passed : bool
        ``self <= threshold``.
    """

    errors: dict[str, float]
    threshold: float
    worst: dict[str, tuple[int, ...]]

    def __new__(cls, errors: dict[str, float], threshold: float = THRESHOLD,
                worst: dict[str, tuple[int, ...]] | None = None) -> GradcheckResult:
        result = super().__new__(cls, max(errors.values(), default=0.0))
        result.errors, result.threshold, result.worst = dict(errors), float(threshold), dict(worst or {})
        return result

    @property
    def passed(self) -> bool:
        """Whether the error is within the pass mark: ``self <= threshold``."""
        return float(self) <= self.threshold

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        worst = max(self.errors, key=self.errors.__getitem__) if self.errors else "-"
        where = f", worst element {worst}{list(self.worst[worst])}" if worst in self.worst and not self.passed else ""
        return (f"GradcheckResult({verdict}: max relative error {float(self):.3g} ({worst}){where}, "
                f"threshold {self.threshold:g})")


def _relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Normwise relative error ``max|a - n| / max(max|a|, max|n|)``, 0 when both are zero."""
    scale = max(np.max(np.abs(analytic), initial=0.0), np.max(np.abs(numeric), initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(analytic - numeric)) / scale)


def _worst_index(analytic: np.ndarray, numeric: np.ndarray) -> tuple[int, ...]:
    """Index of the element where ``analytic`` and ``numeric`` differ most."""
    gap = np.abs(np.asarray(analytic) - np.asarray(numeric))
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(gap)), gap.shape)) if gap.size else ()


def _prepared_copy(layer: Layer, x: np.ndarray, training: bool, random_params: bool, seed: int) -> Layer:
    """A float64 copy of ``layer``, its parameters redrawn from N(0, 1) when ``random_params``.

    One forward pass first builds the parameters of a layer that sizes them from its input
    (``Dense(out_features=10)``). Without ``random_params``, warn about parameters that sit at 0 or 1 everywhere,
    the values at which a missing factor or term cannot show.
    """
    checked = copy.deepcopy(layer).astype(np.float64)
    if random_params or not checked.params:
        checked.forward(x.copy(), training=training)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM, 1)))
    for key, value in checked.params.items():
        if random_params:
            value[...] = rng.standard_normal(value.shape)
        elif value.size and (np.all(value == 0) or np.all(value == 1)):
            warnings.warn(f"gradcheck: {checked.name}'s parameter {key!r} is {float(value.flat[0]):g} everywhere, "
                          "where a missing factor or term in backward cannot show; check with "
                          "random_params=True (the default).", stacklevel=3)
    checked.cache = None
    return checked


def gradcheck(
    layer: Layer,
    x: np.ndarray,
    *,
    eps: float = 1e-6,
    training: bool = True,
    seed: int = 0,
    return_all: bool = False,
    threshold: float = THRESHOLD,
    random_params: bool = True,
) -> Any:
    """Compare a layer's analytic gradients with central finite differences; return the largest relative error
    as a :class:`~numpycnn.layers.gradcheck.GradcheckResult`, a float that also says ``.passed`` (error <=
    ``threshold``, 1e-6).

    The check runs on a copy of the layer converted to float64, with its parameters redrawn at random unless
    ``random_params=False``; the layer passed in is left untouched. ``x`` is cast to float64. A layer with a random
    generator in ``layer.rng`` (dropout) gets the same generator state before every forward pass, so its mask is
    fixed while the differences are taken.

    Parameters
    ----------
    layer : Layer
        The layer to check.
    x : ndarray
        An input the layer accepts. Avoid inputs at kinks (ReLU at 0, pooling ties).
    eps : float
        The finite-difference step.
    training : bool
        Passed to ``forward``.
    seed : int
        Seed of the random projection ``R``, drawn from a stream of its own (``SeedSequence(seed,
        spawn_key=...)``) that no ``np.random.default_rng(seed)`` input can coincide with.
    return_all : bool
        If true, return a dict ``{"input": err, "weight": err, ...}`` instead of the maximum.
    threshold : float
        The pass mark of the result, :data:`THRESHOLD` (1e-6) by default.
    random_params : bool
        Check at random parameter values (each element from N(0, 1), seeded by ``seed``) rather than the layer's
        own, which may sit at 0 or 1 where a dropped factor cannot show. With ``False`` the layer's own values are
        used (still on a copy) and a warning names any parameter that is 0 or 1 everywhere.

    Returns
    -------
    GradcheckResult or dict
        The largest normwise relative error over the input gradient and every parameter gradient (a float:
        ``result < 1e-7`` works), with ``.passed``, ``.errors``, ``.worst`` (the index of each gradient's worst
        element) and ``.threshold``; ``print`` shows the verdict and, on failure, the worst element.

    Examples
    --------
    >>> import numpy as np
    >>> from numpycnn.layers import Dense
    >>> gradcheck(Dense(3, 2, rng=np.random.default_rng(0)), np.random.default_rng(1).normal(size=(4, 3))).passed
    True
    """
    x = np.array(x, dtype=np.float64)
    layer = _prepared_copy(layer, x, training, random_params, seed)
    rng_state = layer.rng.bit_generator.state if hasattr(layer, "rng") else None

    def run(inp: np.ndarray) -> np.ndarray:
        if rng_state is not None:
            layer.rng.bit_generator.state = rng_state
        return layer.forward(inp, training=training)

    y = run(x)
    if np.asarray(y).dtype != np.float64:
        warnings.warn(f"gradcheck: {layer.name} computes in {np.asarray(y).dtype}, not float64; the finite "
                      "differences are rough, so expect errors far above 1e-6 even for a right backward.",
                      stacklevel=2)
    projection = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM,))).standard_normal(y.shape)
    grad_x = layer.backward(projection.copy())
    analytic = {"input": grad_x, **{k: g.copy() for k, g in layer.grads.items()}}

    def loss_at() -> float:
        return float(np.sum(run(x) * projection))

    targets = {"input": x, **layer.params}
    numeric = {key: numeric_gradient(loss_at, array, eps) for key, array in targets.items()}
    errors = {key: _relative_error(analytic[key], numeric[key]) for key in targets}
    if return_all:
        return errors
    return GradcheckResult(errors, threshold, {key: _worst_index(analytic[key], numeric[key]) for key in targets})


def numeric_gradient(loss: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``loss()`` in every element of ``array``.

    ``array`` must be contiguous: each element is perturbed in place through a flat view, then restored.
    """
    numeric = np.zeros_like(array)
    flat, flat_numeric = array.reshape(-1), numeric.reshape(-1)  # (size,) views of the same memory
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = loss()
        flat[i] = saved - eps
        minus = loss()
        flat[i] = saved
        flat_numeric[i] = (plus - minus) / (2 * eps)
    return numeric
