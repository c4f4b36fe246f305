"""Intra-operation parallelism: a small pool of worker threads that runs the independent slices of one operation.

NumPy releases the GIL inside ufuncs, copies, reductions and ``matmul``, so Python threads that each work on
their own slice of an array (a few images of the batch, a few channels, a stretch of a flat parameter) run truly
at the same time. The heavy operations of :mod:`numpycnn.functional` (the convolution's forward and both
gradients, the fused batch norm + ReLU, max pooling), the optimisers' element-wise updates and the augmentation's
random rotation cut their work into slices with :func:`slices` and hand the slices to :func:`run`.

**One setting.** :func:`get_num_threads` workers (the caller counts as one): :func:`set_num_threads` if it was
called, else the environment variable ``NUMPYCNN_THREADS``, else the cores this process may use
(``os.sched_getaffinity``) divided among the MPI processes on this machine, the rule of
:func:`numpycnn.core.launch.limit_blas_threads`. One worker runs every slice in the calling thread. Arrays of a
device (CuPy) are never split: a GPU runs one large kernel better than several small ones.

**Deterministic.** How an operation is sliced depends only on the shapes and on this machine's usable cores
(:func:`slices`: at most :data:`MAX_SLICES` slices, each with at least :data:`MIN_SLICE_WORK` elements of work),
never on the number of workers or on thread timing, and the partial results of a reduction that crosses slices
(the convolution's weight gradient) are added in slice order. So 1 and N workers give bit-identical results
(tested in ``tests/test_parallel.py``).

**BLAS threads.** Inside a parallel region every worker calls the BLAS with one thread, so that N workers and
the BLAS's own threads do not oversubscribe the cores; the BLAS's thread count is restored when the region
ends. One worker runs the slices of a region with one BLAS thread too: OpenBLAS picks different kernels for
different thread counts, whose sums differ in the last bit, and this keeps 1 and N workers bit-identical.
This uses threadpoolctl when it is installed (``pip install "numpycnn[speed]"``). Without it the BLAS keeps its
own thread count: every product of a region then runs with the BLAS's threads, which oversubscribes the cores
(N workers times the BLAS's threads; slower, the same bits for any number of workers as long as the BLAS's
count is fixed). ``OPENBLAS_NUM_THREADS=1`` in the environment gives the same effect as threadpoolctl for the
whole process, at the price of single-threaded products outside the regions.

**Life cycle.** The pool starts on the first region that has work for more than one worker, is rebuilt
empty in a forked child (``os.register_at_fork``), and is shut down at exit. A region inside a region (a
worker's slice that itself calls :func:`run`) runs serially in that worker. A slice that raises does not hang
the caller: no further slice starts, the slices already running finish, and the exception of the first failing
slice (in slice order) is raised again, the original exception object with its traceback.

Examples
--------
>>> import numpy as np
>>> x = np.arange(10.0)
>>> parts = run([lambda s=s: x[s].sum() for s in slices(len(x), 1, min_work=1, max_slices=3)])
>>> [float(p) for p in parts]
[6.0, 15.0, 24.0]
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from numpycnn.core.launch import available_cores, processes_on_this_machine
from numpycnn.errors import fail

#: The environment variable that sets the number of workers (a positive integer).
ENV_VARIABLE = "NUMPYCNN_THREADS"

#: The most slices an operation is cut into: one per usable core of this machine (at least 2, at most 16), fixed
#: when numpycnn loads and never the number of workers, so that results do not depend on the number of workers.
#: Measured here (2 cores; 32 -> 32 channels at 28x28, batch 128, forward and backward, 12 alternating rounds):
#: 2 slices on 2 workers 115 ms (min) / 122 ms (median), 4 slices 130 / 135 ms, 8 slices 139 / 156 ms; on one
#: worker 2 slices 114 / 120 ms, 8 slices 145 / 199 ms. More slices than cores only add per-slice overhead.
#: Setting it to 1 (before training) turns the split off: every operation runs as one call, the products on the
#: BLAS's own threads, the same bits for any number of workers (docs/speed.md measures when that is faster).
MAX_SLICES = max(2, min(16, available_cores()))

#: The least work (elements read or written) a slice must carry to be worth a hand-off to another thread: 256 Ki
#: elements, some 0.1-0.3 ms of NumPy passes. Measured here (2 cores; minimum of 300 alternating steps): with 64 Ki,
#: the original network's training step at batch 64 was split and took 2.39 ms on 2 workers against 1.83 ms
#: unsplit; with 256 Ki it is not split (1.84 ms). deep_cnn at batch 128 is split in every heavy step either way.
MIN_SLICE_WORK = 1 << 18


def slices(n: int, work_per_item: int, min_work: int | None = None, max_slices: int | None = None) -> list[slice]:
    """Cut ``range(n)`` into near-equal consecutive slices, as many as pay: at most ``max_slices`` (default
    :data:`MAX_SLICES`) and ``n``, each with at least ``min_work`` elements of work (default
    :data:`MIN_SLICE_WORK`; ``work_per_item`` per item); one slice when none pays.

    The cut depends only on the arguments, never on the number of workers.
    """
    min_work = MIN_SLICE_WORK if min_work is None else min_work
    max_slices = MAX_SLICES if max_slices is None else max_slices
    count = max(1, min(max_slices, n, (n * max(1, work_per_item)) // max(1, min_work)))
    base, extra = divmod(n, count)
    out, lo = [], 0
    for k in range(count):
        hi = lo + base + (1 if k < extra else 0)
        out.append(slice(lo, hi))
        lo = hi
    return out


class _Pool:
    """The process's workers: a ``ThreadPoolExecutor`` started on first use, its size, and the region lock."""

    def __init__(self) -> None:
        self.requested: int | None = None  # set_num_threads; None: the environment or the machine decides
        self.executor: ThreadPoolExecutor | None = None
        self.size = 0  # threads of `executor` (workers - 1: the caller is a worker too)
        self.region = threading.Lock()  # one parallel region at a time; a second caller runs its slices serially
        self.local = threading.local()  # `.inside`: this thread is running a slice of a region
        self.usage = (0, 0, 0)  # (regions, most slices, most workers) since the last take_usage()

    def executor_for(self, threads: int) -> ThreadPoolExecutor:
        if self.executor is None or self.size != threads:
            self.shutdown()
            self.executor = ThreadPoolExecutor(threads, thread_name_prefix="numpycnn")
            self.size = threads
        return self.executor

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        self.executor, self.size = None, 0


