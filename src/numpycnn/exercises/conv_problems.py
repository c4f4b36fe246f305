"""The exercises on images: convolution forward with loops, convolution backward, max-pool backward.

Each :class:`~numpycnn.exercises.catalogue.Exercise` is checked on shapes that catch what one square, stride-1 case
hides: stride 2, padding, a batch of one, non-square inputs and kernels. The reference is the loop definition of
:mod:`numpycnn.functional.reference`; the mistakes are wrong variants written next to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.exercises.catalogue import Case, Exercise, Mistake
from numpycnn.functional import reference
from numpycnn.layers.gradcheck import numeric_gradient

#: (label, x shape (N, C, H, W), w shape (F, C, kh, kw), stride, padding), the smallest first.
CONV_SHAPES = (
    ("3x3 kernel, stride 1", (2, 3, 5, 6), (4, 3, 3, 3), 1, 0),
    ("stride 2", (2, 2, 7, 8), (3, 2, 3, 3), 2, 0),
    ("padding 1", (2, 2, 5, 5), (3, 2, 3, 3), 1, 1),
    ("a batch of one, a non-square 2x3 kernel, stride 2 and padding 1", (1, 3, 6, 5), (2, 3, 2, 3), 2, 1),
)


def _conv_cases(rng: np.random.Generator, with_dy: bool) -> list[Case]:
    cases = []
    for label, x_shape, w_shape, stride, padding in CONV_SHAPES:
        args = {"x": rng.standard_normal(x_shape), "w": rng.standard_normal(w_shape),
                "b": rng.standard_normal(w_shape[0]), "stride": stride, "padding": padding}
        if with_dy:
            y = reference.conv2d_forward(**args)  # (N, F, Ho, Wo)
            args = {"dy": rng.standard_normal(y.shape), **args}
            del args["b"]
        cases.append(Case(label, args))
    return cases


# -- conv-forward ------------------------------------------------------------------------------------------------
def _conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0) -> tuple[Any]:
    return (reference.conv2d_forward(x, w, b, stride, padding),)


CONV_FORWARD = Exercise(
    name="conv-forward",
    title="Convolution forward, with loops",
    function="conv_forward",
    signature="def conv_forward(x, w, b, stride=1, padding=0):",
    statement=(
        "Compute the convolution (a cross-correlation, as in PyTorch) of a batch of images with F filters:\n\n"
        "    y[n, f, h, v] = b[f] + sum over c, i, j of w[f, c, i, j] * xp[n, c, h*stride + i, v*stride + j]\n\n"
        "where xp is x zero-padded by `padding` on each side of both spatial axes. Loops are welcome: one per\n"
        "image, filter, output row and output column, and a NumPy sum over the window."),
    shapes=("x (N, C, H, W); w (F, C, kh, kw); b (F,); returns y (N, F, Ho, Wo) with\n"
            "Ho = (H + 2*padding - kh) // stride + 1 and Wo = (W + 2*padding - kw) // stride + 1."),
    hint=("np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) pads; the window of output\n"
          "(h, v) is xp[n, :, h*stride:h*stride + kh, v*stride:v*stride + kw]; kh and kw may differ."),
    outputs=("y",),
    cases=lambda rng: _conv_cases(rng, with_dy=False),
    reference=_conv_forward,
    mistakes=(
        Mistake("kernel flipped (a true convolution instead of a cross-correlation)",
                lambda x, w, b, stride, padding: _conv_forward(x, w[:, :, ::-1, ::-1], b, stride, padding),
                "Forward does not flip the kernel: w[f, c, i, j] meets xp[n, c, h*stride + i, v*stride + j]."),
        Mistake("window off by one: the output grid is one row and one column short",
                lambda x, w, b, stride, padding: (_conv_forward(x, w, b, stride, padding)[0][:, :, :-1, :-1],),
                "The number of windows is Ho = (H + 2*padding - kh) // stride + 1: the + 1 counts the first one; "
                "range(Ho) then visits all of them."),
        Mistake("stride ignored in the window's position (window at h instead of h*stride)",
                lambda x, w, b, stride, padding: (
                    _conv_forward(x, w, b, 1, padding)[0][:, :, :_out(x, w, stride, padding)[0],
                                                          :_out(x, w, stride, padding)[1]],),
                "Output (h, v) reads the window that starts at row h*stride and column v*stride."),
        Mistake("padding ignored",
                lambda x, w, b, stride, padding: _conv_forward(x, w, b, stride, 0),
                "Pad x with `padding` zeros on every side of H and W before taking the windows."),
        Mistake("bias missing",
                lambda x, w, b, stride, padding: (_conv_forward(x, w, b, stride, padding)[0] - b[:, None, None],),
                "Add b[f] to every output of filter f."),
    ),
    look={"y": "Check the window's rows and columns (h*stride + i, v*stride + j) and the padding."},
)


def _out(x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> tuple[int, int]:
    """(Ho, Wo) of a convolution."""
    return ((x.shape[2] + 2 * padding - w.shape[2]) // stride + 1,
            (x.shape[3] + 2 * padding - w.shape[3]) // stride + 1)


# -- conv-backward -----------------------------------------------------------------------------------------------
def _conv_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0) -> tuple[Any, ...]:
    return reference.conv2d_backward(dy, x, w, stride, padding)


def _padded_input_grad(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """The gradient of the padded input, (N, C, H + 2p, W + 2p): dx before its border is cropped."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return reference.conv2d_backward(dy, xp, w, stride, 0)[0]


