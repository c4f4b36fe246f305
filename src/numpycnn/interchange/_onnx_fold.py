"""Constant folding at ONNX import: the few shape operators exporters apply to constants, evaluated in NumPy.

Exporters compute some weights and most reshape targets in the graph instead of storing them: ``ConstantOfShape``
makes a weight from its shape (the ONNX test suite's ``light`` models), ``Transpose`` turns a ``Linear``'s
``(out, in)`` weight into the ``(in, out)`` a ``MatMul`` takes, and ``x.view(x.size(0), -1)`` becomes
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``. Here a node is folded (replaced by its value) when every
input is a constant and its operator is one of :data:`FOLDABLE`; nothing else in the file is ever evaluated.

``Shape`` of a data tensor folds to ``[BATCH, *per-sample shape]``: the batch size is unknown at import, so it is
the marker :data:`BATCH`, which only a reshape target may hold (where it means "the batch size").

Every folded tensor is bounded before it is allocated: at most :data:`MAX_FOLDED_ELEMENTS` elements, and all
folded tensors together at most :data:`~numpycnn.interchange._onnx.MAX_FILE_BYTES` bytes, the limit of the file's
own initializers, so a small hostile file cannot make the importer allocate without bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from numpycnn.interchange import _onnx as C

#: The batch size in a folded ``Shape``: a value no real size can have.
BATCH = -(1 << 62) + 12345
#: The most elements one folded tensor may have (VGG19's largest weight, made by ``ConstantOfShape``, has 103M).
MAX_FOLDED_ELEMENTS = 1 << 28

Fail = Callable[[str], Exception]


def _int_list(value: np.ndarray, what: str, fail: Fail) -> list[int]:
    if value.dtype.kind not in "iu" or value.ndim > 1:
        raise fail(f"{what} must be a 1-D integer tensor. Got {value.dtype} of shape {value.shape}.")
    return [int(v) for v in value.reshape(-1)]


def _bounded(shape: tuple[int, ...] | list[int], fail: Fail) -> None:
    if any(d < 0 for d in shape) or len(shape) > C.MAX_RANK:
        raise fail(f"the folded shape {list(shape)[:20]} must be at most {C.MAX_RANK} non-negative sizes.")
    count = math.prod(shape)
    if count > MAX_FOLDED_ELEMENTS:
        raise fail(f"folding would make a tensor of shape {list(shape)[:20]} ({count} elements), more than the "
                   f"{MAX_FOLDED_ELEMENTS} allowed.")


def _axis(axis: int, rank: int, fail: Fail) -> int:
    if not -rank <= axis < max(rank, 1):
        raise fail(f"axis {axis} is out of range for rank {rank}.")
    return axis % max(rank, 1)


def _constant_of_shape(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    shape = _int_list(inputs[0], "the shape", fail)
    _bounded(shape, fail)
    value = attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else value
    if value.size != 1:
        raise fail(f"`value` must hold one element. Got shape {value.shape}.")
    return np.full(shape, value.reshape(-1)[0], dtype=value.dtype)


def _gather(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    data, indices = inputs
    if indices.dtype.kind not in "iu":
        raise fail(f"indices must be integers. Got {indices.dtype}.")
    axis = _axis(attrs.get("axis", 0), data.ndim, fail)
    size = data.shape[axis] if data.ndim else 0
    if indices.size and not (-size <= indices.min() and indices.max() < size):
        raise fail(f"indices {indices.reshape(-1)[:10].tolist()} are out of range for size {size}.")
    _bounded(data.shape[:axis] + indices.shape + data.shape[axis + 1:], fail)
    return np.take(data, indices, axis=axis)


def _unsqueeze(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    axes = attrs.get("axes") if len(inputs) < 2 else _int_list(inputs[1], "axes", fail)
    if axes is None:
        raise fail("`axes` is missing.")
    rank = inputs[0].ndim + len(axes)
    out = inputs[0]
    for axis in sorted(_axis(a, rank, fail) for a in axes):
        out = np.expand_dims(out, axis)
    return out


def _squeeze(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    axes = attrs.get("axes") if len(inputs) < 2 else _int_list(inputs[1], "axes", fail)
    x = inputs[0]
    if axes is None:
        return np.squeeze(x)
    axes = tuple(_axis(a, x.ndim, fail) for a in axes)
    if any(x.shape[a] != 1 for a in axes):
        raise fail(f"cannot squeeze axes {list(axes)} of shape {x.shape}.")
    return np.squeeze(x, axis=axes)


def _concat(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    if "axis" not in attrs:
        raise fail("`axis` is missing.")
    if len({x.ndim for x in inputs}) != 1 or len({x.dtype for x in inputs}) != 1:
        raise fail(f"inputs must share rank and type. Got shapes {[x.shape for x in inputs][:8]}.")
    axis = _axis(attrs["axis"], inputs[0].ndim, fail)
    try:
        return np.concatenate(inputs, axis=axis)
    except ValueError as err:
        raise fail(f"cannot concatenate: {err}.") from None


def _reshape(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    x = inputs[0]
    shape = _int_list(inputs[1], "the target shape", fail)
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(shape)]
    if shape.count(-1) > 1 or any(d < -1 for d in shape):
        raise fail(f"target shape {shape[:20]} is not a valid reshape of {x.shape}.")
    try:
        return x.reshape(shape)
    except ValueError as err:
        raise fail(f"cannot reshape {x.shape} to {shape[:20]}: {err}.") from None


def _transpose(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    x = inputs[0]
    perm = attrs.get("perm") or list(range(x.ndim))[::-1]
    if sorted(perm) != list(range(x.ndim)):
        raise fail(f"`perm` {perm[:20]} is not a permutation of {x.ndim} axes.")
    return np.ascontiguousarray(np.transpose(x, perm))


def _cast(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    from onnx import helper

    try:
        dtype = helper.tensor_dtype_to_np_dtype(attrs.get("to", 0))
    except (KeyError, ValueError, TypeError):
        dtype = None
    if dtype is None or np.dtype(dtype).kind not in "fiub":
        raise fail(f"`to` = {attrs.get('to')!r:.20} is not a numeric type folded here.")
    with np.errstate(all="ignore"):
        return inputs[0].astype(dtype)


def _slice(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    x = inputs[0]
    if len(inputs) >= 3:  # opset 10 on: starts, ends, axes, steps are inputs
        starts, ends = (_int_list(v, "starts/ends", fail) for v in inputs[1:3])
        axes = _int_list(inputs[3], "axes", fail) if len(inputs) > 3 else list(range(len(starts)))
        steps = _int_list(inputs[4], "steps", fail) if len(inputs) > 4 else [1] * len(starts)
    else:
        starts, ends = attrs.get("starts") or [], attrs.get("ends") or []
        axes, steps = attrs.get("axes") or list(range(len(starts))), [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
        raise fail("`starts`, `ends`, `axes` and `steps` must have the same length and no zero step.")
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[_axis(axis, x.ndim, fail)] = slice(start, end, step)
    return x[tuple(index)]


def _identity(inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    return inputs[0]


#: Operators folded when all their inputs are constants: ``op -> (the function, its attributes)``.
FOLDABLE: dict[str, Callable[[list[np.ndarray], dict[str, Any], Fail], np.ndarray]] = {
    "ConstantOfShape": _constant_of_shape, "Gather": _gather, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze,
    "Concat": _concat, "Reshape": _reshape, "Transpose": _transpose, "Cast": _cast, "Slice": _slice,
    "Identity": _identity,
}


def fold(op: str, inputs: list[np.ndarray], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    """The value of a :data:`FOLDABLE` node whose inputs are the arrays ``inputs``, checked for size."""
    if any(BATCH in x for x in inputs if x.dtype.kind in "iu") and op not in (
            "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Identity", "Cast", "Reshape"):
        raise fail("it uses the batch size, which is not known at import; numpycnn folds only shape arithmetic "
                   "that passes the batch size through (Gather, Unsqueeze, Concat, ...).")
    try:
        out = np.asarray(FOLDABLE[op](inputs, attrs, fail))
    except (ValueError, IndexError, TypeError, OverflowError) as err:  # NumPy's own refusal of odd operands
        raise fail(f"cannot fold it: {err}.") from None
    _bounded(out.shape, fail)
    return out


def shape_of(sample: tuple[int, ...], attrs: dict[str, Any], fail: Fail) -> np.ndarray:
    """``Shape`` of a data tensor of per-sample shape ``sample``: ``[BATCH, *sample][start:end]`` (int64)."""
    full = np.array([BATCH, *sample], np.int64)
    start, end = attrs.get("start", 0), attrs.get("end")
    return full[start:end]
