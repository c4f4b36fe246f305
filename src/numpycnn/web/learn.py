"""How the network learns from one picture, as plain data: the loss for a chosen label, the gradient at every
layer's output and of every parameter, one SGD step, and one weight's gradient written out as a sum.

Every gradient comes from numpycnn's own ``backward``, run one layer at a time in reverse, as ``fit`` runs it
(``fit`` may run batch norm + ReLU as one fused step; that step computes exactly the composition, and here each
layer runs on its own so that the gradient at every layer's output can be seen). The forward pass is in
inference mode: batch norm uses its running statistics, dropout passes everything through, so the loss is the
one of the answer the page shows.

Nothing here touches the served model: each request works on :func:`working_copy`, a model of its own built
from the served one's architecture and state (parameters and buffers copied), whose caches, gradients and
updated weights are dropped with it.

Examples
--------
>>> model = numpycnn.pretrained.load("seed")                    # doctest: +SKIP
>>> answer = gradients(working_copy(model), picture, target=3)   # doctest: +SKIP
>>> answer["loss"], sorted(answer["param_grads"])                # doctest: +SKIP
(13.90..., ['0.bias', '0.weight', '4.bias', '4.weight'])
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from numpycnn.core import backend
from numpycnn.core.checks import int_pair
from numpycnn.functional.activations import softmax_forward
from numpycnn.layers.base import iter_parameters
from numpycnn.layers.losses import CrossEntropyLoss
from numpycnn.model.sequential import Sequential
from numpycnn.optim import SGD
from numpycnn.web import explain

#: The learning rates one SGD step accepts: ``0 < lr <= MAX_LR``.
MAX_LR = 10.0
#: The fields of ``/api/weight-gradient`` that say which weight: ``weight[filter, in_channel, row, col]`` of the
#: ``Conv2D`` at index ``layer``.
WEIGHT_KEYS = ("layer", "filter", "in_channel", "row", "col")
#: The smallest probability the loss of a model that ends with ``Softmax`` takes the log of.
_TINY = float(np.finfo(np.float32).tiny)


# -- arguments --------------------------------------------------------------------------------------------------
def num_classes(model: Any) -> int:
    """The number of classes: the length of the last layer's output for one input of ``model.input_shape``."""
    if model.input_shape is None:
        raise ValueError("learn: the model has no input shape, so its number of classes is unknown.")
    out = model.output_shapes(model.input_shape)[-1]
    if len(out) != 1:
        raise ValueError(f"learn: the model's output must be a vector of class scores. Got shape {list(out)}.")
    return int(out[0])


def check_target(model: Any, value: Any) -> int:
    """``value`` if it is an integer class index of ``model`` (not a bool, a float or a string), else raise."""
    classes = num_classes(model)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < classes:
        raise ValueError(f"`target` must be an integer class index in [0, {classes - 1}]. Got {value!r:.40}.")
    return value


def check_lr(value: Any) -> float:
    """``value`` as a float if it is a real number in (0, :data:`MAX_LR`], else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= MAX_LR:
        raise ValueError(f"`lr` must be a number in (0, {MAX_LR:g}]. Got {value!r:.40}.")
    return float(value)


def check_index(payload: dict[str, Any], key: str) -> int:
    """``payload[key]`` if it is an integer (not a bool), else raise."""
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"`{key}` must be an integer. Got {value!r:.40}.")
    return value


def working_copy(model: Any) -> Sequential:
    """A model of its own with ``model``'s architecture, parameters, buffers, dtype, device, classes,
    normalisation and picture preparation: what a request may run forward, backward and step without touching
    ``model``."""
    copy = Sequential.from_config(model.get_config())
    copy.astype(model.dtype)
    copy.load_state_dict({name: backend.to_host(value) for name, value in model.state_dict().items()})
    copy.class_names, copy.normalization = model.class_names, model.normalization
    copy.preparation = model.preparation
    return copy.to(model.device)


# -- the backward pass ------------------------------------------------------------------------------------------
@dataclass
class Backprop:
    """One forward and backward pass of one picture, all on the host.

    ``outputs[i]`` is layer ``i``'s output and ``output_grads[i]`` the loss gradient with respect to it, both
    shaped like that output with a batch axis of 1; ``param_grads`` maps state-dict names to gradients.
    """

    x: np.ndarray
    outputs: list[np.ndarray]
    loss: float
    probabilities: np.ndarray
    output_grads: list[np.ndarray]
    param_grads: dict[str, np.ndarray]


def _loss(out: Any, target: int, ends_with_softmax: bool) -> tuple[float, Any]:
    """The cross-entropy of ``target`` and its gradient with respect to ``out`` (1, K).

    .. math::
        L = -\\log p_t, \\qquad p = \\operatorname{softmax}(z), \\qquad
        \\frac{\\partial L}{\\partial z} = p - e_t

    through :class:`CrossEntropyLoss` for logits ``z``; for a model that ends with ``Softmax`` ``out`` is
    :math:`p` itself and :math:`\\partial L/\\partial p = -e_t / p_t` (``p_t`` at least float32's smallest
    normal number, so the loss stays finite).
    """
    xp = backend.get_array_module(out)
    if not ends_with_softmax:
        criterion = CrossEntropyLoss()
        loss = criterion.forward(out, xp.asarray([target]))
        return float(loss) + 0.0, criterion.backward()  # + 0.0: a loss of -0.0 reads as 0
    p_t = max(float(out[0, target]), _TINY)
    grad = xp.zeros_like(out)
    grad[0, target] = -1.0 / p_t
    return -math.log(p_t), grad


def backprop(model: Any, x: np.ndarray, target: int) -> Backprop:
    """Run ``model.layers`` forward one at a time in inference mode, then the loss of ``target``, then each
    layer's ``backward`` in reverse order, keeping the gradient that reaches every layer's output.

    ``model`` is changed (its caches and ``grads``): pass a :func:`working_copy`.

    Parameters
    ----------
    x : ndarray, (1, C, H, W)
        The prepared picture (:func:`numpycnn.web.explain.prepare`).
    target : int
        The class the network should have said.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow is checked by the callers
        h = backend.to_device(x, model.device)
        outputs = []
        for layer in model.layers:
            h = layer.forward(h, training=False)
            outputs.append(np.array(backend.to_host(h)))  # a copy: a later layer may reuse its buffers
        ends_with_softmax = model.layers[-1].name == "Softmax"
        loss, grad = _loss(h, target, ends_with_softmax)
        output_grads: list[Any] = [None] * len(model.layers)
        for i in range(len(model.layers) - 1, -1, -1):
            output_grads[i] = np.array(backend.to_host(grad))  # a copy: a backward may work in place
            grad = model.layers[i].backward(grad)
        host = backend.to_host(h)
        probabilities = host[0] if ends_with_softmax else softmax_forward(host)[0][0]  # (K,)
    return Backprop(x=x, outputs=outputs, loss=loss, probabilities=probabilities,
                    output_grads=output_grads,
                    param_grads={name: np.array(backend.to_host(g)) for name, _, g in iter_parameters(model)})


