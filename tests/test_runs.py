"""Run folders you can trust: never replaced or mixed, one process at a time, honest about what is saved."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numpycnn.cli import main, runs
from numpycnn.model.io import load_model, read_checkpoint_state

QUICK = ["--limit", "200", "--epochs", "1", "--no-plots", "--quiet"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def train(out: Path, *extra: str) -> int:
    return main(["train", *QUICK, "--out", str(out), *extra])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def one_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train(out) == 0
    return out


@pytest.fixture
def copy_of(finished, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


# -- a run is never replaced or mixed ------------------------------------------------------------------------
REFUSED = [
    (["--epochs", "0"], "`--epochs` must be an integer >= 1. Got 0."),
    (["--lr", "-1"], "`--lr` must be a finite number > 0. Got -1.0."),
    (["--lr", "nan"], "`--lr` must be a finite number > 0"),
    (["--val-split", "1.5"], "`--val-split` must be a fraction in [0, 1). Got 1.5."),
    (["--patience", "2"], "--patience needs a validation set"),
    (["--seed", "-1"], "`--seed` must be an integer >= 0. Got -1."),
    (["--limit", "0"], "`--limit` must be an integer >= 1. Got 0."),
    (["--batch-size", "0"], "`--batch-size` must be an integer >= 1. Got 0."),
    (["--resume", "--overwrite"], "contradict each other"),
]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize(("options", "message"), REFUSED)
def test_a_refused_command_leaves_a_finished_run_byte_for_byte(copy_of, capsys, options, message, overwrite):
    before = snapshot(copy_of)
    flags = ["--overwrite"] if overwrite and "--overwrite" not in options else []
    assert train(copy_of, *options, *flags) == 2
    one_line(capsys, "numpycnn train: error:", message)
    assert snapshot(copy_of) == before


def test_a_split_too_small_for_the_data_leaves_the_run_alone(copy_of, capsys):
    before = snapshot(copy_of)  # checked once the data is loaded, still before anything is written
    assert train(copy_of, "--val-split", "0.001", "--overwrite") == 2
    one_line(capsys, "`--val-split` must leave at least one image on each side of 200 training images")
    assert snapshot(copy_of) == before


def test_a_missing_data_set_leaves_the_run_alone(copy_of, tmp_path, capsys, monkeypatch):
    from numpycnn.datasets import cache

    monkeypatch.setenv("NUMPYCNN_DATA", str(tmp_path / "cache"))
    monkeypatch.setitem(cache.LOCAL_DIRS, "fashion-mnist", [])
    before = snapshot(copy_of)
    assert train(copy_of, "--dataset", "fashion-mnist", "--no-download", "--overwrite") == 2
    one_line(capsys, "no verified copy")
    assert snapshot(copy_of) == before


def test_a_second_train_into_a_run_folder_is_refused(copy_of, capsys):
    before = snapshot(copy_of)
    assert train(copy_of) == 2
    one_line(capsys, "already holds a finished run", "--resume", "--overwrite")
    assert snapshot(copy_of) == before
    os.remove(copy_of / "model.safetensors")
    assert train(copy_of, "--lr", "0.05") == 2
    one_line(capsys, "already holds an interrupted run")


def test_a_refused_new_folder_is_not_left_behind(tmp_path, capsys):
    assert train(tmp_path / "new" / "run", "--lr", "0") == 2
    assert not (tmp_path / "new").exists()
    capsys.readouterr()


def test_the_default_folder_moves_to_a_fresh_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--limit", "100", "--epochs", "1", "--no-plots"]) == 0
    first = snapshot(tmp_path / "runs" / "seed-mnist")
    capsys.readouterr()
    assert main(["train", "--limit", "100", "--epochs", "1", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "holds an earlier run; writing this one to runs/seed-mnist-2" in out
    assert snapshot(tmp_path / "runs" / "seed-mnist") == first
    assert (tmp_path / "runs" / "seed-mnist-2" / "model.safetensors").is_file()
    assert runs.fresh_folder(Path("runs/seed-mnist")) == Path("runs/seed-mnist-3")


def test_overwrite_replaces_the_run_and_removes_its_checkpoint_first(copy_of, capsys, monkeypatch):
    from numpycnn.training import loop as training

    seen = {}

    def interrupted(self, *args, **kwargs):
        seen["files"] = sorted(p.name for p in copy_of.iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr(training.Trainer, "train_step", interrupted)
    assert train(copy_of, "--overwrite", "--lr", "0.05") == 130
    assert seen["files"] == [".lock", "config.json"]  # the old run is gone before the new one trains
    err = capsys.readouterr().err
    assert "No epoch was complete, so nothing was saved" in err and "--overwrite" in err
    assert "is saved in" not in err
    assert json.loads((copy_of / "config.json").read_text())["lr"] == 0.05
    assert main(["train", "--out", str(copy_of), "--resume", "--quiet"]) == 2
    one_line(capsys, "stopped before its first epoch ended")


def test_resume_refuses_a_checkpoint_of_another_run(copy_of, tmp_path, capsys):
    other = tmp_path / "other"
    assert train(other, "--lr", "0.05") == 0
    shutil.copy(other / "checkpoint.safetensors", copy_of / "checkpoint.safetensors")
    os.remove(copy_of / "model.safetensors")
    before = snapshot(copy_of)
    assert main(["train", "--out", str(copy_of), "--resume", "--quiet"]) == 2
    one_line(capsys, "belongs to another run")
    assert snapshot(copy_of) == before
    assert read_checkpoint_state(other / "checkpoint.safetensors")["run"]["lr"] == 0.05


@pytest.mark.parametrize(("key", "value"), [("optimizer", "lbfgs"), ("schedule", "linear"),
                                            ("normalize", "minmax"), ("epochs", "ten"), ("lr", -0.1)])
def test_a_hand_edited_config_is_a_clear_error(copy_of, capsys, key, value):
    config = json.loads((copy_of / "config.json").read_text())
    config[key] = value
    (copy_of / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(copy_of), "--resume", "--quiet"]) == 2
    one_line(capsys, str(copy_of / "config.json"), f"`{key}` must be", repr(value), "edited by hand")


# -- one process per folder ----------------------------------------------------------------------------------
def test_a_concurrent_run_is_refused_and_names_the_holder(copy_of, capsys):
    before = snapshot(copy_of)
    with runs.RunLock(copy_of):
        assert train(copy_of, "--overwrite") == 2
        one_line(capsys, "is in use by another numpycnn process", f"PID {os.getpid()}", str(copy_of))
        with pytest.raises(runs.RunFolderError, match="in use"):
            runs.RunLock(copy_of).acquire()
    assert snapshot(copy_of) == before
    assert not (copy_of / runs.LOCK_NAME).exists()


def test_a_stale_lock_does_not_block(copy_of, capsys):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    lock = runs.RunLock(copy_of)
    record = {**lock.record, "pid": int(gone.stdout)}
    (copy_of / runs.LOCK_NAME).write_text(json.dumps(record))
    assert train(copy_of, "--overwrite") == 0
    assert not (copy_of / runs.LOCK_NAME).exists()
    (copy_of / runs.LOCK_NAME).write_text("garbled")  # a lock cut short by a crash
    assert train(copy_of, "--overwrite") == 0


def test_two_processes_one_folder(tmp_path):
    """Two real processes start into the same folder at once: one trains, the other is refused."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "numpycnn", "train", "--limit", "300", "--epochs", "2", "--no-plots",
               "--quiet", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=120), p.stderr.read()) for p in procs)
    assert [code for code, _ in results] == [0, 2], results
    assert "in use by another numpycnn process" in results[1][1] or "already holds" in results[1][1]
    config = json.loads((out / "config.json").read_text())
    assert config["epochs"] == 2 and load_model(out / "model.safetensors") is not None


