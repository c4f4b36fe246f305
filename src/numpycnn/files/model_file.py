"""Model files and checkpoints behind :mod:`numpycnn.model.io`: what a model's safetensors file holds (its
architecture, class names, normalisation and preparation as metadata), written and checked against the layers
that read it, and a checkpoint loaded into an existing model. The container itself (bytes, header, tensors) is
:mod:`numpycnn.files.safetensors`. It works on any model object and never imports
:mod:`numpycnn.model.sequential`, so :class:`~numpycnn.model.sequential.Sequential` (whose ``save`` lands here)
and the training loop can use it; building a new ``Sequential`` from a file
(:func:`numpycnn.model.io.load_model`) lives one level up in :mod:`numpycnn.model.io`, whose docstring gives
the file layout.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.checks import int_pair
from numpycnn.datasets.preparation import Preparation
from numpycnn.datasets.transforms import normalization_problem
from numpycnn.errors import ModelFileError
from numpycnn.files.safetensors import (  # noqa: F401  (the container's functions stay importable from here)
    DTYPES,
    MAX_HEADER_BYTES,
    _atomic_write,
    _error,
    _is_int,
    _read,
    _read_header,
    _strict_json,
    load_state_dict_file,
    save_state_dict_file,
)
from numpycnn.layers.base import LAYER_REGISTRY, unknown_layer_message

if TYPE_CHECKING:
    from numpycnn.model.sequential import Sequential

FORMAT = "numpycnn"
FORMAT_VERSION = "1"
_OPTIMIZER_PREFIX = "optimizer."
#: Integers in a layer's configuration may not exceed this, nor the element count its tensors supply.
_MAX_CONFIG_INT = 1 << 16
#: Largest activation (a layer's output, or a convolution's im2col columns) one input sample may need, in
#: bytes. A digit network needs about 100 KB; a file whose architecture needs more is refused at load time.
MAX_ACTIVATION_BYTES = 128 * 2**20


# -- writing -------------------------------------------------------------------------------------------------


def _model_metadata(model: Sequential, kind: str) -> dict[str, str]:
    problem = describe_extras_problem(model, model.class_names, model.normalization)
    if problem:
        raise ValueError(f"save_model: {problem}")
    preparation = _preparation_entry(model)
    try:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
                "architecture": json.dumps(model.get_config(), allow_nan=False),
                "class_names": json.dumps(model.class_names),
                "normalization": json.dumps(model.normalization, allow_nan=False),
                **_layer_modules(model), **preparation}
    except (TypeError, ValueError) as err:
        raise TypeError(f"save_model: the model's configuration must be JSON-serialisable: {err}") from err


def _preparation_entry(model: Sequential) -> dict[str, str]:
    """``{"preparation": JSON}`` for a model that records how its pictures were prepared
    (:class:`numpycnn.datasets.preparation.Preparation`), else ``{}``: files without it keep today's meaning."""
    preparation = getattr(model, "preparation", None)
    if preparation is None:
        return {}
    shape = tuple(model.input_shape) if model.input_shape else None
    if shape is not None and tuple(preparation.input_shape) != shape:
        raise ValueError(f"save_model: `preparation` gives pictures of shape {preparation.input_shape} but the "
                         f"model takes {shape}.")
    return {"preparation": json.dumps(preparation.to_dict())}


def read_preparation(path: Any, metadata: dict[str, str], input_shape: Any = None) -> Any:
    """The :class:`~numpycnn.datasets.preparation.Preparation` a file records, ``None`` for files without one
    (written before it existed, or for the built-in data sets).

    Raises
    ------
    ModelFileError
        If the record is not valid, or does not fit ``input_shape``.
    """
    if "preparation" not in metadata:
        return None
    try:
        preparation = Preparation.from_dict(_json_field(path, metadata, "preparation"))
    except ValueError as err:
        raise _error(path, str(err)) from None
    if input_shape is not None and preparation.input_shape != tuple(input_shape):
        raise _error(path, f"preparation gives pictures of shape {preparation.input_shape} but the model takes "
                           f"{tuple(input_shape)}.")
    return preparation


