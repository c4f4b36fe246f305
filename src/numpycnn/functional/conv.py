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
into the (N, F, Ho, Wo) output, and no transposing copies at all. There the bias rides in the product: a row of
ones under ``cols`` and the bias as an extra column of the weight matrix.

In backward, ``dw = (X_col dY^T)^T`` with ``dY`` laid out (N Ho Wq, F) (a faster product shape than
``dY X_col^T``), and for stride 1 the input gradient is itself a forward convolution of ``dy`` with the flipped
kernel, run a few images at a time so its columns stay in cache (:func:`_input_grad_by_correlation`).

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
    batched: bool  # small K: batch-major layout, one small product per image


#: Below this ``K = C kh kw`` the batch-major layout is used (measured: 2-4x faster for K = 9, slower for K = 288).
SMALL_K = 64


#: Column bytes per chunk when the input gradient runs as a chunked convolution: small enough to stay in the
#: L2 cache between the im2col copies and the product (measured: 37 -> 27 ms for 128x32x28x28, 3x3).
CHUNK_BYTES = 8 << 20


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
    out = np.empty((g.N, g.F, g.Ho, g.Wo), dtype=x.dtype)
    cols, w_mat = _forward_channel_major(x, w, b, g, workspace, out)
    return out, (cols, w_mat, g, b is not None, workspace)


