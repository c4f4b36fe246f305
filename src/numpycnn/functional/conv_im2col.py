"""The convolution as im2col, one matrix product and col2im, chunk by chunk, for any dilation and groups: the
general path (:mod:`numpycnn.functional.conv_plain` is the same idea in its plainest form, for reading).

The definition is the loops of :func:`numpycnn.functional.reference.conv2d_forward`, and the equations,
forward and backward, are in ``docs/math.md`` ("Convolution") and in the docstrings of
:func:`numpycnn.functional.conv.conv2d_forward_general` and
:func:`~numpycnn.functional.conv.conv2d_backward_general`. This module computes the same sums with matrices,
for any stride, padding, dilation and groups:

1. **Chunks.** The batch is cut into chunks of ``g.chunk`` images (a chunk's columns take a few MiB, the rule
   of :data:`numpycnn.functional.conv.CHUNK_BYTES`), so no batch-sized column matrix is ever kept.
2. **im2col** (:func:`im2col_general`). A chunk (n, C, H, W) is copied into a zero-padded buffer, and tap
   (i, j) of the kernel copies the window starting at ``(i d_h, j d_w)``, every ``s``-th pixel, into its rows
   of the columns (n, G, C/G kh kw, Ho Wo).
3. **Product.** :math:`Y_{n,g} = W_g X_{col,n,g}`, one ``matmul`` batched over the images and the ``G`` groups,
   ``(G, F/G, K/G) @ (n, G, K/G, L) -> (n, G, F/G, L)``, which is (n, F, L).
4. **Backward.** :math:`dW_g = \\sum_n dY_{n,g} X_{col,n,g}^T` (the columns rebuilt from the input, or kept when
   the batch was one chunk) and :math:`dX_{col} = W_g^T dY`, which **col2im** (:func:`col2im_general`) adds back
   onto the pixels im2col read, the adjoint of that copy.

Every convolution with dilation or groups runs this path. The ordinary ones (``dilation=1, groups=1``, every
layer of the shipped networks) run :mod:`numpycnn.functional.conv_tuned`, the same steps with faster layouts; the
entry point :mod:`numpycnn.functional.conv` chooses, and splits the batch over threads
(:mod:`numpycnn.functional.conv_parallel`). Dependencies point one way: those modules import this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from numpycnn.core.backend import get_array_module


class Workspace:
    """Scratch arrays reused across calls, keyed by name; a new shape or dtype replaces the array.

    Arrays are zeroed when first created and never cleared afterwards, so regions that a caller never writes
    (the padding border, the extra columns of the widened grid) stay zero from call to call.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._children: dict[str, Workspace] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any, xp: Any = np) -> np.ndarray:
        """The array ``name`` of array module ``xp`` (NumPy or CuPy), replaced when its shape, dtype or module
        changed."""
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype or get_array_module(array) is not xp:
            array = xp.zeros(shape, dtype=dtype)
            self._arrays[name] = array
        return array

    def child(self, name: str) -> Workspace:
        """A nested workspace under ``name`` (for a convolution run inside another, as in backward)."""
        child = self._children.get(name)
        if child is None:
            child = self._children[name] = Workspace()
        return child

    def clear(self) -> None:
        """Drop every buffer, its own and its children's (they are allocated again on next use)."""
        self._arrays.clear()
        self._children.clear()


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length along one axis, :math:`\\lfloor (size + 2p - d (k - 1) - 1) / s \\rfloor + 1` (may be <= 0);
    with :math:`d = 1`, :math:`\\lfloor (size + 2p - k) / s \\rfloor + 1`."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _buffer(ws: Workspace | None, name: str, shape: tuple[int, ...], dtype: Any, xp: Any) -> np.ndarray:
    return ws.get(name, shape, dtype, xp) if ws is not None else xp.zeros(shape, dtype=dtype)


