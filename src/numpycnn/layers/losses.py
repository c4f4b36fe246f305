"""Loss functions: ``loss = criterion.forward(output, target)`` then ``grad = criterion.backward()``.

The math is in :mod:`numpycnn.functional.losses`; these classes check their input and hold the cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core import checks
from numpycnn.core.backend import get_array_module
from numpycnn.functional import losses as F


class _Loss:
    def __init__(self) -> None:
        self.cache: Any = None

    def _take_cache(self) -> Any:
        if self.cache is None:
            raise RuntimeError(
                f"{type(self).__name__}: backward() called before forward(). "
                "Call forward(output, target) first."
            )
        return self.cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits, averaged over the batch (``torch.nn.CrossEntropyLoss``).

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.losses.cross_entropy_forward`
    (written once, there and in docs/math.md). Never NaN for finite logits, however large. With ``label_smoothing``
    :math:`\\varepsilon > 0` the targets become :math:`(1-\\varepsilon)\\,t + \\varepsilon/K`, as in PyTorch.

    Parameters
    ----------
    label_smoothing : float in [0, 1]
        The share of each target spread uniformly over the :math:`K` classes (0, the default: none).

    Shape
    -----
    ``logits`` (N, K); ``targets`` (N,) integer labels in [0, K), or (N, K) one-hot or probability rows.
    ``backward()`` returns (N, K) in the logits' dtype.

    Raises
    ------
    ValueError
        For logits that are not 2D, targets of the wrong shape, or labels outside [0, K).
    TypeError
        For (N,) targets that are not integers.
    RuntimeError
        For ``backward()`` before ``forward()``.

    Examples
    --------
    >>> loss = CrossEntropyLoss()
    >>> round(loss.forward(np.zeros((2, 4), np.float32), np.array([0, 3])), 4)  # log 4
    1.3863
    >>> loss.backward().shape
    (2, 4)
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = checks.real_in_range("CrossEntropyLoss", "label_smoothing", label_smoothing,
                                                     0.0, 1.0)

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        """The mean loss :math:`L` of a batch (a Python float); keeps what :meth:`backward` needs."""
        logits = checks.as_float_array("CrossEntropyLoss", logits)
        targets = targets if type(targets) is np.ndarray else get_array_module(logits).asarray(targets)
        self._check(logits, targets)
        loss, self.cache = F.cross_entropy_forward(logits, targets, self.label_smoothing)
        return loss

    def __repr__(self) -> str:
        return f"CrossEntropyLoss(label_smoothing={self.label_smoothing!r})" if self.label_smoothing else \
            "CrossEntropyLoss()"

    __call__ = forward

    def backward(self) -> np.ndarray:
        """:math:`\\partial L/\\partial z`, the gradient with respect to the logits of the last forward."""
        return F.cross_entropy_backward(self._take_cache())

    @staticmethod
    def _check(logits: np.ndarray, targets: np.ndarray) -> None:
        owner = "CrossEntropyLoss"
        if logits.ndim != 2:
            hint = "Use logits[None] for a single sample." if logits.ndim == 1 else ""
            checks.fail(owner, "logits", "a 2D array (N, K)", logits, hint, got=f"shape {tuple(logits.shape)}")
        n, k = logits.shape
        if targets.ndim == 1:
            if targets.shape[0] != n:
                checks.fail(owner, "targets", f"of shape ({n},) or ({n}, {k}) for logits of shape {(n, k)}",
                             targets, got=f"shape {tuple(targets.shape)}")
            if targets.dtype.kind not in "iu":
                checks.fail(owner, "targets", "integer class labels when 1D", f"dtype {targets.dtype}",
                             hint="Use targets.astype(np.int64).", error=TypeError)
            if n and (targets.min() < 0 or targets.max() >= k):
                bad = targets[(targets < 0) | (targets >= k)]
                checks.fail(owner, "targets", f"class labels in [0, {k}) for logits of shape {(n, k)}",
                             int(bad[0]))
        elif targets.shape != (n, k):
            checks.fail(owner, "targets", f"of shape ({n},) or ({n}, {k}) for logits of shape {(n, k)}", targets,
                         got=f"shape {tuple(targets.shape)}")


class MSELoss(_Loss):
    """Mean squared error over all elements (``torch.nn.MSELoss()``).

    Notes
    -----
    Equations, forward and backward: :func:`~numpycnn.functional.losses.mse_forward`
    (written once, there and in docs/math.md).

    Shape
    -----
    ``pred`` and ``target`` of the same shape; ``backward()`` returns ``pred``'s shape and dtype.

    Examples
    --------
    >>> MSELoss().forward(np.array([1.0, 3.0]), np.array([0.0, 1.0]))
    2.5
    """

    def forward(self, pred: np.ndarray, target: np.ndarray) -> float:
        """The mean squared error :math:`L` (a Python float); keeps what :meth:`backward` needs."""
        pred = checks.as_float_array("MSELoss", pred)
        target = target if type(target) is np.ndarray else get_array_module(pred).asarray(target)
        if target.shape != pred.shape:
            checks.fail("MSELoss", "target", f"of the prediction's shape {tuple(pred.shape)}", target,
                         got=f"shape {tuple(target.shape)}")
        loss, self.cache = F.mse_forward(pred, target)
        return loss

    __call__ = forward

    def backward(self) -> np.ndarray:
        """:math:`\\partial L/\\partial \\hat y`, the gradient with respect to the last forward's prediction."""
        return F.mse_backward(self._take_cache())
