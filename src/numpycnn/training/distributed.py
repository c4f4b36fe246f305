"""Data-parallel training over MPI: K processes, one model, the gradient of each global batch averaged.

Started as ``mpiexec -n K numpycnn train --distributed ...`` or ``fit(..., distributed=True)`` in a script run by
``mpiexec``, the K processes (ranks) train one model together, as Horovod does:

1. At the start, rank 0's parameters, buffers and random generators are broadcast, so every rank holds the
   same model whatever it was initialised with; with ``resume_from`` rank 0 reads the checkpoint and sends its
   bytes to the others, so only rank 0 needs to see the run folder.
2. Each epoch every rank draws the same permutation from the same shuffle generator (the role of PyTorch's
   ``DistributedSampler.set_epoch``: the order is a function of the seed and the epoch alone, and one process
   draws exactly the order a K-process run uses). Every global batch of ``batch_size`` images is cut into K
   equal consecutive shards (sizes differ by at most one when K does not divide it), one per rank.
3. Each rank computes the mean loss and its gradient :math:`g_r` on its :math:`n_r` images; one
   ``Allreduce`` (sum) on one flat buffer holding :math:`n_r g_r` for every parameter, the loss sum and the
   correct count gives every rank

   .. math::

       g = \\frac{1}{B} \\sum_{r} n_r g_r = \\frac{1}{B} \\sum_{i \\in B} \\nabla \\ell_i, \\qquad B = \\sum_r n_r

   the gradient one process computes on the whole batch (up to float32 summation order), so ``batch_size`` is
   the *global* batch and the learning rate means what it means for one process. Every rank then applies the
   same optimiser step to the same weights.
4. The divergence check reads the summed loss, so a NaN on any rank stops every rank at the same step. Batch
   norm's running statistics (updated by each rank from its own shard) are averaged at the end of each epoch;
   the update is linear, so this equals averaging after every step. Validation is split across the ranks and
   its sums added, so every rank sees the same ``val_loss`` and early stopping decides alike; rank 0's
   ``stop_training`` is broadcast as well.
5. Dropout masks and augmentations differ per rank by construction: ranks other than 0 derive their generators
   from rank 0's state and their rank. Only rank 0 prints and runs callbacks marked ``rank_zero_only`` (the
   checkpoint writers).
6. An exception on one rank ends the whole job with ``MPI_Abort`` after one line on stderr, so no rank waits
   forever in a collective for a process that is gone.

mpi4py is imported only here, and only when a :class:`DataParallel` is made; ``pip install "numpycnn[mpi]"``
installs it with an MPI library (MPICH) from PyPI.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from numpycnn.layers.base import iter_parameters
from numpycnn.training.resume import generator_from_state, generator_state, restore_training_state

if TYPE_CHECKING:
    from numpycnn.model.sequential import Sequential
    from numpycnn.training.loop import Trainer

__all__ = ["MISSING_MPI", "DataParallel", "SingleProcess", "data_parallel"]

#: Seconds a failing rank waits between writing its one line on stderr and ``MPI_Abort``. The launcher (MPICH's
#: Hydra) forwards each process's output through a proxy that the abort ends: once in CI the job ended with status 2
#: and an empty stderr, the line lost (not reproduced in 22 runs here, idle and under load). A fifth of a second
#: on the error path only, against a job that would otherwise wait forever.
ABORT_GRACE_SECONDS = 0.2

MISSING_MPI = ('distributed training needs mpi4py and an MPI library: pip install "numpycnn[mpi]" (mpi4py and '
               'the MPICH wheels; no system MPI needed), then start it as mpiexec -n K ...')


def import_mpi() -> Any:
    """``mpi4py.MPI``, or a ``RuntimeError`` that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise RuntimeError(f"numpycnn: {MISSING_MPI} ({err}).") from None
    return MPI


def collective(err: BaseException) -> BaseException:
    """Mark ``err`` as raised by every rank at the same point, so it ends the job without ``MPI_Abort``."""
    err.collective = True  # type: ignore[attr-defined]
    return err


