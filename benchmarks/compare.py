"""numpycnn against PyTorch on this machine's CPU, side by side (or on its GPU with ``--device cuda``).

Run ``python -m benchmarks.compare`` (add ``--quick`` for a short run). Each measurement alternates the two systems
for ``--rounds`` rounds (7 by default) in one process, so that both see the same machine state, and reports each
side's median with its min-max, and the median of the per-round ratios with their min-max: on a shared machine
whose speed moves by 2x, the spread says how far a ratio can be trusted. Without PyTorch installed it prints
numpycnn's figures alone. Prints a Markdown table (also written to ``--output`` if given).

Measured:
1. training throughput of the original network (batch 64, float32, SGD);
2. inference throughput of the original network (batch 1000);
3. training throughput of ``numpycnn.models.deep_cnn`` against the same architecture in PyTorch (batch 128, Adam);
4. wall time and peak resident memory of the full original experiment (``numpycnn train``, 10 epochs);
5. peak resident memory of ``evaluate`` of ``deep_cnn`` on the 10,000 test images, in a child process;
6. the loop-based reference convolution and pooling against the vectorised ones (what vectorisation buys);
7. the floor of each convolution of ``deep_cnn`` (batch 128): its forward and backward time against the time of
   its matrix products alone at the same shapes, one product each with all BLAS threads (how close the engine is
   to what BLAS allows; :func:`conv_floor`).

With ``--device cuda`` (CuPy, and PyTorch with CUDA) only 1-3 run, both systems on the GPU, batches already
there; each timed loop ends by waiting for the GPU. ``benchmarks/gpu_check.py`` is the fuller GPU check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.machine import cpu_name
from numpycnn import datasets, models, reference
from numpycnn.core import backend, parallel
from numpycnn.errors import DeviceError
from numpycnn.functional import conv as fast_conv
from numpycnn.functional import pool as fast_pool
from numpycnn.layers.losses import CrossEntropyLoss
from numpycnn.optim import SGD, Adam

try:
    import torch
except ImportError:  # the benchmark still reports numpycnn's own figures
    torch = None


def blas_threads() -> int:
    """Threads NumPy's BLAS uses (threadpoolctl where installed, else the CPU count)."""
    try:
        from threadpoolctl import threadpool_info

        counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
        if counts:
            return int(counts[0])
    except ImportError:
        pass
    return os.cpu_count() or 1


