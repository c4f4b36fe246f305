"""The plain im2col + product + col2im convolution (functional.conv_plain) equals the loops and the tuned path."""

from __future__ import annotations

import numpy as np
import pytest

from numpycnn import reference
from numpycnn.functional.conv import conv2d_backward, conv2d_forward
from numpycnn.functional.conv_plain import conv2d_backward_plain, conv2d_forward_plain

#: (x shape, w shape, stride, padding): stride 1 and 2, padding, non-square, a batch of one, one channel
CASES = [((2, 3, 7, 6), (4, 3, 3, 3), 1, 0), ((1, 1, 8, 8), (2, 1, 3, 3), 2, 1),
         ((3, 2, 5, 9), (5, 2, 2, 4), (2, 1), (1, 2)), ((2, 4, 6, 6), (3, 4, 1, 1), 1, 0)]


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding"), CASES)
def test_plain_convolution_equals_the_loops_and_the_tuned_path(x_shape, w_shape, stride, padding):
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=x_shape), rng.normal(size=w_shape), rng.normal(size=w_shape[0])
    y = conv2d_forward_plain(x, w, b, stride, padding)
    np.testing.assert_allclose(y, reference.conv2d_forward(x, w, b, stride, padding), rtol=1e-12, atol=1e-12)
    tuned, cache = conv2d_forward(x, w, b, stride, padding)
    np.testing.assert_allclose(y, tuned, rtol=1e-12, atol=1e-12)
    dy = rng.normal(size=y.shape)
    plain = conv2d_backward_plain(dy, x, w, stride, padding)
    for got, loops, fast in zip(plain, reference.conv2d_backward(dy, x, w, stride, padding),
                                conv2d_backward(dy, cache), strict=True):
        np.testing.assert_allclose(got, loops, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got, fast, rtol=1e-12, atol=1e-12)