def check_dout(dout: np.ndarray, g: Any) -> None:
    """Raise unless ``dout`` has the shape of the forward pass's output, (N, F, Ho, Wo) of geometry ``g``."""
    if dout.shape != (g.N, g.F, g.Ho, g.Wo):
        raise ValueError(
            f"conv2d_backward: `dout` must have the output's shape {(g.N, g.F, g.Ho, g.Wo)}. "
            f"Got {dout.shape}."
        )


class GeneralGeometry(NamedTuple):
    """Sizes of a dilated or grouped convolution: input (N, C, H, W), ``F`` filters in ``G`` groups, kernel
    (kh, kw), stride, padding, dilation, output (Ho, Wo), images per chunk."""

    N: int
    C: int
    H: int
    W: int
    F: int
    G: int  # groups: filters f in [g F/G, (g + 1) F/G) see input channels [g C/G, (g + 1) C/G)
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dil_h: int  # spacing of the kernel taps, rows
    dil_w: int  # spacing of the kernel taps, columns
    Ho: int
    Wo: int
    chunk: int

    @property
    def Kg(self) -> int:
        """Rows of one group's columns, ``C/G kh kw``."""
        return self.C // self.G * self.kh * self.kw

    @property
    def Fg(self) -> int:
        """Filters per group, ``F/G``."""
        return self.F // self.G


class GeneralConvCache(NamedTuple):
    """What :func:`backward_general` needs from :func:`forward_general` (``parts``: set by the entry point,
    :func:`numpycnn.functional.conv.conv2d_forward`, when it split the batch)."""

    x: np.ndarray  # the input (N, C, H, W) itself, not a copy
    cols: np.ndarray | None  # the columns (N, G, Kg, L) of a batch that fit in one chunk, else None
    w_grp: np.ndarray  # the weight as G matrices, (G, F/G, Kg)
    geometry: GeneralGeometry
    has_bias: bool
    workspace: Workspace | None
    parts: tuple[tuple[slice, GeneralConvCache], ...] | None = None  # split by batch: each slice's own cache


