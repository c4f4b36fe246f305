"""The tuned kernels of the ordinary convolution (``dilation=1, groups=1``): the steps of
:mod:`numpycnn.functional.conv_im2col` in faster layouts (speed machinery).

The equations are those of :func:`numpycnn.functional.conv.conv2d_forward` and
:func:`~numpycnn.functional.conv.conv2d_backward` (and ``docs/math.md``); the readable form of these loops is
:mod:`numpycnn.functional.conv_im2col`, and the rules that choose a layout and a chunk are in
:mod:`numpycnn.functional.conv`, whose :func:`~numpycnn.functional.conv.conv_geometry` builds the
:class:`ConvGeometry` every function here takes. This module imports :mod:`~numpycnn.functional.conv_im2col` only.

**Layout** (``g.batched``). Small products (``K = C kh kw`` below :data:`numpycnn.functional.conv.SMALL_K`) run
*batch-major*: ``cols`` (n, K, L) and one small product per image, ``(F, K) @ (n, K, L) -> (n, F, L)``, already
in the (N, F, H, W) layout. Large ones run *channel-major*: ``cols`` (K, n L) and one product per chunk,
``(F, K) @ (K, n L) -> (F, n L)``, which a BLAS runs far better than ``n`` small ones, at the price of one
transposing copy of the output. Both layouts run the same code on differently ordered buffers
(``_images_first`` views either one as (n, C, ...)).

**Widened grid, stride 1** (``g.wide``). The output grid is widened to the padded row width, ``Wq = Wb``: the
window of offset (i, j) is then one contiguous run ``xpad_flat[m, c, i Wb + j : i Wb + j + Ho Wb]``, so every
im2col copy runs over a long contiguous row instead of ``Ho`` rows of ``Wo`` elements. The ``Wq - Wo`` extra
columns per row are computed and dropped; in backward their upstream gradient is set to zero, so they add
nothing to ``dw``. One spare zero row under the buffer keeps the last run inside it.

Buffers live in a :class:`~numpycnn.functional.conv_im2col.Workspace` that the layer keeps across batches, so the hot
path allocates (and page-faults) only the arrays it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from numpycnn.core.backend import get_array_module
from numpycnn.functional.conv_im2col import Workspace, _buffer


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
    batched: bool  # batch-major buffers (n, C, ...) and one product per image; channel-major (C, n, ...) if not
    chunk: int  # images per chunk


class ConvCache(NamedTuple):
    """What :func:`backward_tuned` needs from :func:`forward_tuned` (``Conv2D.cache`` holds one; ``parts``: set by
    :func:`numpycnn.functional.conv.conv2d_forward` when it split the batch)."""

    x: np.ndarray  # the input (N, C, H, W) itself, not a copy: backward rebuilds the columns from it
    cols: np.ndarray | None  # the columns of a batch that fit in one chunk (a view of the workspace), else None
    w_mat: np.ndarray  # the weight as the (F, C kh kw) matrix of the products
    geometry: ConvGeometry  # sizes, layout and chunk
    has_bias: bool  # whether backward returns db
    workspace: Workspace | None  # the buffers the forward pass used, reused by backward
    parts: tuple[tuple[slice, ConvCache], ...] | None = None  # split by batch: each slice's own cache


def _chunks(g: ConvGeometry) -> Iterator[slice]:
    for lo in range(0, g.N, g.chunk):
        yield slice(lo, min(lo + g.chunk, g.N))


def _images_first(a: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """A buffer whose first two axes are (n, C) batch-major or (C, n) channel-major, viewed as (n, C, ...)."""
    return a if g.batched else a.swapaxes(0, 1)


def _buffer_shape(g: ConvGeometry, n: int, c: int, *rest: int) -> tuple[int, ...]:
    return (n, c, *rest) if g.batched else (c, n, *rest)


def _window(buf: np.ndarray, g: ConvGeometry, i: int, j: int) -> np.ndarray:
    """View of a padded buffer (A, B, Hb, Wb) under kernel offset (i, j), shape (A, B, Ho, Wq)."""
    a, b = buf.shape[:2]
    if g.wide:  # stride 1, widened grid: one contiguous run per (a, b)
        start = i * g.Wb + j
        flat = buf.reshape(a, b, g.Hb * g.Wb)  # (A, B, Hb*Wb), a view
        return flat[:, :, start:start + g.Ho * g.Wb].reshape(a, b, g.Ho, g.Wb)  # (A, B, Ho, Wq)
    return buf[:, :, i:i + g.sh * (g.Ho - 1) + 1:g.sh, j:j + g.sw * (g.Wo - 1) + 1:g.sw]  # (A, B, Ho, Wo)


def _slice(buf: np.ndarray, g: ConvGeometry, n: int) -> np.ndarray:
    """The first ``n`` images of a chunk-sized buffer in either layout."""
    return buf[:n] if g.batched else buf[:, :n]


def _padded(x: np.ndarray, g: ConvGeometry, ws: Workspace | None) -> np.ndarray:
    """``x`` (n, C, H, W) inside the zero border of the padded buffer, in the layout's order (``x`` itself when
    batch-major needs no border)."""
    if g.batched and (g.Hb, g.Wb) == (g.H, g.W):
        return x
    xpad = _slice(_buffer(ws, "x", _buffer_shape(g, g.chunk, g.C, g.Hb, g.Wb), x.dtype, get_array_module(x)),
                  g, len(x))
    _images_first(xpad, g)[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W] = x  # zero border, written interior
    return xpad


def im2col(x: np.ndarray, g: ConvGeometry, ws: Workspace | None = None) -> np.ndarray:
    """The column matrix of a chunk: entry ``((c, i, j), (m, h, w))`` is ``xpad[m, c, s_h h + i, s_w w + j]``.

    Shape
    -----
    ``x`` (n, C, H, W) with ``n <= g.chunk``. Returns a view of the workspace's buffer: batch-major
    (n, C kh kw, Ho Wq), channel-major (C kh kw, n Ho Wq).
    """
    xp = get_array_module(x)
    xpad = _padded(x, g, ws)
    n, K, L = len(x), g.C * g.kh * g.kw, g.Ho * g.Wq
    if g.batched:
        cols = _buffer(ws, "cols", (g.chunk, K * L), x.dtype, xp)[:n].reshape(n, g.C, g.kh, g.kw, g.Ho, g.Wq)
        for i in range(g.kh):
            for j in range(g.kw):
                cols[:, :, i, j] = _window(xpad, g, i, j)  # (n, C, Ho, Wq)
        return cols.reshape(n, K, L)  # (n, K, Ho*Wq)
    cols = _buffer(ws, "cols", (K, g.chunk * L), x.dtype, xp)[:, :n * L].reshape(g.C, g.kh, g.kw, n, g.Ho, g.Wq)
    for i in range(g.kh):
        for j in range(g.kw):
            cols[:, i, j] = _window(xpad, g, i, j)  # (C, n, Ho, Wq)
    return cols.reshape(K, n * L)  # (K, n*Ho*Wq)


def _product_buffer(ws: Workspace | None, name: str, g: ConvGeometry, rows: int, n: int, dtype: Any,
                    xp: Any) -> np.ndarray:
    """A chunk's product with ``rows`` rows per image as a matrix: (n, rows, L) batch-major, (rows, n L)
    channel-major; a view of a reused buffer (its never-written entries stay zero)."""
    L = g.Ho * g.Wq
    if g.batched:
        return _buffer(ws, name, (g.chunk, rows * L), dtype, xp)[:n].reshape(n, rows, L)
    return _buffer(ws, name, (rows, g.chunk * L), dtype, xp)[:, :n * L]


def _grid(mat: np.ndarray, g: ConvGeometry, n: int) -> np.ndarray:
    """A product matrix from :func:`_product_buffer` viewed as (n, rows, Ho, Wq)."""
    return _images_first(mat.reshape(_buffer_shape(g, n, -1, g.Ho, g.Wq)), g)


def forward_tuned(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: ConvGeometry, workspace: Workspace | None,
                  out: np.ndarray) -> ConvCache:
    """The convolution of ``x`` (geometry ``g`` from :func:`numpycnn.functional.conv.conv_geometry`,
    ``g.N = len(x)``) written into ``out`` (N, F, Ho, Wo); returns the cache for :func:`backward_tuned`.

    Notes
    -----
    Per chunk: :func:`im2col` in the layout of ``g``, then :math:`Y = W_{mat} X_{col}` and the bias; the widened
    grid's extra columns are dropped when the product is copied into ``out``. The equation is
    :func:`numpycnn.functional.conv.conv2d_forward`'s (and docs/math.md's).
    """
    xp = get_array_module(x)
    dtype = x.dtype
    w_mat = w.reshape(g.F, g.C * g.kh * g.kw).astype(dtype, copy=False)  # (F, K)
    bias = None if b is None else b.astype(dtype, copy=False)[:, None]  # (F, 1)
    in_place = g.batched and not g.wide  # the product can be written straight into the output
    for part in _chunks(g):
        cols = im2col(x[part], g, workspace)  # (n, K, L) or (K, n L)
        n = part.stop - part.start
        if in_place:
            y = out[part].reshape(n, g.F, g.Ho * g.Wo)
        else:
            y = _product_buffer(workspace, "y", g, g.F, n, dtype, xp)
        xp.matmul(w_mat, cols, out=y)  # (F, K) @ (n, K, L) -> (n, F, L), or (F, K) @ (K, n L) -> (F, n L)
        if bias is not None:
            y += bias  # (F, 1): along the F axis of (n, F, L) and of (F, n L)
        if not in_place:
            xp.copyto(out[part], _grid(y, g, n)[..., :g.Wo])  # extra grid columns dropped, (n, F) order
    kept = cols if g.chunk == g.N else None  # a batch of one chunk keeps its columns for backward
    return ConvCache(x, kept, w_mat, g, b is not None, workspace)


def backward_tuned(dout: np.ndarray, cache: ConvCache, dx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(dw, db)`` of :func:`forward_tuned` for ``dout`` (N, F, Ho, Wo) of the weight's dtype, and, when ``dx``
    (N, C, H, W) is given, the input gradient written into it by col2im of :math:`W_{mat}^T dY`.

    Notes
    -----
    :math:`dW^T = \\sum_{chunks} X_{col} dY^T`; the equations are those of
    :func:`numpycnn.functional.conv.conv2d_backward` (and docs/math.md's), which also chooses the correlation
    for the input gradient.
    """
    xp = get_array_module(dout)
    x, kept_cols, w_mat, g, has_bias, workspace, _ = cache
    dtype = w_mat.dtype
    dw_t = xp.zeros((g.C * g.kh * g.kw, g.F), dtype=dtype)  # (K, F)
    for part in _chunks(g):
        cols = kept_cols if kept_cols is not None else im2col(x[part], g, workspace)  # (n, K, L) or (K, n L)
        n = part.stop - part.start
        if g.batched and not g.wide:
            dy_mat = xp.ascontiguousarray(dout[part]).reshape(n, g.F, g.Ho * g.Wo)  # (n, F, L)
        else:
            dy_mat = _product_buffer(workspace, "dy", g, g.F, n, dtype, xp)  # grid columns Wo..Wq stay zero
            _grid(dy_mat, g, n)[..., :g.Wo] = dout[part]
        # dw^T: (n, K, L) @ (n, L, F) -> (n, K, F), or (K, n L) @ (n L, F) -> (K, F); BLAS runs this orientation
        # of the product about 1.4x faster here than dY X_col^T
        dw_part = xp.matmul(cols, dy_mat.swapaxes(-1, -2))
        dw_t += dw_part.sum(axis=0) if g.batched else dw_part
        if dx is not None:
            _col2im(w_mat, dy_mat, g, workspace, dx[part])
    db = xp.einsum("nfhw->f", dout) if has_bias else None
    return xp.ascontiguousarray(dw_t.T).reshape(g.F, g.C, g.kh, g.kw), db  # (K, F) -> (F, C, kh, kw)