def _forward_channel_major(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: ConvGeometry,
                           workspace: Workspace | None, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channel-major im2col and one product (steps 1-3 of the module docstring), written into ``out``.

    Returns the column matrix (C, kh, kw, N, Ho, Wq) and ``w_mat`` (F, C kh kw), which backward needs.
    """
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
    y_nchw = y[:, :, :, :g.Wo].transpose(1, 0, 2, 3)  # (F, N, Ho, Wo) -> (N, F, Ho, Wo), a view
    if b is None:
        np.copyto(out, y_nchw)
    else:
        np.add(y_nchw, b.astype(dtype, copy=False)[:, None, None], out=out)
    return cols, w_mat


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
    dy = _buffer(workspace, "dy", (g.N, g.Ho, g.Wq, g.F), dtype)  # columns Wo: stay zero
    dy[:, :, :g.Wo] = dout.transpose(0, 2, 3, 1)  # (N, F, Ho, Wo) -> (N, Ho, Wo, F)
    dy_mat = dy.reshape(M, g.F)  # (N*Ho*Wq, F)
    dw_t = cols.reshape(K, M) @ dy_mat  # (K, M) @ (M, F) -> (K, F): faster than dY X_col^T for M >> K
    dw = np.ascontiguousarray(dw_t.T).reshape(g.F, g.C, g.kh, g.kw)  # (F, K) -> (F, C, kh, kw)
    db = np.einsum("nfhw->f", dout) if has_bias else None
    if not need_dx:
        return None, dw, db
    if g.wide and g.ph < g.kh and g.pw < g.kw:
        return _input_grad_by_correlation(dout, w_mat, g, workspace), dw, db
    dcols = _buffer(workspace, "dcols", (g.C, g.kh, g.kw, g.N, g.Ho, g.Wq), dtype)
    np.matmul(w_mat.T, dy_mat.T, out=dcols.reshape(K, M))  # (K, F) @ (F, M) -> (K, M)
    dxbuf = _buffer(workspace, "dx", (g.C, g.N, g.Hb, g.Wb), dtype)
    dxbuf.fill(0)
    for i in range(g.kh):
        for j in range(g.kw):
            _window(dxbuf, g, i, j)[...] += dcols[:, i, j]  # (C, N, Ho, Wq)
    dx = np.empty((g.N, g.C, g.H, g.W), dtype=dtype)
    inner = dxbuf[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W]  # (C, N, H, W), the padding cropped
    dx[...] = inner.transpose(1, 0, 2, 3)  # (C, N, H, W) -> (N, C, H, W)
    return dx, dw, db


def _input_grad_by_correlation(dout: np.ndarray, w_mat: np.ndarray, g: ConvGeometry,
                               workspace: Workspace | None) -> np.ndarray:
    """Input gradient of a stride-1 convolution as a forward convolution of ``dout``, no col2im.

    With :math:`q = k - 1 - p \\ge 0` and the kernel flipped and its channel axes swapped,
    :math:`w'_{c,f,i,j} = w_{f,c,k_h-1-i,k_w-1-j}`,

    .. math::
        \\frac{\\partial L}{\\partial x_{n,c,h,w}} = \\sum_{f,i,j} w'_{c,f,i,j}\\,
            dy_{n,f,\\,h + i - q_h,\\, w + j - q_w}

    i.e. :func:`conv2d_forward` of ``dout`` with ``w'`` and padding ``q``: its im2col is nine plain copies,
    cheaper than col2im's nine read-add-write passes over the same column matrix. It runs a few images at a
    time (:data:`CHUNK_BYTES` of columns), so the copies and the product share the cache: nothing of it is kept.
    """
    w = w_mat.reshape(g.F, g.C, g.kh, g.kw)
    w_flip = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (F, C, kh, kw) -> (C, F, kh, kw)
    q = (g.kh - 1 - g.ph, g.kw - 1 - g.pw)
    inner = workspace.child("dx") if workspace is not None else None
    gd = conv_geometry(dout.shape, w_flip.shape, 1, q)
    if gd.batched:
        dx, _ = conv2d_forward(dout, w_flip, None, 1, q, workspace=inner)
        return dx
    dx = np.empty((g.N, g.C, g.H, g.W), dtype=dout.dtype)
    per_image = gd.C * gd.kh * gd.kw * gd.Ho * gd.Wq * dout.itemsize  # bytes of columns per image
    chunk = max(1, CHUNK_BYTES // per_image)
    for n0 in range(0, g.N, chunk):
        part = dout[n0:n0 + chunk]  # (n, F, Ho, Wo)
        # a partial last chunk gets its own buffers, so the full-size ones are not reallocated every call
        ws = None if inner is None else inner.child("tail") if len(part) < chunk else inner
        _forward_channel_major(part, w_flip, None, gd._replace(N=len(part)), ws, dx[n0:n0 + chunk])
    return dx


def _forward_batched(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: ConvGeometry,
                     workspace: Workspace | None) -> tuple[np.ndarray, Any]:
    """:func:`conv2d_forward` for small K: ``y[n] = W_mat @ cols[n]``, written straight into (N, F, Ho, Wo).

    With a bias, ``cols`` gets a row of ones and ``W_mat`` the bias as an extra column,
    :math:`y_n = [W_{mat}\\; b]\\,[X_{col,n};\\, \\mathbf{1}^T]`, so the product adds it (no extra pass over
    ``y``) and backward's weight-gradient product yields :math:`\\partial L/\\partial b` as its last column.
    """
    dtype = x.dtype
    K, L = g.C * g.kh * g.kw, g.Ho * g.Wo
    xp = x
    if g.ph or g.pw:
        xp = _buffer(workspace, "x", (g.N, g.C, g.Hb, g.Wb), dtype)  # zero border, written interior
        xp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W] = x
    cols = _buffer(workspace, "cols", (g.N, K + (b is not None), L), dtype)  # (N, K [+1], Ho*Wo)
    windows = cols[:, :K].reshape(g.N, g.C, g.kh, g.kw, g.Ho, g.Wo)  # a view
    for i in range(g.kh):
        for j in range(g.kw):
            windows[:, :, i, j] = xp[:, :, i:i + g.sh * (g.Ho - 1) + 1:g.sh, j:j + g.sw * (g.Wo - 1) + 1:g.sw]
    w_mat = w.reshape(g.F, K).astype(dtype, copy=False)  # (F, C*kh*kw)
    w_aug = w_mat
    if b is not None:
        cols[:, K] = 1
        w_aug = np.concatenate([w_mat, b.astype(dtype, copy=False)[:, None]], axis=1)  # (F, K+1)
    out = np.empty((g.N, g.F, g.Ho, g.Wo), dtype=dtype)
    np.matmul(w_aug, cols, out=out.reshape(g.N, g.F, L))  # (F, K [+1]) @ (N, K [+1], L) -> (N, F, L)
    return out, (cols, w_mat, g, b is not None, workspace)


def _backward_batched(dout: np.ndarray, cols: np.ndarray, w_mat: np.ndarray, g: ConvGeometry, has_bias: bool,
                      workspace: Workspace | None, need_dx: bool
                      ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """:func:`conv2d_backward` for the batch-major layout of :func:`_forward_batched`."""
    K, L = g.C * g.kh * g.kw, g.Ho * g.Wo
    dy = dout.reshape(g.N, g.F, L)  # (N, F, Ho*Wo), a view
    # (N, F, L) @ (N, L, K [+1]) -> (N, F, K [+1]) -> (F, K [+1]); with a bias the ones row gives db = sum dy
    dw_aug = np.matmul(dy, cols.transpose(0, 2, 1)).sum(axis=0)
    dw = np.ascontiguousarray(dw_aug[:, :K]).reshape(g.F, g.C, g.kh, g.kw)  # (F, K) -> (F, C, kh, kw)
    db = dw_aug[:, K].copy() if has_bias else None
    if not need_dx:
        return None, dw, db
    dcols = _buffer(workspace, "dcols", (g.N, g.C, g.kh, g.kw, g.Ho, g.Wo), cols.dtype)
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
