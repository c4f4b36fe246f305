"""Loop-based definitions of convolution and pooling, written the way the original project wrote them.

Every output pixel is computed by its own Python loop iteration straight from the definition, so each function
can be checked by reading it. They are slow (the benchmark times them to show what vectorisation buys) and
serve the tests as the oracle for the fast paths in :mod:`numpycnn.functional`. Arguments are as in the fast
versions: ``x`` (N, C, H, W), ``w`` (F, C / groups, kh, kw), ``b`` (F,) or ``None``, ``stride``, ``padding`` and
``dilation`` ints or pairs, ``groups`` an int.
"""

from __future__ import annotations

import numpy as np

from numpycnn.core.checks import int_pair


def _pad(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Zero-pad the two spatial axes of (N, C, H, W)."""
    N, C, H, W = x.shape
    padded = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    padded[:, :, ph:ph + H, pw:pw + W] = x
    return padded


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int | tuple[int, int] = 1,
                   padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                   groups: int = 1) -> np.ndarray:
    """By loops, :math:`y_{n,f,h,w} = b_f + \\sum_{c,i,j} w_{f,c,i,j} x^{pad}_{n,c_0+c,s_h h+d_h i,s_w w+d_w j}`,
    where :math:`c_0` is the first input channel of filter :math:`f`'s group (0 when ``groups=1``).

    ``w`` is (F, C / groups, kh, kw); filters ``f`` in ``[g F/G, (g + 1) F/G)`` see channels
    ``[g C/G, (g + 1) C/G)``.
    """
    (sh, sw), (ph, pw) = int_pair("reference", "stride", stride), int_pair("reference", "padding", padding, 0)
    dil_h, dil_w = int_pair("reference", "dilation", dilation)
    xp = _pad(x, ph, pw)
    N, C, Hp, Wp = xp.shape
    F, Cg, kh, kw = w.shape
    Fg = F // groups  # filters per group
    Ho, Wo = (Hp - dil_h * (kh - 1) - 1) // sh + 1, (Wp - dil_w * (kw - 1) - 1) // sw + 1
    y = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            c0 = f // Fg * Cg  # the group's first input channel
            for h in range(Ho):
                for v in range(Wo):
                    rows = slice(h * sh, h * sh + dil_h * (kh - 1) + 1, dil_h)  # kh rows, dil_h apart
                    cols = slice(v * sw, v * sw + dil_w * (kw - 1) + 1, dil_w)  # kw columns, dil_w apart
                    window = xp[n, c0:c0 + Cg, rows, cols]  # (C/G, kh, kw)
                    y[n, f, h, v] = np.sum(window * w[f]) + (b[f] if b is not None else 0.0)
    return y


def conv2d_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int | tuple[int, int] = 1,
                    padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
                    groups: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dw, db)`` of :func:`conv2d_forward` by loops: each output pixel sends ``dy`` back through its
    window (the ``kh x kw`` taps, ``d`` apart, of its group's channels).

    .. math::
        dw_f \\mathrel{+}= dy_{n,f,h,w}\\, x^{pad}_{n,group,window}, \\quad
        dx^{pad}_{n,group,window} \\mathrel{+}= dy_{n,f,h,w}\\, w_f, \\quad
        db_f \\mathrel{+}= dy_{n,f,h,w}
    """
    (sh, sw), (ph, pw) = int_pair("reference", "stride", stride), int_pair("reference", "padding", padding, 0)
    dil_h, dil_w = int_pair("reference", "dilation", dilation)
    xp = _pad(x, ph, pw)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w, dtype=x.dtype)
    db = np.zeros(w.shape[0], dtype=x.dtype)
    N, F, Ho, Wo = dy.shape
    Cg, kh, kw = w.shape[1:]
    Fg = F // groups  # filters per group
    for n in range(N):
        for f in range(F):
            group = slice(f // Fg * Cg, f // Fg * Cg + Cg)  # the input channels of f's group
            for h in range(Ho):
                for v in range(Wo):
                    g = dy[n, f, h, v]
                    rows = slice(h * sh, h * sh + dil_h * (kh - 1) + 1, dil_h)
                    cols = slice(v * sw, v * sw + dil_w * (kw - 1) + 1, dil_w)
                    dw[f] += g * xp[n, group, rows, cols]
                    dxp[n, group, rows, cols] += g * w[f]
                    db[f] += g
    H, W = x.shape[2:]
    return dxp[:, :, ph:ph + H, pw:pw + W], dw, db


def _pool_sizes(x: np.ndarray, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None,
                padding: int | tuple[int, int] = 0) -> tuple[int, int, int, int, int, int, int, int]:
    kh, kw = int_pair("reference", "kernel_size", kernel_size)
    sh, sw = (kh, kw) if stride is None else int_pair("reference", "stride", stride)
    ph, pw = int_pair("reference", "padding", padding, minimum=0)
    H, W = x.shape[2:]
    return kh, kw, sh, sw, ph, pw, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


def _pool_pad(x: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def maxpool2d_forward(x: np.ndarray, kernel_size: int | tuple[int, int] = 2,
                      stride: int | tuple[int, int] | None = None, padding: int | tuple[int, int] = 0) -> np.ndarray:
    """:math:`y_{n,c,h,w} = \\max_{i,j} x^{pad}_{n,c,s_h h + i, s_w w + j}`, by loops; the padding is
    :math:`-\\infty`."""
    kh, kw, sh, sw, ph, pw, Ho, Wo = _pool_sizes(x, kernel_size, stride, padding)
    xp = _pool_pad(x, ph, pw, -np.inf)
    N, C = x.shape[:2]
    y = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(Ho):
                for v in range(Wo):
                    y[n, c, h, v] = np.max(xp[n, c, h * sh:h * sh + kh, v * sw:v * sw + kw])
    return y


def maxpool2d_backward(dy: np.ndarray, x: np.ndarray, kernel_size: int | tuple[int, int] = 2,
                       stride: int | tuple[int, int] | None = None, padding: int | tuple[int, int] = 0
                       ) -> np.ndarray:
    """Gradient of :func:`maxpool2d_forward`: each ``dy`` goes to its window's first (row-major) maximum."""
    kh, kw, sh, sw, ph, pw, Ho, Wo = _pool_sizes(x, kernel_size, stride, padding)
    xp = _pool_pad(x, ph, pw, -np.inf)
    N, C = x.shape[:2]
    dxp = np.zeros_like(xp)
    for n in range(N):
        for c in range(C):
            for h in range(Ho):
                for v in range(Wo):
                    window = xp[n, c, h * sh:h * sh + kh, v * sw:v * sw + kw]
                    i, j = divmod(int(np.argmax(window)), kw)  # np.argmax returns the first maximum
                    dxp[n, c, h * sh + i, v * sw + j] += dy[n, c, h, v]
    H, W = x.shape[2:]
    return dxp[:, :, ph:ph + H, pw:pw + W]


def avgpool2d_forward(x: np.ndarray, kernel_size: int | tuple[int, int] = 2,
                      stride: int | tuple[int, int] | None = None, padding: int | tuple[int, int] = 0,
                      count_include_pad: bool = True) -> np.ndarray:
    """:math:`y_{n,c,h,w} = \\frac{1}{m}\\sum_{i,j} x^{pad}_{n,c,s_h h + i, s_w w + j}`, by loops; the padding is 0
    and :math:`m` is :math:`k_h k_w`, or the window's real pixels without ``count_include_pad``."""
    kh, kw, sh, sw, ph, pw, Ho, Wo = _pool_sizes(x, kernel_size, stride, padding)
    xp = _pool_pad(x, ph, pw, 0.0)
    N, C = x.shape[:2]
    H, W = x.shape[2:]
    y = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(Ho):
                for v in range(Wo):
                    window = xp[n, c, h * sh:h * sh + kh, v * sw:v * sw + kw]
                    y[n, c, h, v] = window.sum() / _divisor(h * sh, v * sw, kh, kw, ph, pw, H, W, count_include_pad)
    return y


def _divisor(top: int, left: int, kh: int, kw: int, ph: int, pw: int, H: int, W: int, include: bool) -> int:
    """The number an average window divides by: all its pixels, or only the real (unpadded) ones."""
    if include:
        return kh * kw
    rows = min(top + kh, ph + H) - max(top, ph)
    cols = min(left + kw, pw + W) - max(left, pw)
    return rows * cols


def avgpool2d_backward(dy: np.ndarray, x: np.ndarray, kernel_size: int | tuple[int, int] = 2,
                       stride: int | tuple[int, int] | None = None, padding: int | tuple[int, int] = 0,
                       count_include_pad: bool = True) -> np.ndarray:
    """Gradient of :func:`avgpool2d_forward`: each ``dy / m`` spread evenly over its window."""
    kh, kw, sh, sw, ph, pw, Ho, Wo = _pool_sizes(x, kernel_size, stride, padding)
    N, C = x.shape[:2]
    H, W = x.shape[2:]
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(Ho):
                for v in range(Wo):
                    m = _divisor(h * sh, v * sw, kh, kw, ph, pw, H, W, count_include_pad)
                    dxp[n, c, h * sh:h * sh + kh, v * sw:v * sw + kw] += dy[n, c, h, v] / m
    return dxp[:, :, ph:ph + H, pw:pw + W]
