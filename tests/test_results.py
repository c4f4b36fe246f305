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
    for name in ("original", "ablation-optimizer"):
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics["epochs"] == 1 and metrics["train_images"] <= 1000
        assert f"{100 * metrics['test_accuracy']:.2f}%" in table
    assert "`numpycnn train`" in table  # the original row is the bare command