_POOL = _Pool()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: forget the pool (the next region starts a new one)."""
    global _POOL
    requested = _POOL.requested
    _POOL = _Pool()
    _POOL.requested = requested


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(lambda: _POOL.shutdown())


def default_num_threads() -> int:
    """``NUMPYCNN_THREADS`` if set, else the usable cores divided among the MPI processes on this machine."""
    value = os.environ.get(ENV_VARIABLE, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            fail("numpycnn", ENV_VARIABLE, "a positive integer (the number of worker threads)", value,
                 f"Unset it to use all {available_cores()} usable cores.")
        return int(value)
    return max(1, available_cores() // processes_on_this_machine())


def get_num_threads() -> int:
    """The number of workers a parallel region uses (the calling thread included); see the module docstring."""
    return _POOL.requested if _POOL.requested is not None else default_num_threads()


def set_num_threads(n: int | None) -> None:
    """Use ``n`` workers from now on (1: no threads at all); ``None`` goes back to the default
    (:func:`default_num_threads`).

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer or None.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        fail("set_num_threads", "n", "a positive integer or None (the default)", n)
    _POOL.requested = n


def pool_started() -> bool:
    """Whether the worker threads exist (they start on the first region with work for two workers or more)."""
    return _POOL.executor is not None


def take_usage() -> tuple[int, int, int]:
    """``(regions, slices, workers)``: how many parallel regions ran since the last call, the most slices and
    the most workers one of them used; then start counting again (for profiles and plans)."""
    usage, _POOL.usage = _POOL.usage, (0, 0, 0)
    return usage


def _record(pool: _Pool, n_slices: int, workers: int) -> None:
    regions, most_slices, most_workers = pool.usage
    pool.usage = (regions + 1, max(most_slices, n_slices), max(most_workers, workers))


_BLAS: list[Any] | None = None  # threadpoolctl's controllers of the loaded BLAS libraries, found once


def _blas_controllers() -> list[Any]:
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: without it the BLAS keeps its thread count (module docstring)
            _BLAS = []
        else:
            _BLAS = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    return _BLAS


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Inside: the BLAS runs each call on one thread. After: its thread count as before."""
    saved = []
    for lib in _blas_controllers():
        saved.append((lib, lib.num_threads))
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in saved:
            lib.set_num_threads(threads)


def run(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run every task (a callable without arguments, one slice of an operation) and return their results in
    order, on up to :func:`get_num_threads` workers.

    Raises
    ------
    Exception
        The exception of the first failing task (in task order). After a failure no further task starts, and
        the exception is raised once the tasks already running have ended.
    """
    threads = get_num_threads()
    workers = min(threads, len(tasks))
    pool = _POOL
    if len(tasks) <= 1 or getattr(pool.local, "inside", False):
        _record(pool, len(tasks), 1)
        return [task() for task in tasks]
    if workers <= 1 or not pool.region.acquire(blocking=False):
        _record(pool, len(tasks), 1)
        with _one_blas_thread():  # the same products as N workers run, so the same bits
            return [task() for task in tasks]
    try:
        results: list[Any] = [None] * len(tasks)
        errors: list[BaseException | None] = [None] * len(tasks)
        lock, cursor = threading.Lock(), [0]

        def drain() -> None:  # take the next task until none is left or one failed
            pool.local.inside = True
            try:
                while True:
                    with lock:
                        k = cursor[0]
                        if k >= len(tasks) or any(e is not None for e in errors):
                            return
                        cursor[0] = k + 1
                    try:
                        results[k] = tasks[k]()
                    except BaseException as err:  # handed to the caller below, never lost
                        errors[k] = err
            finally:
                pool.local.inside = False

        with _one_blas_thread():
            executor = pool.executor_for(threads - 1)  # sized once for every region, used by `workers - 1` here
            futures = [executor.submit(drain) for _ in range(workers - 1)]
            drain()  # the caller is a worker too
            for future in futures:
                future.result()
        _record(pool, len(tasks), workers)
    finally:
        pool.region.release()
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        raise failed
    return results


def map_slices(function: Callable[[slice], Any], parts: Sequence[slice]) -> list[Any]:
    """``[function(s) for s in parts]``, the slices run by :func:`run`."""
    return run([lambda s=s: function(s) for s in parts])


def describe() -> str:
    """One line for plans and profiles: the number of workers and where it comes from."""
    if _POOL.requested is not None:
        source = "numpycnn.set_num_threads"
    elif os.environ.get(ENV_VARIABLE, "").strip():
        source = ENV_VARIABLE
    else:
        local = processes_on_this_machine()
        source = f"{available_cores()} usable cores" + (f" / {local} MPI processes" if local > 1 else "")
    blas = "one BLAS thread per worker" if _blas_controllers() else "BLAS threads unchanged (no threadpoolctl)"
    return f"{get_num_threads()} worker(s) ({source}); {blas} inside parallel regions"
