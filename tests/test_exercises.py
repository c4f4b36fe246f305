"""numpycnn.exercises and `numpycnn exercise`: every solution passes, every stub fails with its message, every
classic mistake is named, every planted bug is found by gradcheck, and `start` never overwrites a file."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from numpycnn.gradcheck import gradcheck
from numpycnn.reference import conv2d_backward, conv2d_forward

from numpycnn import exercises
from numpycnn.cli import main
from numpycnn.exercises.catalogue import BugHunt

PACKAGE = Path(exercises.__file__).parent
NAMES = list(exercises.EXERCISES)
FUNCTIONS = [n for n in NAMES if not isinstance(exercises.EXERCISES[n], BugHunt)]
HUNTS = [n for n in NAMES if isinstance(exercises.EXERCISES[n], BugHunt)]


def test_the_catalogue_has_what_the_issue_asks():
    assert {"conv-forward", "conv-backward", "maxpool-backward", "relu-backward", "dense-backward",
            "softmax-cross-entropy", "batchnorm-backward", "sgd-momentum-step"} <= set(FUNCTIONS)
    assert len(HUNTS) >= 5 and all(n.startswith("find-the-bug-") for n in HUNTS)


@pytest.mark.parametrize("name", NAMES)
def test_each_solution_passes(name):
    result = exercises.check(name, PACKAGE / "_solutions" / exercises.EXERCISES[name].filename)
    assert result.ok, result.message
    assert result.message.startswith("OK: ") and result.mistake is None


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_stub_fails_saying_it_is_not_written(name, tmp_path):
    result = exercises.check(name, exercises.start(name, tmp_path))
    assert not result.ok
    assert "WRONG" in result.message and "is not written yet" in result.message
    assert "NotImplementedError" in result.message


@pytest.mark.parametrize("name", HUNTS)
def test_each_planted_bug_stub_fails_naming_the_broken_gradient(name, tmp_path):
    hunt = exercises.EXERCISES[name]
    result = exercises.check(name, exercises.start(name, tmp_path))
    assert not result.ok
    assert "gradcheck fails" in result.message and f"the gradient of `{hunt.broken}`" in result.message
    assert "worst at index [" in result.message


def _load_class(folder: str, hunt: BugHunt):
    spec = importlib.util.spec_from_file_location(f"numpycnn_exercise_{hunt.class_name}",
                                                  PACKAGE / folder / hunt.filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, hunt.class_name)


@pytest.mark.parametrize("name", HUNTS)
def test_each_planted_bug_is_found_by_gradcheck_in_its_default_use(name):
    hunt = exercises.EXERCISES[name]
    x = np.random.default_rng(3).standard_normal(hunt.input_shapes[0])
    planted = gradcheck(_load_class("_planted", hunt)(**hunt.kwargs), x)
    assert not planted.passed and planted.errors[hunt.broken] > 1e-3, planted
    assert all(err < 1e-6 for key, err in planted.errors.items() if key != hunt.broken), planted
    assert gradcheck(_load_class("_solutions", hunt)(**hunt.kwargs), x).passed


# -- the classic mistakes, written as a learner would, and the name the checker gives each -------------------------
def _conv_backward_first_sample(dy, x, w, stride=1, padding=0):
    dx, _, _ = conv2d_backward(dy, x, w, stride, padding)
    _, dw, db = conv2d_backward(dy[:1], x[:1], w, stride, padding)
    return dx, dw, db


def _maxpool_off_by_one(dy, x, kernel_size=2, stride=None):
    s = kernel_size if stride is None else stride
    dx = np.zeros_like(x)
    for n, c, h, v in np.ndindex(*dy.shape):
        window = x[n, c, h * s:h * s + kernel_size - 1, v * s:v * s + kernel_size - 1]  # one short
        i, j = divmod(int(np.argmax(window)), window.shape[1])
        dx[n, c, h * s + i, v * s + j] += dy[n, c, h, v]
    return dx


def _ce_without_mean(z, y):
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return -float(np.sum(np.log(p[np.arange(len(y)), y]))), p - np.eye(z.shape[1])[y]


def _bn_constants(dy, x, gamma, eps=1e-5):
    inv_std = 1 / np.sqrt(x.var(axis=0) + eps)
    x_hat = (x - x.mean(axis=0)) * inv_std
    return dy * gamma * inv_std, (dy * x_hat).sum(axis=0), dy.sum(axis=0)


MISTAKES = [  # (exercise, a wrong answer, the mistake the checker must name)
    ("dense-backward", lambda dz, x, W: (dz @ W, dz.T @ x, dz), "missing sum over the batch"),
    ("dense-backward", lambda dz, x, W: (dz @ W, x.T @ dz, dz.sum(axis=0)), "transposed weight gradient"),
    ("dense-backward", lambda dz, x, W: (dz @ W, np.outer(dz[0], x[0]), dz[0]), "gradient for only the first sample"),
    ("conv-backward", lambda dy, x, w, stride=1, padding=0: (
        conv2d_backward(dy, x, w[:, :, ::-1, ::-1], stride, padding)[0], *conv2d_backward(dy, x, w, stride,
                                                                                          padding)[1:]),
     "kernel not flipped"),
    ("conv-backward", _conv_backward_first_sample, "gradient for only the first sample"),
    ("conv-forward", lambda x, w, b, stride=1, padding=0: conv2d_forward(x, w, b, stride, padding)[:, :, :-1, :-1],
     "window off by one"),
    ("conv-forward", lambda x, w, b, stride=1, padding=0: conv2d_forward(x, w[:, :, ::-1, ::-1], b, stride, padding),
     "kernel flipped"),
    ("maxpool-backward", _maxpool_off_by_one, "window off by one"),
    ("maxpool-backward", lambda dy, x, kernel_size=2, stride=None: np.repeat(np.repeat(dy, 2, 2), 2, 3),
     "gradient sent to every input of the window"),
    ("relu-backward", lambda dy, x: dy, "missing ReLU mask"),
    ("relu-backward", lambda dy, x: dy * (x >= 0), "gradient passed at x = 0"),
    ("dropout-forward", lambda x, keep, p: x * keep, "dropout without rescaling"),
    ("softmax-cross-entropy", _ce_without_mean, "missing 1/N"),
    ("batchnorm-backward", _bn_constants, "mean and variance treated as constants"),
    ("sgd-momentum-step", lambda w, grad, velocity, lr, momentum: (w - lr * grad, grad), "momentum ignored"),
    ("sgd-momentum-step", lambda w, grad, velocity, lr, momentum: (w - lr * velocity, momentum * velocity + grad),
     "the step uses the old velocity"),
]


@pytest.mark.parametrize("name, answer, mistake", MISTAKES, ids=[f"{n}: {m}" for n, _, m in MISTAKES])
def test_the_checker_names_each_classic_mistake(name, answer, mistake):
    result = exercises.check(name, answer)
    assert not result.ok
    assert result.mistake is not None and mistake in result.mistake, result.message
    assert f"It looks like: {result.mistake}." in result.message and "Where to look: " in result.message
    assert "elements are wrong, at [" in result.message or "has shape" in result.message, result.message
    if exercises.EXERCISES[name].numeric is not None:
        assert "Against finite differences on this case" in result.message


def test_a_wrong_answer_that_is_no_classic_mistake_still_gets_indices_and_a_place_to_look():
    result = exercises.check("relu-backward", lambda dy, x: dy * (x > 0) + (x > 2))
    assert not result.ok and result.mistake is None
    assert "elements are wrong, at [" in result.message and "Where to look: Look at the mask." in result.message


def test_a_failing_case_is_named_with_its_shapes():
    def conv_forward_stride_1_only(x, w, b, stride=1, padding=0):
        return conv2d_forward(x, w, b, 1 if stride == 1 else stride, 0)

    result = exercises.check("conv-forward", conv_forward_stride_1_only)
    assert "case 3 of 4, padding 1" in result.message and "x (2, 2, 5, 5)" in result.message
    assert result.mistake == "padding ignored"


@pytest.mark.parametrize("source, expected", [
    ("def relu_backward(dy, x):\n    return dy[100]\n", "it raised IndexError"),
    ("def relu_backward(dy, x)\n    return dy\n", "raised SyntaxError"),
    ("def relu_backwards(dy, x):\n    return dy\n", "does not define `relu_backward`"),
    ("import numpy as np\nraise RuntimeError('at import')\n", "RuntimeError: at import"),
    ("def relu_backward(dy, x):\n    return dy, dy\n", "has shape"),
])
def test_errors_in_the_learners_file_are_wrong_answers_not_crashes(tmp_path, source, expected):
    path = tmp_path / "relu_backward.py"
    path.write_text(source)
    result = exercises.check("relu-backward", path)
    assert not result.ok and expected in result.message, result.message
    if "IndexError" in expected:
        assert "relu_backward.py, line 2: `return dy[100]`" in result.message


def test_a_fix_that_changes_forward_is_wrong(tmp_path):
    path = exercises.start("find-the-bug-sigmoid", tmp_path)
    path.write_text(path.read_text().replace("y = 1 / (1 + np.exp(-x))", "y = np.tanh(x)").replace(
        "return grad * y", "return grad * (1 - y * y)"))
    result = exercises.check("find-the-bug-sigmoid", path)
    assert not result.ok and "forward changed" in result.message


def test_start_never_overwrites(tmp_path):
    path = exercises.start("dense-backward", tmp_path)
    path.write_text("my work")
    with pytest.raises(FileExistsError, match="left as it is"):
        exercises.start("dense-backward", tmp_path)
    assert path.read_text() == "my work"


def test_unknown_names_and_missing_files_are_errors(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'dense-backward'"):
        exercises.check("dense-backwards", tmp_path / "x.py")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        exercises.check("dense-backward", tmp_path / "missing.py")


# -- the command line ---------------------------------------------------------------------------------------------
def test_cli_list(capsys):
    assert main(["exercise", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES) and "conv_backward.py" in out


def test_cli_start_check_and_exit_codes(tmp_path, capsys, monkeypatch):
    assert main(["exercise", "start", "relu-backward", str(tmp_path)]) == 0
    stub = tmp_path / "relu_backward.py"
    text = stub.read_text()
    assert "dx = dy * [x > 0]" in text and "numpycnn exercise check relu-backward" in text
    assert main(["exercise", "start", "relu-backward", str(tmp_path)]) == 2
    assert "exists and is left as it is" in capsys.readouterr().err and stub.read_text() == text
    assert main(["exercise", "check", "relu-backward", str(stub)]) == 1
    assert "WRONG" in capsys.readouterr().out
    stub.write_text("def relu_backward(dy, x):\n    return dy\n")
    monkeypatch.chdir(tmp_path)
    assert main(["exercise", "check", "relu-backward"]) == 1  # FILE defaults to the stub's name here
    assert "It looks like: missing ReLU mask." in capsys.readouterr().out
    stub.write_text("def relu_backward(dy, x):\n    return dy * (x > 0)\n")
    assert main(["exercise", "check", "relu-backward"]) == 0
    assert capsys.readouterr().out.startswith("OK: relu-backward")
    assert main(["exercise", "check", "no-such-exercise"]) == 2
    assert main(["exercise", "check", "dense-backward"]) == 2  # no dense_backward.py here
    assert "does not exist" in capsys.readouterr().err
    assert main(["exercise"]) == 2  # no sub-command: a usage error


def test_the_python_blocks_of_the_exercises_page_run_and_print_what_they_say(tmp_path, monkeypatch):
    page = Path(__file__).resolve().parents[1] / "docs" / "exercises.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    assert len(blocks) == 2
    exercises.start("find-the-bug-dense", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in blocks:
            exec(compile(block, str(page), "exec"), {"__name__": "exercises_page"})
    out = printed.getvalue()
    assert "False" in out and "It looks like: missing ReLU mask." in out
    assert "GradcheckResult(FAILED" in out and "(weight), worst element weight[" in out
    sys.modules.pop("find_the_bug_dense", None)
