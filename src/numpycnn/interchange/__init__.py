"""Model interchange: ONNX export and import (needs the optional ``onnx`` package, imported on first use).

``to_onnx``/``export_onnx`` write a model's inference forward pass as an ONNX graph (opset
:data:`OPSET`, IR version :data:`IR_VERSION`); ``from_onnx``/``load_onnx`` read a chain of the supported
operators back into a :class:`~numpycnn.model.sequential.Sequential`, checking everything and executing nothing.

Examples
--------
>>> from numpycnn.interchange import export_onnx, load_onnx        # doctest: +SKIP
>>> export_onnx(model, "model.onnx")                                # doctest: +SKIP
>>> same = load_onnx("model.onnx")                                  # doctest: +SKIP
"""

from __future__ import annotations

from numpycnn.interchange._onnx import IR_VERSION, MAX_IMPORT_OPSET, MIN_IMPORT_OPSET, OPSET
from numpycnn.interchange.onnx_export import export_onnx, to_onnx
from numpycnn.interchange.onnx_import import from_onnx, load_onnx

__all__ = ["IR_VERSION", "MAX_IMPORT_OPSET", "MIN_IMPORT_OPSET", "OPSET", "export_onnx", "from_onnx",
           "load_onnx", "to_onnx"]
