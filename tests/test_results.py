"""The results program's fastest rows, as smoke tests: one epoch on 1,000 images each."""

from __future__ import annotations

import json

from benchmarks import results


def test_every_row_is_a_valid_train_command():
    from numpycnn.cli import build_parser

    for row in results.ROWS:
        args = build_parser().parse_args(["train", *row.args])
        assert args.func.__name__ == "run_train", row.name


def test_fastest_rows_run_and_make_the_table(tmp_path, capsys):
    assert results.main(["original", "ablation-optimizer", "--smoke", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "table.md").read_text()
    assert table.count("\n") == 4  # header, rule and two rows
    for name in ("original", "original-seed1", "ablation-optimizer"):  # the original row has two seeds
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics["epochs"] == 1 and metrics["train_images"] <= 1000
        assert f"{100 * metrics['test_accuracy']:.2f}" in table
    assert "(seeds: " in table
    assert json.loads((tmp_path / "original-seed1" / "metrics.json").read_text())["seed"] == 1
    assert "`numpycnn train`" in table  # the original row is the bare command


def test_a_row_with_two_seeds_reports_the_mean_and_each_seed():
    row = results.ROWS_BY_NAME["deep-long"]
    assert row.seeds == (0, 1) and row.folder(0) == "deep-long" and row.folder(1) == "deep-long-seed1"
    assert row.seed_args(1)[-2:] == ("--seed", "1") and "--seed" not in row.seed_args(0)
    run = {"dataset": "mnist", "model": "deep", "optimizer": "adam", "lr": 0.001, "schedule": "cosine",
           "augment": "shift=2,flip", "label_smoothing": 0.1, "batch_size": 128, "epochs": 15}
    runs = [{**run, "test_accuracy": 0.9952, "train_seconds": 1664.0},
            {**run, "test_accuracy": 0.9946, "train_seconds": 90.0}]
    line = results.table({"deep-long": runs}).splitlines()[-1]
    assert "**99.49%** (seeds: 99.52, 99.46)" in line and "27.7 min / 90 s" in line
    assert "augment shift=2,flip, label smoothing 0.1" in line


def test_a_seed_a_row_does_not_have_is_refused(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        results.main(["lenet5", "--seed", "1", "--out", str(tmp_path)])
    assert "run from seeds [0], not 1" in capsys.readouterr().err