def _layer_modules(model: Sequential) -> dict[str, str]:
    """``{"layer_modules": {type: module}}`` for custom layers, so loading can say what to import; else ``{}``."""
    modules = {layer.name: type(layer).__module__ for layer in model.layers
               if not type(layer).__module__.startswith("numpycnn.")}
    return {"layer_modules": json.dumps(modules)} if modules else {}


def _module_hint(metadata: dict[str, str], layer_type: Any) -> str | None:
    """The module a file says defines ``layer_type``, if it is a plausible dotted name (never imported)."""
    try:
        module = json.loads(metadata.get("layer_modules", "{}")).get(layer_type)
    except (ValueError, AttributeError, TypeError):
        return None
    ok = isinstance(module, str) and len(module) <= 100 and all(p.isidentifier() for p in module.split("."))
    return module if ok else None


def _check_finite(owner: str, tensors: Mapping[str, np.ndarray]) -> None:
    for name, value in tensors.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"{owner}: tensor {name!r} holds NaN or infinite values; the model has "
                             "diverged. Not saving it.")


def host_state_dict(model: Sequential) -> dict[str, np.ndarray]:
    """``model.state_dict()`` as NumPy arrays: host copies of a model on a device (the arrays themselves on the
    CPU). Files are always written from these, so a model saved on a GPU loads on any machine."""
    return {name: backend.to_host(value) for name, value in model.state_dict().items()}


