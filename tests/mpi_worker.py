"""Scenarios run under ``mpiexec -n K python tests/mpi_worker.py SCENARIO OUT [ARGS...]`` by test_distributed.py.

Each rank writes what the test checks into ``OUT/rank{r}.npz`` (or prints it); the test process compares.

- ``fit OUT``: the model and data of :func:`setup`, trained with ``fit(..., distributed=True)``.
- ``batchnorm OUT``: a model with batch norm, dropout and validation; every rank saves its state and the next
  dropout mask it would draw.
- ``nan OUT``: rank 1 alone turns a weight into NaN after its second step; every rank must stop at the next.
- ``cli OUT MODE EPOCH -- ARGV...``: ``numpycnn.cli.main(ARGV)``; with MODE ``raise`` or ``kill`` rank 1 raises
  or kills itself (SIGKILL) when epoch EPOCH begins (``none``: it does not). Every rank logs the files it
  renames into place (every write of the project ends in ``os.replace``) to ``OUT/writes-rank{r}.txt``.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

from numpycnn import TrainingError, datasets
from numpycnn.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from numpycnn.model.sequential import Sequential
from numpycnn.optim import SGD, Adam
from numpycnn.training.callbacks import Callback

#: Global batch of 45 with 2 processes: shards of 22 and 23 images, so the gradient weighting is exercised.
BATCH, IMAGES, EPOCHS = 45, 200, 2


def data(n: int = IMAGES) -> tuple[np.ndarray, np.ndarray]:
    x, y = datasets.load("mnist", download=False)
    return x[:n], y[:n]


def small_cnn(batch_norm: bool = False, dropout: float = 0.0) -> Sequential:
    layers = [Conv2D(1, 4, 3)] + ([BatchNorm2D(4)] if batch_norm else []) + [ReLU(), MaxPool2D(2), Flatten()]
    layers += ([Dropout(dropout)] if dropout else []) + [Dense(4 * 13 * 13, 10)]
    return Sequential(layers, input_shape=(1, 28, 28)).initialize(0)


def train(distributed: bool, optimizer: str = "momentum", **kwargs: object) -> Sequential:
    """The run the equivalence test makes twice: K processes, or one process in the test itself."""
    x, y = data()
    model = small_cnn()
    opt = Adam(lr=3e-3) if optimizer == "adam" else SGD(lr=0.1, momentum=0.9)
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, optimizer=opt, rng=0, verbose=0, distributed=distributed,
              **kwargs)
    return model


def rank() -> int:
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank()


def save(out: str, arrays: dict[str, np.ndarray]) -> None:
    np.savez(os.path.join(out, f"rank{rank()}.npz"), **arrays)


def scenario_fit(out: str) -> None:
    model = train(distributed=True)
    save(out, model.state_dict())


def scenario_batchnorm(out: str) -> None:
    x, y = data(160)
    model = small_cnn(batch_norm=True, dropout=0.5)
    model.fit(x, y, epochs=1, batch_size=32, optimizer=SGD(lr=0.05), rng=0, verbose=0, validation_split=0.2,
              distributed=True)
    mask = model.layers[5].forward(np.ones((1, 16), np.float32), training=True)  # this rank's next dropout mask
    save(out, {**model.state_dict(), "mask": mask})


class PoisonRankOne(Callback):
    """On rank 1 only, put a NaN into the first weight after the second step."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if rank() == 1 and batch == 1:
            self.trainer.model.layers[0].params["weight"].flat[0] = np.nan


def scenario_nan(out: str) -> None:
    x, y = data()
    model = small_cnn()
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, optimizer=SGD(lr=0.1), rng=0, verbose=0,
                      callbacks=[PoisonRankOne()], distributed=True)
    except TrainingError as err:
        print(f"rank {rank()} stopped: {err}", flush=True)
        sys.exit(1)
    print(f"rank {rank()} finished", flush=True)


def scenario_cli(out: str, mode: str, epoch: str, *argv: str) -> None:
    from numpycnn import cli
    from numpycnn.training import loop as training

    me = rank()
    log = open(os.path.join(out, f"writes-rank{me}.txt"), "a")  # noqa: SIM115 - open until the process ends
    real_replace = os.replace

    def logged_replace(src: str, dst: str) -> None:
        real_replace(src, dst)
        log.write(f"{os.path.basename(os.fspath(dst))}\n")
        log.flush()

    os.replace = logged_replace
    real_epoch = training.Trainer.train_epoch

    def train_epoch(self, *args, **kwargs):
        if me == 1 and self.epoch == int(epoch):
            if mode == "raise":
                raise ValueError("injected failure on rank 1")
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
        return real_epoch(self, *args, **kwargs)

    training.Trainer.train_epoch = train_epoch
    sys.exit(cli.main(list(argv)))


if __name__ == "__main__":
    name, folder, *rest = sys.argv[1:]
    {"fit": scenario_fit, "batchnorm": scenario_batchnorm, "nan": scenario_nan,
     "cli": scenario_cli}[name](folder, *[a for a in rest if a != "--"])
