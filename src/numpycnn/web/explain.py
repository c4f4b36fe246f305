"""What the page shows, as plain data: the prepared input, every layer's activation, one convolution step by step.

Everything here uses the public interface of a model only: ``model.layers``, each layer's
``forward(x, training=False)``, ``params``, ``get_config()`` and ``name``. The layers run one by one, in the
order they are listed, so each one's output is seen exactly as the next one receives it.

Arrays travel to the page as base64 strings of little-endian float32 (``"<f4"``), with their shapes: 16
feature maps of 26x26 are 58 KB of base64, exact to the last bit, where decimal text would be two to three times
that, and the page reads them into a ``Float32Array`` without parsing numbers.

Examples
--------
>>> model = numpycnn.pretrained.load("seed")                       # doctest: +SKIP
>>> pixels, x = prepare(model, picture)                            # uint8 (1, 28, 28), float32 (1, 1, 28, 28)
>>> outputs = layer_outputs(model, x)                              # one array per layer
>>> conv_step(model, x, outputs, 0, channel=3, row=10, col=12)["output"]
0.8421...
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.checks import int_pair
from numpycnn.datasets.images import preprocess, style_for
from numpycnn.datasets.transforms import standardize, to_float

#: At most this many feature maps of a layer are sent to the page ("16 of 64 shown").
MAX_MAPS = 16
#: At most this many values of a flat layer output are sent.
MAX_VECTOR = 4096
#: At most this many first-layer filters are sent.
MAX_FILTERS = 64
#: Layers that act on each value alone (at inference), so a convolution output keeps its position through them.
ELEMENTWISE = ("BatchNorm2D", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout")


def encode(array: np.ndarray) -> dict[str, Any]:
    """``{"shape": [...], "data": base64 of little-endian float32}``: an array as the page reads it."""
    values = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(values.shape), "data": base64.b64encode(values.tobytes()).decode("ascii")}


def decode(blob: dict[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode` (for tests and clients written in Python).

    A layer output cut to its first ``blob["shown"]`` channels (:func:`activations`) comes back with that many.
    """
    values = np.frombuffer(base64.b64decode(blob["data"]), dtype="<f4")
    shape = blob["shape"]
    return values.reshape([blob.get("shown", shape[0]), *shape[1:]])


def prepare(model: Any, image: Any) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess a Pillow image as ``numpycnn predict`` does, then scale it as the model was trained.

    Returns
    -------
    pixels : uint8 ndarray, (C, H, W)
        The picture as the data set's images look (for digits: white ink on black, 28x28, centred).
    x : ndarray, (1, C, H, W), the model's dtype
        ``pixels / 255``, standardised by ``model.normalization`` when the model has one.

    Raises
    ------
    numpycnn.DataError
        If the picture is blank.
    """
    style = style_for(model.input_shape, model.class_names, getattr(model, "preparation", None))
    pixels = preprocess(image, style)  # (C, H, W) uint8
    x = to_float(pixels[None])  # (1, C, H, W) in [0, 1]
    norm = model.normalization
    if norm:
        x = standardize(x, np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32))
    return pixels, x.astype(model.dtype, copy=False)


def layer_outputs(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """Run ``model.layers`` one at a time in inference mode; the output of each, in order.

    ``outputs[i]`` is layer ``i``'s output; layer ``i``'s input is ``outputs[i - 1]`` (``x`` for the first).
    The layers run where the model is; the outputs are host copies.
    """
    outputs = []
    x = backend.to_device(x, model.device)
    for layer in model.layers:
        x = layer.forward(x, training=False)
        outputs.append(backend.to_host(x))
    return outputs


def activations(outputs: list[np.ndarray]) -> list[dict[str, Any]]:
    """The layer outputs of one image as the page draws them: maps (at most :data:`MAX_MAPS`) or a vector.

    ``shape`` is the whole output's, ``data`` holds its first ``shown`` channels (or values) as :func:`encode`
    does; ``scale`` is the largest absolute value over the whole output (all channels), so colours centred on
    zero compare across the maps of a layer.
    """
    result = []
    for i, out in enumerate(outputs):
        values = out[0]  # (C, H, W) or (features,)
        kind = "maps" if values.ndim == 3 else "vector"
        limit = MAX_MAPS if kind == "maps" else MAX_VECTOR
        shown = values[:limit]
        result.append({"index": i, "kind": kind, "shape": list(values.shape), "shown": int(shown.shape[0]),
                       "total": int(values.shape[0]), "scale": float(np.max(np.abs(values), initial=0.0)),
                       "data": encode(shown)["data"]})
    return result


def describe(model: Any) -> dict[str, Any]:
    """The model's layers (type, arguments, output shape, parameters), classes, input and first-layer filters."""
    shapes = model.output_shapes(model.input_shape) if model.input_shape else [None] * len(model.layers)
    layers = [{"index": i, "name": layer.name, "config": layer.get_config(),
               "output_shape": list(shape) if shape is not None else None,
               "parameters": int(sum(v.size for v in layer.params.values()))}
              for i, (layer, shape) in enumerate(zip(model.layers, shapes, strict=True))]
    convs = [i for i, layer in enumerate(model.layers) if layer.name == "Conv2D"]
    filters = None
    if convs:
        weight = backend.to_host(model.layers[convs[0]].params["weight"])  # (F, C, kh, kw), a host copy
        filters = {"layer": convs[0], "total": int(weight.shape[0]), **encode(weight[:MAX_FILTERS])}
    return {"input_shape": list(model.input_shape) if model.input_shape else None,
            "class_names": model.class_names, "normalization": model.normalization,
            "style": _style_name(model), "layers": layers,
            "conv_layers": convs, "parameters": int(sum(entry["parameters"] for entry in layers)),
            "filters": filters}