def _finite(*values: Any) -> None:
    """Raise ``FloatingPointError`` if any value (a number or an array) is NaN or infinite."""
    for value in values:
        if not np.all(np.isfinite(value)):
            raise FloatingPointError("the numbers overflowed (NaN or infinity): try a smaller learning rate.")


def first_conv(model: Any) -> int | None:
    """The index of the first ``Conv2D`` layer, or ``None``."""
    return next((i for i, layer in enumerate(model.layers) if layer.name == "Conv2D"), None)


# -- the answers ------------------------------------------------------------------------------------------------
def gradients(model: Any, image: Any, target: int) -> dict[str, Any]:
    """The ``/api/gradients`` answer for a Pillow image: the loss of ``target``, the prepared input, every
    parameter's gradient (by state-dict name, base64 float32) and every layer's output gradient (drawn like
    the layers of ``/api/predict``). ``model`` must be a :func:`working_copy`.

    Raises
    ------
    numpycnn.DataError
        If the picture is blank.
    FloatingPointError
        If a number overflowed.
    """
    pixels, x = explain.prepare(model, image)
    run = backprop(model, x, target)
    _finite(run.loss, run.probabilities, *run.param_grads.values(), *run.output_grads)
    names = model.class_names or [str(k) for k in range(len(run.probabilities))]
    return {"target": target, "loss": run.loss, "class_names": names,
            "probabilities": [float(p) for p in run.probabilities],
            "input": {"shape": list(pixels.shape), "pixels": pixels.reshape(-1).tolist()},
            "param_grads": {name: explain.encode(g) for name, g in run.param_grads.items()},
            "layer_grads": explain.activations(run.output_grads)}


def sgd_step(model: Any, image: Any, target: int, lr: float) -> dict[str, Any]:
    """One step of plain SGD, :math:`\\theta \\leftarrow \\theta - \\eta\\, \\partial L/\\partial \\theta`, on
    the gradients of :func:`gradients` (numpycnn's :class:`~numpycnn.optim.SGD`), and the picture run again.

    Returns the loss and the probabilities ``before`` and ``after``, the first convolution's filters before
    the step and their change (``delta``, at most :data:`explain.MAX_FILTERS` filters), and the size of the
    update of each parameter next to the parameter's own (``updates``: Euclidean norms). ``model`` must be a
    :func:`working_copy`: the step changes it.
    """
    _, x = explain.prepare(model, image)
    before = backprop(model, x, target)
    conv = first_conv(model)
    weights = {name: np.array(backend.to_host(value)) for name, value in model.named_parameters()}
    with np.errstate(over="ignore", invalid="ignore"):  # checked below
        SGD(lr=lr).step(model)  # theta -= lr * grad, in place, on the copy
    after = backprop(model, x, target)
    updates = []
    for name, value in model.named_parameters():
        with np.errstate(over="ignore", invalid="ignore"):
            change = backend.to_host(value).astype(np.float64) - weights[name]
        updates.append({"name": name, "norm": float(np.linalg.norm(weights[name].astype(np.float64))),
                        "update_norm": float(np.linalg.norm(change))})
    filters = None
    if conv is not None:
        w0 = weights[f"{conv}.weight"][:explain.MAX_FILTERS]  # (F, C, kh, kw)
        with np.errstate(over="ignore", invalid="ignore"):
            delta = backend.to_host(model.layers[conv].params["weight"])[:explain.MAX_FILTERS] - w0
        filters = {"layer": conv, "total": int(model.layers[conv].params["weight"].shape[0]),
                   "before": explain.encode(w0), "delta": explain.encode(delta)}
    _finite(before.loss, before.probabilities, after.loss, after.probabilities,
            *(u["update_norm"] for u in updates))
    return {"target": target, "lr": lr,
            "before": {"loss": before.loss, "probabilities": [float(p) for p in before.probabilities]},
            "after": {"loss": after.loss, "probabilities": [float(p) for p in after.probabilities]},
            "filters": filters, "updates": updates}


