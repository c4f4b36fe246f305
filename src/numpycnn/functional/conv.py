"""2-D convolution (cross-correlation, as in PyTorch) by im2col and matrix products, a few images at a time.

The definition is the six-fold loop of :func:`numpycnn.functional.reference.conv2d_forward`. The code computes the same
sums with one loop structure for the forward pass, the weight gradient and the input gradient:

1. **Chunks.** The batch is cut into chunks of ``n`` images, ``n`` chosen so that one chunk's column matrix
   takes about :data:`CHUNK_BYTES` (a few MiB, the size of this machine's L2 cache): the columns are written
   and then read by the matrix product while they are still in cache, and no batch-sized column matrix is ever
   kept. Backward rebuilds the columns of each chunk from the cached input instead of storing them, except
   for a batch that fits in one chunk, whose columns are still in the workspace and are reused. On a device
   (CuPy arrays) chunks are far larger, :data:`DEVICE_CHUNK_BYTES`: a GPU has no such cache to fit.
2. **im2col.** A chunk (n, C, H, W) is copied into a zero-padded buffer; the column matrix ``cols`` gets
   ``kh * kw`` slice copies, one per kernel offset (i, j): ``cols[.., i, j, ..] = xpad[:, :, i::sh, j::sw]``
   cropped to the output grid (:func:`im2col`).
3. **Product.** :math:`Y = W_{mat} X_{col}` with ``W_mat`` (F, C kh kw).

**Layout, chosen by** :func:`batch_major`. Small products (``K = C kh kw`` below :data:`SMALL_K`, e.g. a
first layer on grey images) run *batch-major*: ``cols`` (n, K, L) and one small product per image,
``(F, K) @ (n, K, L) -> (n, F, L)``, whose result is already in the (N, F, H, W) layout. Large ones run
*channel-major*: ``cols`` (K, n L) and one product per chunk, ``(F, K) @ (K, n L) -> (F, n L)``, which a
multi-threaded BLAS runs far better than ``n`` small ones, at the price of one transposing copy of the output.
Both layouts run the same code on differently ordered buffers (``_images_first`` views either one as
(n, C, ...)); the tests run every case in both.

**Fast path, stride 1 (the widened grid, chosen by :func:`widened_grid`).** The output grid is widened to
the padded row width, ``Wq = Wb``: the window of offset (i, j) is then one contiguous run ``xpad_flat[m, c,
i Wb + j : i Wb + j + Ho Wb]``, so every im2col copy runs over a long contiguous row instead of ``Ho`` rows of
``Wo`` elements. The ``Wq - Wo`` extra columns per row are computed and dropped; in backward their upstream
gradient is set to zero, so they add nothing to ``dw``. One spare zero row under the buffer keeps the last run
inside it.

**Fast path, stride-1 input gradient (correlation).** The input gradient is by definition col2im of
``W_mat^T dY`` (:func:`conv2d_backward`). For stride 1 and padding ``p < k`` it is also a forward convolution
of ``dY`` with the flipped kernel (see :func:`conv2d_backward`), whose im2col is plain copies instead of
col2im's read-add-write passes; that is the rule for choosing it, and the tests hold both equal to the loop
definition and to PyTorch.

Buffers live in a :class:`Workspace` that the layer keeps across batches, so the hot path allocates (and
page-faults) only the arrays it returns.

**The general path: dilation and groups (chosen by** :func:`fast_path` **).** Everything above is the tuned
path for ``dilation=1, groups=1``, every convolution of the shipped networks. A dilated or grouped convolution
(``torch.nn.functional.conv2d``'s ``dilation`` and ``groups``) runs :func:`conv2d_forward_general` and
:func:`conv2d_backward_general` instead: the same chunks and the same im2col, whose window of tap (i, j) now
starts at ``(i d_h, j d_w)`` of the padded input, and a product batched over the ``G`` groups,
``(G, F/G, K/G) @ (n, G, K/G, L) -> (n, G, F/G, L)``, which is (n, F, L): each group of ``F/G`` filters sees
only its own ``C/G`` input channels. It has one layout (batch-major) and no widened grid. The tests hold it
equal to the loop definition, to PyTorch, and to the tuned path where both apply.
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
    """What :func:`conv2d_backward` needs from :func:`conv2d_forward` (``Conv2D.cache`` holds one)."""

    x: np.ndarray  # the input (N, C, H, W) itself, not a copy: backward rebuilds the columns from it
    cols: np.ndarray | None  # the columns of a batch that fit in one chunk (a view of the workspace), else None
    w_mat: np.ndarray  # the weight as the (F, C kh kw) matrix of the products
    geometry: ConvGeometry  # sizes, layout and chunk
    has_bias: bool  # whether backward returns db
    workspace: Workspace | None  # the buffers the forward pass used, reused by backward


#: Bytes of one chunk's column matrix. Measured here for 128 x 32 x 28 x 28 images and 32 3x3 filters: 4
#: images a chunk (3.9 MiB) ran the forward pass 1.7x faster than the whole batch at once (49 -> 28 ms).
CHUNK_BYTES = 4 << 20

#: The chunk on a device (CuPy). The cache argument above is a CPU's: a GPU runs one large product far better
#: than many small ones, each a kernel launch, so a chunk there may take up to 256 MiB of columns (one chunk for
#: most batches). Not yet measured on a GPU (benchmarks/gpu_check.py will).
DEVICE_CHUNK_BYTES = 256 << 20


#: Below this ``K = C kh kw`` a convolution runs batch-major (measured here: the single-channel 3x3 layers,
#: K = 9, ran forward and backward about twice as fast batch-major; K = 288 ran as fast channel-major on one
#: thread and without the ``n`` thread hand-offs per chunk on two).
SMALL_K = 64


def batch_major(C: int, kh: int, kw: int) -> bool:
    """The layout rule: batch-major (one product per image) when ``C kh kw < SMALL_K``, channel-major otherwise."""
    return C * kh * kw < SMALL_K


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


def conv2d_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length along one axis, :math:`\\lfloor (size + 2p - d (k - 1) - 1) / s \\rfloor + 1` (may be <= 0);
    with :math:`d = 1`, :math:`\\lfloor (size + 2p - k) / s \\rfloor + 1`."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int | tuple[int, int],
                  padding: int | tuple[int, int], itemsize: int = 4, chunk_bytes: int | None = None) -> ConvGeometry:
    """Compute the sizes of a convolution; raises ``ValueError`` when the kernel exceeds the padded input.
    A chunk's columns take about ``chunk_bytes`` (default :data:`CHUNK_BYTES`)."""
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
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    chunk = int(min(N, max(1, chunk_bytes // (C * kh * kw * Ho * Wq * itemsize))))
    return ConvGeometry(N, C, H, W, F, kh, kw, sh, sw, ph, pw, Ho, Wo, Hb, Wb, Wq, wide, batch_major(C, kh, kw),
                        chunk)


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


def _buffer(ws: Workspace | None, name: str, shape: tuple[int, ...], dtype: Any, xp: Any) -> np.ndarray:
    return ws.get(name, shape, dtype, xp) if ws is not None else xp.zeros(shape, dtype=dtype)


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


def fast_path(dilation: int | tuple[int, int], groups: int) -> bool:
    """The rule for the tuned kernels: a convolution without dilation and with one group (every layer of the
    shipped networks) runs them; any other runs :func:`conv2d_forward_general`, written for the general case."""
    return _pair(dilation) == (1, 1) and groups == 1


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int | tuple[int, int] = 1,
                   padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, groups: int = 1, *,
                   workspace: Workspace | None = None) -> tuple[np.ndarray, ConvCache | GeneralConvCache]:
    """2-D cross-correlation of a batch of images with a bank of filters.

    Notes
    -----
    With the input zero-padded by :math:`(p_h, p_w)`,

    .. math::
        y_{n,f,h,w} = b_f + \\sum_{c=0}^{C-1} \\sum_{i=0}^{k_h-1} \\sum_{j=0}^{k_w-1}
            w_{f,c,i,j}\\; x_{n,c,\\,s_h h + i - p_h,\\, s_w w + j - p_w}

    computed per image as :math:`Y_n = W_{mat}\\, X_{col,n}` with :math:`W_{mat}` (F, C k_h k_w) and the im2col
    matrix :math:`X_{col,n}` (C k_h k_w, H_{out} W_{out}), a chunk of images at a time (module docstring).
    That is the tuned path, for ``dilation=1, groups=1`` (:func:`fast_path`); a dilated or grouped
    convolution is handed to :func:`conv2d_forward_general`, whose Notes give the general equation.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Input images, float32 or float64; the output has the same dtype. The cache refers to ``x`` itself:
        do not modify it in place before backward.
    w : ndarray, shape (F, C / groups, kh, kw)
        Filters (cast to ``x.dtype`` if they differ).
    b : ndarray, shape (F,), or None
        Bias per output channel.
    stride, padding : int or (int, int)
        Step of the window and zero padding on each side, as in ``torch.nn.functional.conv2d``.
    dilation : int or (int, int)
        Spacing of the kernel taps, >= 1 (1: adjacent pixels).
    groups : int
        Independent convolutions the channels are split into; divides C and F.
    workspace : Workspace, optional
        Reuse scratch buffers across calls.

    Shape
    -----
    Output (N, F, Ho, Wo), :math:`H_{out} = \\lfloor (H + 2 p_h - d_h (k_h - 1) - 1) / s_h \\rfloor + 1`
    (with no dilation, :math:`\\lfloor (H + 2 p_h - k_h) / s_h \\rfloor + 1`), likewise :math:`W_{out}`.

    Raises
    ------
    ValueError
        If the kernel is larger than the padded input; on the general path also if the weight does not fit the
        input and ``groups``.

    Examples
    --------
    >>> x, w = np.ones((2, 1, 5, 5)), np.ones((4, 1, 3, 3))
    >>> y, cache = conv2d_forward(x, w, np.zeros(4), stride=1, padding=1)
    >>> y.shape, float(y[0, 0, 2, 2]), float(y[0, 0, 0, 0])
    ((2, 4, 5, 5), 9.0, 4.0)
    """
    if not fast_path(dilation, groups):  # the rule, above
        return conv2d_forward_general(x, w, b, stride, padding, dilation, groups, workspace=workspace)
    xp = get_array_module(x)
    chunk_bytes = CHUNK_BYTES if xp is np else DEVICE_CHUNK_BYTES  # the rule: cache-sized on a CPU only
    g = conv_geometry(x.shape, w.shape, stride, padding, x.dtype.itemsize, chunk_bytes)
    dtype = x.dtype
    w_mat = w.reshape(g.F, g.C * g.kh * g.kw).astype(dtype, copy=False)  # (F, K)
    bias = None if b is None else b.astype(dtype, copy=False)[:, None]  # (F, 1)
    out = xp.empty((g.N, g.F, g.Ho, g.Wo), dtype=dtype)
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
    return out, ConvCache(x, kept, w_mat, g, b is not None, workspace)


def _check_dout(dout: np.ndarray, g: Any) -> None:
    """Raise unless ``dout`` has the shape of the forward pass's output, (N, F, Ho, Wo) of geometry ``g``."""
    if dout.shape != (g.N, g.F, g.Ho, g.Wo):
        raise ValueError(
            f"conv2d_backward: `dout` must have the output's shape {(g.N, g.F, g.Ho, g.Wo)}. "
            f"Got {dout.shape}."
        )


def conv2d_backward(dout: np.ndarray, cache: ConvCache | GeneralConvCache, need_dx: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`conv2d_forward`: ``(dx, dw, db)``; a dilated or grouped convolution's cache goes to
    :func:`conv2d_backward_general`, the equations below are the tuned path's.

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
    if isinstance(cache, GeneralConvCache):  # the forward pass took the general path (fast_path said no)
        return conv2d_backward_general(dout, cache, need_dx)
    xp = get_array_module(dout)
    x, kept_cols, w_mat, g, has_bias, workspace = cache
    _check_dout(dout, g)
    dtype = w_mat.dtype
    dout = dout.astype(dtype, copy=False)
    correlate = g.sh == g.sw == 1 and g.ph < g.kh and g.pw < g.kw  # the rule for the fast input gradient
    dx = None if not need_dx or correlate else xp.empty((g.N, g.C, g.H, g.W), dtype=dtype)
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
    if need_dx and correlate:
        dx = _input_grad_by_correlation(dout, w_mat, g, workspace)
    return dx, xp.ascontiguousarray(dw_t.T).reshape(g.F, g.C, g.kh, g.kw), db  # (K, F) -> (F, C, kh, kw)


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


def _input_grad_by_correlation(dout: np.ndarray, w_mat: np.ndarray, g: ConvGeometry,
                               workspace: Workspace | None) -> np.ndarray:
    """Input gradient of a stride-1 convolution with ``p < k``: ``conv2d_forward(dout, w', padding=k-1-p)``."""
    xp = get_array_module(dout)
    w = w_mat.reshape(g.F, g.C, g.kh, g.kw)
    w_flip = xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (F, C, kh, kw) -> (C, F, kh, kw)
    q = (g.kh - 1 - g.ph, g.kw - 1 - g.pw)
    inner = workspace.child("dx") if workspace is not None else None
    dx, _ = conv2d_forward(dout, w_flip, None, 1, q, workspace=inner)
    return dx


# -- The general path: dilation and groups (fast_path decides) -------------------------------------------------


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
    """What :func:`conv2d_backward_general` needs from :func:`conv2d_forward_general`."""

    x: np.ndarray  # the input (N, C, H, W) itself, not a copy
    cols: np.ndarray | None  # the columns (N, G, Kg, L) of a batch that fit in one chunk, else None
    w_grp: np.ndarray  # the weight as G matrices, (G, F/G, Kg)
    geometry: GeneralGeometry
    has_bias: bool
    workspace: Workspace | None


def general_geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int | tuple[int, int],
                     padding: int | tuple[int, int], dilation: int | tuple[int, int], groups: int,
                     itemsize: int = 4, chunk_bytes: int | None = None) -> GeneralGeometry:
    """The sizes of a dilated or grouped convolution; raises ``ValueError`` when the weight does not fit the
    input and ``groups``, or the dilated kernel spans more than the padded input."""
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
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
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


def conv2d_forward_general(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int | tuple[int, int] = 1,
                           padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                           groups: int = 1, *, workspace: Workspace | None = None
                           ) -> tuple[np.ndarray, GeneralConvCache]:
    """2-D cross-correlation with dilation and groups (the general path that :func:`conv2d_forward` takes
    when :func:`fast_path` says no; correct for any arguments, the tuned path's included).

    Notes
    -----
    With the input zero-padded by :math:`(p_h, p_w)`, :math:`G` groups of :math:`F_g = F/G` filters and
    :math:`C_g = C/G` input channels, and :math:`\\gamma(f) = \\lfloor f / F_g \\rfloor` the group of filter
    :math:`f`,

    .. math::
        y_{n,f,h,w} = b_f + \\sum_{c=0}^{C_g-1} \\sum_{i=0}^{k_h-1} \\sum_{j=0}^{k_w-1}
            w_{f,c,i,j}\\; x_{n,\\,\\gamma(f) C_g + c,\\; s_h h + d_h i - p_h,\\; s_w w + d_w j - p_w}

    Tap :math:`(i, j)` reads the pixel :math:`(d_h i, d_w j)` away from the window's corner, so the kernel
    spans :math:`d (k - 1) + 1` pixels per axis. Per image and group this is one product,
    :math:`Y_{n,g} = W_g X_{col,n,g}` with :math:`W_g` (F_g, C_g k_h k_w), rows :math:`g F_g` to
    :math:`(g + 1) F_g - 1` of the weight, and :math:`X_{col,n,g}` the im2col rows of the group's channels
    (:func:`im2col_general`). Depthwise convolution is :math:`G = C` (:math:`C_g = 1`); ``F = k C`` gives
    each channel :math:`k` filters (a channel multiplier).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Input images, float32 or float64; the output has the same dtype. The cache refers to ``x`` itself.
    w : ndarray, shape (F, C / groups, kh, kw)
        Filters, as ``torch.nn.Conv2d`` holds them (cast to ``x.dtype`` if they differ).
    b : ndarray, shape (F,), or None
        Bias per output channel.
    stride, padding, dilation : int or (int, int)
        Step of the window, zero padding on each side and spacing of the taps, as in
        ``torch.nn.functional.conv2d``.
    groups : int
        Independent convolutions; divides C and F.
    workspace : Workspace, optional
        Reuse scratch buffers across calls.

    Shape
    -----
    Output (N, F, Ho, Wo), :math:`H_{out} = \\lfloor (H + 2 p_h - d_h (k_h - 1) - 1) / s_h \\rfloor + 1`,
    likewise :math:`W_{out}`.

    Raises
    ------
    ValueError
        If the weight does not fit the input and ``groups``, or the dilated kernel spans more than the padded
        input.

    Examples
    --------
    >>> x, w = np.arange(2 * 5 * 5.0).reshape(1, 2, 5, 5), np.ones((2, 1, 2, 2))  # depthwise: groups = C = 2
    >>> y, cache = conv2d_forward_general(x, w, None, dilation=2, groups=2)
    >>> y.shape, float(y[0, 0, 0, 0]), float(y[0, 1, 0, 0])  # x[c, 0, 0] + x[c, 0, 2] + x[c, 2, 0] + x[c, 2, 2]
    ((1, 2, 3, 3), 24.0, 124.0)
    """
    xp = get_array_module(x)
    chunk_bytes = CHUNK_BYTES if xp is np else DEVICE_CHUNK_BYTES  # the rule: cache-sized on a CPU only
    g = general_geometry(x.shape, w.shape, stride, padding, dilation, groups, x.dtype.itemsize, chunk_bytes)
    dtype = x.dtype
    w_grp = w.reshape(g.G, g.Fg, g.Kg).astype(dtype, copy=False)  # (F, C/G, kh, kw) -> (G, F/G, Kg)
    bias = None if b is None else b.astype(dtype, copy=False).reshape(g.G, g.Fg, 1)  # (F,) -> (G, F/G, 1)
    out = xp.empty((g.N, g.F, g.Ho, g.Wo), dtype=dtype)
    for part in _general_chunks(g):
        cols = im2col_general(x[part], g, workspace)  # (n, G, Kg, L)
        n = part.stop - part.start
        y = out[part].reshape(n, g.G, g.Fg, g.Ho * g.Wo)  # (n, F, Ho, Wo) as (n, G, F/G, L), a view
        xp.matmul(w_grp, cols, out=y)  # (G, F/G, Kg) @ (n, G, Kg, L) -> (n, G, F/G, L)
        if bias is not None:
            y += bias
    kept = cols if g.chunk == g.N else None  # a batch of one chunk keeps its columns for backward
    return out, GeneralConvCache(x, kept, w_grp, g, b is not None, workspace)


def conv2d_backward_general(dout: np.ndarray, cache: GeneralConvCache, need_dx: bool = True
                            ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`conv2d_forward_general`: ``(dx, dw, db)`` (``db`` None without a bias, ``dx`` None
    when ``need_dx`` is false).

    Notes
    -----
    With :math:`\\gamma(f)` the group of filter :math:`f` and :math:`C_g = C/G`,

    .. math::
        \\frac{\\partial L}{\\partial w_{f,c,i,j}} = \\sum_{n,h,w} dy_{n,f,h,w}\\,
            x^{pad}_{n,\\,\\gamma(f) C_g + c,\\; s_h h + d_h i,\\; s_w w + d_w j}, \\qquad
        \\frac{\\partial L}{\\partial b_f} = \\sum_{n,h,w} dy_{n,f,h,w},

    .. math::
        \\frac{\\partial L}{\\partial x_{n,\\gamma C_g + c,\\,h',w'}} =
            \\sum_{f : \\gamma(f) = \\gamma} \\; \\sum_{i,j,h,w \\,:\\, s_h h + d_h i - p_h = h',\\;
            s_w w + d_w j - p_w = w'} w_{f,c,i,j}\\, dy_{n,f,h,w}

    Per image and group: :math:`dW_g = \\sum_n dY_{n,g} X_{col,n,g}^T` and
    :math:`dX_{col,n,g} = W_g^T dY_{n,g}`, whose entries col2im adds back onto the pixels they were read
    from (:func:`col2im_general`), the padding then cropped.

    Shape
    -----
    ``dout`` (N, F, Ho, Wo); ``dx`` (N, C, H, W); ``dw`` (F, C / groups, kh, kw); ``db`` (F,).
    """
    xp = get_array_module(dout)
    x, kept_cols, w_grp, g, has_bias, workspace = cache
    _check_dout(dout, g)
    dtype = w_grp.dtype
    dout = dout.astype(dtype, copy=False)
    dw = xp.zeros((g.G, g.Fg, g.Kg), dtype=dtype)  # (G, F/G, Kg)
    dx = xp.empty((g.N, g.C, g.H, g.W), dtype=dtype) if need_dx else None
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
    return dx, dw.reshape(g.F, g.C // g.G, g.kh, g.kw), db  # (G, F/G, Kg) -> (F, C/G, kh, kw)


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
