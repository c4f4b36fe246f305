"""docs/lab.md runs: its Python blocks, in order, in one namespace, in a fresh working directory; each experiment
prints the figures its prose reads, the broken runs show what the page says they show, and every figure is written."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1] / "docs" / "lab.md"


def figures_shown() -> set[str]:
    """The figures the page shows, ``![...](lab-figures/NAME.png)``."""
    return set(re.findall(r"\]\(lab-figures/([\w-]+\.png)\)", LAB.read_text()))


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, (pattern, text)
    return float(found.group(1))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Run the page once in an empty folder; its printed output and the folder."""
    folder = tmp_path_factory.mktemp("lab")
    blocks = re.findall(r"```python\n(.*?)```", LAB.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "lab"}
    printed = io.StringIO()
    here = os.getcwd()
    os.chdir(folder)  # the page writes its figures relative to the working directory (contextlib.chdir: 3.11+)
    try:
        with contextlib.redirect_stdout(printed):
            for i, block in enumerate(blocks):
                exec(compile(block, f"{LAB}:block{i + 1}", "exec"), namespace)
    finally:
        os.chdir(here)
    return printed.getvalue(), folder


def test_every_figure_the_page_shows_is_written_by_running_it_and_committed(lab):
    out, folder = lab
    written = {path.name for path in (folder / "lab-figures").iterdir()}
    assert figures_shown() == written and len(written) >= 5, (figures_shown(), written)
    for name in written:
        assert (folder / "lab-figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote lab-figures/{name}" in out
        assert (LAB.parent / "lab-figures" / name).is_file(), f"run `cd docs && python notebooks.py run lab.md`: {name}"


def test_the_initial_loss_is_ln_10_unless_the_last_layer_starts_large(lab):
    out, _ = lab
    assert "ln 10 = 2.303" in out
    small = number(r"last layer x0\.1 ([0-9.]+)", out)
    default = number(r"as initialised ([0-9.]+)", out)
    large = number(r"x10 ([0-9.]+)\n", out)
    assert abs(small - math.log(10)) < 0.1, out
    assert abs(default - math.log(10)) < 0.3, out
    assert large > 2 * math.log(10), out


def test_twenty_images_overfit_unless_the_pixels_are_not_scaled(lab):
    out, _ = lab
    healthy = re.search(r"pixels in \[0, 1\]: .*", out).group(0)
    assert number(r"-> ([0-9.]+)", healthy) < 0.05 and "training accuracy 100%" in healthy, out
    broken = out[out.index("floats in 0-255 (broken)"):out.index("wrote lab-figures/overfit.png")]
    assert number(r"-> ([0-9.]+)", broken) > 1.0 and number(r"accuracy ([0-9]+)%", broken) < 50, broken
    assert "fit warned:" in broken and "0-255 pixels" in broken
    assert "layer 0.Conv2D: its gradients are all zero" in broken and "the learning rate is too high" in broken
    assert "diagnose" not in out[out.index("pixels in [0, 1]"):out.index("floats in 0-255")]


def test_diagnose_names_the_learning_rate_that_is_too_high_and_not_the_good_one(lab):
    out, _ = lab
    runs = {lr: out[out.index(f"lr {lr}:"):] for lr in ("1.0", "0.1", "0.001")}
    too_high = runs["1.0"][:runs["1.0"].index("lr 0.1:")]
    good = runs["0.1"][:runs["0.1"].index("lr 0.001:")]
    too_low = runs["0.001"][:runs["0.001"].index("wrote")]
    assert "the learning rate is too high" in too_high and number(r"largest step ([0-9.e+-]+)", too_high) > 1
    assert "diagnose" not in good and "diagnose" not in too_low
    assert number(r"validation accuracy ([0-9.]+)%", good) > 85
    assert number(r"training loss ([0-9.]+)", too_low) > 3 * number(r"training loss ([0-9.]+)", good)
    low_ratio = number(r"update/weight [0-9.e+-]+ to ([0-9.e+-]+)", too_low)
    assert low_ratio < number(r"update/weight ([0-9.e+-]+) to", good) / 10


def test_vanishing_and_exploding_gradients_show_in_the_per_layer_norms(lab):
    out, _ = lab
    healthy, vanishing, exploding = (re.search(rf"^x{scale}: .*$", out, flags=re.MULTILINE).group(0)
                                     for scale in ("1", "0.01", "10"))
    assert 1e-2 < number(r"last/first ([0-9.e+-]+)", healthy) < 1e2 and "second step's loss" in healthy
    assert number(r"last/first ([0-9.e+-]+)", vanishing) > 1e2, vanishing  # shrink > 100x towards the input
    assert "vanishing gradients" in out
    assert number(r"first step's loss ([0-9.e+-]+)", exploding) > 1e6
    assert number(r"gradient norms ([0-9.e+-]+) to", exploding) > 1e4 * number(r"to ([0-9.e+-]+), first", healthy)
    assert "TrainingError" in exploding and "nan" in exploding


def test_forgetting_training_true_leaves_batch_norm_and_dropout_off_without_an_error(lab):
    out, _ = lab
    assert "0% in model.forward(x)" in out
    assert 40 <= number(r"dropout\(0\.5\) zeroes ([0-9]+)%", out) <= 60
    right = re.search(r"^training=True: .*$", out, flags=re.MULTILINE).group(0)
    forgotten = re.search(r"^training forgotten: .*$", out, flags=re.MULTILINE).group(0)
    assert "100 batches tracked" in right and "0 batches tracked, running variance 1 on" in forgotten
    accuracy = [number(r"validation accuracy ([0-9.]+)%", line) for line in (right, forgotten)]
    assert accuracy[0] > 80 and accuracy[0] > accuracy[1] + 5, (right, forgotten)