class DataParallel:
    """The K processes of an MPI communicator, training one model together (see the module notes).

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.

    Attributes
    ----------
    rank, size : int
        This process's index and the number of processes.
    allreduce_seconds : float
        Time spent in the gradient ``Allreduce`` so far (waiting for the slowest rank included).
    steps : int
        Gradient averages done so far.
    bytes_per_step : int
        Size of the flat buffer each rank contributes per step.
    """

    def __init__(self, comm: Any = None) -> None:
        self.MPI = import_mpi()
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = int(self.comm.Get_rank()), int(self.comm.Get_size())
        self.allreduce_seconds, self.steps, self.bytes_per_step = 0.0, 0, 0
        self._guarded = False  # inside abort_on_error: a nested one (fit under the command) passes errors out
        self._flat: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, size={self.size})"

    # -- batches -------------------------------------------------------------------------------------------
    def shard(self, index: np.ndarray | slice) -> np.ndarray | slice:
        """This rank's consecutive share of a global batch's ``index`` (an index array or a slice)."""
        b = len(index) if isinstance(index, np.ndarray) else index.stop - index.start
        lo, hi = self.rank * b // self.size, (self.rank + 1) * b // self.size
        if isinstance(index, np.ndarray):
            return index[lo:hi]
        return slice(index.start + lo, index.start + hi)

    def check_batch_size(self, batch_size: int) -> None:
        """Raise (on every rank alike) unless each global batch gives every rank at least one image."""
        if batch_size < self.size:
            raise collective(ValueError(
                f"fit: `batch_size` must be at least the number of processes ({self.size}): it is the global batch, "
                f"shared among them. Got {batch_size}."
            ))

    def usable(self, n: int, batch_size: int) -> int:
        """Images of an epoch that are trained: all but a last batch too small to give every rank one image."""
        tail = n % batch_size
        return n - tail if 0 < tail < self.size else n

    # -- one step ------------------------------------------------------------------------------------------
    def average_gradients(self, model: Sequential, loss: float, hits: int, n_local: int,
                          n_global: int) -> tuple[float, int]:
        """Replace every gradient by :math:`\\frac{1}{B}\\sum_r n_r g_r` with one in-place ``Allreduce``.

        ``loss`` and ``hits`` are this rank's mean loss and correct count over its ``n_local`` images. The flat
        buffer (model dtype, reused across steps) is ``[n_r g_r for each parameter..., loss sum, correct
        count]``; returns the global batch's mean loss and correct count.
        """
        params = [grad for _, _, grad in iter_parameters(model)]
        total = sum(g.size for g in params) + 2
        flat = self._flat
        if flat is None or flat.size != total or flat.dtype != model.dtype:
            flat = self._flat = np.empty(total, model.dtype)
            self.bytes_per_step = flat.nbytes
        offset = 0
        for g in params:
            np.multiply(g.reshape(-1), n_local, out=flat[offset:offset + g.size])
            offset += g.size
        flat[-2], flat[-1] = loss * n_local, hits
        start = time.perf_counter()
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        self.allreduce_seconds += time.perf_counter() - start
        self.steps += 1
        scale, offset = 1.0 / n_global, 0
        for g in params:
            np.multiply(flat[offset:offset + g.size].reshape(g.shape), scale, out=g)
            offset += g.size
        return float(flat[-2]) / n_global, int(round(float(flat[-1])))

    # -- model state ---------------------------------------------------------------------------------------
    def broadcast_model(self, model: Sequential) -> None:
        """Copy rank 0's parameters and buffers into every rank's model, array by array (``Bcast``)."""
        for value in model.state_dict().values():
            if not value.flags.c_contiguous:
                raise ValueError(f"DataParallel: model arrays must be contiguous. Got one of shape {value.shape}.")
            self.comm.Bcast(value, root=0)

    def average_buffers(self, model: Sequential) -> None:
        """Average the floating-point buffers (batch norm's running statistics) over the ranks, in place."""
        buffers = [b for layer in model.layers for b in layer.buffers.values() if b.dtype.kind == "f"]
        if not buffers or self.size == 1:
            return
        flat = np.concatenate([b.reshape(-1) for b in buffers]).astype(np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
        flat /= self.size
        offset = 0
        for b in buffers:
            b[...] = flat[offset:offset + b.size].reshape(b.shape)
            offset += b.size

    def broadcast_bytes(self, data: bytes | None, error: str = "") -> bytes:
        """Rank 0's ``data`` on every rank (a length, then the bytes; no pickling). If rank 0 passes
        ``error`` instead, every rank raises the same ``OSError`` with it."""
        header = np.zeros(1, np.int64)
        if self.rank == 0:
            payload = error.encode() if error else (data or b"")
            header[0] = -len(payload) - 1 if error else len(payload)
        self.comm.Bcast(header, root=0)
        length = int(header[0])
        buffer = np.empty(length if length >= 0 else -length - 1, np.uint8)
        if self.rank == 0:
            buffer[:] = np.frombuffer(payload, np.uint8)
        self.comm.Bcast(buffer, root=0)
        if length < 0:
            raise collective(OSError(buffer.tobytes().decode(errors="replace")))
        return buffer.tobytes()

    def broadcast_generator(self, rng: np.random.Generator) -> np.random.Generator:
        """A generator in rank 0's state of ``rng`` (rank 0 gets ``rng`` itself back)."""
        text = self.broadcast_bytes(generator_state(rng).encode() if self.rank == 0 else None).decode()
        return rng if self.rank == 0 else generator_from_state(text)

    def rank_generator(self, rng: np.random.Generator) -> np.random.Generator:
        """``rng`` on rank 0; on rank r > 0 an independent generator seeded from ``rng``'s next draws and r."""
        if self.rank == 0:
            return rng
        key = [int(k) for k in rng.integers(0, 2**63, size=2)]
        return np.random.default_rng([*key, self.rank])

    def same_on_every_rank(self, err: BaseException) -> BaseException:
        """``err`` marked as raised by every rank at the same point (:func:`collective`)."""
        return collective(err)

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag``, on every rank."""
        value = np.array([1 if flag else 0], np.int64)
        self.comm.Bcast(value, root=0)
        return bool(value[0])

    def check_same(self, what: str, value: int) -> None:
        """Raise the same ``ValueError`` on every rank unless all ranks pass the same ``value``."""
        bounds = np.array([value, -value], np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, bounds, op=self.MPI.MAX)
        if bounds[0] != -bounds[1]:
            raise collective(ValueError(
                f"fit: every process must train on the same data. Got {what} from {-int(bounds[1])} to "
                f"{int(bounds[0])} across the {self.size} processes."
            ))

    # -- validation ----------------------------------------------------------------------------------------
    def shard_validation(self, validation: Any) -> Any:
        """This rank's consecutive slice of ``(x_val, y_val)``."""
        if validation is None:
            return None
        n = len(validation[1])
        lo, hi = self.rank * n // self.size, (self.rank + 1) * n // self.size
        return validation[0][lo:hi], validation[1][lo:hi]

    def combine_scores(self, scores: dict[str, float] | None, count: int) -> dict[str, float]:
        """Loss and accuracy over every rank's validation slice together (sums added with ``Allreduce``), from
        this rank's ``scores`` over its ``count`` samples (None when its slice is empty)."""
        sums = np.zeros(3, np.float64)  # loss sum, correct, count
        if count and scores is not None:
            sums[:] = scores["loss"] * count, round(scores["accuracy"] * count), count
        self.comm.Allreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM)
        return {"loss": float(sums[0] / sums[2]), "accuracy": float(sums[1] / sums[2])}

    # -- the whole run -------------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, n_train: int, batch_size: int, resume_from: Any
              ) -> tuple[int | None, dict | None]:
        """Check the data agree, restore ``resume_from`` (read by rank 0), then give every rank rank 0's model
        and generators, with per-rank dropout and augmentation streams. Returns what ``restore`` returns, or
        ``(None, None)`` without a checkpoint."""
        self.check_batch_size(batch_size)
        self.check_same("the number of training images", n_train)
        self.check_same("the number of parameters", trainer.model.num_parameters())
        start, states = None, None
        if resume_from is not None:
            with self.local_copy(resume_from) as path:
                start, states = restore_training_state(trainer, path)
        self.broadcast_model(trainer.model)
        trainer.rng = self.broadcast_generator(trainer.rng)
        trainer.augment_rng = self.rank_generator(self.broadcast_generator(trainer.augment_rng))
        for layer in trainer.model.layers:
            if isinstance(getattr(layer, "rng", None), np.random.Generator):
                layer.rng = self.rank_generator(self.broadcast_generator(layer.rng))
        if self.rank != 0:
            trainer.verbose = 0
        return start, states

    @contextlib.contextmanager
    def local_copy(self, path: Any) -> Iterator[Any]:
        """``path`` on rank 0; on the others a temporary file holding the bytes rank 0 read from it."""
        data, error = None, ""
        if self.rank == 0:
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError as err:
                error = f"fit: cannot read `resume_from` {str(path)!r} on process 0: {err.strerror or err}"
        data = self.broadcast_bytes(data, error)
        if self.rank == 0:
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="numpycnn-resume-") as folder:
            copy = os.path.join(folder, os.path.basename(os.fspath(path)))
            with open(copy, "wb") as handle:
                handle.write(data)
            yield copy

    @contextlib.contextmanager
    def quiet_unless_root(self) -> Iterator[None]:
        """Discard what ranks other than 0 print (callbacks' messages), so only rank 0 reports."""
        if self.rank == 0:
            yield
            return
        with contextlib.redirect_stdout(io.StringIO()):
            yield

    def abort(self, code: int) -> None:
        """End every process of the job now (``MPI_Abort``) with exit status ``code``; never returns."""
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # a second Ctrl-C must not interrupt this
            for name in ("SIGINT", "SIGTERM"):
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), signal.SIG_IGN)
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_SECONDS)  # let the launcher forward the line before MPI_Abort ends its proxies
        try:
            self.comm.Abort(code)
        finally:
            os._exit(code)  # should MPI_Abort ever return

    @contextlib.contextmanager
    def abort_on_error(self, owner: str, exit_code: Callable[[BaseException], int] = lambda err: 1
                       ) -> Iterator[None]:
        """Let errors raised by every rank alike (:func:`collective`) through; for any other, print one line on
        stderr naming this rank and end the whole job, since the other ranks would wait for it forever.
        Ctrl-C (``KeyboardInterrupt``) ends it without a message, with status 130 (or ``exit_code``'s, when it
        gives one other than 1). Nested, the outermost one acts."""
        if self._guarded:
            yield
            return
        self._guarded = True
        try:
            yield
        except BaseException as err:
            if getattr(err, "collective", False) or self.size == 1 or isinstance(err, SystemExit):
                raise
            if isinstance(err, KeyboardInterrupt):  # Ctrl-C reaches every process: no message per process
                self.abort(exit_code(err) if exit_code(err) != 1 else 130)
            text = " ".join(str(err).split()) or type(err).__name__
            print(f"{owner}: error on process {self.rank} of {self.size}: {type(err).__name__}: {text}. "
                  f"Stopping all {self.size} processes (MPI_Abort) so that none waits for this one.",
                  file=sys.stderr)
            self.abort(exit_code(err))
        finally:
            self._guarded = False


