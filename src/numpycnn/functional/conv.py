"""2-D convolution (cross-correlation, as in PyTorch) by im2col and one matrix product.

Layout, for an input ``x`` of shape (N, C, H, W) and a weight ``w`` of shape (F, C, kh, kw):

1. ``x`` is copied once into a zero-padded, channel-major buffer ``xbuf`` (C, N, Hb, Wb).
2. The column matrix ``cols`` (C, kh, kw, N, Ho, Wq) is filled by ``kh * kw`` strided slice copies, one per
   kernel offset: ``cols[:, i, j] = xbuf[:, :, i::sh, j::sw]`` (cropped to the output grid).
3. ``y = w.reshape(F, K) @ cols.reshape(K, M)`` with ``K = C kh kw``, ``M = N Ho Wq``: one BLAS product whose
   result (F, N, Ho, Wq) needs a single transposing copy (fused with the bias add) to become (N, F, Ho, Wo).

For stride 1 the output grid is widened to the padded row width, ``Wq = Wb``: the window of offset ``(i, j)``
is then one contiguous run ``xbuf_flat[c, n, i Wb + j : i Wb + j + Ho Wb]``, so every copy and every col2im
add runs over long contiguous rows instead of rows of ``Wo`` elements. The ``Wq - Wo`` extra columns per row
are computed and dropped; in backward their upstream gradient is zero, so they add nothing to ``dw`` or
``dx``.

When ``K = C kh kw`` is small (below :data:`SMALL_K`, e.g. the single-channel first layer), one (F, K) x (K, M)
product is a poor fit for BLAS (the weight gradient becomes a long, thin reduction), so a batch-major layout is
used instead: ``cols`` (N, C, kh, kw, Ho, Wo), the product batched over N with ``np.matmul`` writing straight
into the (N, F, Ho, Wo) output, and no transposing copies at all.

Buffers can live in a :class:`Workspace` that the layer keeps across batches, so the hot path allocates (and
page-faults) only the arrays it returns.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Workspace:
    """Scratch arrays reused across calls, keyed by name; a new shape or dtype replaces the array.

    Arrays are zeroed when first created and never cleared afterwards, so regions that a caller never writes
    (the padding border, the extra columns of the widened grid) stay zero from call to call.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = np.zeros(shape, dtype=dtype)
            self._arrays[name] = array
        return array

    def clear(self) -> None:
        self._arrays.clear()


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
    batched: bool  # small K: batch-major layout, one small product per image


#: Below this ``K = C kh kw`` the batch-major layout is used (measured: 2-4x faster for K = 9, slower for K = 288).
SMALL_K = 64


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis, :math:`\\lfloor (size + 2p - k) / s \\rfloor + 1` (may be <= 0)."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int | tuple[int, int],
                  padding: int | tuple[int, int]) -> ConvGeometry:
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
    batched = C * kh * kw < SMALL_K
    wide = sh == 1 and sw == 1 and not batched
    Hb = H + 2 * ph + (1 if wide and kw > 1 else 0)
    Wb = W + 2 * pw
    return ConvGeometry(N, C, H, W, F, kh, kw, sh, sw, ph, pw, Ho, Wo, Hb, Wb, Wb if wide else Wo, wide, batched)


def _window(buf: np.ndarray, g: ConvGeometry, i: int, j: int) -> np.ndarray:
    """View of ``buf`` (C, N, Hb, Wb) under kernel offset (i, j), shape (C, N, Ho, Wq)."""
    if g.wide:  # stride 1, widened grid: one contiguous run per (c, n)
        start = i * g.Wb + j
        flat = buf.reshape(g.C, g.N, g.Hb * g.Wb)  # (C, N, Hb*Wb), a view
        return flat[:, :, start:start + g.Ho * g.Wb].reshape(g.C, g.N, g.Ho, g.Wb)  # (C, N, Ho, Wq)
    return buf[:, :, i:i + g.sh * (g.Ho - 1) + 1:g.sh, j:j + g.sw * (g.Wo - 1) + 1:g.sw]  # (C, N, Ho, Wo)


