"""Does splitting an operation over the worker threads pay? Each heavy operation of the original network and of
``deep_cnn`` at its training (and inference) shapes, timed split as the engine splits it and unsplit (one slice:
the whole array in one call, the BLAS with its own threads), alternating in one process, many rounds.

This is the measurement behind the rule in :func:`numpycnn.core.parallel.slices` (which operations are cut, and
when). Run it with ``python -m benchmarks.split_rule [--rounds 15]``; it prints one table, the machine named.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from benchmarks.machine import cpu_name
from numpycnn.core import parallel
from numpycnn.functional.conv import conv2d_backward, conv2d_forward
from numpycnn.functional.fused import (
    batchnorm_relu_backward,
    batchnorm_relu_forward,
    relu_maxpool2d_backward,
    relu_maxpool2d_forward,
)
from numpycnn.functional.pool import maxpool2d_backward, maxpool2d_forward

#: Runs per timing (their mean); each round times both sides, one after the other.
REPEATS = 3


def cases(rng: np.random.Generator) -> list[tuple[str, Callable[[], object]]]:
    """``(label, run)`` for every measured operation; ``run`` does forward (and backward where training)."""
    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    out: list[tuple[str, Callable[[], object]]] = []

    def conv(label: str, x_shape: tuple[int, ...], f: int, padding: int, train: bool) -> None:
        x, w = normal(*x_shape), normal(f, x_shape[1], 3, 3) * 0.1

        def run() -> None:
            y, cache = conv2d_forward(x, w, None, 1, padding)
            if train:
                conv2d_backward(y, cache)
        out.append((label, run))

    conv("original: conv 1->8, batch 64, train", (64, 1, 28, 28), 8, 0, True)
    conv("original: conv 1->8, batch 1000, inference", (1000, 1, 28, 28), 8, 0, False)
    conv("deep: conv 1->32 28x28, batch 128, train", (128, 1, 28, 28), 32, 1, True)
    conv("deep: conv 32->32 28x28, batch 128, train", (128, 32, 28, 28), 32, 1, True)
    conv("deep: conv 32->64 14x14, batch 128, train", (128, 32, 14, 14), 64, 1, True)

    def relu_pool(label: str, shape: tuple[int, ...], train: bool) -> None:
        x = normal(*shape)

        def run() -> None:
            y, cache = relu_maxpool2d_forward(x)
            if train:
                relu_maxpool2d_backward(y, cache)
        out.append((label, run))

    relu_pool("original: relu+maxpool (64, 8, 26, 26), train", (64, 8, 26, 26), True)
    relu_pool("original: relu+maxpool (1000, 8, 26, 26), inference", (1000, 8, 26, 26), False)

    for shape in [(128, 32, 28, 28), (128, 64, 14, 14)]:
        x = normal(*shape)

        def pool(x: np.ndarray = x) -> None:
            y, cache = maxpool2d_forward(x)
            maxpool2d_backward(y, cache)
        out.append((f"deep: maxpool {shape}, train", pool))
        gamma, beta = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)

        def bn(x: np.ndarray = x, gamma: np.ndarray = gamma, beta: np.ndarray = beta) -> None:
            y, cache = batchnorm_relu_forward(x, gamma, beta)
            batchnorm_relu_backward(y, cache)
        out.append((f"deep: batchnorm+relu {shape}, train", bn))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    split_slices = parallel.MAX_SLICES
    rows = []
    for label, run in cases(np.random.default_rng(0)):
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for split in (True, False):
                parallel.MAX_SLICES = split_slices if split else 1
                run()  # warm: buffers and the pool
                start = time.perf_counter()
                for _ in range(REPEATS):
                    run()
                times[split].append((time.perf_counter() - start) / REPEATS)
        parallel.MAX_SLICES = split_slices
        ratios = sorted(a / b for a, b in zip(times[True], times[False], strict=True))
        rows.append((label, np.median(times[True]) * 1e3, np.median(times[False]) * 1e3, ratios))
    print(f"Machine: {cpu_name()}; {parallel.describe()}; {args.rounds} alternating rounds, medians; "
          "ratio < 1: the split is faster.\n")
    print("| operation | split ms | unsplit ms | split / unsplit, median (min-max) |")
    print("|---|---|---|---|")
    for label, split_ms, whole_ms, ratios in rows:
        print(f"| {label} | {split_ms:.2f} | {whole_ms:.2f} | {np.median(ratios):.2f} "
              f"({ratios[0]:.2f}-{ratios[-1]:.2f}) |")


if __name__ == "__main__":
    main()
