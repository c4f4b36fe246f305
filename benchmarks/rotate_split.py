"""Random rotation (the costliest augmentation) split over the worker threads or not: ``rotate_images`` on MNIST
batches, with the engine's slices and with one slice (``MAX_SLICES = 1``), alternating in one process.

The measurement behind :data:`numpycnn.training.augment.ROTATE_PASSES`. Run it with
``python -m benchmarks.rotate_split [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.machine import cpu_name
from numpycnn.core import parallel
from numpycnn.datasets import load
from numpycnn.training.augment import rotate_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    images, _ = load("mnist")
    rng = np.random.default_rng(0)
    split_slices = parallel.MAX_SLICES
    print(f"Machine: {cpu_name()}; {parallel.describe()}; median of {args.rounds} alternating rounds, each the mean "
          "of 10 calls.\n")
    print("| batch (uint8 MNIST, bilinear) | slices | split ms | unsplit ms | split / unsplit, median (min-max) |")
    print("|---|---|---|---|---|")
    for batch in (64, 128):
        x = images[:batch]
        degrees = rng.uniform(-10, 10, size=batch)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for split in (True, False):
                parallel.MAX_SLICES = split_slices if split else 1
                rotate_images(x, degrees)
                start = time.perf_counter()
                for _ in range(10):
                    rotate_images(x, degrees)
                times[split].append((time.perf_counter() - start) / 10)
        parallel.MAX_SLICES = split_slices
        ratios = sorted(a / b for a, b in zip(times[True], times[False], strict=True))
        slices = len(parallel.slices(batch, 28 * 28 * 20))
        print(f"| {batch} | {slices} | {np.median(times[True]) * 1e3:.2f} | {np.median(times[False]) * 1e3:.2f} | "
              f"{np.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f}) |")


if __name__ == "__main__":
    main()
