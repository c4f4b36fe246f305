"""The GPU check in one command: numpycnn's CUDA backend against NumPy, then its training speed against PyTorch.

Run on a machine with an NVIDIA GPU, CuPy (``pip install "numpycnn[gpu]"``) and PyTorch with CUDA, from a checkout
of the repository::

    python -m benchmarks.gpu_check

1. **Correctness**: ``pytest -m gpu tests/test_gpu.py``: every layer's forward and backward on CuPy against
   NumPy to 1e-5 (the layer contract's cases), short trainings of ``seed_cnn`` and ``deep_cnn`` with Adam and
   SGD that follow the CPU's, ``predict``/``evaluate`` and model files.
2. **Speed**: training throughput (images per second, forward + backward + optimiser step, float32, batches
   already on the GPU) of the original network (SGD) and ``deep_cnn`` (Adam) at batch 64, 128 and 512, numpycnn on
   CuPy against the same architecture in PyTorch CUDA eager mode with the same weights. Each figure is the
   median of ``--rounds`` rounds of 2,048 images, the two systems alternating after one warm-up round each; each
   round ends by waiting for the GPU.

It stops measuring (and says so) rather than run past ``--budget`` seconds (default 450, under 8 minutes with
the start-up). Without CuPy or a GPU it says what to install and exits 2; without PyTorch it prints numpycnn's
figures alone.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.compare import alternate, mnist_batches, numpy_train_loop, torch, torch_runs_on, torch_train_loop
from numpycnn import models
from numpycnn.core import backend
from numpycnn.errors import DeviceError

ROOT = Path(__file__).resolve().parents[1]
#: (name, builder, optimiser is Adam, learning rate) of the networks timed.
NETWORKS = (("seed (original)", models.seed_cnn, False, 0.1), ("deep_cnn", models.deep_cnn, True, 1e-3))
BATCHES = (64, 128, 512)
IMAGES_PER_ROUND = 2048


def correctness(timeout: float) -> bool:
    """Run tests/test_gpu.py in a child pytest; True when it passed (skips are reported, not hidden)."""
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu", str(ROOT / "tests" / "test_gpu.py")]
    print(f"$ {' '.join(command)}", flush=True)
    try:
        child = subprocess.run(command, cwd=ROOT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"correctness: the tests ran past {timeout:.0f} s and were stopped.")
        return False
    return child.returncode == 0


def throughput(rounds: int, deadline: float) -> list[str]:
    """Markdown rows: network, batch, numpycnn CUDA, PyTorch CUDA, ratio; stops at ``deadline``."""
    from benchmarks.torch_models import to_torch

    rows = []
    for name, build, adam, lr in NETWORKS:
        for batch in BATCHES:
            if time.perf_counter() > deadline:
                rows.append(f"| {name} | {batch} | (skipped: time budget spent) | | |")
                continue
            batches = mnist_batches(batch, IMAGES_PER_ROUND // batch)
            runs = {"numpycnn": numpy_train_loop(build(seed=0), batches, lr, adam, device="cuda")}
            if torch_runs_on("cuda"):
                runs["pytorch"] = torch_train_loop(to_torch(build(seed=0)), batches, lr, adam, device="cuda")
            figures = alternate(runs, rounds)
            ours, theirs = figures["numpycnn"], figures.get("pytorch")
            other = f"{theirs:,.0f}" if theirs else "(PyTorch CUDA not available)"
            ratio = f"**{ours / theirs:.2f}x**" if theirs else ""
            rows.append(f"| {name} | {batch} | {ours:,.0f} | {other} | {ratio} |")
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per figure, after a warm-up (median)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds after which no new figure starts")
    parser.add_argument("--skip-tests", action="store_true", help="measure the speed only")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        cupy = backend.get_device("cuda").module()
    except DeviceError as err:
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    gpu = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    gpu = gpu.decode() if isinstance(gpu, bytes) else gpu
    passed = True if args.skip_tests else correctness(timeout=args.budget / 2)
    rows = throughput(args.rounds, start + args.budget)
    torch_version = torch.__version__ if torch is not None else "not installed"
    print("\n".join([
        "",
        f"GPU: {gpu}; Python {platform.python_version()}, NumPy {np.__version__}, CuPy {cupy.__version__}, "
        f"PyTorch {torch_version}; {time.strftime('%Y-%m-%d')}; training throughput in images/s, median of "
        f"{args.rounds} alternating rounds of {IMAGES_PER_ROUND} images after a warm-up.",
        f"Correctness (tests/test_gpu.py): {'skipped' if args.skip_tests else 'passed' if passed else 'FAILED'}.",
        "",
        "| network | batch | numpycnn (CuPy) | PyTorch (CUDA eager) | ratio |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Total {time.perf_counter() - start:.0f} s.",
    ]))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