def general_geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int | tuple[int, int],
                     padding: int | tuple[int, int], dilation: int | tuple[int, int], groups: int,
                     itemsize: int = 4, chunk_bytes: int = 4 << 20) -> GeneralGeometry:
    """The sizes of a dilated or grouped convolution; raises ``ValueError`` when the weight does not fit the
    input and ``groups``, or the dilated kernel spans more than the padded input. A chunk's columns take about
    ``chunk_bytes`` (:data:`numpycnn.functional.conv.CHUNK_BYTES` is the rule that the entry point passes)."""
    N, C, H, W = x_shape
    F, Cg, kh, kw = w_shape
    (sh, sw), (ph, pw), (dil_h, dil_w) = _pair(stride), _pair(padding), _pair(dilation)
    if groups < 1 or C != Cg * groups or F % groups:
        raise ValueError(f"conv2d: the weight must have shape (F, C / groups, kh, kw) with F divisible by groups. "
                         f"Got weight {tuple(w_shape)} for input {tuple(x_shape)} and groups={groups}.")
    Ho, Wo = conv2d_output_size(H, kh, sh, ph, dil_h), conv2d_output_size(W, kw, sw, pw, dil_w)
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"conv2d: kernel ({kh}, {kw}) with dilation ({dil_h}, {dil_w}) spans "
            f"({dil_h * (kh - 1) + 1}, {dil_w * (kw - 1) + 1}), more than the padded input "
            f"({H + 2 * ph}, {W + 2 * pw}) (input shape {tuple(x_shape)}, padding ({ph}, {pw})).")
    chunk = int(min(N, max(1, chunk_bytes // (C * kh * kw * Ho * Wo * itemsize))))
    return GeneralGeometry(N, C, H, W, F, groups, kh, kw, sh, sw, ph, pw, dil_h, dil_w, Ho, Wo, chunk)


def _general_chunks(g: GeneralGeometry) -> Iterator[slice]:
    for lo in range(0, g.N, g.chunk):
        yield slice(lo, min(lo + g.chunk, g.N))


def _dilated_window(buf: np.ndarray, g: GeneralGeometry, i: int, j: int) -> np.ndarray:
    """View of a padded buffer (n, C, Hp, Wp) under kernel tap (i, j): rows :math:`d_h i + s_h h`, columns
    :math:`d_w j + s_w w`, shape (n, C, Ho, Wo)."""
    top, left = i * g.dil_h, j * g.dil_w
    return buf[:, :, top:top + g.sh * (g.Ho - 1) + 1:g.sh, left:left + g.sw * (g.Wo - 1) + 1:g.sw]


def _padded_general(x: np.ndarray, g: GeneralGeometry, ws: Workspace | None) -> np.ndarray:
    """``x`` (n, C, H, W) inside the zero border of a reused (n, C, H + 2 p_h, W + 2 p_w) buffer (``x`` itself
    without padding)."""
    if g.ph == g.pw == 0:
        return x
    shape = (g.chunk, g.C, g.H + 2 * g.ph, g.W + 2 * g.pw)
    xpad = _buffer(ws, "general.x", shape, x.dtype, get_array_module(x))[:len(x)]
    xpad[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W] = x  # zero border, written interior
    return xpad


def im2col_general(x: np.ndarray, g: GeneralGeometry, ws: Workspace | None = None) -> np.ndarray:
    """The columns of a chunk, split by group: entry ``(m, grp, (c, i, j), (h, w))`` is
    ``xpad[m, grp C/G + c, s_h h + d_h i, s_w w + d_w j]``.

    Shape
    -----
    ``x`` (n, C, H, W) with ``n <= g.chunk``; returns (n, G, C/G kh kw, Ho Wo), a view of the workspace's buffer.
    """
    xp = get_array_module(x)
    n, L = len(x), g.Ho * g.Wo
    xpad = _padded_general(x, g, ws)
    cols = _buffer(ws, "general.cols", (g.chunk, g.C * g.kh * g.kw * L), x.dtype, xp)[:n]
    cols = cols.reshape(n, g.C, g.kh, g.kw, g.Ho, g.Wo)  # a view
    for i in range(g.kh):
        for j in range(g.kw):
            cols[:, :, i, j] = _dilated_window(xpad, g, i, j)  # (n, C, Ho, Wo)
    return cols.reshape(n, g.G, g.Kg, L)  # (n, C, kh, kw, Ho, Wo) -> (n, G, C/G kh kw, Ho Wo): groups own C blocks


def forward_general(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: GeneralGeometry,
                    workspace: Workspace | None, out: np.ndarray) -> GeneralConvCache:
    """The convolution of ``x`` (geometry ``g``, ``g.N = len(x)``) written into ``out`` (N, F, Ho, Wo): per chunk,
    im2col, then one product batched over the groups, then the bias; returns the cache for backward.

    Notes
    -----
    The equation is :func:`numpycnn.functional.conv.conv2d_forward_general`'s (and docs/math.md's): per image
    and group, :math:`Y_{n,g} = W_g X_{col,n,g}`.
    """
    xp = get_array_module(x)
    dtype = x.dtype
    w_grp = w.reshape(g.G, g.Fg, g.Kg).astype(dtype, copy=False)  # (F, C/G, kh, kw) -> (G, F/G, Kg)
    bias = None if b is None else b.astype(dtype, copy=False).reshape(g.G, g.Fg, 1)  # (F,) -> (G, F/G, 1)
    for part in _general_chunks(g):
        cols = im2col_general(x[part], g, workspace)  # (n, G, Kg, L)
        n = part.stop - part.start
        y = out[part].reshape(n, g.G, g.Fg, g.Ho * g.Wo)  # (n, F, Ho, Wo) as (n, G, F/G, L), a view
        xp.matmul(w_grp, cols, out=y)  # (G, F/G, Kg) @ (n, G, Kg, L) -> (n, G, F/G, L)
        if bias is not None:
            y += bias
    kept = cols if g.chunk == g.N else None  # a batch of one chunk keeps its columns for backward
    return GeneralConvCache(x, kept, w_grp, g, b is not None, workspace)


def backward_general(dout: np.ndarray, cache: GeneralConvCache, dx: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(dw, db)`` of :func:`forward_general` for ``dout`` (N, F, Ho, Wo) of the same dtype, and the input
    gradient written into ``dx`` (N, C, H, W) when one is given (col2im of :math:`W_g^T dY_{n,g}`).

    Notes
    -----
    The equations are :func:`numpycnn.functional.conv.conv2d_backward_general`'s (and docs/math.md's):
    :math:`dW_g = \\sum_n dY_{n,g} X_{col,n,g}^T`, :math:`dX_{col,n,g} = W_g^T dY_{n,g}`.
    """
    xp = get_array_module(dout)
    x, kept_cols, w_grp, g, has_bias, workspace, _ = cache
    dtype = w_grp.dtype
    dw = xp.zeros((g.G, g.Fg, g.Kg), dtype=dtype)  # (G, F/G, Kg)
    for part in _general_chunks(g):
        cols = kept_cols if kept_cols is not None else im2col_general(x[part], g, workspace)  # (n, G, Kg, L)
        n = part.stop - part.start
        dy = xp.ascontiguousarray(dout[part]).reshape(n, g.G, g.Fg, g.Ho * g.Wo)  # (n, G, F/G, L)
        dw += xp.matmul(dy, cols.swapaxes(-1, -2)).sum(axis=0)  # (n, G, F/G, L) @ (n, G, L, Kg), summed over n
        if dx is not None:
            dcols = _buffer(workspace, "general.dcols", (g.chunk, g.G * g.Kg * g.Ho * g.Wo), dtype, xp)[:n]
            dcols = dcols.reshape(n, g.G, g.Kg, g.Ho * g.Wo)  # a view
            xp.matmul(w_grp.swapaxes(-1, -2), dy, out=dcols)  # (G, Kg, F/G) @ (n, G, F/G, L) -> (n, G, Kg, L)
            col2im_general(dcols, g, workspace, dx[part])
    db = xp.einsum("nfhw->f", dout) if has_bias else None
    return dw.reshape(g.F, g.C // g.G, g.kh, g.kw), db  # (G, F/G, Kg) -> (F, C/G, kh, kw)


def col2im_general(dcols: np.ndarray, g: GeneralGeometry, workspace: Workspace | None, dx: np.ndarray) -> None:
    """Write into ``dx`` (n, C, H, W) the sum of each entry of ``dcols`` (n, G, C/G kh kw, Ho Wo) onto the pixel
    :func:`im2col_general` read it from, the adjoint of that copy; the padding is then cropped."""
    n = len(dx)
    taps = dcols.reshape(n, g.C, g.kh, g.kw, g.Ho, g.Wo)  # (n, G, Kg, L) -> (n, C, kh, kw, Ho, Wo), a view
    if g.ph == g.pw == 0:
        dxp = dx  # no border to crop: accumulate in place
    else:
        shape = (g.chunk, g.C, g.H + 2 * g.ph, g.W + 2 * g.pw)
        dxp = _buffer(workspace, "general.dxp", shape, dcols.dtype, get_array_module(dcols))[:n]
    dxp.fill(0)
    for i in range(g.kh):
        for j in range(g.kw):
            _dilated_window(dxp, g, i, j)[...] += taps[:, :, i, j]  # windows of one tap never overlap
    if dxp is not dx:
        dx[...] = dxp[:, :, g.ph:g.ph + g.H, g.pw:g.pw + g.W]  # the padding cropped