def mnist_batches(batch_size: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    images, labels = datasets.load("mnist", "train")
    n = batch_size * count
    x = images[:n].astype(np.float32) / 255.0  # (n, 1, 28, 28)
    y = labels[:n]
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


# -- one system's timed loops ----------------------------------------------------------------------------------
def numpy_wait(device: str) -> Callable[[], None]:
    """What waits until numpycnn's queued work on ``device`` is done (nothing to wait for on the CPU)."""
    if device == "cpu":
        return lambda: None
    xp = backend.get_device(device).module()
    return xp.cuda.Device().synchronize


def torch_wait(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def numpy_train_loop(model, batches, lr: float = 0.1, adam: bool = False, device: str = "cpu") -> Callable[[], float]:
    loss, optimizer = CrossEntropyLoss(), Adam(lr=lr) if adam else SGD(lr=lr)
    model.to(device)
    batches = [(backend.to_device(xb, device), backend.to_device(yb, device)) for xb, yb in batches]
    wait = numpy_wait(device)

    def run() -> float:
        start = time.perf_counter()
        for xb, yb in batches:
            loss.forward(model.forward(xb, training=True), yb)
            model.backward(loss.backward(), input_grad=False)  # torch skips it too
            optimizer.step(model)
        wait()
        return len(batches) * len(batches[0][0]) / (time.perf_counter() - start)

    return run


def torch_train_loop(net, batches, lr: float = 0.1, adam: bool = False, device: str = "cpu") -> Callable[[], float]:
    net.to(device)
    optim = torch.optim.Adam if adam else torch.optim.SGD
    loss_fn, optimizer = torch.nn.CrossEntropyLoss(), optim(net.parameters(), lr=lr)
    tensors = [(torch.from_numpy(xb).to(device), torch.from_numpy(yb).to(device)) for xb, yb in batches]
    net.train()
    wait = torch_wait(device)

    def run() -> float:
        start = time.perf_counter()
        for xb, yb in tensors:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(xb), yb).backward()
            optimizer.step()
        wait()
        return len(tensors) * len(tensors[0][0]) / (time.perf_counter() - start)

    return run


def numpy_infer_loop(model, x: np.ndarray, repeats: int, device: str = "cpu") -> Callable[[], float]:
    model.to(device)
    x, wait = backend.to_device(x, device), numpy_wait(device)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(repeats):
            model.forward(x, training=False)
        wait()
        return repeats * len(x) / (time.perf_counter() - start)

    return run


def torch_infer_loop(net, x: np.ndarray, repeats: int, device: str = "cpu") -> Callable[[], float]:
    net.to(device)
    xt, wait = torch.from_numpy(x).to(device), torch_wait(device)
    net.eval()

    def run() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for _ in range(repeats):
                net(xt)
        wait()
        return repeats * len(x) / (time.perf_counter() - start)

    return run


def alternate(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each system once per round, in turn, after one warm-up each; return every round's figure of each
    (round ``r`` of one system next to round ``r`` of the other: their ratio is one sample of the ratio)."""
    for run in runs.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name].append(run())
    return samples


def spread(values: list[float]) -> tuple[float, float, float]:
    """``(min, median, max)``."""
    return min(values), statistics.median(values), max(values)


# -- the measurements ------------------------------------------------------------------------------------------
def torch_runs_on(device: str) -> bool:
    """Whether PyTorch is installed and can use ``device``."""
    return torch is not None and (device == "cpu" or torch.cuda.is_available())


def compare_training(builder, batch_size: int, steps: int, rounds: int, lr: float,
                     adam: bool = False, device: str = "cpu") -> dict[str, list[float]]:
    batches = mnist_batches(batch_size, steps)
    model = builder()
    runs = {"numpycnn": numpy_train_loop(model, batches, lr, adam, device)}
    if torch_runs_on(device):
        from benchmarks.torch_models import to_torch

        runs["pytorch"] = torch_train_loop(to_torch(builder()), batches, lr, adam, device)
    return alternate(runs, rounds)


def compare_inference(builder, batch_size: int, repeats: int, rounds: int,
                      device: str = "cpu") -> dict[str, list[float]]:
    x = mnist_batches(batch_size, 1)[0][0]
    model = builder()
    runs = {"numpycnn": numpy_infer_loop(model, x, repeats, device)}
    if torch_runs_on(device):
        from benchmarks.torch_models import to_torch

        runs["pytorch"] = torch_infer_loop(to_torch(model), x, repeats, device)
    return alternate(runs, rounds)


#: Runs ``numpycnn train`` and prints the process's own peak resident memory in KiB. ``VmHWM`` belongs to the
#: process image after ``exec``; ``ru_maxrss`` of a child would also count the parent's pages at ``fork``.
_TRAIN_AND_REPORT_PEAK = """
import re, sys
from numpycnn.cli import main
code = main(sys.argv[1:])
print("peak-kib", re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
sys.exit(code)
"""


def full_experiment() -> dict[str, float]:
    """Wall time and peak resident memory of ``numpycnn train`` (the original experiment) in a child process."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", _TRAIN_AND_REPORT_PEAK, "train", "--out", out, "--no-plots", "--quiet"],
            check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak_kib = int(child.stdout.split("peak-kib")[-1])
        accuracy = json.loads((Path(out) / "metrics.json").read_text())["test_accuracy"]
    return {"seconds": wall, "peak_mib": peak_kib / 1024, "test_accuracy": accuracy}


_EVALUATE_AND_REPORT_PEAK = """
import re
from numpycnn import datasets
from numpycnn import models
model = models.deep_cnn(seed=0)
print(model.evaluate(*datasets.load("mnist", "test")))
print("peak-kib", re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
"""


def evaluation_memory() -> float:
    """Peak resident memory (MiB) of a child process that evaluates ``deep_cnn`` on the 10,000 test images."""
    child = subprocess.run([sys.executable, "-c", _EVALUATE_AND_REPORT_PEAK], check=True, capture_output=True,
                           text=True)
    return int(child.stdout.split("peak-kib")[-1]) / 1024


def vectorisation_gain(rounds: int) -> dict[str, float]:
    """Seconds for forward+backward of the original conv and pool on 8 images: loops against vectorised."""
    rng = np.random.default_rng(0)
    x = rng.random((8, 1, 28, 28), dtype=np.float32)
    w = rng.standard_normal((8, 1, 3, 3), dtype=np.float32)
    b = np.zeros(8, np.float32)

    def timed(fn: Callable[[], object], repeats: int) -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            times.append((time.perf_counter() - start) / repeats)
        return statistics.median(times)

    def loops() -> None:
        y = reference.conv2d_forward(x, w, b, stride=1, padding=0)
        p = reference.maxpool2d_forward(y, kernel_size=2, stride=2)
        reference.maxpool2d_backward(np.ones_like(p), y, kernel_size=2, stride=2)
        reference.conv2d_backward(np.ones_like(y), x, w, stride=1, padding=0)

    def vectorised() -> None:
        y, conv_cache = fast_conv.conv2d_forward(x, w, b, stride=1, padding=0)
        p, pool_cache = fast_pool.maxpool2d_forward(y, kernel_size=2, stride=2)
        fast_pool.maxpool2d_backward(np.ones_like(p), pool_cache)
        fast_conv.conv2d_backward(np.ones_like(y), conv_cache)

    return {"loops": timed(loops, 1), "vectorised": timed(vectorised, 200)}


# -- report ----------------------------------------------------------------------------------------------------
def throughput_rows(quick: bool, rounds: int, device: str, targets: tuple[float | None, ...]) -> list[str]:
    """The three throughput rows of the table (original network training and inference, ``deep_cnn`` training)
    on ``device``, each against its target (``None``: no target yet)."""
    seed_train = compare_training(models.seed_cnn, 64, 40 if quick else 200, rounds, lr=0.1, device=device)
    seed_infer = compare_inference(models.seed_cnn, 1000, 3 if quick else 10, rounds, device=device)
    deep_train = compare_training(models.deep_cnn, 128, 3 if quick else 12, rounds, lr=1e-3, adam=True,
                                  device=device)
    return [
        ratio_row("original network, training, batch 64 (SGD)", seed_train, "img/s", targets[0]),
        ratio_row("original network, inference, batch 1000", seed_infer, "img/s", targets[1]),
        ratio_row("deep_cnn, training, batch 128 (Adam)", deep_train, "img/s", targets[2]),
    ]


def _figure(values: list[float], unit: str) -> str:
    low, mid, high = spread(values)
    return f"{mid:,.0f} {unit} ({low:,.0f}-{high:,.0f})"


def ratio_row(name: str, figures: dict[str, list[float]], unit: str, target: float | None) -> str:
    """One row: each side's median (min-max over the rounds), the median ratio of the paired rounds (min-max),
    and the verdict on the median ratio."""
    ours = figures["numpycnn"]
    theirs = figures.get("pytorch")
    aim = "" if target is None else f"{target:.1f}x"
    if theirs is None:
        return f"| {name} | {_figure(ours, unit)} | (PyTorch not installed) | | {aim} |"
    low, ratio, high = spread([a / b for a, b in zip(ours, theirs, strict=True)])
    cells = f"| {name} | {_figure(ours, unit)} | {_figure(theirs, unit)} | **{ratio:.2f}x** ({low:.2f}-{high:.2f}) |"
    if target is None:  # on a GPU there is no target yet: the first measurement sets the baseline
        return f"{cells} |"
    verdict = "met" if ratio >= target else f"missed by {target - ratio:.2f}x"
    return f"{cells} {target:.1f}x ({verdict}) |"


def conv_floor(rounds: int, batch_size: int = 128) -> list[str]:
    """For each convolution of ``deep_cnn``: the median time of ``conv2d_forward`` + ``conv2d_backward`` (as in
    training: no input gradient for the first layer) against the median time of its products alone at the same
    shapes, each one BLAS call on preallocated arrays with all BLAS threads: :math:`W X_{col}` (F, K) @ (K, N L),
    :math:`dW^T = X_{col} dY^T` (K, N L) @ (N L, F) and :math:`dX_{col} = W^T dY` (K, F) @ (F, N L). The ratio
    is how far the engine is from what BLAS allows (im2col, col2im and the copies make up the rest)."""
    model = models.deep_cnn(seed=0)
    shapes = model.output_shapes((1, 28, 28))
    rows = ["| layer | input (N, C, H, W) -> F | engine ms | products ms | engine / products |",
            "|---|---|---|---|---|"]
    convs = [i for i, layer in enumerate(model.layers) if type(layer).__name__ == "Conv2D"]
    for index in convs:
        in_shape = (batch_size, *((1, 28, 28) if index == 0 else shapes[index - 1]))
        engine, products = _floor_runs(model.layers[index], in_shape, need_dx=index != convs[0])
        times = alternate({"engine": engine, "products": products}, rounds)
        ms_engine, ms_products = (statistics.median(times[k]) * 1e3 for k in ("engine", "products"))
        F, C, kh, kw = model.layers[index].params["weight"].shape
        rows.append(f"| {index}: Conv2D {C}->{F} {kh}x{kw} | {in_shape} -> {F} | {ms_engine:.1f} | "
                    f"{ms_products:.1f} | {ms_engine / ms_products:.2f}x |")
    return rows


def _floor_runs(layer, in_shape: tuple[int, ...], need_dx: bool) -> tuple[Callable[[], float], Callable[[], float]]:
    """The two timed runs of :func:`conv_floor` for one layer: the engine's passes, and the products alone."""
    rng = np.random.default_rng(0)
    w = layer.params["weight"]
    F, C, kh, kw = w.shape
    x = rng.standard_normal(in_shape, dtype=np.float32)
    workspace = fast_conv.Workspace()
    y, _ = fast_conv.conv2d_forward(x, w, None, layer.stride, layer.padding, workspace=workspace)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    K, NL = C * kh * kw, in_shape[0] * y.shape[2] * y.shape[3]
    cols, dy_mat = rng.standard_normal((K, NL), dtype=np.float32), rng.standard_normal((F, NL), dtype=np.float32)
    w_mat = w.reshape(F, K)
    out_y, out_dw, out_dx = np.empty((F, NL), np.float32), np.empty((K, F), np.float32), np.empty((K, NL), np.float32)

    def engine() -> None:
        _, cache = fast_conv.conv2d_forward(x, w, None, layer.stride, layer.padding, workspace=workspace)
        fast_conv.conv2d_backward(dy, cache, need_dx=need_dx)

    def products() -> None:
        np.matmul(w_mat, cols, out=out_y)  # (F, K) @ (K, N L)
        np.matmul(cols, dy_mat.T, out=out_dw)  # (K, N L) @ (N L, F)
        if need_dx:
            np.matmul(w_mat.T, dy_mat, out=out_dx)  # (K, F) @ (F, N L)

    return _seconds(engine), _seconds(products)


def _seconds(function: Callable[[], None]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7,
                        help="alternating rounds per measurement (min, median, max; at least 7 to trust a ratio)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds, no full experiment")
    parser.add_argument("--skip-full", action="store_true", help="skip the 10-epoch original experiment")
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: both systems on the GPU, training and inference only")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    if args.device == "cuda":
        return gpu_main(args, rounds)
    threads = blas_threads()
    if torch is not None:
        torch.set_num_threads(threads)

    rows = throughput_rows(args.quick, rounds, "cpu", targets=(2.0, 1.0, 1.0))
    gain = vectorisation_gain(1 if args.quick else 3)
    floor = conv_floor(rounds)

    torch_version = torch.__version__ if torch is not None else "not installed"
    lines = [
        f"Machine: {cpu_name()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, NumPy {np.__version__}, PyTorch {torch_version}; "
        f"{threads} BLAS/torch threads; numpycnn: {parallel.describe()}; {time.strftime('%Y-%m-%d')}; "
        f"{rounds} alternating rounds: median (min-max) of each side, median (min-max) of the per-round ratios.",
        "",
        "| measurement | numpycnn | PyTorch (CPU) | ratio | target |",
        "|---|---|---|---|---|",
        *rows,
    ]
    eval_mib = evaluation_memory()
    eval_ok = "met" if eval_mib < 500 else f"missed by {eval_mib - 500:.0f} MiB"
    lines.append(f"| `deep_cnn` evaluate on 10,000 test images, peak resident memory | {eval_mib:.0f} MiB | | | "
                 f"< 500 MiB ({eval_ok}) |")
    if not (args.quick or args.skip_full):
        full = full_experiment()
        wall_ok = "met" if full["seconds"] < 40 else f"missed by {full['seconds'] - 40:.1f} s"
        mem_ok = "met" if full["peak_mib"] < 600 else f"missed by {full['peak_mib'] - 600:.0f} MiB"
        lines.append(
            f"| original experiment, `numpycnn train` (10 epochs), wall time | {full['seconds']:.1f} s | | | "
            f"< 40 s ({wall_ok}) |"
        )
        lines.append(f"| same, peak resident memory | {full['peak_mib']:.0f} MiB | | | < 600 MiB ({mem_ok}) |")
        lines.append(f"| same, test accuracy | {100 * full['test_accuracy']:.2f}% | | | |")
    lines += [
        "",
        f"Loop-based reference (`numpycnn.reference`, the original style) vs vectorised, conv 1->8 3x3 + max pool, "
        f"forward and backward of 8 images: {gain['loops'] * 1e3:,.1f} ms vs {gain['vectorised'] * 1e3:,.3f} ms "
        f"(**{gain['loops'] / gain['vectorised']:,.0f}x** faster).",
        "",
        f"Floor: each convolution of `deep_cnn` at batch 128, forward and backward as in training, against its "
        f"matrix products alone at the same shapes (median of {rounds} alternating rounds).",
        "",
        *floor,
    ]
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 0


def gpu_main(args: argparse.Namespace, rounds: int) -> int:
    """Training and inference throughput, numpycnn on CuPy against PyTorch CUDA eager, same batches."""
    try:
        backend.get_device("cuda")
    except DeviceError as err:  # without CuPy or a GPU: one line that says what to install
        print(f"compare --device cuda: {err}", file=sys.stderr)
        return 2
    rows = throughput_rows(args.quick, rounds, "cuda", targets=(None, None, None))
    torch_version = torch.__version__ if torch is not None else "not installed"
    lines = [
        f"Device: CUDA; Python {platform.python_version()}, NumPy {np.__version__}, "
        f"CuPy {backend.get_device('cuda').module().__version__}, PyTorch {torch_version}; "
        f"{time.strftime('%Y-%m-%d')}; {rounds} alternating rounds: median (min-max).",
        "",
        "| measurement | numpycnn (CuPy) | PyTorch (CUDA) | ratio | target |",
        "|---|---|---|---|---|",
        *rows,
    ]
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