def weight_gradient(model: Any, image: Any, target: int, where: tuple[int, int, int, int, int]) -> dict[str, Any]:
    """The gradient of one weight of a ``Conv2D``, computed in the open.

    .. math::
        \\frac{\\partial L}{\\partial w_{f,k,i,j}} = \\sum_{r,c} \\frac{\\partial L}{\\partial y_{f,r,c}}\\,
        x^{pad}_{k,\\, s_h r + i,\\, s_w c + j}

    for ``where = (layer, f, k, i, j)`` (:data:`WEIGHT_KEYS`): the weight's twin of the forward sum in
    :func:`numpycnn.web.explain.conv_step`: over every output position
    ``(r, c)``, the output gradient times the input value the weight met there. Returns the three maps, shaped
    like one output channel (H', W'): ``output_grad``, ``inputs`` and their ``products`` (base64 float32, as
    :func:`numpycnn.web.explain.encode`), their ``sum`` (in float64), and ``layer_value``, the gradient the
    layer's own ``backward`` wrote into ``grads["weight"]``; with a bias, ``bias_sum`` (the output gradient
    summed) and ``bias_layer_value``. ``model`` must be a :func:`working_copy`.

    Raises
    ------
    ValueError
        If the layer is not a ``Conv2D`` or the weight is outside its kernel; the message says the range.
    """
    layer, filter_, in_channel, row, col = where
    if not 0 <= layer < len(model.layers):
        raise ValueError(f"weight_gradient: `layer` must be in [0, {len(model.layers) - 1}]. Got {layer}.")
    conv = model.layers[layer]
    if conv.name != "Conv2D":
        raise ValueError(f"weight_gradient: layer {layer} is {conv.name}, not Conv2D. Got layer={layer}.")
    f_total, c_total, kh, kw = conv.params["weight"].shape
    for arg, value, size in (("filter", filter_, f_total), ("in_channel", in_channel, c_total),
                             ("row", row, kh), ("col", col, kw)):
        if not 0 <= value < size:
            raise ValueError(f"weight_gradient: `{arg}` must be in [0, {size - 1}] for layer {layer}. Got {value}.")
    _, x = explain.prepare(model, image)
    run = backprop(model, x, target)
    layer_input = x if layer == 0 else run.outputs[layer - 1]  # (1, C, H, W)
    config = conv.get_config()
    (sh, sw), (ph, pw) = (int_pair("weight_gradient", key, config[key], minimum=0) for key in ("stride", "padding"))
    dy = run.output_grads[layer][0, filter_].astype(np.float64)  # (H', W')
    h_out, w_out = dy.shape
    padded = np.pad(layer_input[0, in_channel], ((ph, ph), (pw, pw)))  # (H + 2 ph, W + 2 pw)
    inputs = padded[row:row + sh * (h_out - 1) + 1:sh, col:col + sw * (w_out - 1) + 1:sw].astype(np.float64)
    products = dy * inputs  # (H', W'), exact: a product of two float32 values fits in a float64
    grads = run.param_grads
    answer = {"target": target, "loss": run.loss, "layer": layer, "filter": filter_, "in_channel": in_channel,
              "row": row, "col": col, "kernel_size": [kh, kw], "stride": [sh, sw], "padding": [ph, pw],
              "input_shape": list(layer_input.shape[1:]), "output_shape": [h_out, w_out],
              "weight": float(backend.to_host(conv.params["weight"])[filter_, in_channel, row, col]),
              "output_grad": explain.encode(dy), "inputs": explain.encode(inputs),
              "products": explain.encode(products), "sum": float(products.sum()),
              "layer_value": float(grads[f"{layer}.weight"][filter_, in_channel, row, col]),
              "has_bias": f"{layer}.bias" in grads}
    if answer["has_bias"]:
        answer.update(bias_sum=float(dy.sum()), bias_layer_value=float(grads[f"{layer}.bias"][filter_]))
    _finite(answer["sum"], answer["layer_value"], run.loss)
    return answer