def _buffer(ws: Workspace | None, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return ws.get(name, shape, dtype) if ws is not None else np.zeros(shape, dtype=dtype)


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

    computed as :math:`Y = W_{mat}\\, X_{col}` with :math:`W_{mat}` (F, C k_h k_w) and the im2col matrix
    :math:`X_{col}` (C k_h k_w, N H_{out} W_{out}). The gradients :func:`conv2d_backward` returns are

    .. math::
        \\frac{\\partial L}{\\partial w} = dY\\, X_{col}^T, \\quad
        \\frac{\\partial L}{\\partial b_f} = \\sum_{n,h,w} dy_{n,f,h,w}, \\quad
        \\frac{\\partial L}{\\partial x} = \\mathrm{col2im}(W_{mat}^T\\, dY)

    where col2im adds every column entry back onto the input pixel it was copied from.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Input images, float32 or float64; the output has the same dtype.
    w : ndarray, shape (F, C, kh, kw)
        Filters (cast to ``x.dtype`` if they differ).
    b : ndarray, shape (F,), or None
        Bias per output channel.
    stride, padding : int or (int, int)
        Step of the window and zero padding on each side, as in ``torch.nn.functional.conv2d``.
    workspace : Workspace, optional
        Reuse scratch buffers across calls. The returned cache then refers to the workspace's column matrix,
        so it is only valid until the next forward call with the same workspace.

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
    g = conv_geometry(x.shape, w.shape, stride, padding)
    if g.batched:
        return _forward_batched(x, w, b, g, workspace)
    dtype = x.dtype
    K, M = g.C * g.kh * g.kw, g.N * g.Ho * g.Wq
    xbuf = _buffer(workspace, "x", (g.C, g.N, g.Hb, g.Wb), dtype)  # zero border, written interior
    xbuf[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W] = x.transpose(1, 0, 2, 3)  # (N, C, H, W) -> (C, N, H, W)
    cols = _buffer(workspace, "cols", (g.C, g.kh, g.kw, g.N, g.Ho, g.Wq), dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            cols[:, i, j] = _window(xbuf, g, i, j)  # (C, N, Ho, Wq)
    w_mat = w.reshape(g.F, K).astype(dtype, copy=False)  # (F, C*kh*kw)
    y = _buffer(workspace, "y", (g.F, g.N, g.Ho, g.Wq), dtype)
    np.matmul(w_mat, cols.reshape(K, M), out=y.reshape(g.F, M))  # (F, K) @ (K, N*Ho*Wq) -> (F, N*Ho*Wq)
    out = np.empty((g.N, g.F, g.Ho, g.Wo), dtype=dtype)
    y_nchw = y[:, :, :, :g.Wo].transpose(1, 0, 2, 3)  # (F, N, Ho, Wo) -> (N, F, Ho, Wo), a view
    if b is None:
        np.copyto(out, y_nchw)
    else:
        np.add(y_nchw, b.astype(dtype, copy=False)[:, None, None], out=out)
    return out, (cols, w_mat, g, b is not None, workspace)


def conv2d_backward(dout: np.ndarray, cache: Any, need_dx: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`conv2d_forward`: ``(dx, dw, db)``.

    ``db`` is ``None`` when the forward pass had no bias; ``dx`` is ``None`` when ``need_dx`` is false (the
    first layer of a network, whose input gradient nobody uses, skips a matrix product and the col2im pass).

    Notes
    -----
    .. math::
        \\frac{\\partial L}{\\partial w} = dY\\, X_{col}^T, \\quad
        \\frac{\\partial L}{\\partial b_f} = \\sum_{n,h,w} dy_{n,f,h,w}, \\quad
        \\frac{\\partial L}{\\partial x_{n,c,h',w'}} = \\sum_{f,i,j,h,w \\,:\\, s_h h + i - p_h = h',\\;
            s_w w + j - p_w = w'} w_{f,c,i,j}\\, dy_{n,f,h,w}

    The last sum is col2im: :math:`dX_{col} = W_{mat}^T dY` is added back, one kernel offset at a time, onto
    the padded input gradient, whose border is then cropped.

    Shape
    -----
    ``dout`` (N, F, Ho, Wo); ``dx`` (N, C, H, W); ``dw`` (F, C, kh, kw); ``db`` (F,).
    """
    cols, w_mat, g, has_bias, workspace = cache
    if dout.shape != (g.N, g.F, g.Ho, g.Wo):
        raise ValueError(
            f"conv2d_backward: `dout` must have the output's shape {(g.N, g.F, g.Ho, g.Wo)}. "
            f"Got {dout.shape}."
        )
    if g.batched:
        return _backward_batched(np.ascontiguousarray(dout), cols, w_mat, g, has_bias, workspace, need_dx)
    dtype = cols.dtype
    K, M = g.C * g.kh * g.kw, g.N * g.Ho * g.Wq
    dy = _buffer(workspace, "dy", (g.F, g.N, g.Ho, g.Wq), dtype)  # columns Wo: stay zero
    dy[:, :, :, :g.Wo] = dout.transpose(1, 0, 2, 3)  # (N, F, Ho, Wo) -> (F, N, Ho, Wo)
    dy_mat = dy.reshape(g.F, M)  # (F, N*Ho*Wq)
    dw = (dy_mat @ cols.reshape(K, M).T).reshape(g.F, g.C, g.kh, g.kw)  # (F, M) @ (M, K) -> (F, K)
    db = dy_mat.sum(axis=1) if has_bias else None
    if not need_dx:
        return None, dw, db
    dcols = _buffer(workspace, "dcols", (g.C, g.kh, g.kw, g.N, g.Ho, g.Wq), dtype)
    np.matmul(w_mat.T, dy_mat, out=dcols.reshape(K, M))  # (K, F) @ (F, M) -> (K, M)
    dxbuf = _buffer(workspace, "dx", (g.C, g.N, g.Hb, g.Wb), dtype)
    dxbuf.fill(0)
    for i in range(g.kh):
        for j in range(g.kw):
            _window(dxbuf, g, i, j)[...] += dcols[:, i, j]  # (C, N, Ho, Wq)
    dx = np.empty((g.N, g.C, g.H, g.W), dtype=dtype)
    inner = dxbuf[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W]  # (C, N, H, W), the padding cropped
    dx[...] = inner.transpose(1, 0, 2, 3)  # (C, N, H, W) -> (N, C, H, W)
    return dx, dw, db


def _forward_batched(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: ConvGeometry,
                     workspace: Workspace | None) -> tuple[np.ndarray, Any]:
    """:func:`conv2d_forward` for small K: ``y[n] = W_mat @ cols[n]``, written straight into (N, F, Ho, Wo)."""
    dtype = x.dtype
    K, L = g.C * g.kh * g.kw, g.Ho * g.Wo
    xp = x
    if g.ph or g.pw:
        xp = _buffer(workspace, "x", (g.N, g.C, g.Hb, g.Wb), dtype)  # zero border, written interior
        xp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W] = x
    cols = _buffer(workspace, "cols", (g.N, g.C, g.kh, g.kw, g.Ho, g.Wo), dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            cols[:, :, i, j] = xp[:, :, i:i + g.sh * (g.Ho - 1) + 1:g.sh, j:j + g.sw * (g.Wo - 1) + 1:g.sw]
    w_mat = w.reshape(g.F, K).astype(dtype, copy=False)  # (F, C*kh*kw)
    out = np.empty((g.N, g.F, g.Ho, g.Wo), dtype=dtype)
    np.matmul(w_mat, cols.reshape(g.N, K, L), out=out.reshape(g.N, g.F, L))  # (F, K) @ (N, K, L) -> (N, F, L)
    if b is not None:
        out += b.astype(dtype, copy=False)[:, None, None]
    return out, (cols, w_mat, g, b is not None, workspace)


def _backward_batched(dout: np.ndarray, cols: np.ndarray, w_mat: np.ndarray, g: ConvGeometry, has_bias: bool,
                      workspace: Workspace | None, need_dx: bool
                      ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """:func:`conv2d_backward` for the batch-major layout of :func:`_forward_batched`."""
    K, L = g.C * g.kh * g.kw, g.Ho * g.Wo
    dy = dout.reshape(g.N, g.F, L)  # (N, F, Ho*Wo), a view
    cols3 = cols.reshape(g.N, K, L)  # (N, K, Ho*Wo)
    dw = np.matmul(dy, cols3.transpose(0, 2, 1)).sum(axis=0)  # (N, F, L) @ (N, L, K) -> (N, F, K) -> (F, K)
    dw = dw.reshape(g.F, g.C, g.kh, g.kw)
    db = dy.sum(axis=2).sum(axis=0) if has_bias else None  # contiguous axis first
    if not need_dx:
        return None, dw, db
    dcols = _buffer(workspace, "dcols", cols.shape, cols.dtype)  # (N, C, kh, kw, Ho, Wo)
    np.matmul(w_mat.T, dy, out=dcols.reshape(g.N, K, L))  # (K, F) @ (N, F, L) -> (N, K, L)
    padded = g.ph or g.pw
    dxp = _buffer(workspace, "dx", (g.N, g.C, g.Hb, g.Wb), cols.dtype) if padded else \
        np.zeros((g.N, g.C, g.H, g.W), cols.dtype)  # returned itself when there is no padding
    dxp.fill(0)
    for i in range(g.kh):
        for j in range(g.kw):
            dxp[:, :, i:i + g.sh * (g.Ho - 1) + 1:g.sh, j:j + g.sw * (g.Wo - 1) + 1:g.sw] += dcols[:, :, i, j]
    if not padded:
        return dxp, dw, db
    return np.ascontiguousarray(dxp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W]), dw, db
