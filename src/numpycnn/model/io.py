"""Model files and checkpoints in the safetensors format, written and read with NumPy alone.

Layout of a file (https://github.com/huggingface/safetensors):

.. code-block:: text

    [8 bytes]  N, the header length, unsigned 64-bit little-endian
    [N bytes]  UTF-8 JSON: {"<name>": {"dtype": "F32", "shape": [8, 1, 3, 3], "data_offsets": [b, e]}, ...,
                            "__metadata__": {"<key>": "<string>", ...}}, padded with spaces to a multiple of 8
    [rest]     the tensors' raw little-endian bytes; offsets count from the start of this section, and the
               tensors cover it exactly, without gaps or overlaps

Tensor names and layouts are those of PyTorch's ``nn.Sequential`` state dict (``"0.weight"``,
``"1.running_mean"``), so weights travel to and from PyTorch with the ``safetensors`` package. The metadata
holds JSON strings: ``format`` (``"numpycnn"``), ``format_version``, ``kind`` (``"model"`` or
``"checkpoint"``), ``architecture`` (``Sequential.get_config()``: layer type names and constructor arguments,
never code), ``class_names`` and ``normalization``; checkpoints add ``optimizer`` (the optimiser's scalars,
its arrays being tensors named ``optimizer.<param>.<slot>``) and ``state`` (epoch, history, generator states).

Reading trusts nothing: every length, offset, dtype, shape, name and argument is checked, and any problem
raises :class:`numpycnn.ModelFileError` naming the file. Layers are built only from
:data:`~numpycnn.layers.base.LAYER_REGISTRY` by name; no pickle is read and nothing from a file is executed.
Writes go to a temporary file in the same folder, are flushed to disk, then renamed over the target, so a crash
never leaves a half-written model.

Everything but building a new model lives in :mod:`numpycnn.files.model_file`, which works on any model object and
does not import :mod:`numpycnn.model.sequential`; that keeps the imports one way (docs/design.md, "Layering").
This module imports its public names, so that ``numpycnn.io`` offers them too: among them
:func:`~numpycnn.files.model_file.save_model`, :func:`~numpycnn.files.model_file.save_checkpoint`,
:func:`~numpycnn.files.model_file.load_checkpoint` and :func:`~numpycnn.files.model_file.read_checkpoint_state`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from numpycnn.core import backend
from numpycnn.files.model_file import (  # noqa: F401  (numpycnn.model.io is where these are documented and imported from)
    _MAX_CONFIG_INT,
    _OPTIMIZER_PREFIX,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    MAX_ACTIVATION_BYTES,
    MAX_HEADER_BYTES,
    _build_layer,
    _check_extras,
    _check_format,
    _check_tensors,
    _error,
    _extras,
    _is_int,
    _json_field,
    _model_metadata,
    _read,
    _strict_json,
    activation_sizes,
    check_activation_budget,
    describe_extras_problem,
    load_checkpoint,
    load_state_dict_file,
    read_checkpoint_state,
    read_preparation,
    save_checkpoint,
    save_model,
    save_state_dict_file,
)
from numpycnn.model.sequential import Sequential


def _build_model(path: Any, metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> Sequential:
    arch = _json_field(path, metadata, "architecture")
    if not isinstance(arch, dict) or set(arch) != {"input_shape", "layers"}:
        raise _error(path, f"architecture must be an object with keys input_shape and layers. "
                           f"Got {arch!r:.200}.")
    layers, input_shape = arch["layers"], arch["input_shape"]
    if not isinstance(layers, list) or not 1 <= len(layers) <= 1000:
        raise _error(path, f"architecture layers must be a list of 1 to 1000 layers. Got {layers!r:.200}.")
    if input_shape is not None and (not isinstance(input_shape, list) or not 1 <= len(input_shape) <= 8
                                    or not all(_is_int(d) and 1 <= d <= 1 << 24 for d in input_shape)):
        raise _error(path, f"architecture input_shape must be null or a list of positive integers. "
                           f"Got {input_shape!r:.200}.")
    built = [_build_layer(path, i, spec, tensors, metadata) for i, spec in enumerate(layers)]
    try:
        model = Sequential(built, input_shape=input_shape)
    except (TypeError, ValueError) as err:
        raise _error(path, f"the architecture is inconsistent: {err}") from None
    floats = [t.dtype for t in tensors.values() if t.dtype.kind == "f"]
    if floats and all(dt == np.float64 for dt in floats):
        model.astype(np.float64)
    return model


def load_model(path: Any, device: str = "cpu") -> Sequential:
    """Load a model saved by :func:`~numpycnn.files.model_file.save_model` (or the model part of a checkpoint),
    checking everything.

    The model is built on the host and then moved to ``device`` (``"cpu"`` or ``"cuda"``, see
    :meth:`Sequential.to`); files hold host arrays, so a model saved from any device loads on any other.

    Raises
    ------
    ModelFileError
        If the file is malformed, of an unknown format version, names unknown layers, has invalid layer
        arguments, or its tensors do not match the architecture (names, shapes, kinds, finite values).
    OSError
        If the file cannot be opened.
    numpycnn.DeviceError
        If ``device`` cannot run on this machine (checked before the file is read).
    """
    backend.get_device(device)
    tensors, metadata = _read(path)
    _check_format(path, metadata, ("model", "checkpoint"))
    if metadata["kind"] == "checkpoint":
        tensors = {k: v for k, v in tensors.items() if not k.startswith(_OPTIMIZER_PREFIX)}
    model = _build_model(path, metadata, tensors)
    if model.input_shape is not None:
        check_activation_budget(model, model.input_shape, os.fspath(path))
    _check_tensors(path, model.state_dict(), tensors)
    model.class_names, model.normalization = _extras(path, metadata)
    _check_extras(path, model)
    model.preparation = read_preparation(path, metadata, model.input_shape)  # None: guessed from the shape
    model.load_state_dict(tensors)
    return model.to(device)
