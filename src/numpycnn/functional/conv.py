"""2-D convolution (cross-correlation, as in PyTorch) by im2col and matrix products, a few images at a time.

The definition is the six-fold loop of :func:`numpycnn.reference.conv2d_forward`. The code computes the same
sums with one layout and one loop structure for the forward pass, the weight gradient and the input gradient:

1. **Chunks.** The batch is cut into chunks of ``n`` images, ``n`` chosen so that one chunk's column matrix
   takes about :data:`CHUNK_BYTES` (a few MiB, the size of this machine's L2 cache): the columns are written
   and then read by the matrix product while they are still in cache, and no batch-sized column matrix is ever
   kept. Backward rebuilds the columns of each chunk from the cached input instead of storing them, except
   for a batch that fits in one chunk, whose columns are still in the workspace and are reused.
2. **im2col.** A chunk (n, C, H, W) is copied into a zero-padded buffer (n, C, Hb, Wb); the column matrix
   ``cols`` (n, C, kh, kw, Ho, Wq) gets ``kh * kw`` slice copies, one per kernel offset (i, j):
   ``cols[:, :, i, j] = xpad[:, :, i::sh, j::sw]`` cropped to the output grid (:func:`im2col`).
3. **Product.** ``y[m] = W_mat @ cols[m]`` for every image ``m`` of the chunk, with ``W_mat`` (F, C kh kw):
   the result (n, F, Ho, Wq) is already in the (N, F, H, W) layout, so no transposing copy is needed.

**Fast path, stride 1 (the widened grid, chosen by :func:`widened_grid`).** The output grid is widened to the
padded row width,
``Wq = Wb``: the window of offset (i, j) is then one contiguous run ``xpad_flat[m, c, i Wb + j : i Wb + j +
Ho Wb]``, so every im2col copy runs over a long contiguous row instead of ``Ho`` rows of ``Wo`` elements. The
``Wq - Wo`` extra columns per row are computed and dropped; in backward their upstream gradient is set to
zero, so they add nothing to ``dw``. One spare zero row under the buffer keeps the last run inside it.

**Fast path, stride-1 input gradient (correlation).** The input gradient is by definition col2im of
``W_mat^T dY`` (:func:`conv2d_backward`). For stride 1 and padding ``p < k`` it is also a forward convolution
of ``dY`` with the flipped kernel (see :func:`conv2d_backward`), whose im2col is plain copies instead of
col2im's read-add-write passes; that is the rule for choosing it, and the tests hold both equal to the loop
definition and to PyTorch.

Buffers live in a :class:`Workspace` that the layer keeps across batches, so the hot path allocates (and
page-faults) only the arrays it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np


class Workspace:
    """Scratch arrays reused across calls, keyed by name; a new shape or dtype replaces the array.

    Arrays are zeroed when first created and never cleared afterwards, so regions that a caller never writes
    (the padding border, the extra columns of the widened grid) stay zero from call to call.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._children: dict[str, Workspace] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = np.zeros(shape, dtype=dtype)
            self._arrays[name] = array
        return array

    def child(self, name: str) -> Workspace:
        """A nested workspace under ``name`` (for a convolution run inside another, as in backward)."""
        child = self._children.get(name)
        if child is None:
            child = self._children[name] = Workspace()
        return child

    def clear(self) -> None:
        self._arrays.clear()
        self._children.clear()


class ConvGeometry(NamedTuple):
    """Sizes of one convolution: input (N, C, H, W), kernel (kh, kw), stride, padding, output (Ho, Wo)."""

    N: int
    C: int
    H: int
    W: int
    F: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    Ho: int
    Wo: int
    Hb: int  # rows of the padded buffer (one spare row for the widened stride-1 grid)
    Wb: int  # columns of the padded buffer
    Wq: int  # columns of the computed output grid (Wb for stride 1, Wo otherwise)
    wide: bool  # stride 1: each window is one contiguous run of the flattened padded image
    chunk: int  # images per chunk


#: Bytes of one chunk's column matrix. Measured here for 128 x 32 x 28 x 28 images and 32 3x3 filters: 4
#: images a chunk (3.9 MiB) ran the forward pass 1.7x faster than the whole batch at once (49 -> 28 ms).
CHUNK_BYTES = 4 << 20


