"""What recording gradient health costs per training step: ``GradientHealth.before_step`` + ``after_step`` for
``deep_cnn``'s 431,018 parameters against one forward and backward pass at batch 128, and for the original
network's 13,610 at batch 64 (a step so short that the recording's fixed cost shows).

``python -m benchmarks.health_cost`` prints the median and minimum of each (50 recordings, 5 passes), the
figures ``numpycnn.training.health`` and docs/training.md quote.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from benchmarks.machine import cpu_name
from numpycnn.layers.losses import CrossEntropyLoss
from numpycnn.model.zoo import deep_cnn, seed_cnn
from numpycnn.training.health import GradientHealth


def measure(model: object, batch: int) -> None:
    """Time the recording and a forward and backward pass of ``model`` at ``batch`` 28x28 images."""
    loss = CrossEntropyLoss()
    x = np.random.default_rng(0).random((batch, 1, 28, 28)).astype(np.float32)
    y = np.zeros(batch, np.int64)

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
    for _ in range(5 if batch > 64 else 50):
        start = time.perf_counter()
        step()
        passes.append(time.perf_counter() - start)
    print(f"{model.num_parameters():,} parameters: gradient health per step: median "
          f"{1e3 * statistics.median(record):.2f} ms, min {1e3 * min(record):.2f} ms; forward + backward, batch "
          f"{batch}: median {1e3 * statistics.median(passes):.2f} ms, min {1e3 * min(passes):.2f} ms")


def main() -> None:
    """Time the recording against a pass, for ``deep_cnn`` and the original network."""
    print(cpu_name())
    print("deep_cnn: ", end="")
    measure(deep_cnn(seed=0), 128)
    print("original network: ", end="")
    measure(seed_cnn(seed=0), 64)


if __name__ == "__main__":
    main()