def _style_name(model: Any) -> str:
    """``"photos"`` for a model trained on your own pictures (the page offers the upload), else the data set's."""
    if getattr(model, "preparation", None) is not None:
        return "photos"
    return style_for(model.input_shape, model.class_names)


def conv_step(model: Any, x: np.ndarray, outputs: list[np.ndarray], index: int,
              channel: int, row: int, col: int) -> dict[str, Any]:
    """One output value of the ``Conv2D`` at ``model.layers[index]``, computed in the open.

    .. math::
        y_{f,r,c} = b_f + \\sum_{k} \\sum_{i,j} w_{f,k,i,j}\\, x^{pad}_{g C/G + k,\\, s_h r + d_h i,\\, s_w c + d_w j}

    with :math:`g` the group of filter :math:`f` (``groups`` :math:`G`; 0 for an ordinary convolution) and
    :math:`d` the dilation. The window of the zero-padded input (every :math:`d`-th pixel), the kernel of
    output channel ``f`` and their element-wise products are returned per input channel ``k`` of its group,
    with each channel's sum, the total, the bias and ``output``, their sum (in float64); ``layer_value`` is
    what the layer itself computed at that position, and ``then`` the values at the same position after the
    element-wise layers that follow (batch norm, ReLU, ...).

    Parameters
    ----------
    x : ndarray, (1, C, H, W)
        The prepared input of the model (:func:`prepare`).
    outputs : list of ndarray
        :func:`layer_outputs` of ``x``: layer ``index`` received ``outputs[index - 1]`` (or ``x``) and
        returned ``outputs[index]``, shaped (1, F, H', W').

    Raises
    ------
    ValueError
        If the layer is not a ``Conv2D`` or the position is outside its output; the message says the range.
    """
    if not 0 <= index < len(model.layers):
        raise ValueError(f"conv_step: `layer` must be in [0, {len(model.layers) - 1}]. Got {index}.")
    layer = model.layers[index]
    layer_input, layer_output = (x if index == 0 else outputs[index - 1]), outputs[index]
    if layer.name != "Conv2D":
        raise ValueError(f"conv_step: layer {index} is {layer.name}, not Conv2D. Got layer={index}.")
    f_total, h_out, w_out = layer_output.shape[1:]
    for arg, value, size in (("channel", channel, f_total), ("row", row, h_out), ("col", col, w_out)):
        if not 0 <= value < size:
            raise ValueError(f"conv_step: `{arg}` must be in [0, {size - 1}] for layer {index}. Got {value}.")
    config = layer.get_config()
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (int_pair("conv_step", key, config.get(key, 1), minimum=0)
                                              for key in ("kernel_size", "stride", "padding", "dilation"))
    groups = int(config.get("groups", 1))
    c_group = layer_input.shape[1] // groups  # input channels each filter sees
    first = channel // (f_total // groups) * c_group  # the first input channel of this filter's group
    padded = np.pad(layer_input[0], ((0, 0), (ph, ph), (pw, pw)))  # (C, H + 2 ph, W + 2 pw)
    top, left = row * sh, col * sw  # in padded coordinates
    window = padded[first:first + c_group, top:top + dh * (kh - 1) + 1:dh,
                    left:left + dw * (kw - 1) + 1:dw].astype(np.float64)  # (C / G, kh, kw)
    kernel = backend.to_host(layer.params["weight"][channel]).astype(np.float64)  # (C / G, kh, kw), on the host
    products = window * kernel  # exact: a product of two float32 values fits in a float64
    channel_sums = products.sum(axis=(1, 2))  # (C,)
    bias = float(layer.params["bias"][channel]) if "bias" in layer.params else 0.0
    total = float(channel_sums.sum())
    return {"layer": index, "channel": channel, "row": row, "col": col,
            "kernel_size": [kh, kw], "stride": [sh, sw], "padding": [ph, pw], "dilation": [dh, dw],
            "groups": groups, "first_input_channel": first,
            "input_shape": list(layer_input.shape[1:]),
            "window_origin": [top - ph, left - pw],  # top-left of the window in the unpadded input (may be < 0)
            "window": window.tolist(), "kernel": kernel.tolist(), "products": products.tolist(),
            "channel_sums": channel_sums.tolist(), "sum": total, "bias": bias, "has_bias": "bias" in layer.params,
            "output": total + bias,
            "layer_value": float(layer_output[0, channel, row, col]),
            "then": _following(model, outputs, index, (channel, row, col))}


def _following(model: Any, outputs: list[np.ndarray], index: int, at: tuple[int, int, int]) -> list[dict[str, Any]]:
    """Values at position ``at`` (channel, row, col) after the element-wise layers that directly follow ``index``."""
    found = []
    for i in range(index + 1, len(model.layers)):
        if model.layers[i].name not in ELEMENTWISE:
            break
        found.append({"layer": i, "name": model.layers[i].name, "value": float(outputs[i][(0, *at)])})
    return found


def explain(model: Any, image: Any) -> dict[str, Any]:
    """Prediction, prepared input and every layer's activation for one picture (what ``/api/predict`` returns).

    Raises
    ------
    numpycnn.DataError
        If the picture is blank.
    """
    pixels, x = prepare(model, image)
    probabilities = model.predict(pixels[None])[0]  # (classes,): the same path as `numpycnn predict`
    outputs = layer_outputs(model, x)
    names = model.class_names or [str(k) for k in range(len(probabilities))]
    best = int(np.argmax(probabilities))
    return {"label": names[best], "index": best, "class_names": names,
            "probabilities": [float(p) for p in probabilities],
            "input": {"shape": list(pixels.shape), "pixels": pixels.reshape(-1).tolist()},
            "layers": activations(outputs)}

