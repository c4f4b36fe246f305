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
#: Opsets that :func:`~numpycnn.interchange.load_onnx` reads: from opset 6 (the oldest the ONNX test suite's
#: ``pytorch-converted`` models use; opsets 1-5 had ``consumed_inputs`` and Reshape's shape as an attribute) to
#: 25. Each converter in ``numpycnn.interchange._onnx_ops`` handles what changed in between.
MIN_IMPORT_OPSET, MAX_IMPORT_OPSET = 6, 25
#: The largest ONNX file read (protobuf itself cannot parse messages over 2 GiB); the biggest ready-made model
#: is under 2 MB.
MAX_FILE_BYTES = 1 << 30
#: Largest tensor rank, as for safetensors headers in :mod:`numpycnn.model.io`.
MAX_RANK = 16
#: The most elements a layer's per-sample output (or a convolution's padded input or im2col matrix) may have
#: at import: 2**27 float32 values are 512 MiB per sample, far above VGG19's largest (64 x 224 x 224 x 9).
MAX_ACTIVATION = 1 << 27
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
