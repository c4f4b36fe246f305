"""Max, average and global average pooling, from strided slices.

A pooling window of size (kh, kw) moved with stride (sh, sw) over (N, C, H, W) visits, for each kernel offset
(i, j), the strided slice ``x[:, :, i::sh, j::sw]`` cropped to the (Ho, Wo) output grid. Pooling is then kh*kw
element-wise passes over those slices (``np.maximum``, ``np.add``) instead of a reduction over the
non-adjacent window axes of a (N, C, Ho, kh, Wo, kw) view, which NumPy runs slowly. Sizes that the window does
not divide are floored, as in PyTorch: the last rows and columns that no window covers are ignored (their
gradient is 0).

When the windows do not overlap (kernel == stride, the common case) every input pixel belongs to at most one
window, so backward writes each slice of ``dx`` once; overlapping windows accumulate.

Max pooling runs on the worker threads of :mod:`numpycnn.core.parallel`, a slice of the batch per task
(:func:`batch_slices`): images are independent, so the result is the same bits for any number of workers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from numpycnn.core import parallel
from numpycnn.core.backend import get_array_module


class PoolGeometry(NamedTuple):
    """Input (N, C, H, W), window (kh, kw), stride (sh, sw) and output (Ho, Wo) of a pooling."""

    N: int
    C: int
    H: int
    W: int
    kh: int
    kw: int
    sh: int
    sw: int
    Ho: int
    Wo: int


class MaxPoolCache(NamedTuple):
    """What :func:`maxpool2d_backward` needs: the sizes, each window's first maximum, the input's dtype."""

    geometry: PoolGeometry
    argmax: np.ndarray  # (N, C, Ho, Wo) uint8 (int32 for windows of 256 or more): t* = i* kw + j*
    dtype: np.dtype


def pool_geometry(x_shape: tuple[int, ...], kernel_size: int | tuple[int, int],
                  stride: int | tuple[int, int] | None = None) -> PoolGeometry:
    """Sizes of a pooling, :math:`H_{out} = \\lfloor (H - k_h) / s_h \\rfloor + 1`; stride None = kernel."""
    N, C, H, W = x_shape
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if stride is None:
        sh, sw = kh, kw
    else:
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
    if kh > H or kw > W:
        raise ValueError(
            f"pool2d: window ({kh}, {kw}) is larger than the input ({H}, {W}) (shape {tuple(x_shape)})."
        )
    return PoolGeometry(N, C, H, W, kh, kw, sh, sw, (H - kh) // sh + 1, (W - kw) // sw + 1)


def _offsets(a: np.ndarray, g: PoolGeometry) -> Iterator[np.ndarray]:
    """For each kernel offset (i, j) in row-major order, the view of ``a`` it visits, shape (N, C, Ho, Wo)."""
    for i in range(g.kh):
        for j in range(g.kw):
            yield a[:, :, i:i + g.sh * (g.Ho - 1) + 1:g.sh, j:j + g.sw * (g.Wo - 1) + 1:g.sw]


def _grad_buffer(g: PoolGeometry, dtype: Any, xp: Any) -> tuple[np.ndarray, bool]:
    """An array of ``xp`` for ``dx`` and whether backward may assign slices (no overlap) instead of accumulating."""
    disjoint = g.kh == g.sh and g.kw == g.sw
    covered = disjoint and g.Ho * g.kh == g.H and g.Wo * g.kw == g.W
    dx = xp.empty((g.N, g.C, g.H, g.W), dtype) if covered else xp.zeros((g.N, g.C, g.H, g.W), dtype)
    return dx, disjoint


def maxpool2d_forward(x: np.ndarray, kernel_size: int | tuple[int, int] = 2,
                      stride: int | tuple[int, int] | None = None) -> tuple[np.ndarray, Any]:
    """Max pooling over (kh, kw) windows moved by (sh, sw).

    Notes
    -----
    .. math::
        y_{n,c,h,w} = \\max_{0 \\le i < k_h,\\ 0 \\le j < k_w} x_{n,c,\\,s_h h + i,\\, s_w w + j}, \\qquad
        \\frac{\\partial L}{\\partial x_{n,c,s_h h + i^*, s_w w + j^*}} \\mathrel{+}= dy_{n,c,h,w}

    where :math:`(i^*, j^*)` is the first position of the maximum in row-major window order (PyTorch's choice
    on ties); every other input gets no gradient from that window. The cache records :math:`t^* = i^* k_w + j^*`
    as one small integer per output (``argmax``), so backward needs no comparison with ``x``.

    The general kernel makes ``kh * kw - 1`` passes of compare, maximum and index update over the (N, C, Ho, Wo)
    slices. **Fast paths**, chosen when the window is 2x2 with stride 2 (the usual pooling):
    ``_maxpool2x2_forward`` finds the same maximum and the same :math:`t^*` with three pairwise maxima, and
    ``_maxpool2x2_shifted`` does the same with contiguous passes over the flat input shifted by one element or
    one row, for inputs of even height and width (the rule of ``_kernel_2x2``).

    Shape
    -----
    ``x`` (N, C, H, W) -> ``y`` (N, C, Ho, Wo), :math:`H_{out} = \\lfloor (H - k_h) / s_h \\rfloor + 1`.

    Examples
    --------
    >>> y, _ = maxpool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4), 2)
    >>> y[0, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    g = pool_geometry(x.shape, kernel_size, stride)
    parts = batch_slices(x)
    kernel = _kernel_2x2(x, g) if (g.kh, g.kw, g.sh, g.sw) == (2, 2, 2, 2) else _maxpool_by_offsets
    if len(parts) == 1:
        out, argmax = kernel(x, g)
        return out, MaxPoolCache(g, argmax, x.dtype)
    out = np.empty((g.N, g.C, g.Ho, g.Wo), x.dtype)
    argmax = np.empty((g.N, g.C, g.Ho, g.Wo), np.uint8 if g.kh * g.kw < 256 else np.int32)

    def images(s: slice) -> None:  # one slice of the batch, written straight into its rows of out and argmax
        kernel(x[s], g._replace(N=s.stop - s.start), out[s], argmax[s])

    parallel.map_slices(images, parts)
    return out, MaxPoolCache(g, argmax, x.dtype)


def batch_slices(x: np.ndarray) -> list[slice]:
    """The batch slices pooling runs on the workers of :mod:`numpycnn.core.parallel`: images are independent,
    so the slices' results are the unsplit result's rows, bit for bit. One slice for a device (CuPy) array."""
    if get_array_module(x) is not np:
        return [slice(0, len(x))]
    return parallel.slices(len(x), x[0].size)


def _maxpool_by_offsets(x: np.ndarray, g: PoolGeometry, out: np.ndarray | None = None,
                        argmax: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The general kernel: a running maximum and its window index over the ``kh * kw`` offset slices (written
    into ``out`` and ``argmax`` when given)."""
    xp = get_array_module(x)
    views = _offsets(x, g)
    if out is None:
        out = xp.array(next(views))  # (N, C, Ho, Wo), a copy of offset (0, 0)
        argmax = xp.zeros(out.shape, dtype=np.uint8 if g.kh * g.kw < 256 else np.int32)
    else:
        xp.copyto(out, next(views))
        argmax.fill(0)
    better = xp.empty(out.shape, dtype=bool)
    for t, view in enumerate(views, start=1):
        xp.greater(view, out, out=better)  # strict: an equal later value does not take over
        xp.maximum(out, view, out=out)  # propagates NaN like PyTorch
        xp.copyto(argmax, argmax.dtype.type(t), where=better)  # a typed scalar: CuPy checks casts of Python ints
    return out, argmax


def maxpool2d_backward(dout: np.ndarray, cache: MaxPoolCache) -> np.ndarray:
    """Gradient of :func:`maxpool2d_forward`: ``dout`` routed to each window's first maximum, one pass per offset."""
    xp = get_array_module(dout)
    g, argmax, dtype = cache
    dx, disjoint = _grad_buffer(g, dtype, xp)
    parallel.map_slices(lambda s: _route(dout[s], argmax[s], g._replace(N=s.stop - s.start), dx[s], disjoint),
                        batch_slices(dx))
    return dx


def _route(dout: np.ndarray, argmax: np.ndarray, g: PoolGeometry, dx: np.ndarray, disjoint: bool) -> None:
    """Write ``dout`` into ``dx`` (zero, or empty when every pixel is written) at each window's first maximum."""
    xp = get_array_module(dout)
    hit = xp.empty(argmax.shape, dtype=bool)
    for t, view in enumerate(_offsets(dx, g)):
        xp.equal(argmax, t, out=hit)
        if disjoint:
            xp.multiply(dout, hit, out=view)
        else:
            view += dout * hit


def _maxpool2x2_forward(x: np.ndarray, g: PoolGeometry, out: np.ndarray | None = None,
                        argmax: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """2x2 windows, stride 2: the maximum and its window index from three pairwise maxima of the four corners.

    With corners ``a b`` over ``c d`` (indices 0 1 over 2 3): :math:`y = \\max(\\max(a, b), \\max(c, d))`.
    Column 1 wins a row only if strictly greater (``b > a``, ``d > c``) and row 1 wins only if its maximum is
    strictly greater, which is the first maximum in row-major window order, the general kernel's :math:`t^*`.
    Every pass runs over (N, C, Ho, Wo) arrays, a quarter of the input, and none of them over the input itself.
    The results are written into ``out`` and ``argmax`` when given (one slice of the batch, :func:`batch_slices`).
    """
    xp = get_array_module(x)
    xc = x[:, :, :2 * g.Ho, :2 * g.Wo]  # (N, C, 2Ho, 2Wo), the rows and columns the windows cover
    a, b = xc[:, :, 0::2, 0::2], xc[:, :, 0::2, 1::2]  # (N, C, Ho, Wo) each: upper row of every window
    c, d = xc[:, :, 1::2, 0::2], xc[:, :, 1::2, 1::2]  # (N, C, Ho, Wo) each: lower row
    upper_right, lower_right = xp.greater(b, a), xp.greater(d, c)  # (N, C, Ho, Wo): column 1 strictly greater
    out = xp.maximum(a, b, out=out)  # (N, C, Ho, Wo): the upper row's maximum (propagates NaN like PyTorch)
    lower_max = xp.maximum(c, d)  # (N, C, Ho, Wo)
    lower = xp.greater(lower_max, out)  # (N, C, Ho, Wo): row 1 strictly greater
    xp.maximum(out, lower_max, out=out)
    # t* = 2 + lower_right where the lower row wins, else upper_right, in bit operations on uint8 (np.where is slower):
    # ur ^ (lower & (lr ^ ur)) picks lr or ur, and adding lower twice adds the 2
    ur, lr, lo = upper_right.view(np.uint8), lower_right.view(np.uint8), lower.view(np.uint8)
    if argmax is None:
        argmax = xp.bitwise_xor(lr, ur)
    else:
        xp.bitwise_xor(lr, ur, out=argmax)  # one slice of the batch, into its rows
    argmax &= lo
    argmax ^= ur
    argmax += lo
    argmax += lo
    return out, argmax


#: Bytes of input the shifted 2x2 kernel (``_maxpool2x2_shifted``) takes at a time: it runs larger inputs a chunk
#: of images at a time, so that a chunk and its temporaries (reused buffers, ``_scratch``) stay in the caches;
#: its passes cover the whole flat input, four times the output. Unchunked it ran 0.64-0.68x the time of
#: ``_maxpool2x2_forward`` for inputs of 1.4 to 3.2 MB but 0.97x at 6.4 MB and 1.04x at 10.8 MB; chunked, 0.53-0.77x
#: from 1.4 to 10.8 MB (``python -m benchmarks.pool_kernels``, AMD EPYC with AVX-512, 2 MiB of L2 per core, one
#: thread). In whole training steps the gain is within this machine's noise: 1.03x for the original network and
#: 0.98x for ``deep_cnn`` (medians of 15 alternating rounds, spreads 0.90-1.30 and 0.85-1.04).
SHIFTED_CHUNK_BYTES = 2 << 20


def _kernel_2x2(x: np.ndarray, g: PoolGeometry) -> Any:
    """The rule between the two 2x2 kernels: the shifted one for a contiguous NumPy array of even height and
    width, else ``_maxpool2x2_forward`` (odd sizes leave rows or columns out; a device array keeps its kernels)."""
    if get_array_module(x) is np and g.H % 2 == 0 and g.W % 2 == 0 and x.flags.c_contiguous:
        return _maxpool2x2_shifted
    return _maxpool2x2_forward


def _maxpool2x2_shifted(x: np.ndarray, g: PoolGeometry, out: np.ndarray | None = None,
                        argmax: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """2x2 windows, stride 2, ``x`` contiguous with even H and W: ``_maxpool2x2_forward``'s maximum and window
    index, bit for bit, from contiguous passes over the flat input instead of strided views.

    With :math:`f` the flat input (:math:`N C H W` values) and :math:`p = 2 q W + 2 w` the flat position of
    window :math:`(q, w)`'s upper left corner (:math:`q` counting the (n, c, h) rows of the output):

    .. math::
        m_p = \\max(f_p, f_{p+1}), \\quad r_p = [f_{p+1} > f_p], \\qquad
        y_{q,w} = \\max(m_p, m_{p+W}), \\quad \\ell_p = [m_{p+W} > m_p], \\quad
        t^* = 2 \\ell_p + (r_{p+W} \\text{ if } \\ell_p \\text{ else } r_p)

    Each line is one NumPy pass over the whole flat array shifted by 1 or :math:`W` (``f[:-1]`` against
    ``f[1:]``), contiguous and vectorised; the positions that are not a window's corner compute values nobody
    reads. The same comparisons in the same order as ``_maxpool2x2_forward`` (strict ``>``: the first maximum in
    row-major window order), so the results are identical, NaN included; only the memory order differs, and the
    last step gathers every window's corner (a strided copy of a quarter of the values). Inputs larger than
    :data:`SHIFTED_CHUNK_BYTES` run a chunk of images at a time, each chunk written into its rows of the output.
    """
    if out is None:
        out = np.empty((g.N, g.C, g.Ho, g.Wo), x.dtype)
        argmax = np.empty((g.N, g.C, g.Ho, g.Wo), np.uint8)
    chunk = max(1, SHIFTED_CHUNK_BYTES // max(1, x[:1].nbytes))
    if chunk < g.N:
        for lo in range(0, g.N, chunk):
            part = slice(lo, min(lo + chunk, g.N))
            _maxpool2x2_shifted(x[part], g._replace(N=part.stop - lo), out[part], argmax[part])
        return out, argmax
    W = g.W
    f = x.reshape(-1)  # (N C H W,), a view: x is contiguous
    size = f.size
    left, right = f[:-1], f[1:]
    pair_max = _scratch("pair_max", size, x.dtype)  # m_p = max(f_p, f_p+1)
    pair_max[-1] = 0  # the last entry has no pair: defined, read only where no corner is
    np.maximum(left, right, out=pair_max[:-1])  # propagates NaN like PyTorch
    right_wins = _scratch("right_wins", size, np.uint8)  # r_p, as 0 or 1
    right_wins[-1] = 0
    np.greater(right, left, out=right_wins[:-1].view(np.bool_))
    upper, lower = pair_max[:-W], pair_max[W:]  # the window's two rows' maxima, at p and p + W
    window_max = _scratch("window_max", size, x.dtype)  # y at the corners; the last W entries are never read
    np.maximum(upper, lower, out=window_max[:-W])
    lower_wins = _scratch("lower_wins", size, np.uint8)[:-W]  # l_p
    np.greater(lower, upper, out=lower_wins.view(np.bool_))
    ur, lr = right_wins[:-W], right_wins[W:]
    code = _scratch("code", size, np.uint8)  # t* at the corners; the last W entries are never read
    t = code[:-W]
    np.bitwise_xor(lr, ur, out=t)  # ur ^ (l & (lr ^ ur)) picks lr or ur, and adding l twice adds the 2
    t &= lower_wins
    t ^= ur
    t += lower_wins
    t += lower_wins
    rows = g.N * g.C * g.Ho  # q: the output's (n, c, h) rows
    corners = slice(0, 2 * g.Wo, 2)  # the upper left corners p = 2 q W + 2 w, w < Wo, of row q's windows
    out.reshape(rows, g.Wo)[...] = window_max.reshape(rows, 2 * W)[:, corners]
    argmax.reshape(rows, g.Wo)[...] = code.reshape(rows, 2 * W)[:, corners]
    return out, argmax


_SCRATCH = threading.local()  # per thread: the shifted kernel's temporaries, reused from call to call


def _scratch(name: str, size: int, dtype: Any) -> np.ndarray:
    """A flat buffer of ``size`` entries for this thread, reused across calls (a fresh array each call would be
    fresh memory, whose page faults cost the shifted kernel more than its passes); at most a chunk's size
    (:data:`SHIFTED_CHUNK_BYTES` of input) per buffer and thread."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.size < size or buffer.dtype != dtype:
        buffer = buffers[name] = np.empty(size, dtype)
    return buffer[:size]


def avgpool2d_forward(x: np.ndarray, kernel_size: int | tuple[int, int] = 2,
                      stride: int | tuple[int, int] | None = None) -> tuple[np.ndarray, Any]:
    """Average pooling over (kh, kw) windows moved by (sh, sw) (no padding, so every divisor is kh kw).

    Notes
    -----
    .. math::
        y_{n,c,h,w} = \\frac{1}{k_h k_w} \\sum_{i,j} x_{n,c,\\,s_h h + i,\\, s_w w + j}, \\qquad
        \\frac{\\partial L}{\\partial x_{n,c,s_h h + i, s_w w + j}}
            \\mathrel{+}= \\frac{dy_{n,c,h,w}}{k_h k_w}

    Shape
    -----
    ``x`` (N, C, H, W) -> ``y`` (N, C, Ho, Wo), :math:`H_{out} = \\lfloor (H - k_h) / s_h \\rfloor + 1`.
    """
    xp = get_array_module(x)
    g = pool_geometry(x.shape, kernel_size, stride)
    views = _offsets(x, g)
    out = xp.array(next(views))  # (N, C, Ho, Wo)
    for view in views:
        out += view
    out *= x.dtype.type(1.0 / (g.kh * g.kw))
    return out, (g, x.dtype)


def avgpool2d_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of :func:`avgpool2d_forward`: ``dout / (kh kw)`` spread over each window. Shape of ``x``."""
    g, dtype = cache
    dx, disjoint = _grad_buffer(g, dtype, get_array_module(dout))
    share = dout * dtype.type(1.0 / (g.kh * g.kw))  # (N, C, Ho, Wo)
    for view in _offsets(dx, g):
        if disjoint:
            view[...] = share
        else:
            view += share
    return dx


def global_avgpool2d_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    """Mean of each channel over all pixels.

    Notes
    -----
    .. math::
        y_{n,c} = \\frac{1}{H W} \\sum_{h,w} x_{n,c,h,w}, \\qquad
        \\frac{\\partial L}{\\partial x_{n,c,h,w}} = \\frac{dy_{n,c}}{H W}

    Shape
    -----
    ``x`` (N, C, H, W) -> ``y`` (N, C).
    """
    N, C, H, W = x.shape
    out = x.reshape(N, C, H * W).mean(axis=2)  # (N, C, H*W) -> (N, C): a reduction over one contiguous axis
    return out, (x.shape, x.dtype)


def global_avgpool2d_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """Gradient of :func:`global_avgpool2d_forward`, shape (N, C, H, W)."""
    xp = get_array_module(dout)
    (N, C, H, W), dtype = cache
    dx = xp.empty((N, C, H, W), dtype=dtype)
    dx[...] = (dout * dtype.type(1.0 / (H * W)))[:, :, None, None]  # (N, C) -> (N, C, 1, 1), broadcast
    return dx


# -- padding -------------------------------------------------------------------------------------------------
class PaddedPoolCache(NamedTuple):
    """What the padded poolings' backward needs: the unpadded pooling's cache, the padding, the divisor scale."""

    inner: Any
    padding: tuple[int, int]
    scale: Any  # None, or (Ho, Wo): k_h k_w / (real pixels in each window), for averages without the padding


def _pad(x: np.ndarray, padding: tuple[int, int], value: float) -> np.ndarray:
    """``x`` (N, C, H, W) with ``padding`` (ph, pw) rows and columns of ``value`` on each side."""
    ph, pw = padding
    xp = get_array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _crop(dx: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """The gradient of the unpadded input: the padded input's gradient without its border."""
    ph, pw = padding
    H, W = dx.shape[2] - 2 * ph, dx.shape[3] - 2 * pw
    return get_array_module(dx).ascontiguousarray(dx[:, :, ph:ph + H, pw:pw + W])


def maxpool2d_padded_forward(x: np.ndarray, kernel_size: int | tuple[int, int], stride: Any,
                             padding: tuple[int, int]) -> tuple[np.ndarray, PaddedPoolCache]:
    """Max pooling with ``padding`` (ph, pw) on each side, as ``torch.nn.MaxPool2d(..., padding=p)``.

    Notes
    -----
    The border is :math:`-\\infty`, so a padded position is never a window's maximum (PyTorch requires
    :math:`p \\le k / 2`, so every window holds a real pixel) and gets no gradient:

    .. math::
        y = \\operatorname{maxpool}(x^{pad}), \\quad x^{pad} = x \\text{ with } p \\text{ rows and columns of }
        -\\infty \\text{ around it}, \\qquad \\frac{\\partial L}{\\partial x} = \\operatorname{crop}_p
        \\Big(\\frac{\\partial L}{\\partial x^{pad}}\\Big)

    Shape
    -----
    ``x`` (N, C, H, W) -> (N, C, Ho, Wo), :math:`H_o = \\lfloor (H + 2 p_h - k_h) / s_h \\rfloor + 1`.
    """
    y, inner = maxpool2d_forward(_pad(x, padding, -np.inf), kernel_size, stride)
    return y, PaddedPoolCache(inner, padding, None)


def maxpool2d_padded_backward(dout: np.ndarray, cache: PaddedPoolCache) -> np.ndarray:
    """Gradient of :func:`maxpool2d_padded_forward`, shape of ``x``."""
    return _crop(maxpool2d_backward(dout, cache.inner), cache.padding)


def window_counts(size: tuple[int, int], kernel_size: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int]) -> np.ndarray:
    """(Ho, Wo): how many real (not padding) pixels each window of a padded (H, W) input covers."""
    (H, W), (kh, kw), (sh, sw), (ph, pw) = size, kernel_size, stride, padding
    rows = [min(h * sh + kh, H + ph) - max(h * sh, ph) for h in range((H + 2 * ph - kh) // sh + 1)]
    cols = [min(v * sw + kw, W + pw) - max(v * sw, pw) for v in range((W + 2 * pw - kw) // sw + 1)]
    return np.outer(rows, cols)


def avgpool2d_padded_forward(x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int],
                             padding: tuple[int, int], count_include_pad: bool = True
                             ) -> tuple[np.ndarray, PaddedPoolCache]:
    """Average pooling with ``padding`` (ph, pw) of zeros, as ``torch.nn.AvgPool2d(..., padding=p)``.

    Notes
    -----
    With ``count_include_pad`` (PyTorch's default) every window divides by :math:`k_h k_w`, padding included;
    without it (ONNX's default) by the number :math:`m_{hw}` of real pixels it covers:

    .. math::
        y_{n,c,h,w} = \\frac{1}{m_{hw}} \\sum_{i,j} x^{pad}_{n,c,\\,s_h h + i,\\, s_w w + j}, \\qquad
        \\frac{\\partial L}{\\partial x^{pad}_{n,c,s_h h + i, s_w w + j}} \\mathrel{+}= \\frac{dy_{n,c,h,w}}{m_{hw}}

    computed as the unpadded average (divisor :math:`k_h k_w`) scaled by :math:`k_h k_w / m_{hw}`
    (:func:`window_counts`), forward and backward.

    Shape
    -----
    ``x`` (N, C, H, W) -> (N, C, Ho, Wo), :math:`H_o = \\lfloor (H + 2 p_h - k_h) / s_h \\rfloor + 1`.
    """
    y, inner = avgpool2d_forward(_pad(x, padding, 0.0), kernel_size, stride)
    scale = None
    if not count_include_pad:
        counts = window_counts(x.shape[2:], kernel_size, stride, padding)
        scale = get_array_module(x).asarray((kernel_size[0] * kernel_size[1]) / counts, dtype=x.dtype)
        y *= scale
    return y, PaddedPoolCache(inner, padding, scale)


def avgpool2d_padded_backward(dout: np.ndarray, cache: PaddedPoolCache) -> np.ndarray:
    """Gradient of :func:`avgpool2d_padded_forward`, shape of ``x``."""
    if cache.scale is not None:
        dout = dout * cache.scale
    return _crop(avgpool2d_backward(dout, cache.inner), cache.padding)