def _first_sample(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> tuple[Any, ...]:
    dx, dw, db = _conv_backward(dy[:1], x[:1], w, stride, padding)
    return np.concatenate([dx, np.zeros_like(x[1:])]), dw, db


def _per_sample(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> tuple[Any, ...]:
    grads = [_conv_backward(dy[n:n + 1], x[n:n + 1], w, stride, padding) for n in range(len(x))]
    return (_conv_backward(dy, x, w, stride, padding)[0], np.stack([g[1] for g in grads]),
            np.stack([g[2] for g in grads]))  # dw (N, F, C, kh, kw), db (N, F)


def _conv_numeric(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> tuple[Any, ...]:
    x, w, b = x.copy(), w.copy(), np.zeros(w.shape[0])

    def loss() -> float:
        return float(np.sum(reference.conv2d_forward(x, w, b, stride, padding) * dy))

    return numeric_gradient(loss, x), numeric_gradient(loss, w), numeric_gradient(loss, b)


CONV_BACKWARD = Exercise(
    name="conv-backward",
    title="Convolution backward: dx, dw and db",
    function="conv_backward",
    signature="def conv_backward(dy, x, w, stride=1, padding=0):",
    statement=(
        "Given dy = dL/dy for the output of conv_forward(x, w, b, stride, padding), return (dx, dw, db).\n"
        "Each output pixel (n, f, h, v) used the window xp[n, :, h*stride:h*stride + kh, v*stride:v*stride + kw]\n"
        "of the padded input, so it sends its gradient back through that window:\n\n"
        "    dw[f]               += dy[n, f, h, v] * window\n"
        "    dxp[n, :, window]   += dy[n, f, h, v] * w[f]\n"
        "    db[f]               += dy[n, f, h, v]\n\n"
        "summed over every n, f, h, v; dx is dxp with the padding cropped."),
    shapes="dy (N, F, Ho, Wo); x (N, C, H, W); w (F, C, kh, kw); returns dx like x, dw like w, db (F,).",
    hint=("Loop as in the forward pass and add (+=) into zero arrays: overlapping windows add up. If you write\n"
          "dx as a full convolution of dy instead, the kernel must be flipped."),
    outputs=("dx", "dw", "db"),
    cases=lambda rng: _conv_cases(rng, with_dy=True),
    reference=_conv_backward,
    mistakes=(
        Mistake("kernel not flipped in the input gradient",
                lambda dy, x, w, stride, padding: (_conv_backward(dy, x, w[:, :, ::-1, ::-1], stride, padding)[0],
                                                   *_conv_backward(dy, x, w, stride, padding)[1:]),
                "dx is a full convolution of dy with the kernel flipped (i -> kh-1-i, j -> kw-1-j); or add "
                "dy[n, f, h, v] * w[f] into the window it came from, which needs no flip."),
        Mistake("transposed weight gradient (F and C swapped)",
                lambda dy, x, w, stride, padding: (_conv_backward(dy, x, w, stride, padding)[0],
                                                   _conv_backward(dy, x, w, stride, padding)[1].transpose(1, 0, 2, 3),
                                                   _conv_backward(dy, x, w, stride, padding)[2]),
                "dw has w's shape (F, C, kh, kw): dw[f] += dy[n, f, h, v] * window, the window being (C, kh, kw)."),
        Mistake("kernel rows and columns swapped in the weight gradient",
                lambda dy, x, w, stride, padding: (_conv_backward(dy, x, w, stride, padding)[0],
                                                   _conv_backward(dy, x, w, stride, padding)[1].transpose(0, 1, 3, 2),
                                                   _conv_backward(dy, x, w, stride, padding)[2]),
                "dw[f, c, i, j] pairs kernel row i with image row h*stride + i and column j with v*stride + j."),
        Mistake("gradient for only the first sample", _first_sample,
                "Loop over every image n of the batch: the gradients of the parameters are sums over n."),
        Mistake("missing sum over the batch (one gradient per sample)", _per_sample,
                "dw and db are sums over the batch: one dw of shape (F, C, kh, kw), one db of shape (F,)."),
        Mistake("window off by one: stride ignored (window at h instead of h*stride)",
                lambda dy, x, w, stride, padding: _conv_backward(dy, x, w, 1, padding),
                "Output (h, v) came from the window starting at row h*stride, column v*stride; send it back there."),
        Mistake("padding not cropped from dx",
                lambda dy, x, w, stride, padding: (_padded_input_grad(dy, x, w, stride, padding),
                                                   *_conv_backward(dy, x, w, stride, padding)[1:]),
                "dx has x's shape: compute dxp for the padded input, then return dxp[:, :, p:p + H, p:p + W]."),
        Mistake("bias gradient not summed over the output positions",
                lambda dy, x, w, stride, padding: (*_conv_backward(dy, x, w, stride, padding)[:2],
                                                   dy.sum(axis=0)),
                "db[f] is the sum of dy[:, f] over the batch and every output position (axes 0, 2 and 3)."),
    ),
    numeric=_conv_numeric,
    look={"dx": "Look at where you add dy[n, f, h, v] * w[f]: the window's rows and columns, and the flip.",
          "dw": "Look at dw[f] += dy[n, f, h, v] * window: the window's position and the sum over n, h, v.",
          "db": "db[f] sums dy[:, f] over the batch and all output positions."},
)


# -- maxpool-backward --------------------------------------------------------------------------------------------
#: (label, x shape, kernel_size, stride), the smallest first.
POOL_SHAPES = (
    ("2x2 windows", (2, 3, 4, 6), 2, None),
    ("3x3 windows with stride 2 (overlapping)", (2, 2, 7, 7), 3, 2),
    ("a batch of one, 2x2 windows with stride 1", (1, 2, 5, 4), 2, 1),
    ("a non-square input, 2x2 windows with stride 3 (gaps)", (1, 1, 7, 8), 2, 3),
)


def _pool_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for label, shape, k, s in POOL_SHAPES:
        x = rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) / 10  # distinct: no ties
        cases.append(Case(label, {"dy": rng.standard_normal(reference.maxpool2d_forward(x, k, s).shape), "x": x,
                                  "kernel_size": k, "stride": s}))
    x = rng.integers(0, 3, size=(2, 2, 4, 4)).astype(np.float64)  # ties in most windows
    cases.append(Case("ties: the gradient goes to the first maximum (row-major)",
                      {"dy": rng.standard_normal((2, 2, 2, 2)), "x": x, "kernel_size": 2, "stride": None}))
    return cases


def _route(dy: np.ndarray, x: np.ndarray, k: int, stride: int | None, pick: str = "first", size: int | None = None,
           step: int | None = None) -> np.ndarray:
    """Max-pool backward by loops with a choice of wrong turns: ``pick`` ``"first"``, ``"last"`` maximum or
    ``"all"`` of the window; ``size`` the window's width as sliced; ``step`` where the windows start."""
    s = k if stride is None else stride
    step = s if step is None else step
    size = k if size is None else size
    dx = np.zeros_like(x)
    N, C, Ho, Wo = dy.shape
    for n in range(N):
        for c in range(C):
            for h in range(Ho):
                for v in range(Wo):
                    window = x[n, c, h * step:h * step + size, v * step:v * step + size]
                    if pick == "all":
                        dx[n, c, h * step:h * step + size, v * step:v * step + size] += dy[n, c, h, v]
                        continue
                    flat = window.reshape(-1)
                    t = int(np.argmax(flat)) if pick == "first" else flat.size - 1 - int(np.argmax(flat[::-1]))
                    i, j = divmod(t, window.shape[1])
                    dx[n, c, h * step + i, v * step + j] += dy[n, c, h, v]
    return dx


def _pool_numeric(dy: np.ndarray, x: np.ndarray, kernel_size: int, stride: int | None) -> tuple[Any]:
    x = x.copy()
    return (numeric_gradient(lambda: float(np.sum(reference.maxpool2d_forward(x, kernel_size, stride) * dy)), x),)


MAXPOOL_BACKWARD = Exercise(
    name="maxpool-backward",
    title="Max-pool backward: route each gradient to its window's maximum",
    function="maxpool_backward",
    signature="def maxpool_backward(dy, x, kernel_size=2, stride=None):",
    statement=(
        "The forward pass was y[n, c, h, v] = max of x[n, c, h*s:h*s + k, v*s:v*s + k] (s = stride, which\n"
        "defaults to kernel_size k). Return dx: each dy[n, c, h, v] goes to the one input that was its window's\n"
        "maximum, and every other input of the window gets nothing from it. On a tie, the first maximum in\n"
        "row-major order (top row first, left to right) takes it all, as np.argmax and PyTorch do. Overlapping\n"
        "windows add up."),
    shapes="dy (N, C, Ho, Wo); x (N, C, H, W); returns dx (N, C, H, W).",
    hint="i, j = divmod(np.argmax(window), k) gives the position of the first maximum inside the window.",
    outputs=("dx",),
    cases=_pool_cases,
    reference=lambda dy, x, kernel_size, stride: (reference.maxpool2d_backward(dy, x, kernel_size, stride),),
    mistakes=(
        Mistake("gradient sent to every input of the window, not routed to the maximum",
                lambda dy, x, kernel_size, stride: (_route(dy, x, kernel_size, stride, pick="all"),),
                "Only the maximum of the window passed its value forward, so only it gets dy back."),
        Mistake("averaged as in average pooling",
                lambda dy, x, kernel_size, stride: (reference.avgpool2d_backward(dy, x, kernel_size, stride),),
                "That is average pooling's backward; max pooling routes all of dy to the maximum."),
        Mistake("on a tie, the gradient goes to the last maximum instead of the first",
                lambda dy, x, kernel_size, stride: (_route(dy, x, kernel_size, stride, pick="last"),),
                "np.argmax returns the first maximum; a loop with >= instead of > picks the last."),
        Mistake("window off by one: each window sliced one row and column short (h*s:h*s + k - 1)",
                lambda dy, x, kernel_size, stride: (_route(dy, x, kernel_size, stride, size=kernel_size - 1),),
                "The window is x[n, c, h*s:h*s + k, v*s:v*s + k]: a slice's end is excluded."),
        Mistake("window off by one: windows start at h*k instead of h*stride",
                lambda dy, x, kernel_size, stride: (_route(dy, x, kernel_size, stride, step=kernel_size),),
                "Windows start every `stride` pixels; only when stride is None is that kernel_size."),
    ),
    numeric=_pool_numeric,
    look={"dx": "Look at which element of the window gets dy[n, c, h, v], and at where each window starts."},
)

EXERCISES = (CONV_FORWARD, CONV_BACKWARD, MAXPOOL_BACKWARD)
