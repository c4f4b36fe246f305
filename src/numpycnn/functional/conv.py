"""2-D convolution (cross-correlation, as in PyTorch): the entry point, its rules, and where each part lives.

The definition is the loops of :func:`numpycnn.functional.reference.conv2d_forward`; the equations of the
forward pass and both gradients are in ``docs/math.md`` and in the docstrings of :func:`conv2d_forward`,
:func:`conv2d_backward` (tuned path) and :func:`conv2d_forward_general`, :func:`conv2d_backward_general` (any
dilation and groups). **Read** :mod:`numpycnn.functional.conv_plain` **first**: the same sums as plain im2col, one
product and col2im for the whole batch, in some thirty lines (it is for reading; nothing runs it but the tests,
which hold it equal to the loops and to this module). The code that runs is three modules, read in this order,
each importing only the ones before it:

1. :mod:`numpycnn.functional.conv_im2col`, the general path: chunks of images, im2col, one matrix product
   batched over the groups, col2im. Every dilated or grouped convolution runs it.
2. :mod:`numpycnn.functional.conv_tuned`, **the tuned kernels** for ``dilation=1, groups=1`` (every layer of the
   shipped networks): the same steps in a batch-major or channel-major layout and, for stride 1, on a widened
   grid whose windows are contiguous runs.
3. :mod:`numpycnn.functional.conv_parallel`, **the batch split** over the worker threads of
   :mod:`numpycnn.core.parallel`.

This module holds the rules that choose between them, written next to the measurements behind them:
:func:`fast_path` (tuned or general), :func:`batch_major` and :func:`widened_grid` (the tuned layout),
:data:`CHUNK_BYTES` (images per chunk), the stride-1 input gradient by correlation (:func:`conv2d_backward`), and
:func:`numpycnn.functional.conv_parallel.conv_slices` (how the batch is split). Every public name of the
modules above is importable from here too, as before the split.

**Fast path, stride-1 input gradient (correlation).** The input gradient is by definition col2im of
``W_mat^T dY``. For stride 1 and padding ``p < k`` it is also a forward convolution of ``dY`` with the flipped
kernel (see :func:`conv2d_backward`), whose im2col is plain copies instead of col2im's read-add-write passes;
that is the rule for choosing it, and the tests hold both equal to the loop definition and to PyTorch.

**Threads.** On the CPU the batch is cut into slices that depend only on the shapes (never on the number of
workers), each slice runs the kernels above with its own workspace, and the slices' weight and bias gradients
are added in slice order: any number of workers gives the same bits (:mod:`numpycnn.functional.conv_parallel`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core.backend import get_array_module
from numpycnn.functional.conv_im2col import (  # noqa: F401  (public names re-exported)
    GeneralConvCache,
    GeneralGeometry,
    Workspace,
    _pair,
    backward_general,
    check_dout,
    col2im_general,
    conv2d_output_size,
    forward_general,
    im2col_general,
)
from numpycnn.functional.conv_im2col import general_geometry as _general_geometry
from numpycnn.functional.conv_parallel import backward_in_slices, conv_slices, forward_in_slices
from numpycnn.functional.conv_tuned import (  # noqa: F401  (public names re-exported)
    ConvCache,
    ConvGeometry,
    backward_tuned,
    forward_tuned,
    im2col,
)

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


def splits_batch(xp: Any, w_shape: tuple[int, ...]) -> bool:
    """The rule for the worker threads (:mod:`numpycnn.functional.conv_parallel`): split the batch on a CPU, for
    convolutions with large products, ``K = C_w kh kw >= SMALL_K`` (``C_w`` the weight's input channels).

    A GPU runs one large kernel better than several small ones. Below :data:`SMALL_K` the convolution runs one
    small product per image (:func:`batch_major`), bound by memory rather than arithmetic, and the two halves of
    the batch only share the same memory bandwidth: measured on a 2-core AMD EPYC (``python -m
    benchmarks.split_rule`` and alternating runs of the original network's inference), splitting ``deep_cnn``'s
    first convolution (K = 9) changed its time by 1.01x-1.08x (no gain), and the original network's inference at
    batch 1000 ran 13% faster with its convolution unsplit (median of 15 alternating rounds).
    """
    _, c_per_group, kh, kw = w_shape
    return xp is np and not batch_major(c_per_group, kh, kw)


def widened_grid(C: int, kh: int, kw: int, F: int) -> bool:
    """Whether a stride-1 convolution uses the widened grid: when its ``C kh kw`` im2col copies outnumber the
    ``2 F`` output-sized copies the grid costs (the crop in forward, the widening of ``dY`` in backward).

    Measured here: faster for 32 -> 32 channels at 28x28 (K = 288), slower for the single-channel first layers
    (K = 9, F = 8 or 32), where the strided copies are few and the crop is the larger cost.
    """
    return C * kh * kw >= 2 * F


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


def general_geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int | tuple[int, int],
                     padding: int | tuple[int, int], dilation: int | tuple[int, int], groups: int,
                     itemsize: int = 4, chunk_bytes: int | None = None) -> GeneralGeometry:
    """The sizes of a dilated or grouped convolution (:func:`numpycnn.functional.conv_im2col.general_geometry`),
    a chunk's columns taking about ``chunk_bytes`` (default :data:`CHUNK_BYTES`); raises ``ValueError`` when the
    weight does not fit the input and ``groups``, or the dilated kernel spans more than the padded input."""
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    return _general_geometry(x_shape, w_shape, stride, padding, dilation, groups, itemsize, chunk_bytes)


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
    xp = get_array_module(x)
    chunk_bytes = CHUNK_BYTES if xp is np else DEVICE_CHUNK_BYTES  # the rule: cache-sized on a CPU only
    itemsize = x.dtype.itemsize
    if fast_path(dilation, groups):  # the rule, above
        g: Any = conv_geometry(x.shape, w.shape, stride, padding, itemsize, chunk_bytes)

        def one(x_s: np.ndarray, ws: Workspace | None, out_s: np.ndarray) -> Any:  # one slice of the batch
            g_s = conv_geometry(x_s.shape, w.shape, stride, padding, itemsize, chunk_bytes)
            return forward_tuned(x_s, w, b, g_s, ws, out_s)
    else:
        g = general_geometry(x.shape, w.shape, stride, padding, dilation, groups, itemsize, chunk_bytes)

        def one(x_s: np.ndarray, ws: Workspace | None, out_s: np.ndarray) -> Any:
            g_s = general_geometry(x_s.shape, w.shape, stride, padding, dilation, groups, itemsize, chunk_bytes)
            return forward_general(x_s, w, b, g_s, ws, out_s)
    out = xp.empty((g.N, g.F, g.Ho, g.Wo), dtype=x.dtype)
    parts = conv_slices(x.shape, w.shape, g.Ho, g.Wo) if splits_batch(xp, w.shape) else [slice(0, g.N)]
    if len(parts) == 1:
        return out, one(x, workspace, out)
    split = forward_in_slices(one, x, out, parts, workspace)  # numpycnn.functional.conv_parallel
    return out, split[0][1]._replace(x=x, cols=None, geometry=g, workspace=workspace, parts=tuple(split))


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
    xp = get_array_module(dout)
    g = cache.geometry
    check_dout(dout, g)
    dout = dout.astype(_weight(cache).dtype, copy=False)  # the forward pass's dtype
    dx = xp.empty((g.N, g.C, g.H, g.W), dtype=dout.dtype) if need_dx else None
    if cache.parts is None:
        dw, db = _backward_one(dout, cache, dx)
    else:  # numpycnn.functional.conv_parallel: dw and db summed over the slices in slice order
        dw, db = backward_in_slices(_backward_one, dout, list(cache.parts), dx)
    return dx, dw, db


def _weight(cache: ConvCache | GeneralConvCache) -> np.ndarray:
    return cache.w_grp if isinstance(cache, GeneralConvCache) else cache.w_mat


def _backward_one(dout: np.ndarray, cache: ConvCache | GeneralConvCache, dx: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(dw, db)`` of one slice's cache, its input gradient written into ``dx`` if given: the general path's
    col2im, or the tuned path's col2im or correlation, as the rule says (:func:`conv2d_backward`)."""
    if isinstance(cache, GeneralConvCache):
        return backward_general(dout, cache, dx)
    g = cache.geometry
    correlate = g.sh == g.sw == 1 and g.ph < g.kh and g.pw < g.kw  # the rule for the fast input gradient
    dw, db = backward_tuned(dout, cache, None if correlate else dx)
    if dx is not None and correlate:
        _input_grad_by_correlation(dout, cache.w_mat, g, cache.workspace, dx)
    return dw, db


def _input_grad_by_correlation(dout: np.ndarray, w_mat: np.ndarray, g: ConvGeometry,
                               workspace: Workspace | None, dx: np.ndarray) -> None:
    """Input gradient of a stride-1 convolution with ``p < k``: ``conv2d_forward(dout, w', padding=k-1-p)``,
    written into ``dx``."""
    xp = get_array_module(dout)
    w = w_mat.reshape(g.F, g.C, g.kh, g.kw)
    w_flip = xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (F, C, kh, kw) -> (C, F, kh, kw)
    q = (g.kh - 1 - g.ph, g.kw - 1 - g.pw)
    inner = workspace.child("dx") if workspace is not None else None
    chunk_bytes = CHUNK_BYTES if xp is np else DEVICE_CHUNK_BYTES
    forward_tuned(dout, w_flip, None, conv_geometry(dout.shape, w_flip.shape, 1, q, dout.dtype.itemsize, chunk_bytes),
                  inner, dx)


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
    out = xp.empty((g.N, g.F, g.Ho, g.Wo), dtype=x.dtype)
    return out, forward_general(x, w, b, g, workspace, out)


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
    return conv2d_backward(dout, cache, need_dx)
