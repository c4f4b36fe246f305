"""The convolution in three plain steps, im2col, one matrix product and col2im: the middle step between the loops
of :mod:`numpycnn.functional.reference` and the tuned kernels of :mod:`numpycnn.functional.conv`.

Read this module after the loops: it computes the same sums (``docs/math.md``, "im2col: the same sums as matrix
products") for any stride and padding (no dilation or groups), with no chunks, workspaces or layouts. Every
window becomes a column, so the whole batch's columns are in memory at once: fine to learn from, too large for
training (``conv.py`` cuts the batch into chunks instead). Tests hold it equal to the loops and to
:func:`numpycnn.functional.conv.conv2d_forward` and ``conv2d_backward``.

Shapes: ``x`` (N, C, H, W), ``w`` (F, C, kh, kw), ``b`` (F,) or None, ``y`` (N, F, Ho, Wo), with
:math:`H_o = \\lfloor (H + 2p_h - k_h) / s_h \\rfloor + 1`; the columns are (N, C kh kw, Ho Wo).
"""

from __future__ import annotations

import numpy as np

__all__ = ["col2im", "conv2d_backward_plain", "conv2d_forward_plain", "im2col"]


def im2col(xp: np.ndarray, kh: int, kw: int, stride: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """Columns (N, C kh kw, Ho Wo) of the padded input ``xp``: row (c, i, j) holds what tap (i, j) of channel c
    sees at every output position, :math:`X_{col}[(c,i,j), (h,w)] = x^{pad}_{c,\\,s_h h + i,\\, s_w w + j}`."""
    (N, C, _, _), (sh, sw), (Ho, Wo) = xp.shape, stride, out
    cols = np.empty((N, C, kh, kw, Ho, Wo), xp.dtype)
    for i in range(kh):
        for j in range(kw):  # tap (i, j): every s-th pixel from (i, j), one strided slice
            cols[:, :, i, j] = xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
    return cols.reshape(N, C * kh * kw, Ho * Wo)


def col2im(dcols: np.ndarray, padded_shape: tuple[int, ...], kh: int, kw: int, stride: tuple[int, int],
           out: tuple[int, int]) -> np.ndarray:
    """The adjoint of :func:`im2col`: each column entry is added back onto the pixel it was copied from
    (windows overlap, so pixels under several windows sum several terms). Returns the padded input's gradient."""
    N, C = padded_shape[:2]
    (sh, sw), (Ho, Wo) = stride, out
    dcols = dcols.reshape(N, C, kh, kw, Ho, Wo)
    dxp = np.zeros(padded_shape, dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw] += dcols[:, :, i, j]
    return dxp


def _setup(x: np.ndarray, w: np.ndarray, stride: int | tuple[int, int], padding: int | tuple[int, int]) -> tuple:
    """The padded input, the kernel size, stride, padding and output size (Ho, Wo)."""
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # zeros around each image
    F, _, kh, kw = w.shape
    out = ((xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1)
    return xp, kh, kw, (sh, sw), (ph, pw), out


def conv2d_forward_plain(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int | tuple[int, int] = 1,
                         padding: int | tuple[int, int] = 0) -> np.ndarray:
    """:math:`Y_n = W_{mat} X_{col,n} + b`: im2col, then one product for the whole batch."""
    xp, kh, kw, s, _, out = _setup(x, w, stride, padding)
    cols = im2col(xp, kh, kw, s, out)  # (N, K, L) with K = C kh kw, L = Ho Wo
    y = w.reshape(len(w), -1) @ cols  # (F, K) @ (N, K, L) -> (N, F, L)
    if b is not None:
        y += b[:, None]
    return y.reshape(len(x), len(w), *out)


def conv2d_backward_plain(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int | tuple[int, int] = 1,
                          padding: int | tuple[int, int] = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dw, db)``: :math:`dW = \\sum_n dY_n X_{col,n}^T`, :math:`db = \\sum dY`, and
    :math:`dx = \\operatorname{crop}(\\operatorname{col2im}(W_{mat}^T dY))`."""
    xp, kh, kw, s, (ph, pw), out = _setup(x, w, stride, padding)
    cols = im2col(xp, kh, kw, s, out)  # rebuilt from the input, as the tuned path does
    dY = dy.reshape(len(x), len(w), -1)  # (N, F, L)
    dw = np.einsum("nfl,nkl->fk", dY, cols).reshape(w.shape)  # sum over images and positions
    db = dY.sum(axis=(0, 2))
    dxp = col2im(w.reshape(len(w), -1).T @ dY, xp.shape, kh, kw, s, out)  # (K, F) @ (N, F, L) -> (N, K, L)
    return dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]], dw, db
