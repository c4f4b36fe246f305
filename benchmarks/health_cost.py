"""What recording gradient health costs per training step: ``GradientHealth.before_step`` + ``after_step`` for
``deep_cnn``'s 431,018 parameters, against one forward and backward pass at batch 128.

``python -m benchmarks.health_cost`` prints the median and minimum of each (50 recordings, 5 passes), the
figures ``numpycnn.training.health`` and docs/training.md quote.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from benchmarks.machine import cpu_name
from numpycnn.layers.losses import CrossEntropyLoss
from numpycnn.model.zoo import deep_cnn
from numpycnn.training.health import GradientHealth


def main() -> None:
    """Time the recording and a forward and backward pass of ``deep_cnn``."""
    model, loss = deep_cnn(seed=0), CrossEntropyLoss()
    x = np.random.default_rng(0).random((128, 1, 28, 28)).astype(np.float32)
    y = np.zeros(128, np.int64)

    def step() -> None:
        model.zero_grad()
        loss.forward(model.forward(x, training=True), y)
        model.backward(loss.backward())

    step()
    health = GradientHealth(model)
    record = []
    for _ in range(50):
        start = time.perf_counter()
        health.before_step()
        health.after_step()
        record.append(time.perf_counter() - start)
    passes = []
    for _ in range(5):
        start = time.perf_counter()
        step()
        passes.append(time.perf_counter() - start)
    print(f"{cpu_name()}; deep_cnn, {model.num_parameters():,} parameters")
    print(f"gradient health per step: median {1e3 * statistics.median(record):.2f} ms, min {1e3 * min(record):.2f} ms")
    print(f"forward + backward, batch 128: median {1e3 * statistics.median(passes):.0f} ms, "
          f"min {1e3 * min(passes):.0f} ms")


if __name__ == "__main__":
    main()
