"""Where a convolution's time goes: one slice of ``deep_cnn``'s two heavy convolutions (the 64 images one worker
gets at batch 128), its parts timed on one thread with a one-thread BLAS, alone and with a second slice running the
same part on the other core at the same time (what the worker threads do).

The parts: the forward pass (im2col and the product, chunk by chunk), the weight gradient (im2col again and its
product), the input gradient (the flipped-kernel convolution of ``dout``), im2col alone over every chunk, and the
forward's products alone at the chunk's shapes; with the useful multiply-adds each does, in GFLOP/s (the
widened stride-1 grid computes (W + 2) / W as many, which the rate leaves out). Run it with
``python -m benchmarks.conv_parts [--rounds 9]``; docs/speed.md quotes it.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import numpy as np

from benchmarks.machine import cpu_name
from numpycnn.functional import conv as C
from numpycnn.functional.conv_im2col import Workspace
from numpycnn.functional.conv_tuned import backward_tuned, forward_tuned, im2col

#: (N, C, H, F): the slice of each convolution, 3x3, padding 1.
SHAPES = ((64, 32, 28, 32), (64, 32, 14, 64))


def parts(N: int, Cin: int, H: int, F: int, seed: int) -> dict[str, tuple[Callable[[], object], float]]:
    """``{part: (run, flops)}`` for one slice, each with its own arrays and workspace."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, Cin, H, H)).astype(np.float32)
    w = (rng.standard_normal((F, Cin, 3, 3)) * 0.1).astype(np.float32)
    dout = rng.standard_normal((N, F, H, H)).astype(np.float32)
    g = C.conv_geometry(x.shape, w.shape, 1, 1, 4, C.CHUNK_BYTES)
    ws, out, dx = Workspace(), np.empty((N, F, H, H), np.float32), np.empty_like(x)
    cache = forward_tuned(x, w, None, g, ws, out)
    K, L = Cin * 9, H * g.Wq
    w_mat = w.reshape(F, K)
    cols = rng.standard_normal((K, g.chunk * L)).astype(np.float32)
    product = np.empty((F, g.chunk * L), np.float32)
    flops = 2.0 * F * K * N * H * H  # one product's multiply-adds, x 2
    chunks = range(0, N, g.chunk)
    return {
        "forward": (lambda: forward_tuned(x, w, None, g, ws, out), flops),
        "weight gradient": (lambda: backward_tuned(dout, cache, None), flops),
        "input gradient": (lambda: C._input_grad_by_correlation(dout, cache.w_mat, g, ws, dx), flops),
        "im2col alone": (lambda: [im2col(x[lo:lo + g.chunk], g, ws) for lo in chunks], 0.0),
        "forward products alone": (lambda: [np.matmul(w_mat, cols, out=product) for _ in chunks], flops),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise SystemExit('benchmarks.conv_parts needs threadpoolctl: pip install "numpycnn[speed]"') from None
    print(f"Machine: {cpu_name()}; one BLAS thread per slice; median of {args.rounds} alternating rounds.\n")
    print("| convolution slice (N, C, H) -> F | part | alone ms | two slices at once ms | GFLOP/s alone |")
    print("|---|---|---|---|---|")
    with threadpool_limits(1):
        for N, Cin, H, F in SHAPES:
            a, b = parts(N, Cin, H, F, 0), parts(N, Cin, H, F, 1)
            for name, (run, flops) in a.items():
                alone, both = [], []
                run()
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    run()
                    alone.append(time.perf_counter() - start)
                    threads = [threading.Thread(target=side[name][0]) for side in (a, b)]
                    start = time.perf_counter()
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    both.append(time.perf_counter() - start)
                t1 = float(np.median(alone))
                rate = f"{flops / t1 / 1e9:.0f}" if flops else ""
                print(f"| ({N}, {Cin}, {H}) -> {F} | {name} | {t1 * 1e3:.1f} | {np.median(both) * 1e3:.1f} | {rate} |")


if __name__ == "__main__":
    main()
