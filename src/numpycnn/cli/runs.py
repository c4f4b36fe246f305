"""Run folders: what ``numpycnn train`` finds in ``--out``, the lock that keeps one process per folder, cleanup.

A *run folder* holds the files of one training run (:data:`RUN_FILES`, the plots, and the lock). The rules:

- a folder that holds any run file already holds a run, finished or interrupted: it is never written into
  unless the user says how (``--resume`` continues it, ``--overwrite`` replaces it); the default folder
  ``runs/MODEL-DATASET`` instead moves on to the first free ``runs/MODEL-DATASET-2``, ``-3``, ...;
- ``--overwrite`` removes the old run's files, its checkpoint first, before the new run writes anything;
- one process at a time: :class:`RunLock` creates ``.lock`` (the holder's PID, host and start time) with an
  atomic link, and a lock whose process is gone (same host, PID not running) is taken over;
- temporary files left by an interrupted atomic write (``.NAME.XXXX.tmp``) are removed when the next run
  takes the lock.

Nothing here trains or reads data; :mod:`numpycnn.cli` calls it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

#: The files ``numpycnn train`` writes into a run folder (the checkpoint first: it is removed first).
RUN_FILES = ("checkpoint.safetensors", "model.safetensors", "config.json", "history.json", "metrics.json")
#: The pictures of a finished run.
PLOT_FILES = ("curves.png", "gradients.png", "confusion_matrix.png", "filters.png", "feature_maps.png",
              "misclassified.png")
LOCK_NAME = ".lock"
#: Temporary files of ``numpycnn.core.files.atomic_write``: ``.{name}.{random}.tmp`` beside ``name``.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp$")


class RunFolderError(ValueError):
    """A run folder cannot be used as asked: it holds another run, is locked, or holds no run to resume."""


def run_files(folder: Path) -> list[str]:
    """Names of the run files (:data:`RUN_FILES`, :data:`PLOT_FILES`) present in ``folder``."""
    return [name for name in (*RUN_FILES, *PLOT_FILES) if (folder / name).is_file()]


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run, finished or interrupted: any of :data:`RUN_FILES`."""
    return any((folder / name).exists() for name in RUN_FILES)


def describe(folder: Path) -> str:
    """``"a finished run"``, ``"an interrupted run"`` or ``"an interrupted run with no saved epoch"``."""
    if (folder / "model.safetensors").exists():
        return "a finished run"
    if (folder / "checkpoint.safetensors").exists():
        return "an interrupted run"
    return "an interrupted run with no saved epoch"


def fresh_folder(folder: Path) -> Path:
    """``folder`` if it holds no run, else the first of ``folder-2``, ``folder-3``, ... that holds none."""
    if not holds_run(folder):
        return folder
    n = 2
    while holds_run(folder.with_name(f"{folder.name}-{n}")):
        n += 1
    return folder.with_name(f"{folder.name}-{n}")


def check_new_run(folder: Path, overwrite: bool) -> None:
    """Refuse to start a new run in ``folder`` when it holds one, unless ``overwrite``.

    Raises
    ------
    RunFolderError
        Naming the folder, what it holds and the two ways on.
    """
    if overwrite or not holds_run(folder):
        return
    raise RunFolderError(
        f"--out {str(folder)!r} already holds {describe(folder)} ({', '.join(run_files(folder))}); nothing was "
        f"written. Continue it with --resume, replace it with --overwrite, or choose another --out.")


def remove_run(folder: Path) -> list[str]:
    """Delete the run files of ``folder`` (the checkpoint first); return their names. Other files stay."""
    removed = []
    for name in (*RUN_FILES, *PLOT_FILES):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
            removed.append(name)
    return removed


def remove_temporaries(folder: Path) -> list[str]:
    """Delete the temporary files that interrupted atomic writes of run files left in ``folder``."""
    known = set(RUN_FILES) | set(PLOT_FILES)
    removed = []
    for path in folder.iterdir() if folder.is_dir() else ():
        match = _TEMPORARY.match(path.name)
        if match and match["name"] in known and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    return removed


# -- the lock ------------------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (a process we may not signal counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # Windows: no such process, or an invalid argument
        return False
    return True


class RunLock:
    """Hold ``folder/.lock`` while a run uses the folder; a context manager.

    The lock file holds ``{"pid", "host", "started"}``. It is written whole to a temporary file and then
    linked to ``.lock`` (``os.link`` fails if ``.lock`` exists), so a reader never sees a half-written lock
    and two processes can never both succeed. A lock left by a process that is gone (same host, PID not
    running) is stale: it is removed and taken. A lock from another host is respected; the message says how
    to remove it.

    Raises
    ------
    RunFolderError
        On entry, if another running process holds the lock; the message names the folder and the holder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False
        self.record = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock is removed once; a race with another taker may repeat it
            if self._try_link():
                self.held = True
                return
            holder = self._holder()
            if holder is not None and not self._stale(holder):
                raise RunFolderError(
                    f"--out {str(self.folder)!r} is in use by another numpycnn process (PID {holder.get('pid')} "
                    f"on {holder.get('host')}, since {holder.get('started')}); nothing was written. Wait for it "
                    f"to finish or choose another --out. If that process is gone, delete {str(self.path)!r}.")
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        raise RunFolderError(f"--out {str(self.folder)!r}: could not take the lock {str(self.path)!r}; "
                             "another process keeps taking it. Choose another --out.")

    def _try_link(self) -> bool:
        tmp = self.folder / f".lock.{os.getpid()}.{time.monotonic_ns()}"
        tmp.write_text(json.dumps(self.record) + "\n", encoding="utf-8")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _holder(self) -> dict[str, Any] | None:
        """The lock file's record; ``None`` if it vanished; ``{}`` if it is unreadable (treated as stale)."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _stale(self, holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        if not isinstance(pid, int) or holder.get("host") != self.record["host"]:
            return not isinstance(pid, int)  # another host's lock is respected; a garbled one is not
        return not _alive(pid)

    def release(self) -> None:
        """Remove the lock file if this object holds it (and it is still ours)."""
        if not self.held:
            return
        self.held = False
        holder = self._holder()
        if holder and holder.get("pid") == self.record["pid"] and holder.get("host") == self.record["host"]:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


# -- signals ------------------------------------------------------------------------------------------------
class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM during training."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (``timeout``, ``docker stop``, Slurm) into :class:`Terminated` while training runs."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
