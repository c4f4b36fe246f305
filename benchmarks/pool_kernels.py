"""The two 2x2 max-pooling kernels side by side: ``_maxpool2x2_forward`` (strided views of the four corners) and
``_maxpool2x2_shifted`` (contiguous passes over the shifted flat input), alternating in one process, at the
slice shapes the original network and ``deep_cnn`` give them (one worker's half of a batch), one thread.

The measurement behind :data:`numpycnn.functional.pool.SHIFTED_MAX_BYTES`. Run it with
``python -m benchmarks.pool_kernels [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.machine import cpu_name
from numpycnn.functional import pool

#: Input slices (N, C, H, W): the original network's batch of 64; deep_cnn's halves of 128 (both poolings), and
#: a quarter of its first.
SHAPES = ((64, 8, 26, 26), (500, 8, 26, 26), (16, 32, 28, 28), (64, 64, 14, 14), (64, 32, 28, 28))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"Machine: {cpu_name()}; one thread; median of {args.rounds} alternating rounds, each the mean of "
          "10 calls.\n")
    print("| input slice | MB | strided us | shifted us | shifted / strided |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        g = pool.pool_geometry(x.shape, 2, 2)
        times: dict[str, list[float]] = {"strided": [], "shifted": []}
        kernels = {"strided": pool._maxpool2x2_forward, "shifted": pool._maxpool2x2_shifted}
        for _ in range(args.rounds):
            for name, kernel in kernels.items():
                kernel(x, g)
                start = time.perf_counter()
                for _ in range(10):
                    kernel(x, g)
                times[name].append((time.perf_counter() - start) / 10)
        a, b = (float(np.median(times[k])) for k in ("strided", "shifted"))
        print(f"| {shape} | {x.nbytes / 1e6:.1f} | {a * 1e6:,.0f} | {b * 1e6:,.0f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