def _col2im(w_mat: np.ndarray, dy_mat: np.ndarray, g: ConvGeometry, workspace: Workspace | None,
            dx: np.ndarray) -> None:
    """Write the input gradient of one chunk into ``dx`` (n, C, H, W): col2im of ``W_mat^T dY``."""
    xp = get_array_module(w_mat)
    n, K = len(dx), g.C * g.kh * g.kw
    dcols = _product_buffer(workspace, "dcols", g, K, n, dy_mat.dtype, xp)
    xp.matmul(w_mat.T, dy_mat, out=dcols)  # (K, F) @ (n, F, L) -> (n, K, L), or (K, F) @ (F, n L) -> (K, n L)
    taps = _grid(dcols, g, n).reshape(n, g.C, g.kh, g.kw, g.Ho, g.Wq)  # (n, C, kh, kw, Ho, Wq), a view
    dxp = _slice(_buffer(workspace, "dxp", _buffer_shape(g, g.chunk, g.C, g.Hb, g.Wb), dy_mat.dtype, xp), g, n)
    dxp.fill(0)
    for i in range(g.kh):
        for j in range(g.kw):
            _window(dxp, g, i, j)[...] += _images_first(taps[:, :, i, j], g)  # in the buffer's (A, B) order
    dx[...] = _images_first(dxp, g)[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W]  # the padding cropped
