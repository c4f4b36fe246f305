"""Data-parallel training over MPI: real ``mpiexec -n 2`` jobs (tests/mpi_worker.py) checked from this process.

Skipped, with the reason, only where mpi4py or an ``mpiexec`` is absent; ``pip install -e ".[test]"`` installs
both (mpi4py and the MPICH wheels). Every job runs under a timeout, so a hang fails a test instead of the suite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mpi_worker
import numpy as np
import pytest

from numpycnn.cli import main
from numpycnn.core import launch as _launch
from numpycnn.model.io import load_checkpoint, load_model

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("mpi_worker.py")


def find_mpiexec() -> str | None:
    """The ``mpiexec`` installed beside this Python (the MPICH wheel puts it there), else the one on PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or not HAVE_MPI4PY,
    reason=f"needs mpi4py ({'found' if HAVE_MPI4PY else 'missing'}) and mpiexec "
           f"({MPIEXEC or 'missing'}): pip install 'numpycnn[mpi]'")


def mpirun(*args: str, n: int = 2, timeout: float = 90) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``mpiexec -n N python ARGS`` with this checkout's ``src`` first on the path; return it and its time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    for name in _launch.BLAS_THREAD_VARIABLES:
        env.pop(name, None)  # let each process take cores // n, as it does for users
    start = time.perf_counter()
    done = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)
    return done, time.perf_counter() - start


def worker(*args: str, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    return mpirun(str(WORKER), *args, **kwargs)


def wait_for_the_lock_holder_to_end(out: Path, seconds: float = 10) -> None:
    """``mpiexec`` may return a moment before the process it killed is gone; a live holder's lock is respected."""
    from numpycnn.cli.runs import _alive

    lock = out / ".lock"
    if not lock.exists():
        return
    pid = json.loads(lock.read_text())["pid"]
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"process {pid} still runs {seconds} s after the job ended"


def train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--distributed", "--limit", "300", "--epochs", "3", "--batch-size", "50", "--out", str(out),
            "--no-plots", "--quiet", *extra]


# -- the arithmetic: equal to one process ------------------------------------------------------------------
@needs_mpi
def test_two_processes_reach_the_weights_of_one_on_the_same_global_batches(tmp_path):
    done, _ = worker("fit", str(tmp_path))
    assert done.returncode == 0, done.stderr
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1)]
    single = mpi_worker.train(distributed=False).state_dict()
    initial = mpi_worker.small_cnn().state_dict()
    for name, value in single.items():
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=f"{name} differs between ranks")
        assert not np.allclose(value, initial[name]), f"{name} did not train"
        # float32 gradients summed in another order: agreement to a few units in the 6th digit after 10 steps
        np.testing.assert_allclose(ranks[0][name], value, rtol=1e-4, atol=2e-5, err_msg=name)


@needs_mpi
def test_every_rank_ends_with_the_same_batch_norm_statistics_but_draws_its_own_dropout_masks(tmp_path):
    done, _ = worker("batchnorm", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rank0, rank1 = (dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1))
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked", "0.weight", "6.weight"} <= set(rank0)
    masks = rank0.pop("mask"), rank1.pop("mask")
    for name in rank0:
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)
    assert not np.allclose(rank0["1.running_mean"], 0.0)  # they moved
    assert not np.array_equal(*masks)  # 16 draws each: equal masks by chance have probability 2**-16


