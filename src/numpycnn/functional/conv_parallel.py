"""The convolution split by batch over the worker threads of :mod:`numpycnn.core.parallel` (speed machinery).

This module adds no math: the equations are in ``docs/math.md`` and in
:func:`numpycnn.functional.conv.conv2d_forward` / :func:`~numpycnn.functional.conv.conv2d_backward`, whose
single-slice kernels it runs. It
only cuts the batch and puts the pieces back together; :mod:`numpycnn.functional.conv` calls it, never the
other way round.

Images are independent in the forward pass and in the input gradient, so slice ``k`` of the batch writes
``y[s_k]`` and ``dx[s_k]`` straight into the output arrays. The weight and bias gradients are sums over the
batch, :math:`dW = \\sum_k dW_k` with :math:`dW_k = \\sum_{n \\in s_k} dY_n X_{col,n}^T`: each slice returns
its partial sum and they are added **in slice order**, after every slice has finished. The slices come from
:func:`conv_slices`, which looks only at the shapes (never at the number of workers), so the result is
bit-identical for any number of workers, one included.

Which convolutions are split is :func:`numpycnn.functional.conv.splits_batch`'s rule (large products, on a CPU).

Each slice has its own :class:`~numpycnn.functional.conv.Workspace` (a child of the layer's, ``"slice{k}"``):
two slices never share a scratch buffer, and the columns a slice keeps for backward stay its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numpycnn.core import parallel


def conv_slices(x_shape: tuple[int, ...], w_shape: tuple[int, ...], Ho: int, Wo: int) -> list[slice]:
    """The batch slices of a convolution: work per image is its column matrix, ``C_w kh kw Ho Wo`` elements
    (``C_w`` the weight's input channels), the rule of :func:`numpycnn.core.parallel.slices`."""
    _, c_per_group, kh, kw = w_shape
    return parallel.slices(x_shape[0], c_per_group * kh * kw * Ho * Wo * max(1, x_shape[1] // c_per_group))


def _child(workspace: Any, k: int) -> Any:
    return workspace.child(f"slice{k}") if workspace is not None else None


def forward_in_slices(forward_one: Callable[..., Any], x: np.ndarray, out: np.ndarray, parts: list[slice],
                      workspace: Any) -> list[tuple[slice, Any]]:
    """Run ``forward_one(x[s], workspace_s, out[s])`` (which returns the slice's cache) for every slice ``s``
    on the workers; the caches, with their slices, in slice order."""
    caches = parallel.run([
        lambda s=s, k=k: forward_one(x[s], _child(workspace, k), out[s]) for k, s in enumerate(parts)
    ])
    return list(zip(parts, caches, strict=True))


def backward_in_slices(backward_one: Callable[..., Any], dout: np.ndarray, parts: list[tuple[slice, Any]],
                       dx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``backward_one(dout[s], cache_s, dx[s] or None)`` (which returns the slice's ``(dw, db)``) for every
    slice on the workers; ``(dw, db)`` summed over the slices in slice order."""
    grads = parallel.run([
        lambda s=s, c=c: backward_one(dout[s], c, None if dx is None else dx[s]) for s, c in parts
    ])
    dw, db = grads[0]
    dw = dw.copy()
    db = None if db is None else db.copy()
    for dw_k, db_k in grads[1:]:  # fixed order: the result does not depend on which worker ended first
        dw += dw_k
        if db is not None:
            db += db_k
    return dw, db
