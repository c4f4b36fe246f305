"""``mpiexec -n K numpycnn train --distributed``: the train command as K processes training one model.

Process 0 runs the command as one process would (:mod:`numpycnn.cli.train`: options, the run folder and its
lock, data, model, ``config.json``), then sends the run's settings to the others and trains with them; only it
prints and writes. The others never touch the run folder: they receive the settings, load the same data, build
the same model and join ``fit(..., distributed=...)`` (:mod:`numpycnn.training.distributed`), which gives
them process 0's weights and, with ``--resume``, the bytes of its checkpoint.

Errors: a divergence is seen by every process at the same step (process 0 reports it, all exit with 1); any other
error on one process prints one line naming it and ends the job with ``MPI_Abort`` (exit status 2), so that no
process waits forever for another. Ctrl-C or SIGTERM: process 0 says what is saved, then the job ends (130, 143).

Started by ``mpiexec -n K`` (K > 1) without ``--distributed``, the command refuses rather than run K trainings
into one folder; the launcher's variables are read without importing mpi4py (:mod:`numpycnn.core.launch`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from numpycnn.cli.runs import Terminated
from numpycnn.core.launch import launched_processes, launched_rank
from numpycnn.errors import TrainingError


def wanted(args: argparse.Namespace) -> bool:
    """Whether this module handles the command: ``--distributed``, or a start by ``mpiexec -n K`` (K > 1)."""
    return bool(args.distributed) or launched_processes() > 1


def run(args: argparse.Namespace, lead: Callable[[argparse.Namespace, Any], int],
        follow: Callable[[argparse.Namespace, Any], int]) -> int:
    """Run ``lead(args, dist)`` (the one-process command) on process 0 and ``follow(args, dist)`` (train with
    process 0's settings, print and write nothing) on the others."""
    if not args.distributed:
        if launched_rank() != 0:
            return 2  # process 0 says why
        raise ValueError(f"train: started by mpiexec as one of {launched_processes()} processes without "
                         f"--distributed: each would train its own model into the same --out. Add --distributed "
                         f"to train one model together, or run without mpiexec.")
    from numpycnn.training.distributed import DataParallel

    try:
        dist = DataParallel()
    except RuntimeError as err:  # mpi4py is missing: one line, exit status 2
        raise ValueError(str(err)) from None
    with dist.abort_on_error("numpycnn train", exit_status):
        try:
            return lead(args, dist) if dist.rank == 0 else follow(args, dist)
        except TrainingError:  # raised by every process at the same step: process 0 reports it
            if dist.rank == 0:
                raise
            return 1


def exit_status(err: BaseException) -> int:
    """The command's exit status for ``err``: 1 diverged, 130 Ctrl-C, 143 SIGTERM, 2 anything else."""
    if isinstance(err, KeyboardInterrupt):
        return 143 if isinstance(err, Terminated) else 130
    return 1 if isinstance(err, TrainingError) else 2


def send_settings(dist: Any, config: dict[str, Any], out: Path) -> None:
    """Process 0: the run's settings and folder to the others, once every check has passed."""
    dist.broadcast_bytes(json.dumps([config, str(out)]).encode())


def describe(dist: Any, batch_size: int) -> str:
    """How a global batch is shared, e.g. ``"2 processes x 32 images"``."""
    low, high = batch_size // dist.size, -(-batch_size // dist.size)
    return f"{dist.size} processes x {low if low == high else f'{low}-{high}'} images"