@needs_mpi
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    done, seconds = worker("nan", str(tmp_path), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    for rank in (0, 1):  # mpiexec may interleave the two processes' lines
        assert f"rank {rank} stopped: fit: the loss became nan at epoch 1, batch 3/5" in done.stdout, done.stdout
    assert "finished" not in done.stdout
    assert seconds < 30


# -- the command line ------------------------------------------------------------------------------------
@needs_mpi
def test_train_distributed_writes_each_file_once_from_rank_zero(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    done, _ = worker("cli", str(out), "none", "0", "--", *train_args(out, "--val-split", "0.2", "--patience", "5"))
    assert done.returncode == 0, done.stderr
    assert (out / "writes-rank1.txt").read_text() == ""
    writes = (out / "writes-rank0.txt").read_text().split()
    assert sorted(writes) == sorted(["config.json", *["checkpoint.safetensors"] * 3, "model.safetensors",
                                     "history.json", "metrics.json"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["epochs"] == 3
    assert metrics["test_accuracy"] > 0.5  # 300 images, 3 epochs; chance is 0.1


@needs_mpi
def test_mpiexec_without_distributed_refuses_with_one_message(tmp_path):
    args = train_args(tmp_path / "run")
    args.remove("--distributed")
    done, _ = mpirun("-m", "numpycnn", *args, timeout=60)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == ["numpycnn train: error: train: started by mpiexec as one of 2 processes without --distributed: "
                      "each would train its own model into the same --out. Add --distributed to train one model "
                      "together, or run without mpiexec."]
    assert not (tmp_path / "run").exists()


@needs_mpi
@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_and_resume_reaches_the_uninterrupted_weights(tmp_path, mode):
    out, reference = tmp_path / "run", tmp_path / "reference"
    out.mkdir()
    done, seconds = worker("cli", str(out), mode, "1", "--", *train_args(out), timeout=60)
    assert seconds < 30, "the job should end within seconds of the failure"
    assert done.returncode != 0
    if mode == "raise":
        assert done.returncode == 2
        assert ("numpycnn train: error on process 1 of 2: ValueError: injected failure on rank 1. Stopping all 2 "
                "processes (MPI_Abort)") in done.stderr
    assert not (out / "model.safetensors").exists()
    from numpycnn.model.zoo import build_model
    from numpycnn.optim import SGD

    state = load_checkpoint(out / "checkpoint.safetensors", build_model("seed", seed=0), SGD(lr=0.1))
    assert state["epoch"] == 0  # the last complete epoch, intact
    wait_for_the_lock_holder_to_end(out)  # process 0 was killed holding the run's lock; it is taken over
    resumed, _ = mpirun("-m", "numpycnn", *train_args(out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    full, _ = mpirun("-m", "numpycnn", *train_args(reference))
    assert full.returncode == 0, full.stderr
    got, want = load_model(out / "model.safetensors"), load_model(reference / "model.safetensors")
    for name, value in want.state_dict().items():
        np.testing.assert_array_equal(got.state_dict()[name], value, err_msg=name)


# -- without MPI -----------------------------------------------------------------------------------------
def test_import_numpycnn_does_not_import_mpi4py():
    code = ("import sys, numpycnn, numpycnn.training.loop, numpycnn.cli, numpycnn.training.distributed; "
            "print('mpi4py' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.stdout.strip() == "False", done.stderr


def test_distributed_without_mpi4py_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    assert main(train_args(tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert 'distributed training needs mpi4py and an MPI library: pip install "numpycnn[mpi]"' in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("env", "size", "rank", "local"), [
    ({}, 1, 0, 1),
    ({"PMI_SIZE": "4", "PMI_RANK": "3", "MPI_LOCALNRANKS": "2"}, 4, 3, 2),                        # MPICH Hydra
    ({"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "3"}, 3, 1, 3),
    ({"PMI_SIZE": "2", "PMI_RANK": "1"}, 2, 1, 2),                       # no local count: the whole job
])
def test_the_launcher_environment_is_read_without_mpi4py(monkeypatch, env, size, rank, local):
    for name in (*_launch._SIZE, *_launch._RANK, *_launch._LOCAL_SIZE):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (_launch.launched_processes(), _launch.launched_rank(), _launch.processes_on_this_machine()) == (
        size, rank, local)


@pytest.mark.parametrize(("user", "expected"), [(None, "cores // 2"), ("3", "3")])
def test_each_of_k_processes_gets_cores_over_k_blas_threads_unless_the_user_chose(user, expected):
    env = {k: v for k, v in os.environ.items() if k not in _launch.BLAS_THREAD_VARIABLES}
    env.update(PYTHONPATH=str(ROOT / "src"), PMI_SIZE="2", PMI_RANK="0", MPI_LOCALNRANKS="2")
    if user:
        env["OPENBLAS_NUM_THREADS"] = user
    code = "import os, numpycnn; print(os.environ['OPENBLAS_NUM_THREADS'], os.environ.get('OMP_NUM_THREADS'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    threads = str(max(1, _launch.available_cores() // 2))
    assert done.stdout.split() == ([threads, threads] if user is None else [user, "None"]), done.stderr


class FakeRank:
    """The batch arithmetic of DataParallel, without a communicator."""

    def __init__(self, rank: int, size: int) -> None:
        from numpycnn.training.distributed import DataParallel

        self.dp = object.__new__(DataParallel)
        self.dp.rank, self.dp.size = rank, size


@pytest.mark.parametrize(("batch", "size"), [(64, 2), (45, 2), (7, 4), (3, 3), (50, 4)])
def test_every_global_batch_is_cut_into_near_equal_consecutive_shards(batch, size):
    index = np.random.default_rng(0).permutation(1000)[:batch]
    shards = [FakeRank(r, size).dp.shard(index) for r in range(size)]
    np.testing.assert_array_equal(np.concatenate(shards), index)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1 and min(map(len, shards)) >= 1
    slices = [FakeRank(r, size).dp.shard(slice(100, 100 + batch)) for r in range(size)]
    assert [s.start for s in slices[1:]] == [s.stop for s in slices[:-1]] and slices[-1].stop == 100 + batch


@pytest.mark.parametrize(("n", "batch", "size", "usable"), [(300, 50, 2, 300), (301, 50, 2, 300),
                                                           (302, 50, 2, 302), (103, 50, 4, 100)])
def test_a_last_batch_too_small_to_give_each_rank_an_image_is_left_out(n, batch, size, usable):
    assert FakeRank(0, size).dp.usable(n, batch) == usable


def test_the_global_batch_must_give_every_rank_an_image():
    FakeRank(0, 4).dp.check_batch_size(4)
    with pytest.raises(ValueError, match=r"`batch_size` must be at least the number of processes \(4\).*Got 3\."):
        FakeRank(0, 4).dp.check_batch_size(3)