def save_model(model: Sequential, path: Any) -> None:
    """Save ``model`` (architecture, weights, buffers, class names, normalisation) to ``path``, atomically.

    Examples
    --------
    >>> save_model(model, "model.safetensors"); model2 = load_model("model.safetensors")  # doctest: +SKIP
    """
    tensors = host_state_dict(model)
    _check_finite("save_model", tensors)
    save_state_dict_file(path, tensors, _model_metadata(model, "model"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def save_checkpoint(path: Any, model: Sequential, optimizer: Any, state: Mapping[str, Any]) -> None:
    """Save model, optimiser state and a JSON-able ``state`` (epoch, history, generator states) in one file.

    ``state`` may hold NumPy scalars and arrays (stored as numbers and lists); for a generator store
    ``rng.bit_generator.state``, restored by assigning it back.
    """
    tensors = host_state_dict(model)
    _check_finite("save_checkpoint", tensors)
    opt_state = optimizer.state_dict()
    tensors.update({_OPTIMIZER_PREFIX + name: value for name, value in opt_state["arrays"].items()})
    metadata = _model_metadata(model, "checkpoint")
    try:
        metadata["optimizer"] = json.dumps(opt_state["scalars"], default=_json_default)
        metadata["state"] = json.dumps(dict(state), default=_json_default)
    except (TypeError, ValueError) as err:
        raise TypeError(f"save_checkpoint: `state` must be JSON-serialisable. {err}.") from err
    save_state_dict_file(path, tensors, metadata)


# -- reading models ------------------------------------------------------------------------------------------
def _json_field(path: Any, metadata: dict[str, str], key: str, strict: bool = True) -> Any:
    if key not in metadata:
        raise _error(path, f"metadata has no {key!r} entry.")
    try:
        return _strict_json(metadata[key]) if strict else json.loads(metadata[key])
    except (ValueError, RecursionError) as err:
        raise _error(path, f"metadata {key!r} is not valid JSON ({err}).") from None


def _check_format(path: Any, metadata: dict[str, str], kinds: tuple[str, ...]) -> None:
    if metadata.get("format") != FORMAT:
        raise _error(path, f"not a numpycnn file (metadata format is {metadata.get('format')!r:.40}, "
                           f"expected {FORMAT!r}). For plain weights use numpycnn.io.load_state_dict_file.")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise _error(path, f"unsupported format_version {metadata.get('format_version')!r:.40}; this "
                           f"numpycnn reads version {FORMAT_VERSION!r}. Upgrade to read newer files.")
    if metadata.get("kind") not in kinds:
        raise _error(path, f"kind {metadata.get('kind')!r:.40} is not one of {list(kinds)} expected here.")


def _config_ints(value: Any) -> list[int]:
    if _is_int(value):
        return [value]
    if isinstance(value, list):
        return [i for v in value for i in _config_ints(v)]
    return []


def _check_config_values(where: str, path: Any, config: dict[str, Any], supplied: int) -> None:
    for key, value in config.items():
        if not key.isidentifier() or key.startswith("_") or key in ("rng", "dtype"):
            raise _error(path, f"{where}: argument name {key!r:.60} is not allowed.")
        flat = value if isinstance(value, list) else [value]
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in flat):
            raise _error(path, f"{where}: argument {key}={value!r:.100} must be a number, string, bool, null "
                               "or a list of those.")
        if any(abs(i) > max(supplied, _MAX_CONFIG_INT) for i in _config_ints(value)):
            raise _error(path, f"{where}: argument {key}={value!r:.100} is larger than its tensors allow.")


def _size_or_none(value: Any) -> list[int] | None:
    """``value`` (a size or a pair in a file's configuration) as ``[h, w]``, or None if it is not one; the
    layer's constructor then says what is wrong."""
    try:
        return list(int_pair("architecture", "pair", value, minimum=0))
    except (TypeError, ValueError):
        return None


def _implied_shapes(layer_type: str, c: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
    """Parameter shapes a built-in layer's arguments imply, checked before building it (so a hostile file
    cannot make us allocate a huge layer); ``None`` for bad arguments (the constructor rejects those)."""
    if layer_type == "Dense" and _is_int(c.get("in_features")) and _is_int(c.get("out_features")):
        shapes = {"weight": (c["out_features"], c["in_features"])}
        return {**shapes, "bias": (c["out_features"],)} if c.get("bias", True) is not False else shapes
    if layer_type == "Conv2D" and _is_int(c.get("in_channels")) and _is_int(c.get("out_channels")):
        kernel, groups = _size_or_none(c.get("kernel_size")), c.get("groups", 1)  # files before groups: 1
        if kernel is None or not _is_int(groups) or groups < 1 or c["in_channels"] % groups:
            return None
        shapes = {"weight": (c["out_channels"], c["in_channels"] // groups, *kernel)}
        return {**shapes, "bias": (c["out_channels"],)} if c.get("bias", True) is not False else shapes
    if layer_type in ("BatchNorm1D", "BatchNorm2D") and _is_int(c.get("num_features")):
        return {k: (c["num_features"],) for k in ("weight", "bias", "running_mean", "running_var")}
    return None


def _build_layer(path: Any, index: int, spec: Any, tensors: dict[str, np.ndarray],
                 metadata: dict[str, str] | None = None) -> Any:
    where = f"architecture layer {index}"
    if not isinstance(spec, dict) or set(spec) != {"type", "config"} or not isinstance(spec["config"], dict):
        raise _error(path, f"{where} must be an object with keys type and config (an object). "
                           f"Got {spec!r:.200}.")
    layer_type, config = spec["type"], spec["config"]
    if not isinstance(layer_type, str) or layer_type not in LAYER_REGISTRY:
        module = _module_hint(metadata or {}, layer_type)
        raise _error(path, f"{where} has an " + unknown_layer_message(layer_type, module))
    prefix = f"{index}."
    own = {name[len(prefix):]: t.shape for name, t in tensors.items() if name.startswith(prefix)}
    _check_config_values(f"{where} ({layer_type})", path, config, sum(math.prod(s) for s in own.values()))
    lazy = [key for key in ("in_features", "in_channels") if key in config and config[key] is None]
    if lazy:
        raise _error(path, f"{where} ({layer_type}) must record its resolved `{lazy[0]}`. Got null.")
    for key, shape in (_implied_shapes(layer_type, config) or {}).items():
        if own.get(key) != shape:
            layer = f"{layer_type}({', '.join(f'{k}={v!r}' for k, v in config.items())})"
            found = "is missing" if key not in own else f"has shape {own[key]}"
            raise _error(path, f"tensor '{index}.{key}' {found}; {layer} needs shape {shape}.")
    try:
        return LAYER_REGISTRY[layer_type](**config)
    except (TypeError, ValueError, OverflowError, MemoryError) as err:
        raise _error(path, f"{where} ({layer_type}) has invalid arguments: {err}") from None


def _check_tensors(path: Any, own: dict[str, np.ndarray], tensors: dict[str, np.ndarray]) -> None:
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise _error(path, f"tensors do not match the architecture: missing {missing[:10]}, "
                           f"unexpected {unexpected[:10]}.")
    for name, target in own.items():
        source = tensors[name]
        if source.shape != target.shape:
            raise _error(path, f"tensor {name!r} must have shape {target.shape} for this architecture. "
                               f"Got {source.shape}.")
        if (source.dtype.kind == "f") != (target.dtype.kind == "f") or source.dtype.kind == "b":
            kind = "float" if target.dtype.kind == "f" else "integer"
            raise _error(path, f"tensor {name!r} must be a {kind} tensor. Got {source.dtype}.")
        if source.dtype.kind == "f" and not np.isfinite(source).all():
            raise _error(path, f"tensor {name!r} holds NaN or infinite values.")


def _extras(path: Any, metadata: dict[str, str]) -> tuple[list[str] | None, dict[str, list[float]] | None]:
    """The checked ``class_names`` and ``normalization`` entries."""
    class_names = _json_field(path, metadata, "class_names")
    if class_names is not None and (not isinstance(class_names, list)
                                    or not all(isinstance(c, str) for c in class_names)):
        raise _error(path, f"class_names must be null or a list of strings. Got {class_names!r:.200}.")
    norm = _json_field(path, metadata, "normalization")
    problem = normalization_problem(norm)
    if problem:
        raise _error(path, problem)
    return class_names, norm


def _output_count(model: Sequential) -> int | None:
    """The number of outputs per sample, when the model declares its input shape and ends in a vector."""
    if model.input_shape is None:
        return None
    shape = model.output_shapes(model.input_shape)[-1]
    return int(shape[0]) if len(shape) == 1 else None


def describe_extras_problem(model: Sequential, class_names: Any, normalization: Any) -> str:
    """What is wrong with ``class_names`` and ``normalization`` for ``model`` (``""`` if nothing).

    Class names must be one string per output; the normalisation is checked by
    :func:`numpycnn.datasets.transforms.normalization_problem`.
    """
    if class_names is not None:
        outputs = _output_count(model)
        if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
            return f"`class_names` must be None or a list of strings. Got {class_names!r:.200}."
        if outputs is not None and len(class_names) != outputs:
            return (f"`class_names` must have one name per output of the model ({outputs}). Got "
                    f"{len(class_names)} names: {class_names!r:.200}.")
    return normalization_problem(normalization, model.input_shape[0] if model.input_shape else None)


def activation_sizes(model: Sequential, input_shape: Any) -> list[tuple[int, str, int]]:
    """``(index, layer name, bytes)`` of the largest array each layer makes for one sample of ``input_shape``:
    its output, or if larger a convolution's im2col columns ``(C kh kw, OH OW)`` or the padded input
    ``(C, H + 2 ph, W + 2 pw)`` of a convolution or a pooling. The output shapes are the layers' own (a
    convolution's :math:`\\lfloor (H + 2p - d (k - 1) - 1) / s \\rfloor + 1`); the padded input counts because a
    large stride or dilation can make it far larger than the output it gives."""
    itemsize = model.dtype.itemsize
    shape, sizes = tuple(input_shape), [(-1, "input", math.prod(input_shape) * itemsize)]
    for index, (layer, out) in enumerate(zip(model.layers, model.output_shapes(shape), strict=True)):
        largest = math.prod(out)
        if hasattr(layer, "in_channels") and hasattr(layer, "kernel_size") and len(out) == 3:
            largest = max(largest, layer.in_channels * math.prod(layer.kernel_size) * out[1] * out[2])
        padding = getattr(layer, "padding", None)  # a convolution's or a pooling's padded input
        if isinstance(padding, tuple) and len(padding) == 2 and len(shape) == 3:
            (ph, pw), (c, h, w) = padding, shape
            largest = max(largest, c * (h + 2 * ph) * (w + 2 * pw))
        sizes.append((index, layer.name, largest * itemsize))
        shape = tuple(out)
    return sizes


def check_activation_budget(model: Sequential, input_shape: Any, where: str,
                            budget: int = MAX_ACTIVATION_BYTES) -> None:
    """Raise ``ModelFileError`` if one sample of ``input_shape`` needs more than ``budget`` bytes in a layer.

    This keeps a tiny hostile file (a 1x1 convolution with padding 65536) from asking for tens of gigabytes
    at its first prediction.
    """
    for index, name, size in activation_sizes(model, input_shape):
        if size > budget:
            layer = "the input" if index < 0 else f"layer {index} ({name})"
            raise ModelFileError(
                f"{where}: {layer} needs {size / 2**20:,.0f} MiB per image for input shape "
                f"{tuple(input_shape)}, more than the {budget / 2**20:,.0f} MiB allowed; refusing a model "
                f"that would exhaust memory. Check its padding, kernel and input sizes.")


def _check_extras(path: Any, model: Sequential) -> None:
    problem = describe_extras_problem(model, model.class_names, model.normalization)
    if problem:
        raise _error(path, problem)


def _optimizer_arrays(path: Any, model: Sequential, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    params = dict(model.named_parameters())
    arrays = {}
    for key, value in tensors.items():
        if not key.startswith(_OPTIMIZER_PREFIX):
            continue
        name = key[len(_OPTIMIZER_PREFIX):]
        param = name.rpartition(".")[0]
        if param not in params or value.shape != params[param].shape or value.dtype.kind != "f":
            raise _error(path, f"optimizer tensor {key!r} ({value.dtype}, shape {value.shape}) matches no "
                               "parameter of the model.")
        if not np.isfinite(value).all():
            raise _error(path, f"optimizer tensor {key!r} holds NaN or infinite values.")
        arrays[name] = value
    return arrays


def read_checkpoint_state(path: Any) -> dict[str, Any]:
    """The ``state`` a :func:`save_checkpoint` file holds (epoch, history, the run's settings), read from its
    header alone: cheap, and nothing is built.

    Raises
    ------
    ModelFileError
        If the file is not a numpycnn checkpoint or its state is not a JSON object.
    OSError
        If the file cannot be opened.
    """
    with open(path, "rb") as f:
        header = _read_header(path, f, os.fstat(f.fileno()).st_size)
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict):
        raise _error(path, "__metadata__ must be an object of strings.")
    _check_format(path, metadata, ("checkpoint",))
    state = _json_field(path, metadata, "state", strict=False)
    if not isinstance(state, dict):
        raise _error(path, f"state must be a JSON object. Got {state!r:.200}.")
    return state


def load_checkpoint(path: Any, model: Sequential, optimizer: Any) -> dict[str, Any]:
    """Restore ``model`` and ``optimizer`` from a :func:`save_checkpoint` file and return its ``state``.

    The file's architecture must equal ``model``'s. Everything is checked before ``model`` or ``optimizer``
    change.

    Raises
    ------
    ModelFileError
        For any problem with the file, or a checkpoint of another architecture or optimiser.
    """
    tensors, metadata = _read(path)
    _check_format(path, metadata, ("checkpoint",))
    arch = _json_field(path, metadata, "architecture")
    if arch != json.loads(json.dumps(model.get_config())):
        raise _error(path, "the checkpoint was written for a different architecture than the model given.")
    own = {k: v for k, v in tensors.items() if not k.startswith(_OPTIMIZER_PREFIX)}
    _check_tensors(path, model.state_dict(), own)
    extras = _extras(path, metadata)
    problem = describe_extras_problem(model, *extras)
    if problem:
        raise _error(path, problem)
    scalars = _json_field(path, metadata, "optimizer")
    state = _json_field(path, metadata, "state", strict=False)
    if not isinstance(state, dict):
        raise _error(path, f"state must be a JSON object. Got {state!r:.200}.")
    arrays = _optimizer_arrays(path, model, tensors)
    try:
        optimizer.load_state_dict({"scalars": scalars, "arrays": arrays})
    except (TypeError, ValueError) as err:
        raise _error(path, f"the optimizer state does not fit: {err}") from None
    model.class_names, model.normalization = extras
    model.load_state_dict(own)
    return state
