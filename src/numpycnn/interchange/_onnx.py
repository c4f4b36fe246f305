"""What export and import share: the pinned versions, the limits, the lazy import of ``onnx``, metadata keys."""

from __future__ import annotations

import importlib
from typing import Any

#: The operator set written by :func:`~numpycnn.interchange.to_onnx`. Opset 17 holds every operator the
#: layers need in its current form (Softmax over one axis since opset 13, BatchNormalization with
#: ``training_mode`` since 14) without asking for a recent runtime: onnxruntime's compatibility table lists it
#: from release 1.13 on (the tests run it in the installed release only).
OPSET = 17
#: The IR version stamped on exported files. Recent ``onnx`` releases stamp their own, newer IR version, which
#: older runtimes refuse to load; IR 8 is the one that belongs to opset 17 (onnx 1.12), so any runtime that
#: knows opset 17 reads the file.
IR_VERSION = 8
#: Opsets that :func:`~numpycnn.interchange.load_onnx` reads. Below 9 BatchNormalization had a ``spatial``
#: mode and Flatten other rules; newer opsets only widened the types of these operators, and every attribute
#: is checked against what the layers can hold.
MIN_IMPORT_OPSET, MAX_IMPORT_OPSET = 9, 25
#: The largest ONNX file read (protobuf itself cannot parse messages over 2 GiB); the biggest ready-made model
#: is under 2 MB.
MAX_FILE_BYTES = 1 << 30
#: Largest tensor rank, as for safetensors headers in :mod:`numpycnn.model.io`.
MAX_RANK = 16
#: Largest input dimension accepted, as for ``input_shape`` in model files.
MAX_INPUT_DIM = 1 << 24

#: Keys of the model's metadata properties (``ModelProto.metadata_props``), each a JSON string.
META_FORMAT_VERSION = "numpycnn.format_version"
META_ARCHITECTURE = "numpycnn.architecture"
META_BATCHES_TRACKED = "numpycnn.num_batches_tracked"
META_CLASS_NAMES = "class_names"
META_NORMALIZATION = "normalization"
META_PREPROCESSING = "preprocessing"
FORMAT_VERSION = "1"

INSTALL_HINT = 'pip install "numpycnn[onnx]"'


def require(module: str = "onnx") -> Any:
    """Import ``onnx`` (or ``onnxruntime``) on first use, with an install hint when it is missing.

    Raises
    ------
    ModuleNotFoundError
        When the optional dependency is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"ONNX support needs the optional packages onnx and onnxruntime ({module} is missing). "
            f"Install them with: {INSTALL_HINT}", name=module) from err