def widened_grid(C: int, kh: int, kw: int, F: int) -> bool:
    """Whether a stride-1 convolution uses the widened grid: when its ``C kh kw`` im2col copies outnumber the
    ``2 F`` output-sized copies the grid costs (the crop in forward, the widening of ``dY`` in backward).

    Measured here: faster for 32 -> 32 channels at 28x28 (K = 288), slower for the single-channel first layers
    (K = 9, F = 8 or 32), where the strided copies are few and the crop is the larger cost.
    """
    return C * kh * kw >= 2 * F


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis, :math:`\\lfloor (size + 2p - k) / s \\rfloor + 1` (may be <= 0)."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int | tuple[int, int],
                  padding: int | tuple[int, int], itemsize: int = 4) -> ConvGeometry:
    """Compute the sizes of a convolution; raises ``ValueError`` when the kernel exceeds the padded input."""
    N, C, H, W = x_shape
    F, _, kh, kw = w_shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    Ho, Wo = conv2d_output_size(H, kh, sh, ph), conv2d_output_size(W, kw, sw, pw)
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"conv2d: kernel ({kh}, {kw}) is larger than the padded input ({H + 2 * ph}, {W + 2 * pw}) "
            f"(input shape {tuple(x_shape)}, padding ({ph}, {pw}))."
        )
    wide = sh == 1 and sw == 1 and widened_grid(C, kh, kw, F)
    Hb = H + 2 * ph + (1 if wide and kw > 1 else 0)
    Wb = W + 2 * pw
    Wq = Wb if wide else Wo
    chunk = int(min(N, max(1, CHUNK_BYTES // (C * kh * kw * Ho * Wq * itemsize))))
    return ConvGeometry(N, C, H, W, F, kh, kw, sh, sw, ph, pw, Ho, Wo, Hb, Wb, Wq, wide, chunk)


def _chunks(g: ConvGeometry) -> Iterator[slice]:
    for lo in range(0, g.N, g.chunk):
        yield slice(lo, min(lo + g.chunk, g.N))


def _window(buf: np.ndarray, g: ConvGeometry, i: int, j: int) -> np.ndarray:
    """View of ``buf`` (n, C, Hb, Wb) under kernel offset (i, j), shape (n, C, Ho, Wq)."""
    n = buf.shape[0]
    if g.wide:  # stride 1, widened grid: one contiguous run per (m, c)
        start = i * g.Wb + j
        flat = buf.reshape(n, g.C, g.Hb * g.Wb)  # (n, C, Hb*Wb), a view
        return flat[:, :, start:start + g.Ho * g.Wb].reshape(n, g.C, g.Ho, g.Wb)  # (n, C, Ho, Wq)
    return buf[:, :, i:i + g.sh * (g.Ho - 1) + 1:g.sh, j:j + g.sw * (g.Wo - 1) + 1:g.sw]  # (n, C, Ho, Wo)


def _buffer(ws: Workspace | None, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return ws.get(name, shape, dtype) if ws is not None else np.zeros(shape, dtype=dtype)


def _padded(x: np.ndarray, g: ConvGeometry, ws: Workspace | None) -> np.ndarray:
    """``x`` (n, C, H, W) inside the zero border of the (n, C, Hb, Wb) buffer (``x`` itself if it needs none)."""
    if (g.Hb, g.Wb) == (g.H, g.W):
        return x
    xp = _buffer(ws, "x", (g.chunk, g.C, g.Hb, g.Wb), x.dtype)[:len(x)]  # zero border, written interior
    xp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W] = x
    return xp


def im2col(x: np.ndarray, g: ConvGeometry, ws: Workspace | None = None) -> np.ndarray:
    """The column matrix of a chunk: ``cols[m, (c, i, j), (h, w)] = xpad[m, c, s_h h + i, s_w w + j]``.

    Shape
    -----
    ``x`` (n, C, H, W) with ``n <= g.chunk``; returns (n, C kh kw, Ho Wq), a view of the workspace's buffer.
    """
    xp = _padded(x, g, ws)
    n = len(x)
    cols = _buffer(ws, "cols", (g.chunk, g.C, g.kh, g.kw, g.Ho, g.Wq), x.dtype)[:n]
    for i in range(g.kh):
        for j in range(g.kw):
            cols[:, :, i, j] = _window(xp, g, i, j)  # (n, C, Ho, Wq)
    return cols.reshape(n, g.C * g.kh * g.kw, g.Ho * g.Wq)  # (n, K, Ho*Wq)


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int | tuple[int, int] = 1,
                   padding: int | tuple[int, int] = 0, *, workspace: Workspace | None = None
                   ) -> tuple[np.ndarray, Any]:
    """2-D cross-correlation of a batch of images with a bank of filters.

    Notes
    -----
    With the input zero-padded by :math:`(p_h, p_w)`,

    .. math::
        y_{n,f,h,w} = b_f + \\sum_{c=0}^{C-1} \\sum_{i=0}^{k_h-1} \\sum_{j=0}^{k_w-1}
            w_{f,c,i,j}\\; x_{n,c,\\,s_h h + i - p_h,\\, s_w w + j - p_w}

    computed per image as :math:`Y_n = W_{mat}\\, X_{col,n}` with :math:`W_{mat}` (F, C k_h k_w) and the im2col
    matrix :math:`X_{col,n}` (C k_h k_w, H_{out} W_{out}), a chunk of images at a time (module docstring).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Input images, float32 or float64; the output has the same dtype. The cache refers to ``x`` itself:
        do not modify it in place before backward.
    w : ndarray, shape (F, C, kh, kw)
        Filters (cast to ``x.dtype`` if they differ).
    b : ndarray, shape (F,), or None
        Bias per output channel.
    stride, padding : int or (int, int)
        Step of the window and zero padding on each side, as in ``torch.nn.functional.conv2d``.
    workspace : Workspace, optional
        Reuse scratch buffers across calls.

    Shape
    -----
    Output (N, F, Ho, Wo), :math:`H_{out} = \\lfloor (H + 2 p_h - k_h) / s_h \\rfloor + 1`, likewise
    :math:`W_{out}`.

    Raises
    ------
    ValueError
        If the kernel is larger than the padded input.

    Examples
    --------
    >>> x, w = np.ones((2, 1, 5, 5)), np.ones((4, 1, 3, 3))
    >>> y, cache = conv2d_forward(x, w, np.zeros(4), stride=1, padding=1)
    >>> y.shape, float(y[0, 0, 2, 2]), float(y[0, 0, 0, 0])
    ((2, 4, 5, 5), 9.0, 4.0)
    """
    g = conv_geometry(x.shape, w.shape, stride, padding, x.dtype.itemsize)
    dtype = x.dtype
    w_mat = w.reshape(g.F, g.C * g.kh * g.kw).astype(dtype, copy=False)  # (F, K)
    bias = None if b is None else b.astype(dtype, copy=False)[:, None, None]  # (F, 1, 1)
    out = np.empty((g.N, g.F, g.Ho, g.Wo), dtype=dtype)
    y_buf = _buffer(workspace, "y", (g.chunk, g.F, g.Ho, g.Wq), dtype) if g.wide else None
    for part in _chunks(g):
        cols = im2col(x[part], g, workspace)  # (n, K, Ho*Wq)
        n = len(cols)
        y = y_buf[:n] if g.wide else out[part]  # (n, F, Ho, Wq)
        np.matmul(w_mat, cols, out=y.reshape(n, g.F, g.Ho * g.Wq))  # (F, K) @ (n, K, L) -> (n, F, L)
        if g.wide:
            if bias is None:
                np.copyto(out[part], y[..., :g.Wo])  # the widened grid's extra columns dropped
            else:
                np.add(y[..., :g.Wo], bias, out=out[part])
        elif bias is not None:
            out[part] += bias
    kept = cols if g.chunk == g.N else None  # a batch of one chunk keeps its columns for backward
    return out, (x, kept, w_mat, g, b is not None, workspace)


def conv2d_backward(dout: np.ndarray, cache: Any, need_dx: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`conv2d_forward`: ``(dx, dw, db)``.

    ``db`` is ``None`` when the forward pass had no bias; ``dx`` is ``None`` when ``need_dx`` is false (the
    first layer of a network, whose input gradient nobody uses, skips it).

    Notes
    -----
    .. math::
        \\frac{\\partial L}{\\partial w} = \\sum_n dY_n\\, X_{col,n}^T, \\quad
        \\frac{\\partial L}{\\partial b_f} = \\sum_{n,h,w} dy_{n,f,h,w}, \\quad
        \\frac{\\partial L}{\\partial x_{n,c,h',w'}} = \\sum_{f,i,j,h,w \\,:\\, s_h h + i - p_h = h',\\;
            s_w w + j - p_w = w'} w_{f,c,i,j}\\, dy_{n,f,h,w}

    The last sum is col2im: :math:`dX_{col,n} = W_{mat}^T dY_n` added back, one kernel offset at a time, onto
    the padded input gradient, whose border is then cropped. For stride 1 and :math:`p < k` it equals, with
    :math:`q = k - 1 - p` and the kernel flipped with its channel axes swapped,
    :math:`w'_{c,f,i,j} = w_{f,c,k_h-1-i,k_w-1-j}`,

    .. math::
        \\frac{\\partial L}{\\partial x_{n,c,h,w}} = \\sum_{f,i,j} w'_{c,f,i,j}\\,
            dy_{n,f,\\,h + i - q_h,\\, w + j - q_w}

    i.e. :func:`conv2d_forward` of ``dout`` with ``w'`` and padding ``q`` (substitute :math:`i \\to k_h-1-i`
    in the col2im sum), which is what runs then.

    Shape
    -----
    ``dout`` (N, F, Ho, Wo); ``dx`` (N, C, H, W); ``dw`` (F, C, kh, kw); ``db`` (F,).
    """
    x, kept_cols, w_mat, g, has_bias, workspace = cache
    if dout.shape != (g.N, g.F, g.Ho, g.Wo):
        raise ValueError(
            f"conv2d_backward: `dout` must have the output's shape {(g.N, g.F, g.Ho, g.Wo)}. "
            f"Got {dout.shape}."
        )
    dtype = w_mat.dtype
    dout = dout.astype(dtype, copy=False)
    correlate = g.sh == g.sw == 1 and g.ph < g.kh and g.pw < g.kw  # the rule for the fast input gradient
    dx = None if not need_dx or correlate else np.empty((g.N, g.C, g.H, g.W), dtype=dtype)
    dw = np.zeros((g.F, g.C * g.kh * g.kw), dtype=dtype)  # (F, K)
    dy_buf = _buffer(workspace, "dy", (g.chunk, g.F, g.Ho, g.Wq), dtype) if g.wide else None  # Wo..: zero
    dw_parts = _buffer(workspace, "dw", (g.chunk, g.F, g.C * g.kh * g.kw), dtype)
    for part in _chunks(g):
        cols = kept_cols if kept_cols is not None else im2col(x[part], g, workspace)  # (n, K, Ho*Wq)
        n = len(cols)
        if g.wide:
            dy = dy_buf[:n]
            dy[..., :g.Wo] = dout[part]  # (n, F, Ho, Wo) into the (n, F, Ho, Wq) grid
        else:
            dy = np.ascontiguousarray(dout[part])
        dy_mat = dy.reshape(n, g.F, g.Ho * g.Wq)  # (n, F, L)
        np.matmul(dy_mat, cols.transpose(0, 2, 1), out=dw_parts[:n])  # (n, F, L) @ (n, L, K) -> (n, F, K)
        dw += dw_parts[:n].sum(axis=0)
        if dx is not None:
            _col2im(w_mat, dy_mat, g, workspace, dx[part])
    db = np.einsum("nfhw->f", dout) if has_bias else None
    if need_dx and correlate:
        dx = _input_grad_by_correlation(dout, w_mat, g, workspace)
    return dx, dw.reshape(g.F, g.C, g.kh, g.kw), db


def _col2im(w_mat: np.ndarray, dy_mat: np.ndarray, g: ConvGeometry, workspace: Workspace | None,
            dx: np.ndarray) -> None:
    """Write the input gradient of one chunk into ``dx`` (n, C, H, W): col2im of ``W_mat^T dY``."""
    n = len(dy_mat)
    dcols = _buffer(workspace, "dcols", (g.chunk, g.C, g.kh, g.kw, g.Ho, g.Wq), dy_mat.dtype)[:n]
    np.matmul(w_mat.T, dy_mat, out=dcols.reshape(n, g.C * g.kh * g.kw, g.Ho * g.Wq))  # (K, F) @ (n, F, L)
    dxp = _buffer(workspace, "dxp", (g.chunk, g.C, g.Hb, g.Wb), dy_mat.dtype)[:n]
    dxp.fill(0)
    for i in range(g.kh):
        for j in range(g.kw):
            _window(dxp, g, i, j)[...] += dcols[:, :, i, j]  # (n, C, Ho, Wq)
    dx[...] = dxp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W]  # the padding cropped


def _input_grad_by_correlation(dout: np.ndarray, w_mat: np.ndarray, g: ConvGeometry,
                               workspace: Workspace | None) -> np.ndarray:
    """Input gradient of a stride-1 convolution with ``p < k``: ``conv2d_forward(dout, w', padding=k-1-p)``."""
    w = w_mat.reshape(g.F, g.C, g.kh, g.kw)
    w_flip = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (F, C, kh, kw) -> (C, F, kh, kw)
    q = (g.kh - 1 - g.ph, g.kw - 1 - g.pw)
    inner = workspace.child("dx") if workspace is not None else None
    dx, _ = conv2d_forward(dout, w_flip, None, 1, q, workspace=inner)
    return dx