class SingleProcess:
    """The strategy of a run on one process: :class:`DataParallel`'s interface, whose collective steps do nothing.

    ``fit`` runs every step, epoch and run through a strategy (``Trainer.dist``), so the training step is
    written once: here a batch is not sharded, the gradients are already the batch's (:math:`K = 1`), rank 0's
    decisions are this process's, and nothing is broadcast.
    """

    rank, size = 0, 1

    def __repr__(self) -> str:
        return "SingleProcess()"

    def shard(self, index: np.ndarray | slice) -> np.ndarray | slice:
        """The whole batch: ``index`` itself."""
        return index

    def usable(self, n: int, batch_size: int) -> int:
        """Every image of an epoch: ``n``."""
        return n

    def average_gradients(self, model: Sequential, loss: float, hits: int, n_local: int,
                          n_global: int) -> tuple[float, int]:
        """The gradients are the batch's already: ``loss`` and ``hits`` unchanged."""
        return loss, hits

    def average_buffers(self, model: Sequential) -> None:
        """Nothing to average."""

    def agree(self, flag: bool) -> bool:
        """This process's ``flag``."""
        return flag

    def shard_validation(self, validation: Any) -> Any:
        """The whole validation set."""
        return validation

    def combine_scores(self, scores: dict[str, float] | None, count: int) -> dict[str, float] | None:
        """This process's ``scores``."""
        return scores

    def same_on_every_rank(self, err: BaseException) -> BaseException:
        """``err`` unchanged: one process has nobody to agree with."""
        return err

    def setup(self, trainer: Trainer, n_train: int, batch_size: int, resume_from: Any
              ) -> tuple[int | None, dict | None]:
        """Restore ``resume_from`` if given (:func:`~numpycnn.training.resume.restore_training_state`)."""
        if resume_from is None:
            return None, None
        return restore_training_state(trainer, resume_from)

    def quiet_unless_root(self) -> contextlib.AbstractContextManager[None]:
        """Nothing to silence."""
        return contextlib.nullcontext()

    def abort_on_error(self, owner: str) -> contextlib.AbstractContextManager[None]:
        """Errors pass as they are."""
        return contextlib.nullcontext()


def data_parallel(distributed: Any) -> DataParallel | SingleProcess:
    """``fit``'s ``distributed`` argument as a strategy: ``False`` (or ``None``) gives a :class:`SingleProcess`,
    ``True`` a :class:`DataParallel` over all the processes of ``mpiexec`` (``MPI.COMM_WORLD``), a communicator
    one over its processes."""
    if distributed is False or distributed is None:
        return SingleProcess()
    if isinstance(distributed, DataParallel):
        return distributed
    if distributed is True:
        return DataParallel()
    if callable(getattr(distributed, "Allreduce", None)):
        return DataParallel(distributed)
    raise TypeError(f"fit: `distributed` must be True, False, an mpi4py communicator or a DataParallel. "
                    f"Got {distributed!r}.")

