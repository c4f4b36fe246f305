"""The checked constants of an ONNX graph and what every converter shares: the :class:`Context`.

A tensor is checked (type, rank, byte count against its declared shape, data inside the file) before any of it is
turned into an array; attributes are read through :meth:`Context.attrs`, which refuses attributes it was not told
about, so a node whose meaning a layer cannot hold is an error, never a different model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from numpycnn.errors import ModelFileError
from numpycnn.interchange import _onnx as C
from numpycnn.layers import Layer
from numpycnn.model.io import _MAX_CONFIG_INT

Converted = list[tuple[Layer, dict[str, np.ndarray]]]
# ONNX TensorProto data types read here -> (NumPy dtype, the typed field holding the values without raw_data).
_TYPES = {1: (np.float32, "float_data"), 11: (np.float64, "double_data"), 7: (np.int64, "int64_data"),
          6: (np.int32, "int32_data"), 9: (np.bool_, "int32_data"), 10: (np.float16, "int32_data")}


def _float32_value(value: float) -> float:
    """The shortest decimal that is the same float32 (attributes are float32: 0.2 stays 0.2)."""
    return float(str(np.float32(value)))


class Context:
    """The opset, the error factory and the graph's constants (initializers, ``Constant`` nodes and the values
    :mod:`~numpycnn.interchange._onnx_fold` folds), each checked before it is turned into an array; and the
    layers converted so far, which a following ``Add`` or ``Conv`` may complete (a bias, a padding)."""

    def __init__(self, opset: int, fail: Callable[[str], ModelFileError]) -> None:
        self.opset, self.fail = opset, fail
        self.constants: dict[str, Any] = {}  # name -> TensorProto (checked, not yet read) or np.ndarray
        self.converted: Converted = []
        self.batch: int | None = None  # the graph input's batch size where it is fixed
        self.pending_pad: tuple[Any, tuple[int, int]] | None = None  # a Pad node waiting for its Conv
        self._labels: dict[int, str] = {}
        self._folded_bytes = 0

    def label(self, node: Any) -> str:
        return self._labels.get(id(node), f"{node.name!r} ({node.op_type})")

    def name_node(self, node: Any, index: int) -> None:
        self._labels[id(node)] = f"{node.name or f'#{index}'!r:.80} ({node.op_type:.40})"
        if node.domain not in ("", "ai.onnx"):
            raise self.fail(f"node {self.label(node)}: operator domain {node.domain!r:.60} is not supported; "
                            "numpycnn reads the standard operators only.")

    def read_initializers(self, graph: Any) -> None:
        if len(graph.sparse_initializer):
            raise self.fail(f"sparse initializer {graph.sparse_initializer[0].values.name!r:.80} is not supported.")
        for tensor in graph.initializer:
            self._add(tensor.name, _checked_tensor(tensor, f"initializer {tensor.name!r:.80}", self.fail),
                      f"initializer {tensor.name!r:.80}")

    def constant_node(self, node: Any) -> None:
        """A ``Constant`` node: its tensor ``value`` (or, from opset 12, a ``value_float(s)``/``value_int(s)``)."""
        from onnx import helper

        if len(node.attribute) != 1 or len(node.output) != 1 or node.attribute[0].name not in (
                "value", "value_float", "value_floats", "value_int", "value_ints"):
            raise self.fail(f"node {self.label(node)}: only Constant nodes with one `value`, `value_float(s)` or "
                            "`value_int(s)` are supported.")
        attribute = node.attribute[0]
        if attribute.name == "value":
            self._add(node.output[0], _checked_tensor(attribute.t, f"node {self.label(node)}", self.fail),
                      f"node {self.label(node)}")
            return
        value = helper.get_attribute_value(attribute)
        dtype = np.float32 if "float" in attribute.name else np.int64
        if isinstance(value, list) and len(value) > C.MAX_INPUT_DIM:
            raise self.fail(f"node {self.label(node)}: `{attribute.name}` holds too many values.")
        self._add(node.output[0], np.asarray(value, dtype), f"node {self.label(node)}")

    def add_folded(self, node: Any, value: np.ndarray) -> None:
        """Keep a folded value, counting its bytes against the limit on all folded tensors together."""
        self._folded_bytes += value.nbytes
        if self._folded_bytes > C.MAX_FILE_BYTES:
            raise self.fail(f"node {self.label(node)}: the folded constants would take more than "
                            f"{C.MAX_FILE_BYTES} bytes, the limit on a file's tensors.")
        self._add(node.output[0], value, f"node {self.label(node)}")

    def _add(self, name: str, value: Any, where: str) -> None:
        if name in self.constants:
            raise self.fail(f"{where}: the name {name!r:.80} is defined twice.")
        self.constants[name] = value

    def value(self, name: str) -> np.ndarray:
        """The constant ``name`` as an array (read from its ``TensorProto`` once)."""
        from onnx import numpy_helper

        value = self.constants[name]
        if not isinstance(value, np.ndarray):
            value = self.constants[name] = np.asarray(numpy_helper.to_array(value))
        return value

    def array(self, node: Any, index: int, ndim: int | None = None, optional: bool = False) -> np.ndarray | None:
        """Input ``index`` of ``node`` as an array (float32 for floating point), checked for rank."""
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            if optional:
                return None
            raise self.fail(f"node {self.label(node)}: input {index} is missing.")
        if name not in self.constants:
            raise self.fail(f"node {self.label(node)}: input {index} ({name!r:.80}) must be a constant (a weight) "
                            "for numpycnn to hold it.")
        value = self.value(name)
        if ndim is not None and value.ndim != ndim:
            raise self.fail(f"node {self.label(node)}: tensor {name!r:.80} must have {ndim} dimensions. "
                            f"Got shape {value.shape}.")
        value = np.asarray(value, np.float32 if value.dtype.kind == "f" else value.dtype)  # read, never written:
        # the model's load_state_dict copies it into the layer
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise self.fail(f"node {self.label(node)}: tensor {name!r:.80} holds NaN or infinite values.")
        return value

    def check_node_inputs(self, node: Any, current: str, anywhere: bool = False) -> int:
        """The position of ``current`` among ``node``'s inputs (the first unless ``anywhere``, for ``Add``); every
        other input must be a constant."""
        position = list(node.input).index(current) if anywhere and current in node.input else 0
        if not node.input or node.input[position] != current:
            raise self.fail(f"node {self.label(node)}: its first input must be the previous node's output "
                            f"{current!r:.80}. Got inputs {list(node.input)!r:.200} (a branch).")
        for i, name in enumerate(node.input):
            if i != position and name and name not in self.constants:
                raise self.fail(f"node {self.label(node)}: input {name!r:.80} is neither a weight nor a constant "
                                "(a branch); numpycnn reads chains of layers only.")
        return position

    def fold_attrs(self, node: Any) -> dict[str, Any]:
        """The attributes of a node to fold: ints, lists of ints and (``ConstantOfShape``'s ``value``) a tensor."""
        from onnx import helper, numpy_helper

        values: dict[str, Any] = {}
        for attribute in node.attribute:
            value = helper.get_attribute_value(attribute)
            if attribute.name == "value" and node.op_type == "ConstantOfShape":
                value = numpy_helper.to_array(_checked_tensor(value, f"node {self.label(node)}", self.fail))
            elif isinstance(value, (list, tuple)) and all(type(v) is int for v in value) and len(value) <= 64:
                value = list(value)
            elif type(value) is not int:
                raise self.fail(f"node {self.label(node)}: attribute `{attribute.name}` {value!r:.60} is not "
                                "supported when folding constants.")
            values[attribute.name] = value
        return values

    def attrs(self, node: Any, defaults: dict[str, Any]) -> dict[str, Any]:
        """The node's attributes, typed like ``defaults`` (``None``: a list of ints, required elsewhere)."""
        from onnx import helper

        values = dict(defaults)
        for attribute in node.attribute:
            if attribute.name not in defaults:
                raise self.fail(f"node {self.label(node)}: attribute {attribute.name!r:.60} is not supported by "
                                f"numpycnn's {node.op_type} at opset {self.opset} (supported: {sorted(defaults)}).")
            value = helper.get_attribute_value(attribute)
            value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            value = list(value) if isinstance(value, (list, tuple)) else value
            expected = defaults[attribute.name]
            ok = (isinstance(value, list) and all(type(v) is int and abs(v) <= _MAX_CONFIG_INT for v in value)
                  if expected is None or isinstance(expected, list) else
                  isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  if isinstance(expected, float) else
                  type(value) is int and abs(value) <= _MAX_CONFIG_INT if isinstance(expected, int) else
                  isinstance(value, str))
            if not ok:
                raise self.fail(f"node {self.label(node)}: attribute `{attribute.name}` has an invalid value "
                                f"{value!r:.80}.")
            values[attribute.name] = _float32_value(value) if isinstance(expected, float) else value
        return values

    def expect(self, node: Any, name: str, ok: bool, expectation: str, value: Any) -> None:
        """Fail with the house template unless ``ok``."""
        if not ok:
            raise self.fail(f"node {self.label(node)}: `{name}` must be {expectation}. Got {value!r:.80} (opset "
                            f"{self.opset}).")

    def check_activation(self, node: Any, what: str, count: int) -> None:
        """Refuse a node whose per-sample ``what`` would exceed :data:`~numpycnn.interchange._onnx.MAX_ACTIVATION`
        elements (huge pads or sizes claimed by a file must not make the first forward allocate without bound)."""
        if count > C.MAX_ACTIVATION:
            raise self.fail(f"node {self.label(node)}: its {what} would hold {count} elements per sample, more than "
                            f"the {C.MAX_ACTIVATION} allowed; the file claims sizes no model here can run.")

    def build(self, node: Any, make: Callable[[], Layer]) -> Layer:
        try:
            return make()
        except (TypeError, ValueError) as err:
            raise self.fail(f"node {self.label(node)} cannot be a numpycnn layer: {err}") from None


def _checked_tensor(tensor: Any, where: str, fail: Callable[[str], ModelFileError]) -> Any:
    """``tensor`` if its type, rank and byte count agree with its declared shape, else an error."""
    from onnx import TensorProto

    if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
        place = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        raise fail(f"{where}: tensor data stored outside the file ({place!r:.120}) is not supported; numpycnn "
                   "reads self-contained ONNX files only and never opens a path a model names.")
    if tensor.data_type not in _TYPES:
        raise fail(f"{where}: tensor data type {tensor.data_type} is not supported (float, double, int32, int64, "
                   "bool, float16).")
    dims = list(tensor.dims)
    if len(dims) > C.MAX_RANK or any(d < 0 for d in dims):
        raise fail(f"{where}: tensor shape {dims[:20]} must be at most {C.MAX_RANK} non-negative sizes.")
    dtype, typed_field = _TYPES[tensor.data_type]
    count = math.prod(dims)
    if tensor.HasField("segment"):
        raise fail(f"{where}: segmented tensors are not supported.")
    if tensor.raw_data:
        found, needed = len(tensor.raw_data), count * np.dtype(dtype).itemsize
    else:
        found, needed = len(getattr(tensor, typed_field)), count
    if found != needed:
        unit = "bytes" if tensor.raw_data else "values"
        raise fail(f"{where}: tensor shape {dims} needs {needed} {unit} but the file holds {found}; the file is "
                   "damaged or declares a shape its data does not have.")
    return tensor


__all__ = ["Context", "Converted"]