# -- interruptions, leftovers, full disks, pipes ------------------------------------------------------------
def test_sigterm_then_resume_matches_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    from numpycnn.training import loop as training

    common = ["train", "--limit", "300", "--epochs", "2", "--no-plots", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    calls = {"n": 0}
    original = training.Trainer.train_step

    def terminated(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # in epoch 2 (5 steps per epoch)
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "train_step", terminated)
    out = tmp_path / "cut"
    previous = signal.getsignal(signal.SIGTERM)
    assert main([*common, "--out", str(out)]) == 143
    assert signal.getsignal(signal.SIGTERM) == previous
    err = capsys.readouterr().err
    assert "Terminated (SIGTERM). Epoch 1 of 2 is saved in" in err and f"--out {out} --resume" in err
    monkeypatch.setattr(training.Trainer, "train_step", original)
    assert main(["train", "--out", str(out), "--resume", "--quiet", "--no-plots"]) == 0
    whole = load_model(tmp_path / "whole" / "model.safetensors").state_dict()
    resumed = load_model(out / "model.safetensors").state_dict()
    for name in whole:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)


def test_ctrl_c_during_the_first_checkpoint_write_claims_nothing(tmp_path, capsys, monkeypatch):
    from numpycnn import callbacks

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(callbacks, "save_checkpoint", interrupted)
    assert train(tmp_path / "run") == 130
    err = capsys.readouterr().err
    assert "No epoch was complete" in err and "is saved" not in err


def test_leftover_temporary_files_are_cleaned(copy_of, capsys):
    leftovers = [".checkpoint.safetensors.k2j_x9.tmp", ".model.safetensors.abc.tmp", ".config.json.x1.tmp"]
    for name in leftovers:
        (copy_of / name).write_bytes(b"half")
    (copy_of / "notes.txt").write_text("mine")
    assert train(copy_of, "--overwrite") == 0
    names = {p.name for p in copy_of.iterdir()}
    assert not names & set(leftovers) and "notes.txt" in names
    assert runs.remove_temporaries(copy_of / "absent") == []


def test_a_full_disk_names_the_file_and_what_is_intact(tmp_path, capsys, monkeypatch):
    from numpycnn.core import files as _files

    original, calls = _files.os.replace, {"n": 0}

    def replace(src, dst):
        if str(dst).endswith("checkpoint.safetensors"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return original(src, dst)

    monkeypatch.setattr(_files.os, "replace", replace)
    out = tmp_path / "run"
    assert main(["train", "--limit", "200", "--epochs", "3", "--no-plots", "--quiet", "--out", str(out)]) == 2
    line = one_line(capsys, "No space left on device", str(out / "checkpoint.safetensors"),
                    "checkpoint of epoch 1", "is intact", "--resume")
    assert "cannot write" in line
    assert read_checkpoint_state(out / "checkpoint.safetensors")["epoch"] == 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_train_piped_into_head_still_finishes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC}
    command = [sys.executable, "-m", "numpycnn", "train", "--limit", "300", "--epochs", "3", "--no-plots",
               "--out", str(out)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    code = proc.wait(timeout=120)
    err = proc.stderr.read().decode()
    assert first.startswith(b"Training seed")
    assert code == 0, err
    assert "BrokenPipe" not in err and "Traceback" not in err
    assert (out / "model.safetensors").is_file()


def test_a_run_folder_given_as_model_suggests_its_model_file(finished, capsys):
    assert main(["evaluate", str(finished)]) == 2
    one_line(capsys, "is a folder", f"Did you mean {str(finished / 'model.safetensors')!r}?")
