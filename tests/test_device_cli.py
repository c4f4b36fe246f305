"""``--device`` on the command line: one clear line and nothing written where the device cannot run, and a run
that continues on another device (the device is not part of a run's identity)."""

from __future__ import annotations

import json
import sys

import pytest

from numpycnn.cli import main
from numpycnn.model.io import read_checkpoint_state
from numpycnn.model.zoo import seed_cnn

COMMON = ["train", "--limit", "300", "--epochs", "2", "--no-plots", "--quiet"]


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError, as without CuPy


def _one_line(capsys, code):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert 'pip install "numpycnn[gpu]"' in err[0] and "NVIDIA GPU" in err[0] and "Traceback" not in err[0]
    return err[0]


def test_train_on_cuda_without_cupy_says_so_and_writes_nothing(tmp_path, capsys, no_cupy):
    out = tmp_path / "run"
    assert _one_line(capsys, main([*COMMON, "--device", "cuda", "--out", str(out)])).startswith(
        "numpycnn train: error: device:")
    assert not out.exists()


def test_distributed_training_on_cuda_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*COMMON, "--device", "cuda", "--distributed", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`--device` must be cpu with --distributed" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("command", [["evaluate", "--limit", "10"], ["predict", "picture.png"],
                                     ["serve", "--port", "0"]])
def test_the_other_commands_on_cuda_without_cupy_say_so(tmp_path, capsys, no_cupy, command):
    path = tmp_path / "m.safetensors"
    seed_cnn().save(path)
    name, *rest = command
    _one_line(capsys, main([name, str(path), *rest, "--device", "cuda"]))


def test_a_run_continues_on_another_device_and_old_configs_still_resume(tmp_path, capsys, monkeypatch, no_cupy):
    from numpycnn.training import loop as training

    out = tmp_path / "cut"
    original, calls = training.Trainer.train_step, {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # in epoch 2 (5 steps of 64 per epoch)
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "train_step", interrupted)
    assert main([*COMMON, "--device", "cpu", "--out", str(out)]) == 130
    monkeypatch.setattr(training.Trainer, "train_step", original)
    assert "device" not in read_checkpoint_state(out / "checkpoint.safetensors")["run"]
    config = json.loads((out / "config.json").read_text())
    assert config["device"] == "cpu"
    config["device"] = "cuda"  # as if it had started on a GPU machine
    (out / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    resume = ["train", "--out", str(out), "--resume", "--quiet", "--no-plots"]
    _one_line(capsys, main(resume))  # its own device is not here: it says how to get it
    assert not (out / "model.safetensors").exists()
    del config["device"]  # a run of a numpycnn before --device
    (out / "config.json").write_text(json.dumps(config))
    assert main([*resume, "--device", "cpu"]) == 0
    assert json.loads((out / "metrics.json").read_text())["device"] == "cpu"
