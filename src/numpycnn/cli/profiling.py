"""Where a training step spends its time: forward and backward time of each step of the model's plan for one batch.

:func:`profile_model` runs the steps of the model's execution plan (:meth:`Sequential.plan`, the same steps
``fit`` runs: a layer on its own, or a fused pair) on a random batch, timing each step's ``forward`` and
``backward`` with :func:`time.perf_counter`, and reports the median over ``repeats`` timed
runs after one untimed warm-up run (which allocates the layers' reusable buffers), and how each step's forward
and backward pass were split over the worker threads of :mod:`numpycnn.core.parallel` (slices and workers).
:func:`format_profile` prints the rows as the table ``numpycnn profile`` shows.

Examples
--------
>>> from numpycnn.models import build_model                          # doctest: +SKIP
>>> rows = profile_model(build_model("seed"), (1, 28, 28), 64, 5)  # doctest: +SKIP
>>> print(format_profile(rows))                                   # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from numpycnn.core import parallel
from numpycnn.core.checks import positive_int


def profile_model(model: Any, input_shape: Sequence[int], batch_size: int = 64,
                  repeats: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """Median forward and backward time of every step of ``model.plan()`` on a batch of random inputs.

    Parameters
    ----------
    model : Sequential
        Its parameters are left unchanged (gradients are overwritten).
    input_shape : sequence of int
        Per-sample input shape, e.g. ``(1, 28, 28)``.
    batch_size, repeats : int
        Images per batch; timed runs (after one warm-up run) whose median is reported.
    seed : int
        Seed of the random input and upstream gradient.

    Returns
    -------
    list of dict
        One row per step: ``index`` (its first layer), ``step`` (its layers, ``"4"`` or ``"4-5"``), ``op``
        (the fused operation, or the layer's class), ``layer`` (its repr), ``output_shape`` (with the batch
        axis), ``params``, ``forward_ms``, ``backward_ms``, ``total_ms``, and ``forward_split`` and
        ``backward_split``, ``[slices, workers]`` of the pass's widest parallel region (``[0, 0]``: none).

    Raises
    ------
    ValueError
        If the model cannot take ``input_shape`` or an argument is out of range.
    """
    batch_size = positive_int("profile_model", "batch_size", batch_size)
    repeats = positive_int("profile_model", "repeats", repeats)
    input_shape = tuple(int(d) for d in input_shape)
    shapes = model.output_shapes(input_shape)  # raises ValueError for an inconsistent shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, *input_shape)).astype(model.dtype)  # (B, *input_shape)
    upstream = rng.standard_normal((batch_size, *shapes[-1])).astype(model.dtype)  # (B, *output_shape)
    steps = model.plan().steps
    forward = np.zeros((repeats, len(steps)))
    backward = np.zeros((repeats, len(steps)))
    splits = [[[0, 0], [0, 0]] for _ in steps]  # per step: forward and backward [slices, workers]
    for run in range(repeats + 1):  # run 0 warms up and is not recorded
        out = x
        for i, step in enumerate(steps):
            parallel.take_usage()
            start = time.perf_counter()
            out = step.forward(out, training=True)
            if run:
                forward[run - 1, i] = time.perf_counter() - start
                splits[i][0] = list(parallel.take_usage()[1:])
        grad = upstream
        for i in range(len(steps) - 1, -1, -1):
            parallel.take_usage()
            start = time.perf_counter()
            grad = steps[i].backward(grad, input_grad=i > 0)  # as fit: nobody reads the input gradient
            if run:
                backward[run - 1, i] = time.perf_counter() - start
                splits[i][1] = list(parallel.take_usage()[1:])
    forward_ms = np.median(forward, axis=0) * 1e3
    backward_ms = np.median(backward, axis=0) * 1e3
    return [
        {
            "index": step.start,
            "step": step.span,
            "op": step.name,
            "layer": step.describe(),
            "output_shape": [batch_size, *shapes[step.stop - 1]],
            "params": sum(layer.num_parameters() for layer in step.layers),
            "forward_ms": float(forward_ms[i]),
            "backward_ms": float(backward_ms[i]),
            "total_ms": float(forward_ms[i] + backward_ms[i]),
            "forward_split": splits[i][0],
            "backward_split": splits[i][1],
        }
        for i, step in enumerate(steps)
    ]


def format_profile(rows: Sequence[dict[str, Any]], batch_size: int | None = None) -> str:
    """The rows of :func:`profile_model` as a text table with totals and each layer's share of the time."""
    total = sum(r["total_ms"] for r in rows)
    header = ("#", "Step", "Output shape", "Forward ms", "Backward ms", "Total ms", "Share", "Slices x workers")
    body = [
        (r["step"], r["layer"], str(tuple(r["output_shape"])), f"{r['forward_ms']:.3f}",
         f"{r['backward_ms']:.3f}", f"{r['total_ms']:.3f}",
         f"{100 * r['total_ms'] / total:.1f}%" if total > 0 else "-", _split_cell(r))
        for r in rows
    ]
    footer = ("", "Total", "", f"{sum(r['forward_ms'] for r in rows):.3f}",
              f"{sum(r['backward_ms'] for r in rows):.3f}", f"{total:.3f}", "100.0%", "")
    table = [header, *body, footer]
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    left = {1, 2}

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) if c in left else cell.rjust(w)
                         for c, (cell, w) in enumerate(zip(row, widths, strict=True)))

    rule = "-" * len(fmt(header))
    lines = [fmt(header), rule, *(fmt(row) for row in body), rule, fmt(footer)]
    if batch_size and total > 0:
        lines.append(f"One training step on a batch of {batch_size}: {total:.2f} ms "
                     f"({1e3 * batch_size / total:,.0f} images/s, forward and backward only).")
    lines.append(f"Parallel: {parallel.describe()}; slices x workers: forward / backward, '-' for one thread.")
    return "\n".join(lines)


def _split_cell(row: dict[str, Any]) -> str:
    """``"8x2 / 8x2"``: slices x workers of the forward and backward pass, ``-`` where no split ran."""
    def one(split: Sequence[int]) -> str:
        slices, workers = split
        return f"{slices}x{workers}" if slices > 1 else "-"
    return f"{one(row.get('forward_split', (0, 0)))} / {one(row.get('backward_split', (0, 0)))}"
