"""What an MPI launcher (``mpiexec``) tells each process through its environment, read without importing mpi4py.

``numpycnn train`` uses it to refuse running K independent trainings into one folder when it was started by
``mpiexec -n K`` without ``--distributed``, and ``import numpycnn`` uses it to give each of the K processes on a
machine its share of the cores for BLAS (:func:`limit_blas_threads`). The worker threads of
:mod:`numpycnn.core.parallel` follow the same rule: ``available_cores() // processes_on_this_machine()`` each. This
module imports nothing but ``os``, so it runs before NumPy is loaded, which is when the BLAS thread count must be
fixed.

The variables read are those of MPICH's Hydra launcher (also Intel MPI and ``srun --mpi=pmi2``: ``PMI_SIZE``,
``PMI_RANK``, ``MPI_LOCALNRANKS``), Open MPI (``OMPI_COMM_WORLD_*``) and MVAPICH (``MV2_COMM_WORLD_*``).
"""

from __future__ import annotations

import os
import sys

_SIZE = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
_LOCAL_SIZE = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")
#: The thread-count variables of OpenBLAS (NumPy's wheels), OpenMP and MKL.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _first_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launched_processes() -> int:
    """The number of processes ``mpiexec`` started in this job (1 when not started by an MPI launcher)."""
    return max(1, _first_int(_SIZE, 1))


def launched_rank() -> int:
    """This process's rank in the job according to the launcher (0 when not started by one)."""
    return _first_int(_RANK, 0)


def processes_on_this_machine() -> int:
    """How many of the job's processes share this machine (the whole job when the launcher does not say)."""
    return max(1, _first_int(_LOCAL_SIZE, launched_processes()))


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one, else all cores)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def limit_blas_threads() -> int | None:
    """Under ``mpiexec``, let each of the K processes on a machine use ``cores // K`` BLAS threads (at least 1).

    Sets ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``, and only when none of them is
    set already (a value the user chose wins) and NumPy is not yet loaded. Returns the thread count set, or
    ``None`` when nothing was changed.
    """
    local = processes_on_this_machine()
    if local <= 1 or any(name in os.environ for name in BLAS_THREAD_VARIABLES):
        return None
    if "numpy" in sys.modules:  # too late: OpenBLAS read the variables when NumPy was imported
        return None
    threads = max(1, available_cores() // local)
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = str(threads)
    return threads
