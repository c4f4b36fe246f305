"""Data-parallel training over MPI on this machine, and a model of what K machines would give.

Run ``python -m benchmarks.mpi_scaling`` (needs ``pip install "numpycnn[mpi]"``; ``--steps`` scales the run). For
the original network (global batch 64) and ``deep_cnn`` (global batch 128) it measures training throughput with
one process without MPI, then with 1, 2 and 4 processes under ``mpiexec`` (4 oversubscribes a 2-core machine),
each process with ``cores // K`` BLAS threads and as many numpycnn worker threads (at least 1;
:mod:`numpycnn.core.parallel`), as ``numpycnn train --distributed`` runs. For each it
reports images per second, the time per step spent in the gradient ``Allreduce`` (waiting for the slowest rank
included), the same ``Allreduce`` timed alone, and the bytes each process sends into it per step. Every
configuration runs ``--rounds`` times, alternating with the others, and the fastest run counts: on a shared
machine the others' work only ever slows a run down.

The model of K machines, one process each, with ring all-reduce over a network of bandwidth :math:`W` and
per-message latency :math:`\\lambda`:

.. math::

    t(K) = \\frac{t_1}{K} + 2\\frac{K-1}{K}\\frac{4P}{W} + 2(K-1)\\lambda, \\qquad
    \\text{images/s} = \\frac{B}{t(K)}

with :math:`t_1` the measured time of one step on one machine (1 process, all its cores), :math:`P` the
parameter count and :math:`B` the global batch. It assumes perfect compute scaling (each machine does
:math:`1/K` of the batch at the same speed per image), which overstates small per-process batches.
Prints a Markdown table, also written to ``--output`` (default ``results/mpi_scaling.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from benchmarks.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
#: (model name in numpycnn.models, global batch, steps timed)
CASES = (("seed", 64, 150), ("deep", 128, 12))
#: (processes, threads per process) measured: None processes is one plain process without MPI, None threads the
#: launcher's rule (the cores divided among the processes); one process with one thread shows what threads give.
CONFIGURATIONS = ((None, None), (None, 1), (1, None), (2, None), (4, None))
NETWORKS = (("1 Gbit/s", 125e6), ("10 Gbit/s", 1.25e9))
LATENCY = 50e-6  # seconds per message on a commodity Ethernet network


def worker(model_name: str, batch: int, steps: int, distributed: bool) -> dict:
    """Train ``steps`` global batches (after 3 untimed ones); rank 0 returns the figures."""
    import numpy as np

    from numpycnn import datasets
    from numpycnn.model.zoo import build_model
    from numpycnn.optim import SGD

    images, labels = datasets.load("mnist", "train")
    x, y = images[: batch * steps], labels[: batch * steps]
    model = build_model(model_name, seed=0)
    dist = False
    if distributed:
        from numpycnn.training.distributed import DataParallel

        dist = DataParallel()
    fit = dict(epochs=1, batch_size=batch, optimizer=SGD(lr=0.01), rng=0, verbose=0, distributed=dist)
    model.fit(x[: 3 * batch], y[: 3 * batch], **fit)  # warm up: buffers, plans, first Allreduce
    if dist:
        dist.comm.Barrier()
        dist.allreduce_seconds, dist.steps = 0.0, 0
    start = time.perf_counter()
    model.fit(x, y, **fit)
    seconds = time.perf_counter() - start
    result = {"images_per_second": batch * steps / seconds, "step_ms": 1e3 * seconds / steps,
              "parameters": model.num_parameters(), "processes": 1, "allreduce_ms": 0.0,
              "allreduce_alone_ms": 0.0, "bytes": 0}
    if dist:
        flat = np.zeros(dist.bytes_per_step // 4, np.float32)
        dist.comm.Barrier()
        alone = time.perf_counter()
        for _ in range(50):
            dist.comm.Allreduce(dist.MPI.IN_PLACE, flat, op=dist.MPI.SUM)
        alone = (time.perf_counter() - alone) / 50
        result.update(processes=dist.size, allreduce_ms=1e3 * dist.allreduce_seconds / dist.steps,
                      allreduce_alone_ms=1e3 * alone, bytes=dist.bytes_per_step)
        if dist.rank != 0:
            return {}
    return result


def mpiexec() -> str:
    beside = Path(sys.executable).with_name("mpiexec")
    if beside.is_file():
        return str(beside)
    from shutil import which

    found = which("mpiexec")
    if not found:
        sys.exit('mpiexec not found: pip install "numpycnn[mpi]"')
    return found


def measure(model_name: str, batch: int, steps: int, processes: int | None, threads: int | None = None) -> dict:
    """One configuration in fresh processes; ``processes=None`` runs one plain process without MPI; ``threads``
    sets the BLAS threads and numpycnn workers of each process (default: the launcher's rule, cores // processes)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS", "NUMPYCNN_THREADS")}
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = env["NUMPYCNN_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "benchmarks.mpi_scaling", "--worker", model_name, str(batch), str(steps)]
    if processes is not None:
        command = [mpiexec(), "-n", str(processes), *command, "--distributed"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ring_model(step_seconds: float, parameters: int, batch: int, machines: int, bandwidth: float) -> float:
    """Images/s of ``machines`` machines by the formula in the module notes."""
    comm = 2 * (machines - 1) / machines * 4 * parameters / bandwidth + 2 * (machines - 1) * LATENCY
    return batch / (step_seconds / machines + comm)


def table(rows: list[dict], steps_scale: float, load: tuple[float, float], rounds: int) -> str:
    lines = [f"Machine: {cpu_name()}, {platform.machine()}, {os.cpu_count()} cores; "
             f"Python {platform.python_version()}; "
             f"{date.today().isoformat()}; `python -m benchmarks.mpi_scaling`"
             f"{'' if steps_scale == 1 else f' --steps {steps_scale:g}'}; 1-minute load average "
             f"{load[0]:.1f} before, {load[1]:.1f} after; the fastest of {rounds} alternating runs of each row.", "",
             "| model (global batch) | processes | BLAS threads and numpycnn workers each | images/s | vs 1 process "
             "| ms per step | Allreduce ms per step (in training) | Allreduce ms alone | bytes per process per step |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = {}
    for r in rows:
        base.setdefault(r["model"], r["images_per_second"])
        k = "1, no MPI" if r["mpi"] is None else str(r["mpi"])
        threads = r.get("threads") or max(1, (os.cpu_count() or 1) // (r["mpi"] or 1))
        lines.append(f"| {r['model']} ({r['batch']}) | {k} | {threads} | {r['images_per_second']:,.0f} | "
                     f"{r['images_per_second'] / base[r['model']]:.2f}x | {r['step_ms']:.2f} | "
                     f"{r['allreduce_ms']:.3f} | {r['allreduce_alone_ms']:.3f} | {r['bytes']:,} |")
    lines += ["", f"Model of K machines (one process each, ring all-reduce, {LATENCY * 1e6:.0f} us latency), from "
              "the single-process step time above; images/s:", "",
              "| model | parameters (x 4 bytes) | network | K=1 | K=2 | K=4 | K=8 | K=16 |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["mpi"] is not None or r.get("threads"):
            continue
        for name, bandwidth in NETWORKS:
            speeds = [ring_model(r["step_ms"] / 1e3, r["parameters"], r["batch"], k, bandwidth)
                      for k in (1, 2, 4, 8, 16)]
            lines.append(f"| {r['model']} | {r['parameters']:,} ({4 * r['parameters'] / 1e6:.2f} MB) | {name} | "
                         + " | ".join(f"{s:,.0f}" for s in speeds) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=float, default=1.0, help="scale the number of timed steps")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of every configuration, alternating; the fastest counts (default 3)")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "mpi_scaling.md")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.worker[0], int(args.worker[1]), int(args.worker[2]), args.distributed)
        if result:
            print(json.dumps(result), flush=True)
        return 0
    best: dict[tuple, dict] = {}
    load = os.getloadavg()[0]
    for _ in range(max(1, args.rounds)):  # alternate, so that every configuration sees the machine's moods
        for model_name, batch, steps in CASES:
            for processes, threads in CONFIGURATIONS:
                result = measure(model_name, batch, max(4, round(steps * args.steps)), processes, threads)
                print(f"{model_name} batch {batch}, {processes or 'no MPI'} x {threads or 'default'} threads: "
                      f"{result['images_per_second']:,.0f} img/s", file=sys.stderr, flush=True)
                key = (model_name, batch, processes, threads)
                if key not in best or result["images_per_second"] > best[key]["images_per_second"]:
                    best[key] = {"model": model_name, "batch": batch, "mpi": processes, "threads": threads, **result}
    text = table(list(best.values()), args.steps, (load, os.getloadavg()[0]), args.rounds)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
